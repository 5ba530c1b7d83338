"""LPIPS (Zhang et al., CVPR 2018) as a loss and a metric, through the `lpips` package.

The VGG-16 trunk is used (AlexNet's fails below 32 px): the `lpips` package ships the linear layers, the trunk
is torchvision's `vgg16-397923af.pth` read from the torch hub cache ($TORCH_HOME/hub/checkpoints/) or an
explicit path; its SHA-256 is checked against the prefix in torchvision's file name, and a path whose hash
differs is reported as such, never silently accepted.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from gan_ssl.core.errors import WeightsError
from gan_ssl.core.files import sha256_file

VGG_FILE = "vgg16-397923af.pth"  # torchvision's VGG-16 ImageNet weights; the suffix is its sha256 prefix


VGG_SHA256_PREFIX = "397923af"


# lpips.pretrained_networks.vgg16 splits torchvision's `features` at these indices (relu1_2 ... relu5_3)
_VGG_SLICES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))


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
