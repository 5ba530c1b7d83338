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


def hinge(s: torch.Tensor, y: float) -> torch.Tensor:
    """E[relu(1 - y s)]: the hinge on one score, y = +1 (data pairs) or -1 (generated pairs); s [B] -> scalar."""
    return F.relu(1.0 - y * s).mean()


def bigan_d_hinge(real: dict[str, torch.Tensor], fake: dict[str, torch.Tensor],
                  weights: dict[str, float]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """BigBiGAN's discriminator loss (Donahue & Simonyan 2019, section 2): a hinge per score,
    sum_k w_k [h(s_k(x, E(x))) + h(-s_k(G(z), z))] over k in {x, z, xz}.

    real, fake: scores {"x", "z", "xz"} -> [B]; a term whose weight is 0 is left out (its score may be absent).
    Returns (loss, {"d_hinge_<k>": that term's unweighted hinge sum}).
    """
    loss, logs = None, {}
    for k, w in weights.items():
        if w == 0:
            continue
        term = hinge(real[k], 1.0) + hinge(fake[k], -1.0)
        logs[f"d_hinge_{k}"] = term.detach()
        loss = w * term if loss is None else loss + w * term
    assert loss is not None, "at least the joint term must be on"
    return loss, logs


def bigan_ge_loss(scores: dict[str, torch.Tensor], y: float, weights: dict[str, float]) -> torch.Tensor:
    """What E (y = +1, scores of (x, E(x))) and G (y = -1, scores of (G(z), z)) minimise:
    y * sum_k w_k E[s_k] over the terms present in `scores` with a weight above 0; scores [B] -> scalar."""
    parts = [w * scores[k].mean() for k, w in weights.items() if w != 0 and k in scores]
    assert parts, "no score to train on"
    return y * torch.stack(parts).sum()
