"""What the image-conditioned families (context_encoder, srgan) share: a two-stage schedule, a fixed grid
of real images taken from the first training batch, and the "conditional: nothing to sample" answer.

Stage 0 runs a G-only pre-training phase for `loss.pretrain_steps` loop steps (phases with
`when=pretraining`); stage 1 runs D and G (`when=adversarial`). The stage is a schedule value, so it is
logged, saved in checkpoints and recomputed from the step on resume.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from gan_ssl.core.errors import ConfigError
from gan_ssl.families.base import Batch, Family, Phase, StepContext

if TYPE_CHECKING:
    from gan_ssl.config import Config


def pretraining(sched: dict[str, float]) -> bool:
    """Phase predicate: the G-only pre-training stage."""
    return sched.get("stage", 1.0) == 0.0


def adversarial(sched: dict[str, float]) -> bool:
    """Phase predicate: the adversarial stage (D and G)."""
    return sched.get("stage", 1.0) == 1.0


def two_stage_phases(fam: Family, G: torch.nn.Module, D: torch.nn.Module) -> None:
    """Adam for G and D (the config's lr and betas), then the phases: G_pre (G alone, `fam.phase_g_pre`) in the
    pre-training stage when loss.pretrain_steps > 0; D x n_dis (when loss.adv_weight > 0) and G in the adversarial one."""
    t, loss = fam.cfg.train, fam.cfg.loss
    fam.optimizers = {"G": torch.optim.Adam(G.parameters(), lr=t.lr_g, betas=(t.beta1_g, t.beta2_g)),
                      "D": torch.optim.Adam(D.parameters(), lr=t.lr_d, betas=(t.beta1_d, t.beta2_d))}
    if loss.pretrain_steps > 0:
        fam.phases.append(Phase("G_pre", ("G",), "G", fam.phase_g_pre, when=pretraining))  # type: ignore[attr-defined]
    if loss.adv_weight > 0:
        fam.phases.append(Phase("D", ("D",), "D", fam.phase_d, repeat=t.n_dis, when=adversarial))  # type: ignore[attr-defined]
    fam.phases.append(Phase("G", ("G",), "G", fam.phase_g, when=adversarial))  # type: ignore[attr-defined]


def grid_size(sample_grid: int) -> int:
    """Images per grid column group: k = 3 m^2 with m = floor(sqrt(sample_grid / 9)) (at least 1), so the three
    groups (input, output, target) of k images tile a 3m x 3m grid, each group m whole rows."""
    m = max(1, int(math.isqrt(max(1, sample_grid // 9))))
    return 3 * m * m


def triptych(inputs: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[k, C, H, W] x 3 -> [3k, C, H, W]: the inputs, then the outputs, then the targets (k = 3 m^2, so
    `save_grid`'s square layout shows each group as m full rows)."""
    assert inputs.shape == outputs.shape == targets.shape, (inputs.shape, outputs.shape, targets.shape)
    return torch.cat([inputs, outputs, targets])


class ConditionalFamily(Family):
    """Base of families whose G maps a real image's degraded copy back to it. Subclasses fill the grid buffers
    through `remember_grid(batch)` in their G phases and implement `grid_views()`."""

    samples_from_noise = False  # G needs a real image to start from
    sample_options = ()
    generator = "G"  # the trained net maps degraded images back; there is no EMA of it

    def __init__(self, cfg: "Config", device: torch.device | str = "cpu", training: bool = True) -> None:
        super().__init__(cfg, device, training)
        self.grid_k = grid_size(cfg.train.sample_grid)
        c, r = cfg.data.channels, cfg.data.resolution
        # the first training batch's first k images (and their family inputs), kept for the sample grids
        self.buffers = {"grid_image": torch.zeros(self.grid_k, c, r, r, device=self.device),
                        "grid_filled": torch.zeros((), device=self.device)}

    def schedule(self, ctx: StepContext) -> dict[str, float]:
        return {"stage": 0.0 if ctx.step < self.cfg.loss.pretrain_steps else 1.0}

    def remember_grid(self, batch: Batch, **extra: torch.Tensor) -> None:
        """Keep the first batch's first k images (and named extras such as masks) for every later grid."""
        if float(self.buffers["grid_filled"]) > 0:
            return
        k = min(self.grid_k, batch["image"].shape[0])
        self.buffers["grid_image"][:k] = batch["image"][:k].detach()
        for name, value in extra.items():
            self.buffers[name][:k] = value[:k].detach()
        if k < self.grid_k:  # a batch smaller than the grid: repeat its images
            for name in ["grid_image", *extra]:
                buf = self.buffers[name]
                buf[k:] = buf[:k].repeat((self.grid_k + k - 1) // k, *[1] * (buf.ndim - 1))[: self.grid_k - k]
        self.buffers["grid_filled"].fill_(1.0)

    def grid_views(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(inputs, outputs, targets) for the grid, each [k, C, H, W] in [-1, 1]."""
        raise NotImplementedError

    @torch.no_grad()
    def grid(self) -> torch.Tensor:
        nets = list(self.nets.values())
        modes = [n.training for n in nets]
        for n in nets:
            n.eval()  # BatchNorm reads its running statistics and leaves them unchanged (exact resume)
        try:
            return triptych(*self.grid_views())
        finally:
            for n, m in zip(nets, modes):
                n.train(m)

    def sample(self, n: int, seed: int = 0, batch_size: int = 256, **options: Any) -> torch.Tensor:
        raise ConfigError(f"{self.name} is conditioned on real images and has nothing to sample from noise; "
                          f"use `gan-ssl {'inpaint' if self.name == 'context_encoder' else 'super-resolve'} CKPT --input PATH --out DIR`")
