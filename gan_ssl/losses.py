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


def d_relativistic_average(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Relativistic average D loss (Jolicoeur-Martineau 2019; ESRGAN): real logits should exceed the mean fake
    logit and fake logits fall below the mean real one. Logits [B] -> scalar."""
    return F.softplus(-(real - fake.mean())).mean() + F.softplus(fake - real.mean()).mean()


def g_relativistic_average(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Relativistic average G loss: the same terms with the roles swapped (G also gets a signal from real logits)."""
    return F.softplus(real - fake.mean()).mean() + F.softplus(-(fake - real.mean())).mean()
