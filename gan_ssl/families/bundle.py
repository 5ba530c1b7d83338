"""The model bundle: what every evaluator reads from a trained (or training) family, whatever the family.

    >>> b = gan_ssl.load("runs/ssgan")           # a Bundle
    >>> b.sample(16, seed=0)                     # uint8 [16, C, H, W] from the EMA generator
    >>> rep = b.representation()                 # D's (or an encoder's) frozen feature extractor
    >>> rep.features(x)["block2"]                # [B, C, H, W]
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from gan_ssl.families.base import Family, Representation

if TYPE_CHECKING:
    from gan_ssl.config import Config


class Bundle:
    """A family's networks for inference: `sample(n, seed, **options)` and `representation(name)`."""

    def __init__(self, family: Family, step: int = 0, path: Path | None = None, raw: dict[str, Any] | None = None) -> None:
        self.family, self.step, self.path, self.raw = family, step, path, raw or {}

    @property
    def cfg(self) -> "Config":
        return self.family.cfg

    @property
    def device(self) -> torch.device:
        return self.family.device

    @property
    def representations(self) -> tuple[str, ...]:
        return self.family.representations

    def sample(self, n: int, seed: int = 0, batch_size: int = 256, **options: Any) -> torch.Tensor:
        """n images, uint8 [n, C, H, W]; options (truncation, ...) pass through to the family."""
        return self.family.sample(n, seed, batch_size, **options)

    def representation(self, name: str | None = None) -> Representation:
        """A named network as a feature extractor (default: the family's first, e.g. D)."""
        return self.family.representation(name)
