"""Differentiable, batched image augmentations for the discriminator's inputs.

DiffAugment (Zhao, Liu, Lin, Zhu, Han, "Differentiable Augmentation for Data-Efficient GAN Training",
NeurIPS 2020): the same random translation (1/8 of the image, zero padding), cutout (a square of half the
image size) and, for colour data, brightness/saturation/contrast, applied to real and fake images alike in
the D and G phases; every op is differentiable, so G learns through it. Rotation is deliberately not
an op: it would teach D that rotated images are ordinary, undercutting the rotation and LA tasks.

SimCLR views (Chen et al. 2020), as ContraD uses them: random resized crop (scale 0.2-1, aspect 3/4-4/3)
and horizontal flip, plus colour jitter for colour data. All ops draw from torch's global RNG, which the
loop saves and restores, so resumed runs are exact. Images are [B, C, H, W] in [-1, 1].
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from gan_ssl.core.errors import ConfigError


def _rand(n: int, x: torch.Tensor) -> torch.Tensor:
    return torch.rand(n).to(device=x.device, dtype=x.dtype)


# Each op returns (augmented images, its parameters [B, d] in [0, 1]): the parameters are what AugSelf-GAN's D
# predicts (normalised as in the official code). Draws are the same whether or not the parameters are used.
def _brightness(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r = _rand(x.shape[0], x)
    return x + (r - 0.5).view(-1, 1, 1, 1), r.view(-1, 1).float()


def _saturation(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r = _rand(x.shape[0], x)
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (r * 2).view(-1, 1, 1, 1) + mean, r.view(-1, 1).float()


def _contrast(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r = _rand(x.shape[0], x)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (r + 0.5).view(-1, 1, 1, 1) + mean, r.view(-1, 1).float()


def _translation(x: torch.Tensor, ratio: float = 0.125) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift each image by up to ratio * size pixels in x and y, filling with zeros (DiffAugment's op).
    Parameters: the shifts mapped from [-s, s] to [0, 1], [B, 2]."""
    B, _, H, W = x.shape
    sh, sw = int(H * ratio + 0.5), int(W * ratio + 0.5)
    tx = torch.randint(-sh, sh + 1, (B, 1, 1)).to(x.device)
    ty = torch.randint(-sw, sw + 1, (B, 1, 1)).to(x.device)
    gb, gx, gy = torch.meshgrid(torch.arange(B, device=x.device), torch.arange(H, device=x.device), torch.arange(W, device=x.device), indexing="ij")
    gx = torch.clamp(gx + tx + 1, 0, H + 1)
    gy = torch.clamp(gy + ty + 1, 0, W + 1)
    padded = F.pad(x, [1, 1, 1, 1, 0, 0, 0, 0])  # [B, C, H + 2, W + 2]
    out = padded.permute(0, 2, 3, 1)[gb, gx, gy].permute(0, 3, 1, 2).contiguous(memory_format=torch.contiguous_format)
    params = torch.cat([tx.view(-1, 1) / sh / 2 + 0.5, ty.view(-1, 1) / sw / 2 + 0.5], 1)
    return out, params.float()


