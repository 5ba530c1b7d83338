"""Checkpoints for inference: rebuild a family from a checkpoint's config, load its weights, sample images,
describe a run.

    >>> b = load("runs/ssgan")                                    # a Bundle (any family), frozen, eval mode
    >>> imgs = sample("runs/ssgan/checkpoints/latest.pt", n=16)    # uint8 [16, 1, 32, 32]
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from gan_ssl.config import Config
from gan_ssl.core import runlog
from gan_ssl.core.device import resolve_device
from gan_ssl.core.errors import CheckpointError, ConfigError
from gan_ssl.engine import checkpoint as ckpt_io
from gan_ssl.engine.state import load_family_weights
from gan_ssl.families import FAMILIES, Family
from gan_ssl.families.bundle import Bundle
from gan_ssl.families.resolve import from_dict


def checkpoint_file(path: str | Path) -> Path:
    """A checkpoint path, or a run folder's checkpoints/latest.pt."""
    p = Path(path)
    return p / "checkpoints" / "latest.pt" if p.is_dir() else p


def config_of(ck: dict[str, Any], path: str | Path = "") -> Config:
    """The resolved config embedded in a loaded checkpoint."""
    try:
        return from_dict(ck["config"])
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} has no usable config: {e}") from None


def build_family(cfg: Config, device: str | torch.device = "cpu", seed: int | None = None) -> Family:
    """A family of `cfg` for inference (no optimizers), on `device`. Init draws use `seed` (or a private
    stream) and leave the caller's RNG untouched."""
    dev = resolve_device(str(device))
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        return FAMILIES[cfg.family](cfg, dev, training=False)


def load(path: str | Path, device: str | torch.device = "cpu") -> Bundle:
    """Load a checkpoint (or a run folder) of any family as a Bundle: networks and EMAs in eval mode, frozen."""
    ck = ckpt_io.load(path)
    fam = build_family(config_of(ck, path), device)
    try:
        load_family_weights(fam, ck)
    except CheckpointError as e:
        raise CheckpointError(f"{checkpoint_file(path)}: {e}") from None
    for net in [*fam.nets.values(), *(e.module for _, e in fam.emas.values())]:
        net.eval().requires_grad_(False)
    return Bundle(fam, int(ck["step"]), checkpoint_file(path), ck)


def sample(path: str | Path, n: int, seed: int = 0, batch_size: int = 256, device: str = "cpu", **options: Any) -> torch.Tensor:
    """Sample n images from a checkpoint's EMA generator: uint8 [n, C, H, W]."""
    return load(path, device).sample(n, seed, batch_size, **options)


def save_images(images: torch.Tensor, out: str | Path) -> Path:
    """uint8 [N, C, H, W] -> `out.npy` (one array) or a folder of PNGs named 000000.png, ..."""
    from PIL import Image

    out = Path(out)
    if out.suffix == ".npy" and out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give a path ending in .npy for one array, or a folder for PNGs")
    if out.suffix != ".npy" and out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for PNGs or a path ending in .npy")
    if out.suffix == ".npy":
        out.parent.mkdir(parents=True, exist_ok=True)
        np.save(out, images.numpy())
        return out
    out.mkdir(parents=True, exist_ok=True)
    width = max(6, len(str(images.shape[0] - 1)))
    for i, img in enumerate(images):
        arr = img.permute(1, 2, 0).numpy()
        Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).save(out / f"{i:0{width}d}.png")
    return out


def info(path: str | Path) -> dict[str, Any]:
    """Family, model, step, phase counters, parameter counts and config of a checkpoint."""
    b = load(path)
    fam, raw = b.family, b.raw
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    return {
        "checkpoint": str(b.path),
        "family": b.cfg.family,
        "model": b.cfg.model.name,
        "step": b.step,
        "images": int(raw.get("images", 0)),
        "counters": raw.get("counters", {}),
        "minutes": round(float(raw.get("elapsed", 0.0)) / 60, 2),
        "params": {name: count(m) for name, m in fam.nets.items()},
        "emas": list(fam.emas),
        "representations": list(fam.representations),
        "schedule": raw.get("sched", {}),
        **fam.describe(),
        "best": raw.get("best", {}),
        "format_version": int(raw.get("version", 0)),
        "migrated_from": raw.get("meta", {}).get("migrated_from"),
        "torch": raw.get("meta", {}).get("torch"),
        "config": b.cfg.to_dict(),
    }


def last_eval(run_dir: str | Path) -> dict[str, Any]:
    """The last in-training evaluation ({"step": ..., "eval": {...}}) logged in a run's metrics.jsonl, or {}."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return {}
    evals = [r for r in runlog.read_records(path) if "eval" in r]
    return evals[-1] if evals else {}
