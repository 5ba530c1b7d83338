"""Adversarial losses as plain functions of D's logits, and the R1 penalty.

hinge: Lim & Ye 2017 / Miyato et al. 2018; ns: the non-saturating loss of Goodfellow et al. 2014.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

DLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
GLoss = Callable[[torch.Tensor], torch.Tensor]


def d_hinge(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]; logits [B] -> scalar."""
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def g_hinge(fake: torch.Tensor) -> torch.Tensor:
    """-E[D(G(z))]."""
    return -fake.mean()


def d_nonsaturating(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(D(x)) - log(1 - sigmoid(D(G(z))))."""
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def g_nonsaturating(fake: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(D(G(z)))."""
    return F.softplus(-fake).mean()


ADVERSARIAL: dict[str, tuple[DLoss, GLoss]] = {
    "hinge": (d_hinge, g_hinge),
    "ns": (d_nonsaturating, g_nonsaturating),
}


def r1_penalty(real_logits: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): E[||grad_x D(x)||^2] on real images; `real` must require grad."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    return grad.square().sum(dim=(1, 2, 3)).mean()


def d_wgan(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Wasserstein critic loss (Arjovsky et al. 2017): E[D(G(z))] - E[D(x)]; scores [B] -> scalar."""
    return fake.mean() - real.mean()


def g_wgan(fake: torch.Tensor) -> torch.Tensor:
    """-E[D(G(z))]."""
    return -fake.mean()


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     u: torch.Tensor) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017, eq. 3): E[(||grad_x D(x_hat)||_2 - 1)^2] at x_hat = real + u (fake - real).

    real, fake [B, C, H, W]; u [B, 1, 1, 1] uniform in [0, 1]; `critic` maps images to scores [B] (one call)."""
    mix = torch.lerp(real.detach(), fake.detach(), u).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mix).float().sum(), mix, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1.0).square().mean()


def drift_penalty(real: torch.Tensor) -> torch.Tensor:
    """PGGAN's drift term (Karras et al. 2018, appendix A.1): E[D(x)^2], which keeps critic scores near 0."""
    return real.square().mean()
