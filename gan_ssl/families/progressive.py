"""Progressive growing as a schedule (Karras et al. 2018, sec. 3), shared by the `pggan` and `stylegan` families.

The level of detail is a function of the real images shown so far (`StepContext.images`): the first level
(4x4) is trained for `stabilize_images`; each further doubling fades in over `fade_images` (alpha 0 -> 1,
linear in images) and is then stabilised for `stabilize_images`. `grow_schedule` computes it, the family's
`schedule(state)` hands it to the loop (logged, saved in checkpoints, and `batch_size` read by the loop's
data stream), and the phases read the level and alpha from the family. Networks hold every level from the
start and take (level, alpha) in their forward pass, so nothing is rebuilt when a level is added.

Real images are shown to D at the current level: box-downsampled to its resolution and, while a level fades
in, blended with their 2x average-pooled-then-upsampled copy by the same alpha as G's toRGB blend, so D
never sees sharper reals than fakes (`fade_reals`).

`ProgressiveFamily` holds what both families share: G, D, the self-supervised heads on D's 4x4 features
(`aux.rotation.*`, one D call of their own), the EMA of G, Adam(G), Adam(D + heads), the schedule (with an
optional optimizer-state reset when a new level starts), grids and samples upsampled to full resolution.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F

from gan_ssl.core.errors import ConfigError, DataError
from gan_ssl.data import to_uint8
from gan_ssl.families.base import Family, Logs, Representation, StepContext
from gan_ssl.families.gan import build_g_d_aux, d_representation
from gan_ssl.families.ssl import AuxTask
from gan_ssl.models.pggan import upscale

if TYPE_CHECKING:
    from gan_ssl.config import Config


@dataclass
class GrowConfig:
    enabled: bool = True  # grow from start_resolution to data.resolution; false trains at full resolution from step 0
    start_resolution: int = 4  # the first level of detail (PGGAN: 4x4)
    stabilize_images: int = 50_000  # real images per level at alpha = 1 (paper: 800k at 1024 px; sized for a CPU)
    fade_images: int = 50_000  # real images over which a new level fades in, alpha 0 -> 1 (paper: 800k)
    batch_sizes: str = ""  # per-level batch sizes from start_resolution up, e.g. "128,128,64" (last repeats; "" = train.batch_size)
    reset_optimizers: bool = True  # clear Adam's moments when a new level starts fading in (PGGAN's reset_opt_for_new_lod)

    RANGES: ClassVar[dict[str, tuple[float, float]]] = {"start_resolution": (4, 1024), "stabilize_images": (0, 10**12),
                                                         "fade_images": (0, 10**12)}


@dataclass(frozen=True)
class GrowState:
    level: int  # 0 = 4x4, 1 = 8x8, ...
    alpha: float  # weight of the newest level (1 when stable)
    batch_size: int

    @property
    def resolution(self) -> int:
        return 4 * 2**self.level


def _levels(resolution: int) -> int:
    n = math.log2(resolution / 4) if resolution >= 4 else -1
    return int(n) if float(n).is_integer() else -1


def parse_batch_sizes(text: str) -> list[int]:
    """'128,128,64' -> [128, 128, 64]; '' -> []. Raises ConfigError on anything else."""
    if not text.strip():
        return []
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        raise ConfigError(f"config key 'loss.grow.batch_sizes' = {text!r} must be comma-separated integers, e.g. 128,128,64") from None
    if any(s < 2 for s in sizes):
        raise ConfigError(f"config key 'loss.grow.batch_sizes' = {text!r}: every batch size must be at least 2")
    return sizes


def grow_schedule(images: int, final_resolution: int, grow: GrowConfig, batch_size: int) -> GrowState:
    """The level of detail, fade-in alpha and batch size after `images` real images.

    Level k of n (k > start) starts fading in at stabilize + (k - start - 1) * (fade + stabilize) images and
    is stable from fade images later. Without growing: the final level, alpha 1, `batch_size`."""
    n = _levels(final_resolution)
    if not grow.enabled:
        return GrowState(n, 1.0, batch_size)
    start = _levels(grow.start_resolution)
    level, alpha = start, 1.0
    t = images - grow.stabilize_images
    if t >= 0:
        period = grow.fade_images + grow.stabilize_images
        k = t // period if period > 0 else n
        level = min(start + 1 + k, n)
        if level == start + 1 + k:  # still inside this level's fade + stabilize period
            r = t - k * period
            alpha = min(1.0, r / grow.fade_images) if grow.fade_images > 0 else 1.0
    sizes = parse_batch_sizes(grow.batch_sizes)
    bs = sizes[min(level - start, len(sizes) - 1)] if sizes else batch_size
    return GrowState(level, float(alpha), bs)


def fade_reals(x: torch.Tensor, resolution: int, alpha: float = 1.0) -> torch.Tensor:
    """Real images [B, C, R, R] as D sees them at a level: box-downsampled to `resolution`, and while the level
    fades in, lerp(up(avgpool2(x_r)), x_r, alpha), the reals' version of G's toRGB blend. -> [B, C, r, r]."""
    f = x.shape[-1] // resolution
    assert f >= 1 and x.shape[-1] == f * resolution, f"cannot box-downsample {tuple(x.shape)} to {resolution} px"
    xr = F.avg_pool2d(x, f) if f > 1 else x
    if alpha < 1.0:
        xr = torch.lerp(upscale(F.avg_pool2d(xr, 2), resolution), xr, alpha)
    return xr


def validate_progressive(cfg: "Config") -> None:
    """Rules shared by the progressive families: resolution 4 * 2^k, a start level inside it, batch sizes."""
    res, grow = cfg.data.resolution, cfg.loss.grow
    if _levels(res) < 1:
        raise ConfigError(f"config key 'data.resolution' = {res}: {cfg.family} needs 4 * 2^k >= 8 pixels (8, 16, 32, 64, ...)")
    if _levels(grow.start_resolution) < 0 or grow.start_resolution > res:
        raise ConfigError(f"config key 'loss.grow.start_resolution' = {grow.start_resolution} must be 4 * 2^k "
                          f"and at most data.resolution ({res})")
    parse_batch_sizes(grow.batch_sizes)


class ProgressiveFamily(Family):
    """Nets G, D, aux (heads on D's 4x4 features); EMA G_ema; optimizers G, D (+ heads); buffer fixed_z.
    Subclasses add their phases and, for sampling options, override `sample`."""

    loss_config: ClassVar[type]
    representations = ("D",)
    supported_aux = ("rotation",)

    def __init__(self, cfg: "Config", device: torch.device | str = "cpu", training: bool = True) -> None:
        super().__init__(cfg, device, training)
        t = cfg.train
        G, D, aux = build_g_d_aux(self)
        self.tasks: list[AuxTask] = list(aux.values())
        self.grow = grow_schedule(0, cfg.data.resolution, cfg.loss.grow, t.batch_size)
        if training:
            # The heads (gan_ssl.families.ssl) are plain nn.Linear layers, weights ~ 1/sqrt(fan_in); D's equalized-LR weights
            # are N(0, 1), scaled at run time. One Adam lr moves both by the same absolute step, so the heads would
            # move sqrt(fan_in) times faster relative to their size (at lr 1e-2: ~30% per step). Their lr is divided
            # by sqrt(feature_dim): the equalized-LR rule applied to the heads.
            d_groups = [{"params": list(D.parameters())}]
            if len(list(aux.parameters())):
                d_groups.append({"params": list(aux.parameters()), "lr": t.lr_d / D.feature_dim**0.5})
            self.optimizers = {
                "G": torch.optim.Adam(G.parameters(), lr=t.lr_g, betas=(t.beta1_g, t.beta2_g)),
                "D": torch.optim.Adam(d_groups, lr=t.lr_d, betas=(t.beta1_d, t.beta2_d)),
            }

    @classmethod
    def validate(cls, cfg: "Config") -> None:
        validate_progressive(cfg)

    # --- the schedule --------------------------------------------------------------------------
    @property
    def level(self) -> int:
        return self.grow.level

    @property
    def alpha(self) -> float:
        return self.grow.alpha

    @property
    def lod(self) -> float:
        """PGGAN's level of detail: 0 at the final resolution, fractional while a level fades in."""
        return float(self.G.max_level - self.level + (1.0 - self.alpha))

    def schedule(self, ctx: StepContext) -> dict[str, float]:
        """Level, alpha and batch size from the real images shown so far; at the start of a new level the
        optimizers' moments are cleared when `loss.grow.reset_optimizers` is on."""
        new = grow_schedule(ctx.images, self.cfg.data.resolution, self.cfg.loss.grow, self.cfg.train.batch_size)
        if new.level != self.level and self.cfg.loss.grow.reset_optimizers:
            for opt in self.optimizers.values():
                opt.state.clear()
        self.grow = new
        return {"resolution": new.resolution, "lod": self.lod, "alpha": new.alpha, "batch_size": new.batch_size}

    def state_extra(self) -> dict[str, Any]:
        return {"level": self.level, "alpha": self.alpha, "batch_size": self.grow.batch_size}

    def load_state_extra(self, state: dict[str, Any]) -> None:
        if "level" in state:
            self.grow = GrowState(int(state["level"]), float(state["alpha"]), int(state["batch_size"]))

    # --- pieces of the phases ------------------------------------------------------------------
    def reals(self, batch: Any) -> torch.Tensor:
        """The batch's real images at the current level, faded like G's output. -> [B, C, r, r]."""
        return fade_reals(batch["image"], self.grow.resolution, self.alpha)

    def aux_terms(self, side: str, x: torch.Tensor, upright: torch.Tensor, logs: Logs) -> torch.Tensor:
        """Weighted self-supervised terms: each active task's extra images (rotations of x) go through D's
        4x4 features in a call of their own (minibatch stddev never sees them); upright = D.feature(x) [B, F]."""
        total = upright.new_zeros(())
        for task in self.tasks:
            if task.weight(side) > 0:
                images, context = task.extra_inputs(x)
                term, extra_logs = task.loss(side, upright, self.D.feature(images, self.alpha), context)
                total = total + term
                logs.update(extra_logs)
        return total

    def batch_size(self, ctx: StepContext) -> int:
        return int(ctx.sched.get("batch_size", self.grow.batch_size))

    # --- evaluation ----------------------------------------------------------------------------
    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """G_ema's images of latents z [B, z_dim] at the current level, upsampled to full resolution [B, C, R, R]."""
        return upscale(self.ema_module("G_ema")(z, self.level, self.alpha), self.cfg.data.resolution)

    @torch.no_grad()
    def grid(self) -> torch.Tensor:
        return self.generate(self.buffers["fixed_z"])

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0, batch_size: int = 256, **options: Any) -> torch.Tensor:
        """n images as uint8 [n, C, R, R]; latents are drawn at once from `seed`, so batching does not change them."""
        self.check_sample_options(options)
        if n < 1:
            raise DataError(f"number of images must be at least 1, got {n}")
        z = self.G.sample_z(n, torch.Generator().manual_seed(seed))
        return torch.cat([to_uint8(self.generate(z[i : i + batch_size].to(self.device))).cpu() for i in range(0, n, batch_size)])

    def representation(self, name: str | None = None) -> Representation:
        self.check_representation(name)
        return d_representation(self.D)

    def describe(self) -> dict[str, Any]:
        return {"resolution": self.cfg.data.resolution, "current_resolution": self.grow.resolution, "level_of_detail": self.lod,
                "alpha": self.alpha, "progressive": self.cfg.loss.grow.enabled, "aux_tasks": list(self.aux.keys()),
                "loss": dataclasses.asdict(self.cfg.loss)}
