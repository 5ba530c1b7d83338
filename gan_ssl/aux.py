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
Discriminator", ICLR 2021. D's trunk learns only from NT-Xent between two SimCLR views of each real image
and a supervised-contrastive term that pulls fakes together and away from reals; the real/fake score is a
small head on stop-gradient features (`adversarial_logits`), which the family uses instead of D's head.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from gan_ssl.augment import simclr_view
from gan_ssl.layers import maybe_sn
from gan_ssl.losses import nt_xent, supcon_fakes
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

    `extra_inputs(x, side)` returns (images [E, C, H, W], context) that D runs on together with x; `loss(side,
    upright, extra, context)` gets D's penultimate features of the upright batch [B, F] and of the extra
    images [E, F] and returns (weighted loss, logs). `side` is "d" (reals), "d_fake" (fakes in the D phase) or
    "g" (fakes in the G phase).
    """

    name = "aux"

    def __init__(self, D: Discriminator, d_weight: float, g_weight: float) -> None:
        super().__init__()
        self.d_weight, self.g_weight = float(d_weight), float(g_weight)

    def weight(self, side: str) -> float:
        """The weight of this task's loss on a side ("d", "d_fake" or "g"); 0 switches that side off."""
        return {"d": self.d_weight, "g": self.g_weight}.get(side, 0.0)

    def adversarial_logits(self, feats: torch.Tensor, side: str) -> torch.Tensor | None:
        """Real/fake logits [B] from D's pooled features [B, F], for a task that replaces D's own head (None: it does not)."""
        return None

    def extra_inputs(self, x: torch.Tensor, side: str = "d") -> tuple[torch.Tensor, Any]:
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

    def __init__(self, D: Discriminator, d_weight: float = 1.0, g_weight: float = 0.2, protocol: str = "all", every: int = 1) -> None:
        super().__init__(D, d_weight, g_weight)
        self.every = every  # the family schedules lazy tasks (every > 1) in phases of their own
        if protocol not in ("all", "split", "one"):
            raise ValueError(f"rotation protocol must be all, split or one, got {protocol!r}")
        self.protocol = protocol
        self.head = maybe_sn(nn.Linear(D.feature_dim, 4), D.spectral_norm)

    def extra_inputs(self, x: torch.Tensor, side: str = "d") -> tuple[torch.Tensor, Any]:
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


def _mlp(cin: int, hidden: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(cin, hidden), nn.ReLU(), nn.Linear(hidden, cout))


@register_aux("contrastive")
class ContrastiveTask(AuxTask):
    """ContraD: NT-Xent on two SimCLR views of each real image (projection `proj_real`), a supervised-contrastive
    term on fakes against the reals' views (projection `proj_fake`, weight `fake_weight`), and the real/fake
    logits from a small MLP on stop-gradient features in the D phase (G's gradient flows through the trunk)."""

    def __init__(self, D: Discriminator, d_weight: float = 1.0, g_weight: float = 0.0, fake_weight: float = 1.0,
                 temperature: float = 0.1, proj_dim: int = 128) -> None:
        super().__init__(D, d_weight, g_weight)
        f = D.feature_dim
        self.fake_weight, self.temperature = float(fake_weight), float(temperature)
        self.proj_real, self.proj_fake = _mlp(f, f, proj_dim), _mlp(f, f, proj_dim)
        self.disc = _mlp(f, max(f // 2, 16), 1)
        self._real_views: torch.Tensor | None = None  # the D phase's real views, projected by proj_fake, for the fake term

    def weight(self, side: str) -> float:
        return {"d": self.d_weight, "d_fake": self.d_weight * self.fake_weight}.get(side, 0.0)

    def adversarial_logits(self, feats: torch.Tensor, side: str) -> torch.Tensor | None:
        return self.disc(feats.detach() if side != "g" else feats).squeeze(1)

    def extra_inputs(self, x: torch.Tensor, side: str = "d") -> tuple[torch.Tensor, Any]:
        """Two SimCLR views of each real image on side "d" ([2B, ...]); nothing extra for fakes (their upright
        features are used)."""
        if side == "d":
            return torch.cat([simclr_view(x), simclr_view(x)]), None
        return x[:0], None

    def loss(self, side: str, upright: torch.Tensor, extra: torch.Tensor, context: Any) -> tuple[torch.Tensor, Logs]:
        if side == "d":
            v1, v2 = extra.float().chunk(2)  # [B, F] each
            loss = nt_xent(self.proj_real(v1), self.proj_real(v2), self.temperature)
            self._real_views = self.proj_fake(v1)
            return self.d_weight * loss, {"con_real": loss.detach()}
        assert side == "d_fake" and self._real_views is not None, "the fake term needs the real views of the same D phase"
        loss = supcon_fakes(self.proj_fake(upright.float()), self._real_views, self.temperature)
        self._real_views = None
        return self.d_weight * self.fake_weight * loss, {"con_fake": loss.detach()}


def build_aux_tasks(aux_cfg: Any, D: Discriminator) -> nn.ModuleDict:
    """Tasks whose config section has a weight above 0, keyed by name."""
    tasks = nn.ModuleDict()
    for name, cls in AUX_TASKS.items():
        sub = getattr(aux_cfg, name, None)
        if sub is not None and (sub.d_weight > 0 or getattr(sub, "g_weight", 0.0) > 0):
            kwargs = dict(vars(sub))
            tasks[name] = cls(D, **kwargs)
    return tasks
