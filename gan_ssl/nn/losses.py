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
    """R1 (Mescheder et al. 2018): E[||grad_x D(x)||^2] on real images; `real` must require grad.

    Plus 0 x the logits, as StyleGAN2-ADA does: every parameter of D then gets a defined gradient (zero for
    those the penalty's second derivative does not reach, such as the last bias), which data-parallel
    training (DDP) needs, and one process and N processes step the same parameters."""
    (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
    return grad.square().sum(dim=(1, 2, 3)).mean() + 0.0 * real_logits.sum()


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """SimCLR's NT-Xent (Chen et al. 2020): z1, z2 [B, D] are two views' projections; each row's positive is
    its other view, the other 2B - 2 rows are negatives. Cosine similarities over `temperature`."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # [2B, D]
    n = z1.shape[0]
    sim = z @ z.t() / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


def supcon_fakes(fake: torch.Tensor, real: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """ContraD's supervised-contrastive term on fakes (Jeong & Shin 2021, after Khosla et al. 2020): fake
    projections [B, D] are one class (positives of each other), real projections [M, D] the negatives.
    Mean over anchors of -mean_p log(exp(s_ip) / sum_{a != i} exp(s_ia))."""
    f, r = F.normalize(fake, dim=1), F.normalize(real, dim=1)
    n = f.shape[0]
    sim_ff = f @ f.t() / temperature  # [B, B]
    sim_fr = f @ r.t() / temperature  # [B, M]
    eye = torch.eye(n, dtype=torch.bool, device=f.device)
    denom = torch.logsumexp(torch.cat([sim_ff.masked_fill(eye, float("-inf")), sim_fr], dim=1), dim=1, keepdim=True)  # [B, 1]
    log_prob = (sim_ff - denom).masked_fill(eye, 0.0)
    return -(log_prob.sum(1) / (n - 1)).mean()


def d_relativistic_average(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Relativistic average D loss (Jolicoeur-Martineau 2019; ESRGAN): real logits should exceed the mean fake
    logit and fake logits fall below the mean real one. Logits [B] -> scalar."""
    return F.softplus(-(real - fake.mean())).mean() + F.softplus(fake - real.mean()).mean()


def g_relativistic_average(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Relativistic average G loss: the same terms with the roles swapped (G also gets a signal from real logits)."""
    return F.softplus(real - fake.mean()).mean() + F.softplus(-(fake - real.mean())).mean()


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
    mix = torch.lerp(real.detach().float(), fake.detach().float(), u.float()).requires_grad_(True)  # fakes are bf16 under autocast
    (grad,) = torch.autograd.grad(critic(mix).float().sum(), mix, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1.0).square().mean()


def drift_penalty(real: torch.Tensor) -> torch.Tensor:
    """PGGAN's drift term (Karras et al. 2018, appendix A.1): E[D(x)^2], which keeps critic scores near 0."""
    return real.square().mean()
