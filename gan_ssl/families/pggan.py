"""The `pggan` family: Karras, Aila, Laine, Lehtinen, "Progressive Growing of GANs for Improved Quality,
Stability, and Variation", ICLR 2018.

Phases per loop step: "D" (`train.n_dis` times) -- WGAN-GP (Gulrajani et al. 2017): E[D(G(z))] - E[D(x)]
+ lambda E[(||grad D(x_hat)||- 1)^2] (lambda 10) + drift 0.001 E[D(x)^2] (appendix A.1), plus the
self-supervised terms on rotated reals; "G": -E[D(G(z))] plus the terms on rotated fakes. Reals, fakes and
the gradient-penalty interpolates each get their own D call, so minibatch stddev never mixes them.
Levels of detail come from the shared progressive schedule (`gan_ssl.families.progressive`); the paper's
optimizer is Adam(lr 1e-3, betas (0, 0.99)) with an EMA of G, set in configs/pggan_fmnist.yaml.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import torch

from gan_ssl.families.base import Batch, Logs, Phase, StepContext, register_family
from gan_ssl.families.progressive import GrowConfig, ProgressiveFamily
from gan_ssl.nn.losses import d_wgan, drift_penalty, g_wgan, gradient_penalty

if TYPE_CHECKING:
    from gan_ssl.config import Config


@dataclass
class PGGANLoss:
    gp_lambda: float = 10.0  # WGAN-GP weight (Gulrajani et al. 2017; PGGAN: 10)
    drift: float = 0.001  # epsilon_drift on E[D(x)^2] (PGGAN appendix A.1)
    grow: GrowConfig = field(default_factory=GrowConfig)  # the progressive schedule (lengths in real images)

    RANGES: ClassVar[dict[str, tuple[float, float]]] = {"gp_lambda": (0, float("inf")), "drift": (0, float("inf")),
                                                         **{f"grow.{k}": v for k, v in GrowConfig.RANGES.items()}}


@register_family("pggan")
class PGGANFamily(ProgressiveFamily):
    loss_config = PGGANLoss
    default_model = "pggan"

    def __init__(self, cfg: "Config", device: torch.device | str = "cpu", training: bool = True) -> None:
        super().__init__(cfg, device, training)
        if training:
            self.phases = [Phase("D", ("D", "aux"), "D", self.phase_d, repeat=cfg.train.n_dis),
                           Phase("G", ("G",), "G", self.phase_g, batch=False)]

    def phase_d(self, batch: Batch | None, ctx: StepContext) -> Logs:
        """WGAN-GP + drift on faded reals and fakes at the current level, + weighted auxiliary terms on reals."""
        assert batch is not None
        real = self.augment(self.reals(batch))  # [B, C, r, r]
        B, loss_cfg, logs = real.shape[0], self.cfg.loss, {}
        with ctx.autocast():
            real_scores, feats = self.D.forward_with_feature(real, self.alpha)
            with torch.no_grad():
                fake = self.augment(self.G.raw(self.G.sample_z(B, device=ctx.device), self.level, self.alpha))
            fake_scores = self.D(fake, self.alpha)
            wdist = d_wgan(real_scores.float(), fake_scores.float())
            loss = wdist + loss_cfg.drift * drift_penalty(real_scores.float())
            if loss_cfg.gp_lambda > 0:
                u = torch.rand(B, 1, 1, 1, device=ctx.device, dtype=real.dtype)
                gp = gradient_penalty(lambda x: self.D(x, self.alpha), real, fake, u)
                loss = loss + loss_cfg.gp_lambda * gp
                logs["gp"] = gp.detach()
            loss = loss + self.aux_terms("d", real, feats, logs)
        ctx.backward(loss)
        logs.update(loss=loss.detach(), d_wdist=-wdist.detach(), d_real=real_scores.detach().float().mean(),
                    d_fake=fake_scores.detach().float().mean())
        return logs

    def phase_g(self, batch: Batch | None, ctx: StepContext) -> Logs:
        """-E[D(G(z))] at the current level + weighted auxiliary terms on fakes."""
        logs: Logs = {}
        with ctx.autocast():
            fake = self.augment(self.G.raw(self.G.sample_z(self.batch_size(ctx), device=ctx.device), self.level, self.alpha))
            scores, feats = self.D.forward_with_feature(fake, self.alpha)
            adv = g_wgan(scores.float())
            loss = adv + self.aux_terms("g", fake, feats, logs)
        ctx.backward(loss)
        logs.update(loss=loss.detach(), g_adv=adv.detach())
        return logs
