"""Generator/discriminator zoo. Importing this package registers every family."""
from __future__ import annotations

from typing import TYPE_CHECKING

from gan_ssl.models.base import Discriminator, Generator
from gan_ssl.models.registry import MODELS, build, register_model
from gan_ssl.models import dcgan, sngan  # noqa: F401  (registration side effect)

if TYPE_CHECKING:
    from gan_ssl.config import Config

__all__ = ["MODELS", "Discriminator", "Generator", "build", "build_models", "register_model"]


def build_models(cfg: "Config") -> tuple[Generator, Discriminator]:
    """Build (G, D) for a resolved config: model fields plus the data's resolution and channels."""
    m = cfg.model
    return build(
        m.name,
        resolution=cfg.data.resolution,
        channels=cfg.data.channels,
        z_dim=m.z_dim,
        g_width=m.g_width,
        d_width=m.d_width,
        self_modulation=m.self_modulation,
        spectral_norm=m.spectral_norm,
    )
