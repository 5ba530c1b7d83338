"""A run's metrics.jsonl: one JSON object per line, appended as training goes.

A process killed while appending leaves a torn last line (no trailing newline, not valid JSON): readers drop
it, since the step it belonged to is logged again after `--resume`. Any other bad line is a DataError.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from gan_ssl.core.errors import DataError

log = logging.getLogger(__name__)


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every record of a metrics.jsonl in file order, without a torn last line. Raises DataError on any other
    line that is not a JSON object with a 'step'."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text; is this a gan_ssl metrics file?") from None
    lines = text.split("\n")
    records: list[dict[str, Any]] = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            if i == len(lines):  # the last line has no newline: a write cut short by a kill
                log.warning("%s: dropped a torn last line (a write cut short by a crash)", path)
                break
            raise DataError(f"{path}:{i} is not a JSON line ({e.msg}); is this a gan_ssl metrics file?") from None
        if not isinstance(rec, dict) or "step" not in rec:
            raise DataError(f"{path}:{i} has no 'step'; is this a gan_ssl metrics file?")
        records.append(rec)
    return records


def truncate(path: Path, step: int) -> None:
    """Keep the records logged up to `step` (drop those written after the last checkpoint, and a torn line)."""
    keep = [rec for rec in read_records(path) if int(rec["step"]) <= step]
    path.write_text("".join(json.dumps(rec) + "\n" for rec in keep), encoding="utf-8")
