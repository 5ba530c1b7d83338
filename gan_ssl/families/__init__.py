"""Training recipes ("families"): each declares its networks, optimizers, EMAs and phases for the one loop.

Importing this package registers every family (`FAMILIES`, filled by `register_family`).
"""
from gan_ssl.families import bigbigan, context_encoder, gan, pggan, srgan, stylegan
from gan_ssl.families.base import FAMILIES, Family, Phase, Representation, StepContext, register_family

__all__ = ["FAMILIES", "Family", "Phase", "Representation", "StepContext", "register_family"]
