"""The model registry: a family name -> builder function returning (Generator, Discriminator)."""
from __future__ import annotations

import inspect
from typing import Callable

from gan_ssl.models.base import Discriminator, Generator

Builder = Callable[..., tuple[Generator, Discriminator]]
MODELS: dict[str, Builder] = {}


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator: register a builder under `name`; a duplicate name fails loudly."""

    def deco(fn: Builder) -> Builder:
        if name in MODELS:
            raise ValueError(f"model {name!r} is already registered (by {MODELS[name].__module__})")
        if not callable(fn):
            raise TypeError(f"model builder for {name!r} must be callable")
        MODELS[name] = fn
        return fn

    return deco


def build(name: str, **kwargs: object) -> tuple[Generator, Discriminator]:
    """Call the builder `name` with the keyword arguments it accepts (others are ignored).

    A builder states the arguments it understands in its signature, so one flat model config
    serves every family without each family parsing it.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    fn = MODELS[name]
    params = inspect.signature(fn).parameters
    G, D = fn(**{k: v for k, v in kwargs.items() if k in params})
    if not isinstance(G, Generator) or not isinstance(D, Discriminator):
        raise TypeError(f"model {name!r} must build (Generator, Discriminator), got ({type(G).__name__}, {type(D).__name__})")
    return G, D
