"""A run directory and its writers:
    config.yaml, metrics.jsonl, samples/step_NNNNNN.png, checkpoints/{latest,step_NNNNNN,best}.pt, tensorboard/
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from gan_ssl.core import runlog
from gan_ssl.engine import checkpoint as ckpt_io
from gan_ssl.engine.state import TrainState, state_dict
from gan_ssl.engine.tensorboard import TensorBoardLog


def save_grid(images: torch.Tensor, path: Path) -> None:
    """images [N, C, H, W] in [-1, 1] -> one PNG grid."""
    import torchvision.utils as vutils  # lazy: importing torchvision costs seconds (it loads torch._dynamo)

    path.parent.mkdir(parents=True, exist_ok=True)
    nrow = int(math.ceil(math.sqrt(images.shape[0])))
    vutils.save_image(images.float().clamp(-1, 1) * 0.5 + 0.5, str(path), nrow=nrow, padding=1)


def numbered_checkpoints(folder: Path) -> list[Path]:
    """checkpoints/step_N.pt, oldest first by the step number (not by name: step_1000000 sorts after step_999999)."""
    found = [(int(p.stem[5:]), p) for p in folder.glob("step_*.pt") if p.stem[5:].isdigit()]
    return [p for _, p in sorted(found)]


class RunDir:
    """Paths and writers of a run directory."""

    def __init__(self, root: str | Path, main: bool = True) -> None:
        self.root, self.main = Path(root), main  # main: this process writes (rank 0 of a data-parallel run)
        self.ckpts = self.root / "checkpoints"
        self.samples = self.root / "samples"
        self.metrics = self.root / "metrics.jsonl"
        self.latest = self.ckpts / "latest.pt"
        self.tb: TensorBoardLog | None = None  # mirrors log() and the sample grids when train.tensorboard is on

    def log(self, record: dict[str, Any]) -> None:
        if not self.main:
            return
        with open(self.metrics, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            self.tb.log(record)

    def remove_torn_writes(self) -> None:
        """Delete temp files a killed checkpoint write left (checkpoints/.NAME.XXXX.tmp); the checkpoints stay whole."""
        if self.main and self.ckpts.is_dir():
            for tmp in self.ckpts.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)

    def truncate_metrics(self, step: int) -> None:
        """Drop lines logged after `step` (written before a crash, after the last checkpoint)."""
        if not self.main or not self.metrics.exists():
            return
        runlog.truncate(self.metrics, step)

    def write(self, st: TrainState, path: Path) -> None:
        sd = state_dict(st)  # a collective in a data-parallel run: every rank gets here
        if self.main:
            ckpt_io.write_atomic(ckpt_io.to_bytes({"format": ckpt_io.FORMAT, "version": ckpt_io.VERSION, **sd}), path)

    def save_checkpoint(self, st: TrainState, keep: int) -> Path:
        numbered = self.ckpts / f"step_{st.step:06d}.pt"
        self.write(st, numbered)
        self.write(st, self.latest)
        if keep > 0 and self.main:
            for old in numbered_checkpoints(self.ckpts)[:-keep]:
                old.unlink()
        return numbered
