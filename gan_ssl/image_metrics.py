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
LPIPS (Zhang et al., CVPR 2018) uses the VGG-16 trunk (AlexNet's fails below 32 px): the `lpips`
package ships the linear layers, the trunk is torchvision's `vgg16-397923af.pth` read from the torch hub
cache ($TORCH_HOME/hub/checkpoints/) or an explicit path; its SHA-256 is checked against the prefix in
torchvision's file name, and a path whose hash differs is reported as such, never silently accepted.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from gan_ssl.errors import DataError, WeightsError
from gan_ssl.features import sha256_file

VGG_FILE = "vgg16-397923af.pth"  # torchvision's VGG-16 ImageNet weights; the suffix is its sha256 prefix
VGG_SHA256_PREFIX = "397923af"
# lpips.pretrained_networks.vgg16 splits torchvision's `features` at these indices (relu1_2 ... relu5_3)
_VGG_SLICES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))
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


# ---- LPIPS -----------------------------------------------------------------------------------------

def vgg_trunk_expected_path() -> Path:
    """Where torchvision (and so the lpips package) looks for VGG-16: $TORCH_HOME/hub/checkpoints/vgg16-397923af.pth."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG_FILE


def find_vgg_trunk(path: str | Path | None = None) -> tuple[Path, str, bool]:
    """(trunk file, its sha256, whether it is torchvision's file) for LPIPS.

    With no `path`, the file must be torchvision's, in the hub cache: absent is a WeightsError naming the
    file and the folder, and a different hash (a partial or foreign download) is a WeightsError too. An
    explicit `path` may hold other weights (tests build small ones); its hash is returned and reported."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise WeightsError(f"LPIPS VGG-16 trunk not found at {p}; torchvision's file is {VGG_FILE}")
        digest = sha256_file(p)
        return p, digest, digest.startswith(VGG_SHA256_PREFIX)
    p = vgg_trunk_expected_path()
    if not p.is_file():
        raise WeightsError(f"LPIPS needs the VGG-16 trunk {VGG_FILE} in {p.parent} (torchvision's hub checkpoint cache, "
                           f"$TORCH_HOME/hub/checkpoints); copy the file there or pass --lpips-weights PATH")
    digest = sha256_file(p)
    if not digest.startswith(VGG_SHA256_PREFIX):
        raise WeightsError(f"{p} has sha256 {digest[:12]}..., not torchvision's {VGG_SHA256_PREFIX}...: a partial or different file; "
                           "replace it with torchvision's vgg16-397923af.pth")
    return p, digest, True


def trunk_state(path: Path) -> dict[str, torch.Tensor]:
    """The `features.*` tensors of a torchvision VGG-16 state dict, renamed to lpips' `net.sliceK.i.*` keys."""
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any unreadable file is the user's to replace; say which and why
        raise WeightsError(f"cannot read VGG-16 trunk {path}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__}") from None
    if not isinstance(sd, dict):
        raise WeightsError(f"{path} is not a state dict of torchvision's VGG-16")
    out: dict[str, torch.Tensor] = {}
    for k, (lo, hi) in enumerate(_VGG_SLICES, start=1):
        for i in range(lo, hi):
            for part in ("weight", "bias"):
                key = f"features.{i}.{part}"
                if key in sd:
                    out[f"slice{k}.{i}.{part}"] = sd[key].float()
    return out


class LPIPS(nn.Module):
    """LPIPS distance with the VGG-16 trunk: images x, y [B, C, H, W] in [0, 1] -> [B] (lower = closer).

    One-channel images are repeated to RGB. Differentiable in its inputs (usable as a training loss);
    its own weights are frozen. `trunk` / `trunk_sha256` / `trunk_official` describe the weights used."""

    def __init__(self, weights: str | Path | None = None) -> None:
        super().__init__()
        import contextlib
        import io
        import warnings

        import lpips

        self.trunk, self.trunk_sha256, self.trunk_official = find_vgg_trunk(weights)
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # lpips prints its set-up and
            warnings.simplefilter("ignore", UserWarning)  # calls torchvision's deprecated `pretrained=` argument
            # pnet_rand: build the trunk without torchvision's download; it is loaded from the file below
            self.net = lpips.LPIPS(net="vgg", pnet_rand=True, pretrained=True, verbose=False)
        state = trunk_state(self.trunk)
        expected = self.net.net.state_dict()
        missing = [k for k in expected if k not in state]
        if missing:
            raise WeightsError(f"{self.trunk} lacks VGG-16 trunk tensors (e.g. features.{missing[0].split('.', 1)[1]}); "
                               f"use torchvision's {VGG_FILE}")
        bad = [k for k in expected if state[k].shape != expected[k].shape]
        if bad:
            raise WeightsError(f"{self.trunk}: tensor {bad[0]} has shape {tuple(state[bad[0]].shape)}, VGG-16 has {tuple(expected[bad[0]].shape)}")
        self.net.net.load_state_dict(state)
        self.net.eval().requires_grad_(False)

    def describe(self) -> dict[str, object]:
        return {"trunk": str(self.trunk), "trunk_sha256": self.trunk_sha256, "trunk_is_torchvision": self.trunk_official}

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x, y = x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1)
        return self.net(x, y, normalize=True).flatten()  # normalize: [0, 1] -> [-1, 1] as lpips expects
