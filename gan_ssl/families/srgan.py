"""The `srgan` family: single-image super-resolution as a pretext task (Ledig et al., CVPR 2017).

Batches carry `low_res` [B, C, H/s, W/s]: the image area-downsampled (box filter) by the model's
`scale`, made by `make_inputs`. Phases (`gan_ssl.families.conditional`):
    "G_pre"  the PSNR-oriented stage (SRResNet): L1 pixel loss only, for `loss.pretrain_steps` steps;
    "D"      real high-resolution images vs G(low_res): non-saturating, hinge, or relativistic average;
    "G"      pixel_weight * L1 + feature_weight * L_feat + adv_weight * L_adv   (adv_weight 1e-3, eq. 3-6)
L_feat is the content loss in a feature space: `d` compares D's block outputs of SR and HR images (the
project's own network, no pretrained weights), `lpips` is LPIPS with the VGG-16 trunk (needs its file,
see `gan_ssl.evaluation.image_quality`). G at the end of pre-training is kept as `G_psnr` (an EMA entry with beta 0
that stops following G when the adversarial stage starts), so one run gives both the PSNR model and
the GAN model. Representation: "D".
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F

from gan_ssl.core.errors import ConfigError
from gan_ssl.families.base import Batch, Logs, Representation, StepContext, build_model, register_family
from gan_ssl.families.conditional import ConditionalFamily, two_stage_phases
from gan_ssl.families.gan import d_representation
from gan_ssl.nn.ema import EMA
from gan_ssl.nn.losses import ADVERSARIAL, d_relativistic_average, g_relativistic_average
from gan_ssl.nn.lpips import LPIPS

if TYPE_CHECKING:
    from gan_ssl.config import Config

FEATURE_LOSSES = ("d", "lpips", "none")


@dataclass
class SRGANLoss:
    pixel_weight: float = 1.0  # L1 pixel loss in both stages (L1 trains sharper than MSE: Zhao et al. 2017, EDSR)
    feature: str = "d"  # content loss: d (D's block features, no pretrained net) | lpips (VGG-16 trunk file) | none
    feature_weight: float = 1.0  # content-loss weight in the GAN stage (SRGAN: 1 on VGG features); D-feature L1 starts ~5x below the pixel L1
    adv_weight: float = 1e-3  # SRGAN's adversarial weight
    adversarial: str = "ns"  # ns (SRGAN's) | hinge
    relativistic: bool = False  # relativistic average D and G (ESRGAN) instead of `adversarial`
    pretrain_steps: int = 1000  # loop steps of the PSNR-only stage (G_pre) before D and G start
    lpips_weights: str = ""  # VGG-16 trunk for feature=lpips ("" = torchvision's file in the torch hub cache)

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"adversarial": tuple(ADVERSARIAL), "feature": FEATURE_LOSSES}
    RANGES: ClassVar[dict[str, tuple[float, float]]] = {"pixel_weight": (0, float("inf")), "feature_weight": (0, float("inf")),
                                                         "adv_weight": (0, float("inf")), "pretrain_steps": (0, 10**9)}


def downsample(image: torch.Tensor, scale: int) -> torch.Tensor:
    """Area (box-filter) downsampling [B, C, H, W] -> [B, C, H/scale, W/scale]: the degradation SR inverts."""
    return F.avg_pool2d(image, scale)


@register_family("srgan")
class SRGANFamily(ConditionalFamily):
    loss_config = SRGANLoss
    default_model = "srgan"
    representations = ("D",)

    def __init__(self, cfg: "Config", device: torch.device | str = "cpu", training: bool = True) -> None:
        super().__init__(cfg, device, training)
        loss = cfg.loss
        G, D = build_model(cfg)
        self.G, self.D, self.scale = G.to(self.device), D.to(self.device), cfg.model.scale
        self.nets = {"G": self.G, "D": self.D}
        self.emas = {"G_psnr": ("G", EMA(self.G, 0.0, "none"))}  # beta 0: a copy of G, frozen after pre-training
        self.d_adv, self.g_adv = ADVERSARIAL[loss.adversarial]
        self.lpips: Any = None
        if not training:
            return
        if loss.feature == "lpips" and loss.feature_weight > 0:

            self.lpips = LPIPS(loss.lpips_weights or None).to(self.device)
        two_stage_phases(self, G, D)

    @classmethod
    def validate(cls, cfg: "Config") -> None:
        if cfg.data.resolution % cfg.model.scale:
            raise ConfigError(f"data.resolution {cfg.data.resolution} is not a multiple of model.scale {cfg.model.scale}")
        loss = cfg.loss
        if loss.pixel_weight == 0 and loss.adv_weight == 0 and (loss.feature == "none" or loss.feature_weight == 0):
            raise ConfigError("G has nothing to learn: loss.pixel_weight, loss.feature_weight and loss.adv_weight are all 0")
        if loss.pretrain_steps > 0 and loss.pixel_weight == 0:
            raise ConfigError("the pre-training stage trains on the pixel loss alone; set loss.pixel_weight > 0 or loss.pretrain_steps=0")

    def update_emas(self, step: int) -> None:
        if step < self.cfg.loss.pretrain_steps:  # G_psnr follows G through pre-training, then keeps its last value
            super().update_emas(step)

    # --- inputs and losses ---------------------------------------------------------------------
    def make_inputs(self, batch: Batch, generator: torch.Generator) -> Batch:
        """Adds `low_res` [B, C, H/s, W/s] (area downsampling; deterministic, so the generator is unused)."""
        return {**batch, "low_res": downsample(batch["image"], self.scale)}

    def feature_loss(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        """Content loss of SR vs HR images [B, C, H, W] in [-1, 1]: mean L1 over D's blocks, or LPIPS; scalar."""
        if self.cfg.loss.feature == "lpips":
            return self.lpips(((sr + 1) / 2).clamp(0, 1), (hr + 1) / 2).mean()
        fs, fh = self.D.features(sr), self.D.features(hr.detach())
        return torch.stack([(fs[k] - fh[k].detach()).abs().mean() for k in self.D.blocks.keys()]).mean()

    def phase_g_pre(self, batch: Batch | None, ctx: StepContext) -> Logs:
        """L1 pixel loss only (the PSNR-oriented SRResNet stage)."""
        assert batch is not None
        self.remember_grid(batch)
        with ctx.autocast():
            sr = self.G(batch["low_res"])  # [B, C, H, W]
            pixel = (sr.float() - batch["image"]).abs().mean()
            loss = self.cfg.loss.pixel_weight * pixel
        ctx.backward(loss)
        return {"loss": loss.detach(), "pixel": pixel.detach()}

    def phase_d(self, batch: Batch | None, ctx: StepContext) -> Logs:
        """D tells real high-resolution images from G(low_res)."""
        assert batch is not None
        hr = batch["image"]
        with ctx.autocast():
            with torch.no_grad():
                sr = self.G(batch["low_res"]).clamp(-1, 1)
            real, fake = self.D(self.augment(hr)).float(), self.D(self.augment(sr)).float()
            loss = d_relativistic_average(real, fake) if self.cfg.loss.relativistic else self.d_adv(real, fake)
        ctx.backward(loss)
        return {"loss": loss.detach(), "d_real": real.detach().mean(), "d_fake": fake.detach().mean()}

    def phase_g(self, batch: Batch | None, ctx: StepContext) -> Logs:
        """pixel_weight * L1 + feature_weight * L_feat + adv_weight * L_adv (D frozen)."""
        assert batch is not None
        self.remember_grid(batch)
        loss_cfg, hr, logs = self.cfg.loss, batch["image"], {}
        with ctx.autocast():
            sr = self.G(batch["low_res"])
            pixel = (sr.float() - hr).abs().mean()
            loss = loss_cfg.pixel_weight * pixel
            logs["pixel"] = pixel.detach()
            if loss_cfg.feature != "none" and loss_cfg.feature_weight > 0:
                feat = self.feature_loss(sr, hr)
                loss = loss + loss_cfg.feature_weight * feat
                logs["feat"] = feat.detach()
            if loss_cfg.adv_weight > 0:
                fake = self.D(self.augment(sr)).float()
                adv = g_relativistic_average(self.D(self.augment(hr)).float(), fake) if loss_cfg.relativistic else self.g_adv(fake)
                loss = loss + loss_cfg.adv_weight * adv
                logs["g_adv"] = adv.detach()
        ctx.backward(loss)
        logs["loss"] = loss.detach()
        return logs

    # --- inference -----------------------------------------------------------------------------
    @torch.no_grad()
    def upscale(self, low_res: torch.Tensor, net: str = "G") -> torch.Tensor:
        """Super-resolve low_res [B, C, h, w] in [-1, 1] -> [B, C, s*h, s*w] in [-1, 1] with G (the final, GAN-stage
        generator) or G_psnr (the generator at the end of pre-training)."""
        if net not in ("G", "G_psnr"):
            raise ConfigError(f"srgan has generators G and G_psnr, not {net!r}")
        if net == "G_psnr" and self.cfg.loss.pretrain_steps == 0:
            raise ConfigError("this run had no pre-training stage (loss.pretrain_steps=0), so G_psnr was never trained; use G")
        gen = self.G if net == "G" else self.ema_module("G_psnr")
        return gen(low_res).float().clamp(-1, 1)

    def grid_views(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        hr = self.buffers["grid_image"]
        lr = downsample(hr, self.scale)
        return F.interpolate(lr, scale_factor=self.scale, mode="nearest"), self.upscale(lr), hr

    def representation(self, name: str | None = None) -> Representation:
        self.check_representation(name)
        return d_representation(self.D)

    def describe(self) -> dict[str, Any]:
        return {"resolution": self.cfg.data.resolution, "scale": self.scale, "loss": dataclasses.asdict(self.cfg.loss)}
