"""Generator/discriminator zoo. Importing this package registers every model.

One file per family's networks; each registers builder functions with `register_model`.
"""
from __future__ import annotations

from gan_ssl.models import bigbigan, context_encoder, dcgan, pggan, sngan, srgan, stylegan
from gan_ssl.models.base import Discriminator, Generator
from gan_ssl.models.registry import MODELS, build, check_model_section, model_kwargs, model_section, register_model

__all__ = ["MODELS", "Discriminator", "Generator", "build", "check_model_section", "model_section", "register_model"]

