"""Self-supervised auxiliary tasks on the discriminator.

An AuxTask owns its head (trained with D's optimizer) and adds a loss on one or more *sides*:
"d" (D phase, real images), "d_fake" (D phase, generated images) and "g" (G phase, generated images),
weighted by `weight(side)`; it is built only when a weight is above 0. A task asks for extra images (`extra_inputs`) that D sees in the *same* forward pass as
the upright batch, so a BatchNorm D normalises them together and a spectral-norm D uses one sigma;
the real/fake loss reads only the upright rows.

Rotation: Chen, Zhai, Ritter, Lucic, Houlsby, "Self-Supervised GANs via Auxiliary Rotation Loss",
CVPR 2019. D learns to tell 0/90/180/270 degree rotations of *real* images (weight beta = 1.0);
G is rewarded when D can tell the rotation of its *generated* images (weight alpha = 0.2).
Protocols: `all` (each image in all four rotations, the paper's), `split` (a quarter of the batch in
each rotation, Mimicry's), `one` (one random rotation per image). Upright copies reuse the features of
the adversarial pass; only rotated images cost an extra D row.

Label augmentation (SSGAN-LA): Hou, Shen, Sun, Dong, Li, "Self-Supervised GANs with Label Augmentation",
NeurIPS 2021. One 2K-way head (K = 4 rotations): a real image rotated by k is class 2k, a fake rotated by k
is class 2k + 1; D minimises CE on both; G minimises CE(fake_k, 2k) - CE(fake_k, 2k + 1).

Contrastive D (ContraD): Jeong & Shin, "Training GANs with Stronger Augmentations via Contrastive
Discriminator", ICLR 2021 (official code `jh-jeong/ContraD`, `training/gan/contrad.py`). D sees SimCLR views
only: the first view of each real image and one view of each fake are the adversarial rows
(`adversarial_view`), a second view of each real is the extra row. D's trunk learns only from NT-Xent between
the two real views and a supervised-contrastive term that pulls fakes together and away from both real views;
the real/fake score is a linear head on stop-gradient features (`adversarial_logits`), which the family uses
instead of D's head; G's loss reads the same head on a view of its fakes, through the trunk.

Augmentation-aware self-supervision (AugSelf-GAN): Hou, Cao, Yuan, Shen, Cheng, "Augmentation-Aware
Self-Supervision for Data-Efficient GAN Training", NeurIPS 2023 (official code `liang-hou/augself-gan`,
`augself-stylegan2/training/loss.py`). On top of DiffAugment, D regresses the augmentation parameters omega (in
[0, 1]) of each augmented real and -omega of each augmented fake (MSE, weight 1), from the difference of D's
features of the augmented and the original image; G minimises MSE(pred, omega) - MSE(pred, -omega) (weight 1).

BatchNorm D: every row a task adds to the real pass of the D phase has a counterpart of the same kind in the
fake pass (`balance_inputs`), so the two passes have the same batch statistics and D cannot tell them apart
by those. Under torchrun the contrastive losses gather the embeddings of every rank with gradients
(`torch.distributed.nn.functional.all_gather`), so the loss does not change with the world size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from gan_ssl.families.base import Logs
from gan_ssl.models.base import Discriminator
from gan_ssl.nn.augment import PARAM_DIMS, simclr_view
from gan_ssl.nn.layers import maybe_sn
from gan_ssl.nn.losses import nt_xent, supcon_fakes

AUX_TASKS: dict[str, type["AuxTask"]] = {}


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


@dataclass
class Augmented:
    """What DiffAugment did to a batch: the images before it [B, C, H, W] and each op's parameters {op: [B, d]}."""

    original: torch.Tensor
    params: dict[str, torch.Tensor]


