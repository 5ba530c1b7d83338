"""Frozen features of a trained network (D, an encoder): named block outputs, pooled and concatenated.

    >>> from gan_ssl import features
    >>> fs = features.export("runs/ssgan", "fashion-mnist", "test", out="test_feats.pt")
    >>> fs["features"].shape  # float32 [10000, F]

A feature file is a dict that `torch.load(..., weights_only=True)` reads:
    format, version, features float32 [N, F], labels int64 [N], layers [names], layer_dims [F_i],
    pool, grid, checkpoint_sha256, net, source ("checkpoint" | "random-d" | "pixels"), data, split, step, config.
Extraction runs the network in eval mode under no_grad in a fixed order, so the same call gives the same bits.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from gan_ssl.config import Config
from gan_ssl.core.errors import ConfigError, DataError
from gan_ssl.core.files import sha256_file
from gan_ssl.core.progress import track
from gan_ssl.data import ImageData, load_images, to_float
from gan_ssl.engine import checkpoint as ckpt_io
from gan_ssl.families.base import Representation
from gan_ssl.inference.load import build_family, checkpoint_file, load

FORMAT = "gan_ssl.features"  # a file-format tag written into every file (the module's old name): never change it
VERSION = 1
POOLS = ("avg", "max", "avgmax")
DEFAULT_LAYERS = "all"  # every block of D: the SSGAN paper probes each ResNet block; together they read best
DEFAULT_POOL = "avgmax"  # avg and max of each channel: 2x the dims of avg, a few points better on small D
DEFAULT_GRID = 1  # 1 = global pooling (the protocol); 2 or 4 keep a coarse KxK layout (more dims)
DEFAULT_BATCH = 256  # images per forward pass; any value gives the same features up to float rounding

FeatureFn = Callable[[torch.Tensor], dict[str, torch.Tensor]]  # images [B, C, H, W] -> named outputs


def load_representation(path: str | Path, net: str | None = None, device: str | torch.device = "cpu") -> tuple[Representation, Config, dict[str, Any]]:
    """A checkpoint's frozen feature extractor (`net`: D, an encoder, ...; default: the family's first)
    with its config and {checkpoint, checkpoint_sha256, step, net}."""
    bundle = load(path, device)
    rep = bundle.representation(net)
    rep.module.eval().requires_grad_(False)
    f = checkpoint_file(path)
    return rep, bundle.cfg, {"checkpoint": str(f), "checkpoint_sha256": sha256_file(f), "step": bundle.step, "net": rep.name}


def random_representation(cfg: Config, net: str | None = None, seed: int = 0, device: str | torch.device = "cpu") -> Representation:
    """The same network as `cfg` builds, randomly initialised (the `random-d` baseline), eval mode, frozen."""
    rep = build_family(cfg, device, seed=seed).representation(net)
    rep.module.eval().requires_grad_(False)
    return rep


def resolve_layers(rep: Representation, names: str | list[str] | None) -> list[str]:
    """'all' (every block), 'penultimate', or a comma-separated list of names -> a checked list."""
    if names is None or names == DEFAULT_LAYERS or names == [DEFAULT_LAYERS]:
        return list(rep.layers)
    items = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
    items = [n for n in items if n]
    bad = [n for n in items if n not in rep.known]
    if bad or not items:
        raise ConfigError(f"unknown layer(s) {', '.join(bad) or '(none given)'}; {rep.name} has: {', '.join(rep.known)} (or 'all')")
    return list(dict.fromkeys(items))


def pool_map(h: torch.Tensor, pool: str, grid: int = DEFAULT_GRID) -> torch.Tensor:
    """[B, C, H, W] -> [B, C*g*g] (avg, max) or [B, 2*C*g*g] (avgmax), g = min(grid, H, W);
    grid 1 is global pooling. A [B, F] input (e.g. 'penultimate') is returned as is."""
    if h.ndim == 2:
        return h
    assert h.ndim == 4, h.shape
    g = min(grid, h.shape[2], h.shape[3])
    avg = (lambda: h.mean(dim=(2, 3))) if g == 1 else (lambda: F.adaptive_avg_pool2d(h, g).flatten(1))
    mx = (lambda: h.amax(dim=(2, 3))) if g == 1 else (lambda: F.adaptive_max_pool2d(h, g).flatten(1))
    if pool == "avg":
        return avg()
    if pool == "max":
        return mx()
    if pool == "avgmax":
        return torch.cat([avg(), mx()], dim=1)
    raise ConfigError(f"unknown pooling {pool!r}; use one of {', '.join(POOLS)}")


@torch.no_grad()
def extract(fn: FeatureFn, data: ImageData, layers: list[str], pool: str = DEFAULT_POOL, grid: int = DEFAULT_GRID,
            batch_size: int = DEFAULT_BATCH, device: str | torch.device = "cpu", progress: bool = False, desc: str = "features") -> tuple[torch.Tensor, list[int]]:
    """Pooled, concatenated features of every image: (float32 [N, F] on the CPU, per-layer dims).

    `fn` maps float images [B, C, H, W] in [-1, 1] to named outputs (a discriminator's `features`;
    an encoder can plug in the same way). Images are read in order, in batches, without gradients.
    """
    if pool not in POOLS:
        raise ConfigError(f"unknown pooling {pool!r}; use one of {', '.join(POOLS)}")
    if batch_size < 1 or grid < 1:
        raise ConfigError(f"batch size and grid must be at least 1, got {batch_size} and {grid}")

    n = len(data)
    out: list[torch.Tensor] = []
    dims: list[int] = []
    for start in track(range(0, n, batch_size), desc=desc, unit="batch", enabled=progress):
        idx = torch.arange(start, min(start + batch_size, n))
        named = fn(data.batch(idx, device))
        parts = [pool_map(named[name], pool, grid).float() for name in layers]  # each [B, F_i]
        dims = [p.shape[1] for p in parts]
        out.append(torch.cat(parts, dim=1).cpu())
    feats = torch.cat(out) if out else torch.zeros(0, 0)
    assert feats.shape == (n, sum(dims)), (feats.shape, n, dims)
    return feats, dims


def pixel_features(data: ImageData) -> torch.Tensor:
    """Raw pixels as features (the `pixels` baseline): float32 [N, C*H*W] in [-1, 1]."""
    return to_float(data.images).flatten(1)


def representation_features(rep: Representation, data: ImageData, layers: str | list[str] | None = None, pool: str = DEFAULT_POOL,
                            grid: int = DEFAULT_GRID, batch_size: int = DEFAULT_BATCH, device: str | torch.device = "cpu",
                            progress: bool = False, desc: str = "features") -> tuple[torch.Tensor, list[str], list[int]]:
    """A representation's pooled features of `data`: (float32 [N, F], layer names, per-layer dims).
    The network runs in eval mode; its mode is restored afterwards."""
    names = resolve_layers(rep, layers)
    was_training = rep.module.training
    rep.module.eval()
    try:
        feats, dims = extract(rep.features, data, names, pool, grid, batch_size, device, progress, desc)
    finally:
        rep.module.train(was_training)
    return feats, names, dims


def load_data(cfg: Config, spec: str, split: str | None, limit: int = 0) -> ImageData:
    """Images of `spec` at the checkpoint's resolution and channels; labels must be known."""
    data = load_images(spec, split, cfg.data.resolution, cfg.data.channels, cfg.data.root, limit)
    if not data.has_labels:
        raise DataError(f"{spec} ({split or 'train'}) has images without labels; probing needs a labelled dataset "
                        "(for folder:PATH, one sub-folder per class)")
    return data


