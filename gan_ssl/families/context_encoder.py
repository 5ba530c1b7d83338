"""The `context_encoder` family: inpainting as a pretext task (Pathak et al., CVPR 2016, section 3).

Batches carry `mask` [B, 1, H, W] (1 = hole), drawn per sample by `make_inputs` from the stream's
per-batch generator, so a resumed run sees the same holes. G reads the image with its hole filled by the
training images' mean pixel (`loss.fill`) plus the mask, and predicts the image; the completion is the prediction inside
the hole and the original context outside.

Phases (`gan_ssl.families.conditional`): "G_pre" (reconstruction only, the first `loss.pretrain_steps`
steps), then "D" (real images vs completed images) and "G":
    L = lambda_rec * L_rec + lambda_adv * L_adv,   lambda_rec = 0.999, lambda_adv = 0.001   (eq. 1-3)
    L_rec = sum_p w_p (G(x')_p - x_p)^2 / sum_p w_p,  w = 1 in the hole, `overlap_weight` on the ring of
            context `overlap` px around it (the paper's overlap, weighted 10x), 0 elsewhere.
Representations: "encoder" (G's encoder on full images, nothing hidden) and "D".
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from gan_ssl.core.errors import ConfigError
from gan_ssl.data import ImageData
from gan_ssl.families.base import Batch, Logs, Representation, StepContext, build_model, register_family
from gan_ssl.families.conditional import ConditionalFamily, two_stage_phases
from gan_ssl.families.gan import d_representation
from gan_ssl.nn.losses import ADVERSARIAL
from gan_ssl.nn.masks import MASKS, apply_mask, composite, draw_masks, overlap_ring

if TYPE_CHECKING:
    from gan_ssl.config import Config
    from gan_ssl.data import FolderSource



@dataclass
class ContextEncoderLoss:
    rec_weight: float = 0.999  # lambda_rec of Pathak et al. (eq. 3)
    adv_weight: float = 0.001  # lambda_adv of Pathak et al.; 0 = reconstruction only (no D phase)
    adversarial: str = "ns"  # ns: the paper's (non-saturating) GAN loss | hinge
    mask: str = "center"  # holes trained on: center (the paper's central region) | blocks | region | mixed
    overlap: int = 1  # ring of context (px) also reconstructed: the paper's 4 px at 128 px, scaled to 32 px
    overlap_weight: float = 5.0  # loss weight of ring pixels (paper: 10); the 1 px ring around a 16 px hole has 68 px, so 5 keeps the hole ~43% of the loss
    fill: str = "mean"  # value of hole pixels in G's input: "mean" = the training images' mean pixel per channel, computed
    # when training starts and kept with the run (buffer `fill`) | a number in [-1, 1] for every channel
    pretrain_steps: int = 0  # loop steps of reconstruction only (phase G_pre) before D and G start

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"adversarial": tuple(ADVERSARIAL), "mask": MASKS}
    RANGES: ClassVar[dict[str, tuple[float, float]]] = {"rec_weight": (0, float("inf")), "adv_weight": (0, float("inf")),
                                                         "overlap": (0, 64), "overlap_weight": (0, float("inf")),
                                                         "pretrain_steps": (0, 10**9)}


@register_family("context_encoder")
class ContextEncoderFamily(ConditionalFamily):
    loss_config = ContextEncoderLoss
    default_model = "context_encoder"
    representations = ("encoder", "D")

    def __init__(self, cfg: "Config", device: torch.device | str = "cpu", training: bool = True) -> None:
        super().__init__(cfg, device, training)
        loss = cfg.loss
        G, D = build_model(cfg)
        self.G, self.D = G.to(self.device), D.to(self.device)
        self.nets = {"G": self.G, "D": self.D}
        self.buffers["grid_mask"] = torch.zeros(self.grid_k, 1, cfg.data.resolution, cfg.data.resolution, device=self.device)
        if loss.fill == "mean":  # set by fit_data; a number needs no buffer (and older checkpoints have none)
            self.buffers["fill"] = torch.zeros(1, cfg.data.channels, 1, 1, device=self.device)
        self.d_adv, self.g_adv = ADVERSARIAL[loss.adversarial]
        if not training:
            return
        two_stage_phases(self, G, D)

    @classmethod
    def validate(cls, cfg: "Config") -> None:
        if cfg.loss.rec_weight == 0 and cfg.loss.adv_weight == 0:
            raise ConfigError("G has nothing to learn: loss.rec_weight and loss.adv_weight are both 0")
        if cfg.loss.fill != "mean":
            try:
                value = float(cfg.loss.fill)
            except ValueError:
                value = float("nan")
            if not -1 <= value <= 1:
                raise ConfigError(f"config key 'loss.fill' = {cfg.loss.fill!r} must be 'mean' or a number in [-1, 1]")

    def fit_data(self, data: "ImageData | FolderSource") -> None:
        """loss.fill = mean: the mean pixel per channel of the training images (a seeded sample of 4,096 for a
        streamed folder), in [-1, 1]."""
        if "fill" not in self.buffers:
            return
        images = data.images if isinstance(data, ImageData) else data.sample(4096, 0).images  # uint8 [N, C, H, W]
        mean = images.float().mean(dim=(0, 2, 3)) / 127.5 - 1
        self.buffers["fill"] = mean.view(1, -1, 1, 1).to(self.device)

    def fill_value(self) -> torch.Tensor:
        """The hole value of G's input, [1, C, 1, 1] in [-1, 1]."""
        if "fill" in self.buffers:
            return self.buffers["fill"]
        return torch.full((1, self.cfg.data.channels, 1, 1), float(self.cfg.loss.fill), device=self.device)

    # --- inputs and losses ---------------------------------------------------------------------
    def make_inputs(self, batch: Batch, generator: torch.Generator) -> Batch:
        """Adds `mask` [B, 1, H, W] (1 = hole), one per sample, of kind `loss.mask`."""
        x = batch["image"]
        mask = draw_masks(self.cfg.loss.mask, x.shape[0], x.shape[2], x.shape[3], generator)
        return {**batch, "mask": mask.to(x.device)}

    def context(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """What G sees of the image: [B, C, H, W] with the hole set to the fill value (no hole pixel leaks)."""
        return apply_mask(image, mask, self.fill_value().to(image.dtype))

    def reconstruction(self, pred: torch.Tensor, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Weighted masked L2 over the hole and its overlap ring (see the module docstring); scalar."""
        loss = self.cfg.loss
        w = mask + loss.overlap_weight * overlap_ring(mask, loss.overlap)  # [B, 1, H, W]
        err = (pred.float() - image.float()).square() * w
        return err.sum() / (w.sum() * image.shape[1]).clamp_min(1.0)

    def _rec_logs(self, batch: Batch, ctx: StepContext, adv: bool) -> Logs:
        x, mask = batch["image"], batch["mask"]
        self.remember_grid(batch, grid_mask=mask)
        loss_cfg, logs = self.cfg.loss, {}
        with ctx.autocast():
            pred = self.G(self.context(x, mask), mask)  # [B, C, H, W]
            rec = self.reconstruction(pred, x, mask)
            loss = loss_cfg.rec_weight * rec
            if adv:
                fake_logits = self.D(self.augment(composite(pred, x, mask)))
                g_adv = self.g_adv(fake_logits.float())
                loss = loss + loss_cfg.adv_weight * g_adv
                logs["g_adv"] = g_adv.detach()
        ctx.backward(loss)
        logs.update(loss=loss.detach(), rec=rec.detach())
        return logs

    def phase_g_pre(self, batch: Batch | None, ctx: StepContext) -> Logs:
        """Reconstruction only (pre-training stage)."""
        assert batch is not None
        return self._rec_logs(batch, ctx, adv=False)

    def phase_g(self, batch: Batch | None, ctx: StepContext) -> Logs:
        """lambda_rec * L_rec + lambda_adv * L_adv(D(completed image))."""
        assert batch is not None
        return self._rec_logs(batch, ctx, adv=self.cfg.loss.adv_weight > 0)

    def phase_d(self, batch: Batch | None, ctx: StepContext) -> Logs:
        """D tells real images from completed ones (the prediction pasted into the real context)."""
        assert batch is not None
        x, mask = batch["image"], batch["mask"]
        with ctx.autocast():
            with torch.no_grad():
                fake = composite(self.G(self.context(x, mask), mask), x, mask)
            real_logits, fake_logits = self.D(self.augment(x)), self.D(self.augment(fake))
            loss = self.d_adv(real_logits.float(), fake_logits.float())
        ctx.backward(loss)
        return {"loss": loss.detach(), "d_real": real_logits.detach().float().mean(), "d_fake": fake_logits.detach().float().mean()}

    # --- inference -----------------------------------------------------------------------------
    @torch.no_grad()
    def complete(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(prediction, completion) of images [B, C, H, W] in [-1, 1] with holes mask [B, 1, H, W]; G as it is
        (eval mode for a loaded bundle). The completion keeps every context pixel of `image`."""
        pred = self.G(self.context(image, mask), mask).float().clamp(-1, 1)
        return pred, composite(pred, image, mask)

    def grid_views(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, mask = self.buffers["grid_image"], self.buffers["grid_mask"]
        _, done = self.complete(x, mask)
        return self.context(x, mask), done, x

    def representation(self, name: str | None = None) -> Representation:
        name = self.check_representation(name)
        if name == "D":
            return d_representation(self.D)
        enc = self.G.encoder
        layers = list(enc.blocks.keys())
        return Representation("encoder", enc, lambda x: enc.features(x), layers, layers)

    def describe(self) -> dict[str, Any]:
        return {"resolution": self.cfg.data.resolution, "mask": self.cfg.loss.mask, "loss": dataclasses.asdict(self.cfg.loss)}