class AuxTask(nn.Module):
    """One auxiliary objective over D's pooled features.

    `extra_inputs(x, side, aug)` returns (images [E, C, H, W], context) that D runs on together with x (`aug`: what
    DiffAugment did to x, None without it); `loss(side,
    upright, extra, context)` gets D's penultimate features of the upright batch [B, F] and of the extra
    images [E, F] and returns (weighted loss, logs). `side` is "d" (reals), "d_fake" (fakes in the D phase) or
    "g" (fakes in the G phase).
    """

    name = "aux"
    uses_diffaug: ClassVar[bool] = False  # built with the DiffAugment policy's ops (`ops=`), which it reads

    def __init__(self, D: Discriminator, d_weight: float, g_weight: float) -> None:
        super().__init__()
        self.d_weight, self.g_weight = float(d_weight), float(g_weight)

    def weight(self, side: str) -> float:
        """The weight of this task's loss on a side ("d", "d_fake" or "g"); 0 switches that side off."""
        return {"d": self.d_weight, "g": self.g_weight}.get(side, 0.0)

    def adversarial_logits(self, feats: torch.Tensor, side: str) -> torch.Tensor | None:
        """Real/fake logits [B] from D's pooled features [B, F], for a task that replaces D's own head (None: it does not)."""
        return None

    def adversarial_view(self, x: torch.Tensor, side: str) -> torch.Tensor:
        """The images [B, C, H, W] D scores as real/fake, for a task that replaces D's head (the identity otherwise)."""
        return x

    def balance_inputs(self, x: torch.Tensor, side: str) -> torch.Tensor:
        """Rows a BatchNorm D adds to the fake pass of the D phase (for the batch statistics only), so that it holds
        the same kind and number of rows as the real pass: the real side's extra rows when the task has no loss on
        fakes in the D phase, none otherwise. x: the fakes [B, C, H, W] -> [E, C, H, W]."""
        if side == "d_fake" and self.weight("d") > 0 and self.weight("d_fake") == 0:
            return self.extra_inputs(x, "d")[0]
        return x[:0]

    def extra_inputs(self, x: torch.Tensor, side: str = "d", aug: Augmented | None = None) -> tuple[torch.Tensor, Any]:
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

    split: contiguous quarters (image i gets floor(4 i / B)); one: the same counts of each k as split, assigned
    to random images (torch's global RNG), so every batch has the same number of rotated rows.
    """
    quarters = torch.arange(batch) * 4 // batch
    if protocol == "split":
        return quarters.to(device)
    if protocol == "one":
        return quarters[torch.randperm(batch)].to(device)
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

    def __init__(self, D: Discriminator, d_weight: float = 1.0, g_weight: float = 0.2, protocol: str = "all", every: int = 1,
                 lazy: str = "phases") -> None:
        super().__init__(D, d_weight, g_weight)
        self.every, self.lazy = every, lazy  # the family schedules lazy tasks (every > 1): phases of their own, or folded
        if protocol not in ("all", "split", "one"):
            raise ValueError(f"rotation protocol must be all, split or one, got {protocol!r}")
        self.protocol = protocol
        self.head = maybe_sn(nn.Linear(D.feature_dim, 4), D.spectral_norm)

    def extra_inputs(self, x: torch.Tensor, side: str = "d", aug: Augmented | None = None) -> tuple[torch.Tensor, Any]:
        assert x.ndim == 4 and x.shape[2] == x.shape[3], f"rotation needs square images, got {tuple(x.shape)}"
        if self.protocol == "all":
            images, _ = rotate_batch(x, (1, 2, 3))  # [3B, ...]
            return images, None
        k = rotation_labels(x.shape[0], self.protocol, x.device)
        images, labels, rows = rotate_by_label(x, k)
        return images, (k, labels)

    def rotated_features(self, upright: torch.Tensor, extra: torch.Tensor, context: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Features of every rotated copy [N, F] and its rotation k [N] (all: N = 4B; split/one: N = B)."""
        B = upright.shape[0]
        if self.protocol == "all":
            return torch.cat([upright, extra]), torch.arange(4, device=upright.device).repeat_interleave(B)  # grouped by k
        k, extra_labels = context
        keep = k == 0
        return torch.cat([upright[keep], extra]), torch.cat([k[keep], extra_labels])  # the k = 0 rows reuse the upright features

    def loss(self, side: str, upright: torch.Tensor, extra: torch.Tensor, context: Any) -> tuple[torch.Tensor, Logs]:
        feats, labels = self.rotated_features(upright, extra, context)
        logits = self.head(feats)  # [N, 4]
        ce = F.cross_entropy(logits.float(), labels)
        acc = (logits.detach().argmax(1) == labels).float().mean()
        tag = "real" if side == "d" else "fake"
        return self.weight(side) * ce, {f"rot_{side}": ce.detach(), f"rot_acc_{tag}": acc}


@register_aux("label_aug")
class LabelAugTask(RotationTask):
    """SSGAN-LA: a 2K-way head (K = 4) over (real/fake, rotation). Real rotated by k -> class 2k, fake -> 2k + 1."""

    def __init__(self, D: Discriminator, d_weight: float = 1.0, g_weight: float = 1.0, protocol: str = "all") -> None:
        super().__init__(D, d_weight, g_weight, protocol)
        self.head = maybe_sn(nn.Linear(D.feature_dim, 8), D.spectral_norm)

    def weight(self, side: str) -> float:
        return {"d": self.d_weight, "d_fake": self.d_weight, "g": self.g_weight}.get(side, 0.0)

    def loss(self, side: str, upright: torch.Tensor, extra: torch.Tensor, context: Any) -> tuple[torch.Tensor, Logs]:
        feats, k = self.rotated_features(upright, extra, context)
        logits = self.head(feats).float()  # [N, 8]
        real_cls, fake_cls = 2 * k, 2 * k + 1
        if side == "g":  # G: look like a real image of the same rotation, not like a fake one
            loss = F.cross_entropy(logits, real_cls) - F.cross_entropy(logits, fake_cls)
            acc = (logits.detach().argmax(1) == real_cls).float().mean()
            return self.g_weight * loss, {"la_g": loss.detach(), "la_fooled": acc}
        target = real_cls if side == "d" else fake_cls
        ce = F.cross_entropy(logits, target)
        acc = (logits.detach().argmax(1) == target).float().mean()
        tag = "real" if side == "d" else "fake"
        return self.d_weight * ce, {f"la_{tag}": ce.detach(), f"la_acc_{tag}": acc}


def _projection(cin: int, hidden: int, cout: int) -> nn.Sequential:
    """ContraD's projection head: Linear, LeakyReLU(0.1), Linear (the official code's `projection`)."""
    return nn.Sequential(nn.Linear(cin, hidden), nn.LeakyReLU(0.1), nn.Linear(hidden, cout))


def gather_rows(z: torch.Tensor) -> torch.Tensor:
    """z [B, D] from every rank of a torchrun job, concatenated in rank order [world * B, D], with gradients
    flowing back to each rank's rows (torch.distributed.nn's all_gather sums them across ranks, so with DDP's
    gradient mean the step equals one process on the whole batch); z itself outside a multi-process job."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return z
    from torch.distributed.nn.functional import all_gather  # torch.distributed.nn: only where a process group exists

    return torch.cat(all_gather(z.contiguous()))


@register_aux("contrastive")
class ContrastiveTask(AuxTask):
    """ContraD: NT-Xent between two SimCLR views of each real image (projection `proj_real`), a
    supervised-contrastive term on fake views against both real views (projection `proj_fake`, weight
    `fake_weight`), and the real/fake logits from a linear head on stop-gradient features in the D phase
    (G's gradient flows through the trunk). D's adversarial rows are SimCLR views (`adversarial_view`)."""

    def __init__(self, D: Discriminator, d_weight: float = 1.0, g_weight: float = 0.0, fake_weight: float = 1.0,
                 temperature: float = 0.1, proj_dim: int = 128, hidden: int = 128) -> None:
        super().__init__(D, d_weight, g_weight)
        f = D.feature_dim
        self.fake_weight, self.temperature = float(fake_weight), float(temperature)
        self.proj_real, self.proj_fake = _projection(f, hidden, proj_dim), _projection(f, hidden, proj_dim)
        self.disc = nn.Linear(f, 1)  # the official code's default LinearDiscriminator
        self._real_views: torch.Tensor | None = None  # the D phase's two real views, projected by proj_fake, for the fake term

    def weight(self, side: str) -> float:
        return {"d": self.d_weight, "d_fake": self.d_weight * self.fake_weight}.get(side, 0.0)

    def adversarial_logits(self, feats: torch.Tensor, side: str) -> torch.Tensor | None:
        return self.disc(feats.detach() if side != "g" else feats).squeeze(1)

    def adversarial_view(self, x: torch.Tensor, side: str) -> torch.Tensor:
        return simclr_view(x)  # reals: the first view; fakes: their one view (D and G phases alike)

    def extra_inputs(self, x: torch.Tensor, side: str = "d", aug: Augmented | None = None) -> tuple[torch.Tensor, Any]:
        """The second SimCLR view of each real image on side "d" ([B, ...]); nothing extra for fakes."""
        if side == "d":
            return simclr_view(x), None
        return x[:0], None

    def balance_inputs(self, x: torch.Tensor, side: str) -> torch.Tensor:
        """A second view of each fake in the D phase's fake pass, matching the real pass's second view."""
        return simclr_view(x) if side == "d_fake" and self.weight("d") > 0 else x[:0]

    def loss(self, side: str, upright: torch.Tensor, extra: torch.Tensor, context: Any) -> tuple[torch.Tensor, Logs]:
        if side == "d":
            v1, v2 = upright.float(), extra.float()  # [B, F] each: features of the two views
            loss = nt_xent(gather_rows(self.proj_real(v1)), gather_rows(self.proj_real(v2)), self.temperature)
            self._real_views = torch.cat([gather_rows(self.proj_fake(v1)), gather_rows(self.proj_fake(v2))])
            return self.d_weight * loss, {"con_real": loss.detach()}
        assert side == "d_fake" and self._real_views is not None, "the fake term needs the real views of the same D phase"
        loss = supcon_fakes(gather_rows(self.proj_fake(upright.float())), self._real_views, self.temperature)
        self._real_views = None
        return self.d_weight * self.fake_weight * loss, {"con_fake": loss.detach()}


@register_aux("augself")
class AugSelfTask(AuxTask):
    """AugSelf-GAN: one linear head per DiffAugment op (spectral-normalised when D is) regresses the op's parameters
    [B, d] from D's pooled features: of the augmented image minus the original (fuse `difference`, the paper's;
    the originals are extra D rows) or of the augmented image alone (`single`). Targets: omega for reals, -omega for
    fakes (the official code's symmetric labels)."""

    uses_diffaug = True

    def __init__(self, D: Discriminator, d_weight: float = 1.0, g_weight: float = 1.0, fuse: str = "difference",
                 rows: float = 1.0, ops: tuple[str, ...] | list[str] = ()) -> None:
        super().__init__(D, d_weight, g_weight)
        if fuse not in ("difference", "single"):
            raise ValueError(f"augself fuse must be difference or single, got {fuse!r}")
        if not 0 < rows <= 1:
            raise ValueError(f"augself rows must be in (0, 1], got {rows}")
        self.rows = float(rows)
        if not ops:
            raise ValueError("augself predicts DiffAugment's parameters: it needs the policy's ops (train.diffaug)")
        self.fuse, self.ops = fuse, list(ops)
        self.heads = nn.ModuleDict({op: maybe_sn(nn.Linear(D.feature_dim, PARAM_DIMS[op]), D.spectral_norm) for op in self.ops})

    def weight(self, side: str) -> float:
        return {"d": self.d_weight, "d_fake": self.d_weight, "g": self.g_weight}.get(side, 0.0)

    def n_rows(self, batch: int) -> int:
        """How many of a batch's rows the task reads: the first ceil(rows * B), at least one."""
        return max(1, min(batch, math.ceil(self.rows * batch - 1e-9)))

    def extra_inputs(self, x: torch.Tensor, side: str = "d", aug: Augmented | None = None) -> tuple[torch.Tensor, Any]:
        """The un-augmented images of the rows it reads [N, ...] as extra rows (fuse `difference`; none for `single`);
        context: their parameters {op: [N, d]}."""
        assert aug is not None and set(aug.params) == set(self.ops), "augself needs the DiffAugment parameters of the batch"
        n = self.n_rows(x.shape[0])
        return (aug.original[:n] if self.fuse == "difference" else x[:0]), {op: p[:n] for op, p in aug.params.items()}

    def loss(self, side: str, upright: torch.Tensor, extra: torch.Tensor, context: Any) -> tuple[torch.Tensor, Logs]:
        n = next(iter(context.values())).shape[0]
        feats = upright[:n] - extra if self.fuse == "difference" else upright[:n]  # [N, F]
        total = feats.new_zeros((), dtype=torch.float32)
        for op in self.ops:
            pred, omega = self.heads[op](feats).float(), context[op]  # [B, d] each
            if side == "g":  # G: its fakes' parameters read as a real's (omega), not as a fake's (-omega)
                total = total + F.mse_loss(pred, omega) - F.mse_loss(pred, -omega)
            else:
                total = total + F.mse_loss(pred, omega if side == "d" else -omega)
        tag = {"d": "real", "d_fake": "fake", "g": "g"}[side]
        return self.weight(side) * total, {f"augself_{tag}": total.detach()}


def build_aux_tasks(aux_cfg: Any, D: Discriminator, diffaug: list[str] | tuple[str, ...] = ()) -> nn.ModuleDict:
    """Tasks whose config section has a weight above 0, keyed by name; a task that reads DiffAugment's parameters
    gets the policy's ops."""
    tasks = nn.ModuleDict()
    for name, cls in AUX_TASKS.items():
        sub = getattr(aux_cfg, name, None)
        if sub is not None and (sub.d_weight > 0 or getattr(sub, "g_weight", 0.0) > 0):
            kwargs = dict(vars(sub))
            if cls.uses_diffaug:
                kwargs["ops"] = list(diffaug)
            tasks[name] = cls(D, **kwargs)
    return tasks