def _cutout(x: torch.Tensor, ratio: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero a square of ratio * size at a random centre in each image (DiffAugment's op).
    Parameters: the centre divided by its range, [B, 2] in [0, 1]."""
    B, _, H, W = x.shape
    ch, cw = int(H * ratio + 0.5), int(W * ratio + 0.5)
    ox = torch.randint(0, H + (1 - ch % 2), (B, 1, 1)).to(x.device)
    oy = torch.randint(0, W + (1 - cw % 2), (B, 1, 1)).to(x.device)
    gb, gx, gy = torch.meshgrid(torch.arange(B, device=x.device), torch.arange(ch, device=x.device), torch.arange(cw, device=x.device), indexing="ij")
    gx = torch.clamp(gx + ox - ch // 2, 0, H - 1)
    gy = torch.clamp(gy + oy - cw // 2, 0, W - 1)
    mask = torch.ones(B, H, W, dtype=x.dtype, device=x.device)
    mask[gb, gx, gy] = 0
    params = torch.cat([ox.view(-1, 1) / (H - ch % 2), oy.view(-1, 1) / (W - cw % 2)], 1)
    return x * mask.unsqueeze(1), params.float()


def brightness(x: torch.Tensor) -> torch.Tensor:
    return _brightness(x)[0]


def saturation(x: torch.Tensor) -> torch.Tensor:
    return _saturation(x)[0]


def contrast(x: torch.Tensor) -> torch.Tensor:
    return _contrast(x)[0]


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    return _translation(x, ratio)[0]


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    return _cutout(x, ratio)[0]


DIFFAUG_OPS: dict[str, list[Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]]] = {
    "color": [_brightness, _saturation, _contrast],
    "translation": [_translation],
    "cutout": [_cutout],
}
PARAM_DIMS: dict[str, int] = {"color": 3, "translation": 2, "cutout": 2}  # parameters per op, as AugSelf-GAN predicts them


def parse_policy(policy: str, channels: int) -> list[str]:
    """'translation,cutout' -> ['translation', 'cutout']; '' -> []. Unknown ops, rotation, and colour ops on
    greyscale data are ConfigErrors that say what to use instead."""
    ops = [p.strip() for p in policy.split(",") if p.strip()]
    for op in ops:
        if op == "rotation":
            raise ConfigError("train.diffaug may not hold 'rotation': rotating reals and fakes alike would teach D that rotated "
                              "images are ordinary and undercut the rotation and label-augmentation tasks; use translation, cutout, color")
        if op not in DIFFAUG_OPS:
            raise ConfigError(f"unknown DiffAugment op {op!r} in train.diffaug; use a comma-separated subset of {', '.join(DIFFAUG_OPS)}")
        if op == "color" and channels == 1:
            raise ConfigError("train.diffaug 'color' needs colour data (data.channels=3); for greyscale use translation,cutout")
    return ops


def diff_augment(x: torch.Tensor, ops: list[str]) -> torch.Tensor:
    """Apply the policy's ops in order to x [B, C, H, W] (a no-op for an empty policy)."""
    return diff_augment_with_params(x, ops)[0]


def diff_augment_with_params(x: torch.Tensor, ops: list[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The policy's ops applied in order to x [B, C, H, W], and each op's parameters {op: [B, PARAM_DIMS[op]]}
    in [0, 1] (the same random draws as `diff_augment`)."""
    params: dict[str, torch.Tensor] = {}
    for op in ops:
        drawn = []
        for f in DIFFAUG_OPS[op]:
            x, p = f(x)
            drawn.append(p)
        params[op] = torch.cat(drawn, 1)
    return x, params


def random_resized_crop(x: torch.Tensor, scale: tuple[float, float] = (0.2, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """A random crop of each image (area fraction in `scale`, aspect in `ratio`) resized back to H x W (bilinear)."""
    B = x.shape[0]
    area = torch.empty(B).uniform_(*scale)
    log_r = torch.empty(B).uniform_(math.log(ratio[0]), math.log(ratio[1]))
    aspect = torch.exp(log_r)
    w = torch.sqrt(area * aspect).clamp(max=1.0)  # crop width as a fraction of the image
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (torch.rand(B) * 2 - 1) * (1 - w)  # crop centre in [-1, 1] coordinates, crop inside the image
    cy = (torch.rand(B) * 2 - 1) * (1 - h)
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w, cx, h, cy
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def horizontal_flip(x: torch.Tensor) -> torch.Tensor:
    flip = (torch.rand(x.shape[0]) < 0.5).to(x.device).view(-1, 1, 1, 1)
    return torch.where(flip, x.flip(3), x)


def simclr_view(x: torch.Tensor) -> torch.Tensor:
    """One SimCLR view of each image: random resized crop, horizontal flip, colour jitter for colour data."""
    v = horizontal_flip(random_resized_crop(x))
    if x.shape[1] == 3:
        v = contrast(saturation(brightness(v)))
    return v
