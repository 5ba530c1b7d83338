"""Classical baselines the pretext models are measured against (all on float images in [0, 1]).

Inpainting (holes: mask [B, 1, H, W] == 1):
    zero fill, mean fill (the training set's mean pixel), nearest-neighbour fill by visible context (the
    training image whose context is closest in L2 lends its hole pixels; Hays & Efros 2007 in miniature),
    and OpenCV's Telea inpainting (Telea 2004) when `cv2` imports.
Super-resolution: nearest, bilinear and bicubic upsampling (torch's `interpolate`, align_corners=False;
its bicubic is Keys' kernel with a = -0.75, as OpenCV's INTER_CUBIC; MATLAB's imresize uses a = -0.5
with antialiasing, so published "bicubic" figures differ a little).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

UPSAMPLERS = ("nearest", "bilinear", "bicubic")


def upsample(lr: torch.Tensor, scale: int, mode: str) -> torch.Tensor:
    """[B, C, h, w] in [0, 1] -> [B, C, scale*h, scale*w] by `mode` (nearest | bilinear | bicubic), clamped to [0, 1]."""
    if mode not in UPSAMPLERS:
        raise ValueError(f"unknown upsampling {mode!r}; use one of {', '.join(UPSAMPLERS)}")
    kw = {} if mode == "nearest" else {"align_corners": False}
    return F.interpolate(lr, scale_factor=scale, mode=mode, **kw).clamp(0, 1)


def constant_fill(image: torch.Tensor, mask: torch.Tensor, value: float) -> torch.Tensor:
    """The hole set to `value`: zero fill (0) or mean fill (the training mean). [B, C, H, W] in [0, 1]."""
    return image * (1 - mask) + mask * value


@torch.no_grad()
def nearest_context_fill(image: torch.Tensor, mask: torch.Tensor, database: torch.Tensor, chunk: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Fill each hole from the database image whose visible context is closest in L2.

    image [B, C, H, W] and database [N, C, H, W] in [0, 1]; mask [B, 1, H, W]. The distance over the
    context c = 1 - mask is sum_p c_p (x_p - t_p)^2 = sum c x^2 - 2 (c x) . t + c . t^2, two matmuls per
    database chunk. Returns (filled images [B, C, H, W], index of the neighbour used [B])."""
    B = image.shape[0]
    ctx = (1 - mask).expand_as(image).flatten(1)  # [B, D]
    x = image.flatten(1)
    cx, cxx = ctx * x, (ctx * x * x).sum(1, keepdim=True)  # [B, D], [B, 1]
    best = torch.full((B,), float("inf"), dtype=torch.float64)
    arg = torch.zeros(B, dtype=torch.long)
    for start in range(0, database.shape[0], chunk):
        t = database[start : start + chunk].flatten(1).to(image)  # [n, D]
        d = cxx - 2 * cx @ t.T + ctx @ (t * t).T  # [B, n]
        val, idx = d.double().min(dim=1)
        better = val < best
        best = torch.where(better, val, best)
        arg = torch.where(better, idx + start, arg)
    donor = database[arg].to(image)
    return image * (1 - mask) + mask * donor, arg


def telea_available() -> bool:
    try:
        import cv2  # noqa: F401
    except ImportError:
        return False
    return True


def telea_fill(image: torch.Tensor, mask: torch.Tensor, radius: int = 3) -> torch.Tensor:
    """OpenCV's Telea inpainting of each image (uint8 round trip, as cv2.inpaint takes): [B, C, H, W] in [0, 1]."""
    import cv2

    out = []
    imgs = (image * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()  # [B, H, W, C]
    holes = (mask[:, 0] > 0.5).to(torch.uint8).cpu().numpy() * 255  # [B, H, W]
    for img, hole in zip(imgs, holes):
        filled = cv2.inpaint(np.ascontiguousarray(img), np.ascontiguousarray(hole), radius, cv2.INPAINT_TELEA)
        out.append(filled.reshape(img.shape))
    res = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255.0
    return res.to(image.device) * mask + image * (1 - mask)
