"""Self-supervised auxiliary tasks on the discriminator.

An AuxTask owns its head (trained with D's optimizer) and adds a loss to the D phase (`d_weight`,
on real images) and/or the G phase (`g_weight`, on generated images); it is built only when a weight
is above 0. A task asks for extra images (`extra_inputs`) that D sees in the *same* forward pass as
the upright batch, so a BatchNorm D normalises them together and a spectral-norm D uses one sigma;
the real/fake loss reads only the upright rows.

Rotation: Chen, Zhai, Ritter, Lucic, Houlsby, "Self-Supervised GANs via Auxiliary Rotation Loss",
CVPR 2019. D learns to tell 0/90/180/270 degree rotations of *real* images (weight beta = 1.0);
G is rewarded when D can tell the rotation of its *generated* images (weight alpha = 0.2).
Protocols: `all` (each image in all four rotations, the paper's), `split` (a quarter of the batch in
each rotation, Mimicry's), `one` (one random rotation per image). Upright copies reuse the features of
the adversarial pass; only rotated images cost an extra D row.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from gan_ssl.layers import maybe_sn
from gan_ssl.models.base import Discriminator

AUX_TASKS: dict[str, type["AuxTask"]] = {}
Logs = dict[str, torch.Tensor]


def register_aux(name: str) -> Callable[[type["AuxTask"]], type["AuxTask"]]:
    def deco(cls: type["AuxTask"]) -> type["AuxTask"]:
        if name in AUX_TASKS:
            raise ValueError(f"aux task {name!r} is already registered")
        if not (isinstance(cls, type) and issubclass(cls, AuxTask)):
            raise TypeError(f"aux task {name!r} must subclass AuxTask")
        AUX_TASKS[name] = cls
        cls.name = name
        return cls

    return deco


class AuxTask(nn.Module):
    """One auxiliary objective over D's pooled features.

    `extra_inputs(x)` returns (images [E, C, H, W], context) that D runs on together with x; `loss(side,
    upright, extra, context)` gets D's penultimate features of the upright batch [B, F] and of the extra
    images [E, F] and returns (weighted loss, logs). `side` is "d" (real images) or "g" (fakes).
    """

    name = "aux"

    def __init__(self, D: Discriminator, d_weight: float, g_weight: float) -> None:
        super().__init__()
        self.d_weight, self.g_weight = float(d_weight), float(g_weight)

    def weight(self, side: str) -> float:
        return self.d_weight if side == "d" else self.g_weight

    def extra_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError

    def loss(self, side: str, upright: torch.Tensor, extra: torch.Tensor, context: Any) -> tuple[torch.Tensor, Logs]:
        raise NotImplementedError


def rotate_batch(x: torch.Tensor, ks: tuple[int, ...] = (0, 1, 2, 3)) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image rotated by k * 90 degrees counter-clockwise for each k in `ks`.

    x: [B, C, H, W] (H == W) -> images [len(ks) * B, C, H, W] grouped by k, labels [len(ks) * B].
    """
    assert x.ndim == 4 and x.shape[2] == x.shape[3], f"rotation needs square images, got {tuple(x.shape)}"
    rotated = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in ks])
    labels = torch.tensor(ks, device=x.device).repeat_interleave(x.shape[0])
    return rotated, labels


def rotation_labels(batch: int, protocol: str, device: torch.device | str = "cpu") -> torch.Tensor:
    """The rotation k in {0, 1, 2, 3} of each image of a batch under `split` or `one`, int64 [B].

    split: contiguous quarters (image i gets floor(4 i / B)); one: uniform random (torch's global RNG).
    """
    if protocol == "split":
        return torch.arange(batch, device=device) * 4 // batch
    if protocol == "one":
        return torch.randint(0, 4, (batch,)).to(device)
    raise ValueError(f"rotation_labels takes split or one, got {protocol!r}")


def rotate_by_label(x: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rotate each image of x [B, C, H, W] by its own k [B] (k = 0 images are skipped: their upright
    features exist). Returns (rotated [E, C, H, W] grouped by k, their labels [E], their rows in x [E])."""
    rows = [torch.nonzero(k == r).flatten() for r in (1, 2, 3)]
    images = torch.cat([torch.rot90(x[i], r, dims=(2, 3)) for r, i in zip((1, 2, 3), rows)])
    labels = torch.cat([torch.full_like(i, r) for r, i in zip((1, 2, 3), rows)])
    return images, labels, torch.cat(rows)


@register_aux("rotation")
class RotationTask(AuxTask):
    """4-way rotation classifier: one linear layer (spectral-normalised when D is) on D's pooled feature."""

    def __init__(self, D: Discriminator, d_weight: float = 1.0, g_weight: float = 0.2, protocol: str = "all") -> None:
        super().__init__(D, d_weight, g_weight)
        if protocol not in ("all", "split", "one"):
            raise ValueError(f"rotation protocol must be all, split or one, got {protocol!r}")
        self.protocol = protocol
        self.head = maybe_sn(nn.Linear(D.feature_dim, 4), D.spectral_norm)

    def extra_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, Any]:
        assert x.ndim == 4 and x.shape[2] == x.shape[3], f"rotation needs square images, got {tuple(x.shape)}"
        if self.protocol == "all":
            images, _ = rotate_batch(x, (1, 2, 3))  # [3B, ...]
            return images, None
        k = rotation_labels(x.shape[0], self.protocol, x.device)
        images, labels, rows = rotate_by_label(x, k)
        return images, (k, labels)

    def loss(self, side: str, upright: torch.Tensor, extra: torch.Tensor, context: Any) -> tuple[torch.Tensor, Logs]:
        B = upright.shape[0]
        if self.protocol == "all":
            feats = torch.cat([upright, extra])  # [4B, F], grouped by k
            labels = torch.arange(4, device=upright.device).repeat_interleave(B)
        else:
            k, extra_labels = context
            keep = k == 0
            feats = torch.cat([upright[keep], extra])  # [B, F]: the k = 0 rows reuse the upright features
            labels = torch.cat([k[keep], extra_labels])
        logits = self.head(feats)  # [N, 4]
        ce = F.cross_entropy(logits.float(), labels)
        acc = (logits.detach().argmax(1) == labels).float().mean()
        tag = "real" if side == "d" else "fake"
        return self.weight(side) * ce, {f"rot_{side}": ce.detach(), f"rot_acc_{tag}": acc}


def build_aux_tasks(aux_cfg: Any, D: Discriminator) -> nn.ModuleDict:
    """Tasks whose config section has a weight above 0, keyed by name."""
    tasks = nn.ModuleDict()
    for name, cls in AUX_TASKS.items():
        sub = getattr(aux_cfg, name, None)
        if sub is not None and (sub.d_weight > 0 or sub.g_weight > 0):
            extra = {k: v for k, v in vars(sub).items() if k not in ("d_weight", "g_weight")}
            tasks[name] = cls(D, d_weight=sub.d_weight, g_weight=sub.g_weight, **extra)
    return tasks
