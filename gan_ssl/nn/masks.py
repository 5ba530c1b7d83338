"""Inpainting masks, drawn per sample from a seeded generator (1 = hole, 0 = visible context).

Context Encoders (Pathak, Krähenbühl, Donahue, Darrell, Efros, CVPR 2016, section 3.3) use three
kinds of region: a central square, random blocks, and random regions of arbitrary shape. Here:
    center  the central quarter of the area (a square of side H/2 x W/2);
    blocks  1 to 4 random squares of side H/8 .. H/4 each, so together at most a quarter of the area;
    region  a smooth random blob: low-resolution uniform noise, upsampled bicubically, the top
            20-30% of its values (a per-sample fraction) become the hole;
    mixed   each sample draws one of the three kinds.
Every function returns float masks [n, 1, H, W] in {0, 1}, one per sample, never one for the batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from gan_ssl.core.errors import ConfigError

MASKS = ("center", "blocks", "region", "mixed")
REGION_FRACTION = (0.2, 0.3)  # share of the image a `region` hole covers, drawn per sample
MAX_BLOCKS = 4  # `blocks`: at most 4 squares of side <= H/4, so at most a quarter of the area


def center_mask(n: int, h: int, w: int) -> torch.Tensor:
    """The central quarter of the area: [n, 1, H, W] with a square of side H/2 x W/2 set to 1."""
    m = torch.zeros(n, 1, h, w)
    m[:, :, h // 4 : h // 4 + h // 2, w // 4 : w // 4 + w // 2] = 1.0
    return m


def blocks_mask(n: int, h: int, w: int, generator: torch.Generator) -> torch.Tensor:
    """1..MAX_BLOCKS random squares per sample, side in [max(1, H/8), max(1, H/4)]: [n, 1, H, W]."""
    lo, hi = max(1, min(h, w) // 8), max(1, min(h, w) // 4)
    count = torch.randint(1, MAX_BLOCKS + 1, (n,), generator=generator)
    side = torch.randint(lo, hi + 1, (n, MAX_BLOCKS), generator=generator)
    top = (torch.rand(n, MAX_BLOCKS, generator=generator) * (h - side + 1)).long()
    left = (torch.rand(n, MAX_BLOCKS, generator=generator) * (w - side + 1)).long()
    rows, cols = torch.arange(h).view(1, 1, h, 1), torch.arange(w).view(1, 1, 1, w)
    t, l, s = top[..., None, None], left[..., None, None], side[..., None, None]  # [n, K, 1, 1]
    inside = (rows >= t) & (rows < t + s) & (cols >= l) & (cols < l + s)  # [n, K, H, W]
    used = torch.arange(MAX_BLOCKS).view(1, MAX_BLOCKS, 1, 1) < count.view(n, 1, 1, 1)
    return (inside & used).any(dim=1, keepdim=True).float()


def region_mask(n: int, h: int, w: int, generator: torch.Generator,
                fraction: tuple[float, float] = REGION_FRACTION) -> torch.Tensor:
    """Smooth random blobs covering a per-sample fraction in [lo, hi] of the image: [n, 1, H, W].

    The top-k values of bicubically upsampled [n, 1, H/8, W/8] noise form the hole (k = fraction * H * W,
    exact: ties have probability 0), so the area is what was drawn and the shape is smooth."""
    coarse = torch.rand(n, 1, max(2, h // 8), max(2, w // 8), generator=generator)
    noise = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False).flatten(1)  # [n, H*W]
    frac = fraction[0] + (fraction[1] - fraction[0]) * torch.rand(n, generator=generator)
    k = (frac * h * w).round().long().clamp(1, h * w)
    order = noise.argsort(dim=1, descending=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(h * w).expand(n, -1).contiguous())
    return (ranks < k[:, None]).float().view(n, 1, h, w)


def draw_masks(kind: str, n: int, h: int, w: int, generator: torch.Generator) -> torch.Tensor:
    """Masks [n, 1, H, W] of `kind` (center | blocks | region | mixed), one per sample."""
    if kind == "center":
        return center_mask(n, h, w)
    if kind == "blocks":
        return blocks_mask(n, h, w, generator)
    if kind == "region":
        return region_mask(n, h, w, generator)
    if kind == "mixed":
        choice = torch.randint(0, 3, (n, 1, 1, 1), generator=generator)
        parts = [center_mask(n, h, w), blocks_mask(n, h, w, generator), region_mask(n, h, w, generator)]
        return torch.where(choice == 0, parts[0], torch.where(choice == 1, parts[1], parts[2]))
    raise ConfigError(f"unknown mask {kind!r}; use one of {', '.join(MASKS)}")


def overlap_ring(mask: torch.Tensor, width: int) -> torch.Tensor:
    """Visible pixels within `width` px (Chebyshev distance) of the hole: [B, 1, H, W] in {0, 1}.

    Pathak et al.'s overlap: the prediction also covers a thin ring of context around the hole, weighted
    more in the reconstruction loss, so the completion joins its border smoothly."""
    if width <= 0:
        return torch.zeros_like(mask)
    grown = F.max_pool2d(mask, 2 * width + 1, stride=1, padding=width)
    return grown - mask


def apply_mask(image: torch.Tensor, mask: torch.Tensor, fill: float | torch.Tensor) -> torch.Tensor:
    """The context G sees: image [B, C, H, W] with the hole (mask [B, 1, H, W] == 1) set to `fill`."""
    return image * (1 - mask) + mask * fill


def composite(pred: torch.Tensor, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The completed image: the prediction inside the hole, the original context outside."""
    return pred * mask + image * (1 - mask)
