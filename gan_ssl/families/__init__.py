"""Training recipes ("families"): each declares its networks, optimizers, EMAs and phases for the one loop.

Importing this package registers every family (`FAMILIES`, filled by `register_family`).
"""
from gan_ssl.families.base import FAMILIES, Family, Phase, Representation, StepContext, register_family
from gan_ssl.families import gan  # noqa: F401  (registration side effect)
from gan_ssl.families import bigbigan  # noqa: F401,E402  (BigBiGAN, issue 12)

__all__ = ["FAMILIES", "Family", "Phase", "Representation", "StepContext", "register_family"]
