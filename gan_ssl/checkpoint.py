"""Checkpoints: atomic writes, safe loads (`weights_only=True`), and a format tag to reject foreign files.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts only:
    format, version, config (resolved, as a dict), step, models {G, D, G_ema, aux},
    optim {G, D}, scaler, sampler {epoch, pos}, rng {torch, cuda}, fixed_z, meta {...}
"""
from __future__ import annotations

import io
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from gan_ssl.errors import CheckpointError

FORMAT = "gan_ssl.checkpoint"
VERSION = 1


def to_bytes(obj: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def write_atomic(data: bytes, path: str | Path) -> None:
    """Write to a temp file in the same folder, fsync, then rename over `path` (never a torn file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


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
    return obj
