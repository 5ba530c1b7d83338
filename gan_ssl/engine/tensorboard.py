"""Optional TensorBoard mirror of a run (`train.tensorboard`): every metrics.jsonl record as scalars and
every sample grid as an image, written to RUN_DIR/tensorboard with torch.utils.tensorboard.SummaryWriter.

metrics.jsonl stays the record of truth (`gan-ssl report` reads it); this is for watching a run live.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from gan_ssl.core.errors import ConfigError

MISSING = "train.tensorboard=true needs the tensorboard package: pip install tensorboard"


class TensorBoardLog:
    """Scalars and grids of one run. Checks for the package at once; the event file is opened at the first write."""

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch raises it when the tensorboard package is absent
            raise ConfigError(MISSING) from None
        self.log_dir = Path(log_dir)
        self._make = SummaryWriter
        self._writer: Any = None

    def _w(self) -> Any:
        if self._writer is None:
            self._writer = self._make(log_dir=str(self.log_dir))
        return self._writer

    def log(self, record: dict[str, Any]) -> None:
        """One metrics record {"step": N, key: number, ...} or {"step": N, "eval": {key: number}} as scalars."""
        step = int(record["step"])
        scalars = {f"eval/{k}": v for k, v in record["eval"].items()} if isinstance(record.get("eval"), dict) else record
        for k, v in scalars.items():
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                self._w().add_scalar(k, v, step)
        self._w().flush()  # so a short run or a crash leaves its scalars on disk

    def grid(self, png: str | Path, step: int) -> None:
        """A sample grid PNG written by the loop, as the image `samples` at `step`."""
        import numpy as np
        from PIL import Image

        img = np.asarray(Image.open(png).convert("RGB"))  # [H, W, 3] uint8
        self._w().add_image("samples", img, step, dataformats="HWC")
        self._w().flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
