"""Full-reference image metrics through well-kept libraries: PSNR and SSIM from piq, LPIPS from `lpips`.

Conventions (as BasicSR and the SR literature report them):
    * images are float in [0, 1] ([B, C, H, W]); anything else is a ValueError (SSIM on [-1, 1] input
      is wrong even with data_range 2, so [-1, 1] tensors are converted first with `unit`);
    * "rgb" metrics use every channel as is (the grey channel for 1-channel data); "y" metrics use
      BT.601 luma, Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255 (MATLAB's rgb2ycbcr), and a
      1-channel image is its own luma;
    * super-resolution crops `scale` pixels from every border before measuring;
    * PSNR of a batch is the mean of per-image PSNRs (piq's reduction), never PSNR of the pooled MSE;
    * the hole PSNR of an inpainting is piq's PSNR of the masked images corrected by the hole's share
      of the image: MSE_hole = MSE_masked / share, so PSNR_hole = PSNR_masked + 10 log10(share).
LPIPS (Zhang et al., CVPR 2018) lives in gan_ssl.nn.lpips (the SR family trains with it too).
"""
from __future__ import annotations

import torch

from gan_ssl.core.errors import DataError

_Y_WEIGHTS = (65.481, 128.553, 24.966)  # BT.601 studio-swing luma (BasicSR's `rgb2ycbcr(y_only=True)`)


def unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float or uint8 images -> float [0, 1]."""
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    return ((x.float() + 1) / 2).clamp(0, 1)


def _check(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape or x.ndim != 4:
        raise DataError(f"images must be [B, C, H, W] of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    for t in (x, y):
        if not t.is_floating_point() or float(t.min()) < 0 or float(t.max()) > 1:
            raise DataError("image metrics take float images in [0, 1]; convert [-1, 1] or uint8 images with image_metrics.unit")


def to_y(x: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of [B, 3, H, W] in [0, 1] -> [B, 1, H, W] in [16/255, 235/255]; 1 channel is returned as is."""
    if x.shape[1] == 1:
        return x
    if x.shape[1] != 3:
        raise DataError(f"luma needs 1 or 3 channels, got {x.shape[1]}")
    w = torch.tensor(_Y_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True) / 255.0 + 16.0 / 255.0


def crop_border(x: torch.Tensor, n: int) -> torch.Tensor:
    """Drop `n` pixels from every border: [B, C, H, W] -> [B, C, H - 2n, W - 2n]."""
    return x[..., n : x.shape[-2] - n, n : x.shape[-1] - n] if n > 0 else x


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR [B] (dB) of images in [0, 1] (piq.psnr, data_range 1)."""
    import piq

    _check(x, y)
    return piq.psnr(x, y, data_range=1.0, reduction="none")


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM [B] of images in [0, 1] (piq.ssim: 11x11 Gaussian window, sigma 1.5, Wang et al. 2004)."""
    import piq

    _check(x, y)
    if min(x.shape[-2:]) < 11:
        raise DataError(f"SSIM needs images of at least 11x11 pixels (its window), got {x.shape[-2]}x{x.shape[-1]}")
    return piq.ssim(x, y, data_range=1.0, reduction="none")


def full_reference(x: torch.Tensor, y: torch.Tensor, crop: int = 0) -> dict[str, torch.Tensor]:
    """{psnr, psnr_y, ssim, ssim_y}: per-image [B] values of prediction x against reference y, both in [0, 1],
    with `crop` border pixels dropped first (the scale factor for SR)."""
    _check(x, y)
    x, y = crop_border(x, crop), crop_border(y, crop)
    xy, yy = to_y(x), to_y(y)
    return {"psnr": psnr(x, y), "psnr_y": psnr(xy, yy), "ssim": ssim(x, y), "ssim_y": ssim(xy, yy)}


def hole_psnr(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR [B] over the hole only (mask [B, 1, H, W] == 1) of images in [0, 1].

    piq's PSNR of the masked images measures MSE_masked = share * MSE_hole (share: the hole's fraction of
    the pixels), so PSNR_hole = PSNR_masked + 10 log10(share)."""
    _check(x, y)
    if mask.shape[0] != x.shape[0] or mask.shape[1] != 1 or mask.shape[-2:] != x.shape[-2:]:
        raise DataError(f"mask must be [B, 1, H, W] for images {tuple(x.shape)}, got {tuple(mask.shape)}")
    share = mask.flatten(1).mean(1)  # [B]
    if bool((share <= 0).any()):
        raise DataError("hole PSNR needs a hole in every image; some masks are empty")
    return psnr(x * mask, y * mask) + 10 * torch.log10(share)
