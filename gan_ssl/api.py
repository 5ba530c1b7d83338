"""Python API over checkpoints: rebuild models, sample images, describe a run.

    >>> from gan_ssl import api
    >>> imgs = api.sample("runs/ssgan/checkpoints/latest.pt", n=16, seed=0)  # uint8 [16, 1, 32, 32]
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gan_ssl import checkpoint as ckpt_io
from gan_ssl.aux import build_aux_tasks
from gan_ssl.config import Config, from_dict
from gan_ssl.data import to_uint8
from gan_ssl.errors import CheckpointError, DataError
from gan_ssl.models import build_models
from gan_ssl.models.base import Discriminator, Generator


@dataclass
class LoadedRun:
    """Models rebuilt from a checkpoint, in eval mode, on `device`."""

    cfg: Config
    G_ema: Generator
    D: Discriminator
    aux: nn.ModuleDict
    step: int
    path: Path
    raw: dict[str, Any]


def rebuild(ck: dict[str, Any], path: str | Path) -> tuple[Config, Generator, Discriminator, nn.ModuleDict]:
    """Untrained (G, D, aux heads) of the architecture a loaded checkpoint `ck` describes, with its config."""
    try:
        cfg = from_dict(ck["config"])
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} has no usable config: {e}") from None
    with torch.random.fork_rng(devices=[]):  # init values are overwritten; keep the caller's RNG untouched
        G, D = build_models(cfg)
        aux = build_aux_tasks(cfg.aux, D)
    return cfg, G, D, aux


def load_run(path: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """Load a checkpoint (or a run folder) and rebuild its EMA generator, discriminator and aux heads."""
    ck = ckpt_io.load(path)
    cfg, G, D, aux = rebuild(ck, path)
    try:
        G.load_state_dict(ck["models"]["G_ema"])
        D.load_state_dict(ck["models"]["D"])
        aux.load_state_dict(ck["models"]["aux"])
    except (KeyError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint {path} does not match its own config: {str(e).splitlines()[0][:300]}") from None
    dev = torch.device(device)
    for m in (G, D, aux):
        m.to(dev).eval().requires_grad_(False)
    p = Path(path)
    return LoadedRun(cfg, G, D, aux, int(ck["step"]), p if p.is_file() else p / "checkpoints" / "latest.pt", ck)


@torch.no_grad()
def generate(G: Generator, n: int, seed: int = 0, batch_size: int = 256, device: str | torch.device = "cpu") -> torch.Tensor:
    """n images from G as uint8 [n, C, H, W]; the same seed gives the same images on any batch size."""
    if n < 1:
        raise DataError(f"number of images must be at least 1, got {n}")
    g = torch.Generator().manual_seed(seed)
    z = G.sample_z(n, g)  # drawn at once so batching does not change the latents
    out = [to_uint8(G(z[i : i + batch_size].to(device))).cpu() for i in range(0, n, batch_size)]
    return torch.cat(out)


def sample(path: str | Path, n: int, seed: int = 0, batch_size: int = 256, device: str = "cpu") -> torch.Tensor:
    """Sample n images from a checkpoint's EMA generator: uint8 [n, C, H, W]."""
    run = load_run(path, device)
    return generate(run.G_ema, n, seed, batch_size, device)


def save_images(images: torch.Tensor, out: str | Path) -> Path:
    """uint8 [N, C, H, W] -> `out.npy` (one array) or a folder of PNGs named 000000.png, ..."""
    from PIL import Image

    out = Path(out)
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
    """Model, step, config and parameter counts of a checkpoint."""
    run = load_run(path)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    return {
        "checkpoint": str(run.path),
        "model": run.cfg.model.name,
        "step": run.step,
        "params": {"G": count(run.G_ema), "D": count(run.D), "aux": count(run.aux)},
        "aux_tasks": list(run.aux.keys()),
        "best": run.raw.get("best", {}),
        "torch": run.raw.get("meta", {}).get("torch"),
        "config": run.cfg.to_dict(),
    }


def last_eval(run_dir: str | Path) -> dict[str, Any]:
    """The last in-training evaluation ({"step": ..., "eval": {...}}) logged in a run's metrics.jsonl, or {}."""
    import json

    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return {}
    evals = [r for r in map(json.loads, path.read_text().splitlines()) if "eval" in r]
    return evals[-1] if evals else {}
