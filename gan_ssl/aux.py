"""Self-supervised auxiliary tasks on the discriminator.

An AuxTask owns its head (trained with D's optimizer) and adds a loss to the D phase
(`d_weight`) and/or the G phase (`g_weight`); a task is built only when a weight is above 0.

Rotation: Chen, Zhai, Ritter, Lucic, Houlsby, "Self-Supervised GANs via Auxiliary Rotation Loss",
CVPR 2019. D learns to tell 0/90/180/270 degree rotations of *real* images (weight beta = 1.0);
G is rewarded when D can tell the rotation of its *generated* images (weight alpha = 0.2). The
real/fake loss sees upright images only: the rotated copies feed just the rotation head.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from gan_ssl.layers import maybe_sn
from gan_ssl.models.base import Discriminator

AUX_TASKS: dict[str, type["AuxTask"]] = {}


def register_aux(name: str) -> Callable[[type["AuxTask"]], type["AuxTask"]]:
    def deco(cls: type["AuxTask"]) -> type["AuxTask"]:
        if name in AUX_TASKS:
            raise ValueError(f"aux task {name!r} is already registered")
        if not issubclass(cls, AuxTask):
            raise TypeError(f"aux task {name!r} must subclass AuxTask")
        AUX_TASKS[name] = cls
        cls.name = name
        return cls

    return deco


class AuxTask(nn.Module):
    """One auxiliary objective. Losses take D, the upright images [B, C, H, W] and D's penultimate
    feature of them [B, F] (already computed by the adversarial pass, so it is not recomputed)."""

    name = "aux"

    def __init__(self, D: Discriminator, d_weight: float, g_weight: float) -> None:
        super().__init__()
        self.d_weight, self.g_weight = float(d_weight), float(g_weight)

    def d_loss(self, D: Discriminator, real: torch.Tensor, feat: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def g_loss(self, D: Discriminator, fake: torch.Tensor, feat: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError


def rotate_batch(x: torch.Tensor, ks: tuple[int, ...] = (0, 1, 2, 3)) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image rotated by k * 90 degrees counter-clockwise for each k in `ks`.

    x: [B, C, H, W] (H == W) -> images [len(ks) * B, C, H, W] grouped by k, labels [len(ks) * B].
    """
    assert x.ndim == 4 and x.shape[2] == x.shape[3], f"rotation needs square images, got {tuple(x.shape)}"
    rotated = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in ks])
    labels = torch.tensor(ks, device=x.device).repeat_interleave(x.shape[0])
    return rotated, labels


@register_aux("rotation")
class RotationTask(AuxTask):
    """4-way rotation classifier: one linear layer (spectral-normalised when D is) on D's pooled feature."""

    def __init__(self, D: Discriminator, d_weight: float = 1.0, g_weight: float = 0.2) -> None:
        super().__init__(D, d_weight, g_weight)
        self.head = maybe_sn(nn.Linear(D.feature_dim, 4), D.spectral_norm)

    def _loss(self, D: Discriminator, x: torch.Tensor, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rotated, _ = rotate_batch(x, (1, 2, 3))  # [3B, C, H, W]; the upright copy's feature is `feat`
        feats = torch.cat([feat, D.feature(rotated)])  # [4B, F]
        labels = torch.arange(4, device=x.device).repeat_interleave(x.shape[0])
        logits = self.head(feats)  # [4B, 4]
        acc = (logits.detach().argmax(1) == labels).float().mean()
        return F.cross_entropy(logits, labels), acc

    def d_loss(self, D, real, feat):  # type: ignore[no-untyped-def]
        loss, acc = self._loss(D, real, feat)
        return self.d_weight * loss, {"rot_d": loss.detach(), "rot_acc_real": acc}

    def g_loss(self, D, fake, feat):  # type: ignore[no-untyped-def]
        loss, acc = self._loss(D, fake, feat)
        return self.g_weight * loss, {"rot_g": loss.detach(), "rot_acc_fake": acc}


def build_aux_tasks(aux_cfg: object, D: Discriminator) -> nn.ModuleDict:
    """Tasks whose config section has a weight above 0, keyed by name."""
    tasks = nn.ModuleDict()
    for name, cls in AUX_TASKS.items():
        sub = getattr(aux_cfg, name, None)
        if sub is not None and (sub.d_weight > 0 or sub.g_weight > 0):
            tasks[name] = cls(D, d_weight=sub.d_weight, g_weight=sub.g_weight)
    return tasks
