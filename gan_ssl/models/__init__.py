"""Generator/discriminator zoo. Importing this package registers every model.

One file per family's networks; each registers builder functions with `register_model`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gan_ssl.models.base import Discriminator, Generator
from gan_ssl.models.registry import MODELS, build, check_model_section, model_kwargs, model_section, register_model
from gan_ssl.models import bigbigan, context_encoder, dcgan, pggan, sngan, srgan, stylegan  # noqa: F401  (registration side effect)

if TYPE_CHECKING:
    from gan_ssl.config import Config

__all__ = ["MODELS", "Discriminator", "Generator", "build", "build_model", "check_model_section", "model_section", "register_model"]


def build_model(cfg: "Config") -> Any:
    """The networks of a resolved config's model (for the gan family: a (Generator, Discriminator) pair)."""
    return build(cfg.model.name, **model_kwargs(cfg))