def export(ckpt: str | Path, spec: str, split: str = "train", layers: str | list[str] | None = None, pool: str = DEFAULT_POOL,
           grid: int = DEFAULT_GRID, out: str | Path | None = None, batch_size: int = DEFAULT_BATCH, device: str = "cpu", limit: int = 0,
           progress: bool = False, net: str | None = None) -> dict[str, Any]:
    """Features of a checkpoint's frozen network (`net`, default the family's first: D) on a dataset split,
    as a feature-file dict (saved to `out` if given)."""
    rep, cfg, meta = load_representation(ckpt, net, device)
    data = load_images(spec, split, cfg.data.resolution, cfg.data.channels, cfg.data.root, limit)
    feats, names, dims = representation_features(rep, data, layers, pool, grid, batch_size, device, progress, desc=f"features {split}")
    fs = make_feature_file(feats, data.labels, names, dims, pool, grid, source="checkpoint", data=spec, split=split, cfg=cfg, **meta)
    if out is not None:
        save_features(fs, out)
    return fs


def make_feature_file(feats: torch.Tensor, labels: torch.Tensor, layers: list[str], dims: list[int], pool: str, grid: int, source: str,
                      data: str, split: str, cfg: Config | None = None, checkpoint: str = "", checkpoint_sha256: str = "",
                      step: int = 0, net: str = "") -> dict[str, Any]:
    """Assemble the weights_only-loadable feature-file dict (see the module docstring)."""
    assert feats.ndim == 2 and feats.shape[0] == labels.shape[0], (feats.shape, labels.shape)
    return {
        "format": FORMAT, "version": VERSION,
        "features": feats.float().contiguous(), "labels": labels.long().clone(),
        "layers": list(layers), "layer_dims": [int(d) for d in dims], "pool": pool, "grid": int(grid),
        "checkpoint": checkpoint, "checkpoint_sha256": checkpoint_sha256, "step": int(step), "net": net, "source": source,
        "data": data, "split": split, "config": cfg.to_dict() if cfg is not None else {},
    }


def save_features(fs: dict[str, Any], path: str | Path) -> Path:
    """Write a feature file atomically."""
    p = Path(path)
    ckpt_io.write_atomic(ckpt_io.to_bytes(fs), p)
    return p


def is_feature_file(path: str | Path) -> bool:
    """True when `path` is a file holding a gan_ssl feature dict (cheap check of the format tag)."""
    p = Path(path)
    if not p.is_file():
        return False
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a torch file, or a checkpoint saved otherwise: not ours either way
        return False
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def load_features(path: str | Path) -> dict[str, Any]:
    """Read and check a feature file: float [N, F] features and int64 [N] labels."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"feature file not found: {p}")
    try:
        fs = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # any unreadable file is the user's to fix; say which and why
        raise DataError(f"cannot read feature file {p}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__}") from None
    if not isinstance(fs, dict) or fs.get("format") != FORMAT:
        raise DataError(f"{p} is not a gan_ssl feature file (make one with `gan-ssl features CKPT --data SPEC --split train --out {p.name}`)")
    x, y = fs.get("features"), fs.get("labels")
    if not (isinstance(x, torch.Tensor) and x.ndim == 2 and isinstance(y, torch.Tensor) and y.ndim == 1):
        raise DataError(f"feature file {p} must hold features [N, F] and labels [N]")
    if x.shape[0] != y.shape[0]:
        raise DataError(f"feature file {p} has {x.shape[0]} feature rows but {y.shape[0]} labels; re-export it with `gan-ssl features`")
    if not torch.isfinite(x).all():
        raise DataError(f"feature file {p} holds NaN or infinite features")
    fs["features"], fs["labels"] = x.float(), y.long()
    return fs
