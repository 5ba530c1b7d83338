"""Checkpoints: atomic writes, safe loads (`weights_only=True`), a format tag to reject foreign files,
and migration of older formats on read.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts only. Version 2, keyed by name:
    format, version, family, config (resolved, as a dict), step, images, counters {phase: runs}, elapsed,
    nets {name: state}, emas {name: state}, optims {name: state}, buffers {name: tensor}, extra, sched,
    scaler, data {epoch, pos, drawn}, rng {torch, cuda}, best, meta
Version 1 (gan_ssl 0.1: models {G, D, G_ema, aux}, optim {G, D}, sampler, fixed_z, d_steps) is migrated
to version 2 by `migrate_v1` when loaded.
"""
from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from gan_ssl.core.errors import CheckpointError
from gan_ssl.core.files import write_atomic

FORMAT = "gan_ssl.checkpoint"  # a file-format tag written into every file (the module's old name): never change it
VERSION = 2


def to_bytes(obj: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def save(obj: dict[str, Any], path: str | Path) -> None:
    obj = {"format": FORMAT, "version": VERSION, **obj}
    write_atomic(to_bytes(obj), path)


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a gan_ssl checkpoint; anything else raises CheckpointError with the reason."""
    p = Path(path)
    if p.is_dir():
        cand = p / "checkpoints" / "latest.pt"
        if not cand.is_file():
            raise CheckpointError(f"{p} is a folder without checkpoints/latest.pt; pass a .pt checkpoint file")
        p = cand
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    try:
        obj = torch.load(p, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"cannot load checkpoint {p}: not a valid gan_ssl checkpoint ({first[:200]})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not a gan_ssl checkpoint (no '{FORMAT}' format tag)")
    if int(obj.get("version", -1)) > VERSION:
        raise CheckpointError(f"{p} was written by a newer gan_ssl (checkpoint version {obj['version']} > {VERSION}); upgrade gan_ssl")
    if int(obj.get("version", -1)) == 1:
        try:
            obj = migrate_v1(obj)
        except (KeyError, TypeError) as e:
            raise CheckpointError(f"{p} is a damaged version-1 gan_ssl checkpoint (missing {e})") from None
    check_sections(obj, p)
    return obj


# Every section a version-2 checkpoint holds, with its type (what `--resume`, `sample` and the rest read).
SECTIONS: dict[str, type | tuple[type, ...]] = {
    "family": str, "config": dict, "step": int, "images": int, "counters": dict, "nets": dict, "emas": dict,
    "optims": dict, "buffers": dict, "scaler": dict, "data": dict, "rng": dict,
}


def check_sections(ck: dict[str, Any], path: str | Path) -> None:
    """Raise CheckpointError naming the first section of a version-2 checkpoint that is missing or of the wrong type."""
    for key, kind in SECTIONS.items():
        if key not in ck:
            raise CheckpointError(f"{path} is a damaged gan_ssl checkpoint: its '{key}' section is missing")
        if not isinstance(ck[key], kind) or isinstance(ck[key], bool):
            raise CheckpointError(f"{path} is a damaged gan_ssl checkpoint: its '{key}' section is a {type(ck[key]).__name__}")


# Model keys of gan_ssl 0.1's flat model section that each model did not take (they were ignored then).
_V1_MODEL_KEYS = {"dcgan": ("z_dim", "g_width", "d_width", "spectral_norm"), "sngan": ("z_dim", "g_width", "d_width", "self_modulation")}


def migrate_v1_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """A version-1 config dict in today's schema, keeping what it trained with: the gan family, only the keys
    its model takes, the EMA without a ramp (beta from step 0, as version 1 did) and its precision (amp -> bf16/fp16)."""
    model = dict(cfg.get("model", {}))
    name = model.get("name", "sngan")
    model = {k: v for k, v in model.items() if k == "name" or k in _V1_MODEL_KEYS.get(name, tuple(model))}
    train = {k: v for k, v in cfg.get("train", {}).items() if k != "amp"}
    amp = bool(cfg.get("train", {}).get("amp", False))
    train.update(ema_ramp="none", precision=("fp16" if str(train.get("device", "cpu")).startswith("cuda") else "bf16") if amp else "fp32")
    return {**cfg, "family": "gan", "model": model, "train": train}


def migrate_v1(ck: dict[str, Any]) -> dict[str, Any]:
    """Rename a version-1 checkpoint's fields to version 2 (the tensors are the same objects)."""
    models, cfg = ck["models"], migrate_v1_config(ck["config"])
    d_steps, step = int(ck["d_steps"]), int(ck["step"])
    return {
        "format": FORMAT, "version": VERSION, "family": "gan", "config": cfg,
        "step": step, "images": d_steps * int(cfg.get("train", {}).get("batch_size", 64)),
        "counters": {"D": d_steps, "G": step}, "elapsed": 0.0,
        "nets": {"G": models["G"], "D": models["D"], "aux": models["aux"]},
        "emas": {"G_ema": models["G_ema"]},
        "optims": {"G": ck["optim"]["G"], "D": ck["optim"]["D"]},
        "buffers": {"fixed_z": ck["fixed_z"]}, "extra": {}, "sched": {},
        "scaler": ck.get("scaler", {}), "data": {**ck["sampler"], "drawn": d_steps}, "rng": ck["rng"],
        "best": dict(ck.get("best", {})), "meta": {**ck.get("meta", {}), "migrated_from": 1},
    }
