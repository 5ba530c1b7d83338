"""Reconstructions x -> G(E(x)) of a checkpoint with an encoder (BigBiGAN), as a side-by-side grid.

    >>> from gan_ssl import reconstruct
    >>> r = reconstruct.reconstruct("runs/bigbigan", "fashion-mnist", n=16, out="recon.png")
    >>> r["pairs"].shape   # uint8 [16, 2, C, H, W]: each image next to its reconstruction

BiGAN reconstructions are semantic, not pixel-exact (Donahue et al. 2017): G(E(x)) should keep the class
and rough shape of x, so the grid is read by eye; the mean squared error is reported for reference.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from gan_ssl.core.errors import ConfigError, DataError
from gan_ssl.data import load_images, to_float, to_uint8
from gan_ssl.inference.load import checkpoint_file, load


def pick(n_images: int, n: int, seed: int) -> torch.Tensor:
    """n distinct indices of [0, n_images), a seeded random draw (sorted), int64 [n]."""
    if not 1 <= n <= n_images:
        raise DataError(f"cannot pick {n} images from a split of {n_images}; lower --n")
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n_images, generator=g)[:n].sort().values


def reconstruct(ckpt: str | Path, spec: str, n: int = 16, out: str | Path | None = None, split: str = "test", seed: int = 0,
                ema: bool = True, sample: bool = True, device: str = "cpu") -> dict[str, Any]:
    """Reconstruct n seeded-random images of `spec` (`split`) with a checkpoint's encoder and EMA generator;
    z = a draw mu + sigma * eps (eps from `seed`), or E's mean when not `sample`.

    Returns {pairs: uint8 [n, 2, C, H, W], indices: [n], mse: mean squared error in [-1, 1] units, out, ...};
    with `out`, writes a PNG grid whose rows alternate image and reconstruction (x | G(E(x)) | x | ...).
    """
    bundle = load(ckpt, device)
    fam = bundle.family
    if not hasattr(fam, "reconstruct"):
        raise ConfigError(f"{checkpoint_file(ckpt)} is a {bundle.cfg.family} checkpoint without an encoder; "
                          "reconstruct needs one with an encoder (e.g. family bigbigan)")
    d = bundle.cfg.data
    data = load_images(spec, split, d.resolution, d.channels, d.root)
    idx = pick(len(data), n, seed)
    x = to_float(data.images[idx])  # [n, C, H, W] in [-1, 1]
    x_hat = fam.reconstruct(x, ema=ema, sample=sample, seed=seed).float().cpu()
    assert x_hat.shape == x.shape, (x_hat.shape, x.shape)
    pairs = torch.stack([data.images[idx], to_uint8(x_hat)], dim=1)  # [n, 2, C, H, W]
    result: dict[str, Any] = {"checkpoint": str(checkpoint_file(ckpt)), "step": bundle.step, "data": spec, "split": split,
                              "n": n, "seed": seed, "generator": "G_ema" if ema else "G",
                              "z": "sample" if sample else "mean", "indices": idx.tolist(),
                              "mse": float((x_hat.clamp(-1, 1) - x).square().mean()), "pairs": pairs, "out": None}
    if out is not None:
        result["out"] = str(save_pairs(pairs, out))
    return result


def save_pairs(pairs: torch.Tensor, out: str | Path) -> Path:
    """uint8 pairs [N, 2, C, H, W] -> a PNG grid of about sqrt(N) pairs per row, each image next to its reconstruction."""
    import torchvision.utils as vutils

    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ConfigError(f"--out must be a .png file, got {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    per_row = max(1, int(math.ceil(math.sqrt(pairs.shape[0]))))
    vutils.save_image(pairs.flatten(0, 1).float() / 255.0, str(out), nrow=2 * per_row, padding=1, pad_value=0.5)
    return out
