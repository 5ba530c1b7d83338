"""Progress for long commands: a tqdm bar on a terminal, a plain line every N seconds otherwise.

Under CI or with stderr redirected to a file, tqdm's carriage-return frames pile up (hundreds of KB
per run); there this prints one line per `GAN_SSL_PROGRESS_SECONDS` (default 30) instead.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("GAN_SSL_PROGRESS_SECONDS", "30")))
    except ValueError:
        return 30.0


class Progress:
    """update(n) / set_postfix(dict) / close(), like tqdm; `enabled=False` prints nothing."""

    def __init__(self, total: int | None = None, initial: int = 0, desc: str = "", unit: str = "it", enabled: bool = True,
                 leave: bool = True, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.total, self.n, self.desc, self.unit, self.enabled = total, initial, desc, unit, enabled
        self.postfix: dict[str, Any] = {}
        self._bar = None
        if enabled and getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, leave=leave, file=self.stream)
        self._t0 = self._last = time.monotonic()
        self._n0 = initial
        self.every = _interval()

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.enabled and time.monotonic() - self._last >= self.every:
            self._line()

    def set_postfix(self, values: dict[str, Any]) -> None:
        self.postfix = dict(values)
        if self._bar is not None:
            self._bar.set_postfix(values)

    def _line(self, final: bool = False) -> None:
        now = time.monotonic()
        rate = (self.n - self._n0) / max(now - self._t0, 1e-9)
        done = f"{self.n}/{self.total}" if self.total else str(self.n)
        eta = ""
        if self.total and rate > 0 and not final:
            eta = f", eta {int((self.total - self.n) / rate // 60)}m{int((self.total - self.n) / rate % 60):02d}s"
        post = "".join(f" {k}={v}" for k, v in self.postfix.items())
        print(f"{self.desc}: {done} {self.unit} ({rate:.3g} {self.unit}/s{eta}){post}", file=self.stream, flush=True)
        self._last = now

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and self.n > self._n0:
            self._line(final=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def track(items: Any, desc: str = "", unit: str = "it", enabled: bool = True, leave: bool = False, total: int | None = None) -> Any:
    """Iterate `items` with a Progress (a tqdm-like wrapper for loops)."""
    items = list(items) if total is None and not hasattr(items, "__len__") else items
    with Progress(total=total if total is not None else len(items), desc=desc, unit=unit, enabled=enabled, leave=leave) as bar:
        for item in items:
            yield item
            bar.update(1)
