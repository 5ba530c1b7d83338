"""The model registry: a model name -> its builder function and the family that trains it.

A builder states the arguments it understands in its signature, with type hints and defaults; that
signature *is* the model's config section (`model.<arg>`), so a key the chosen model does not take is
an error, never silently dropped. `resolution` and `channels` come from the data section.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import typing
from dataclasses import dataclass
from typing import Any, Callable

from gan_ssl.core.errors import ConfigError

DATA_ARGS = ("resolution", "channels")  # filled from cfg.data, not part of the model section


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., Any]
    family: str


MODELS: dict[str, ModelEntry] = {}


def register_model(name: str, family: str = "gan") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register a builder under `name` for `family`; a duplicate name fails loudly."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in MODELS:
            raise ValueError(f"model {name!r} is already registered (by {MODELS[name].builder.__module__})")
        if not callable(fn):
            raise TypeError(f"model builder for {name!r} must be callable")
        for p in inspect.signature(fn).parameters.values():
            if p.name not in DATA_ARGS and p.default is inspect.Parameter.empty:
                raise TypeError(f"model builder {name!r}: argument {p.name!r} needs a default (it becomes config key model.{p.name})")
        MODELS[name] = ModelEntry(name, fn, family)
        return fn

    return deco


@functools.lru_cache(maxsize=None)
def model_section(name: str) -> type:
    """The dataclass of `model.*` keys for model `name`: `name` plus every builder argument but the data's."""
    fn = MODELS[name].builder
    hints = typing.get_type_hints(fn)
    fields: list[Any] = [("name", str, dataclasses.field(default=name))]
    for p in inspect.signature(fn).parameters.values():
        if p.name in DATA_ARGS:
            continue
        fields.append((p.name, hints.get(p.name, type(p.default)), dataclasses.field(default=p.default)))
    return dataclasses.make_dataclass(f"{name.replace('-', '_')}_model", fields)


def check_model_section(section: Any) -> None:
    """Model arguments are sizes, counts and rates: ints must be >= 1 and floats finite and >= 0."""
    for f in dataclasses.fields(section):
        v = getattr(section, f.name)
        if isinstance(v, bool) or isinstance(v, str):
            continue
        if isinstance(v, int) and not 1 <= v <= 1 << 20:
            raise ConfigError(f"config key 'model.{f.name}' = {v!r} is out of range [1, {1 << 20}]")
        if isinstance(v, float) and not (math.isfinite(v) and v >= 0):
            raise ConfigError(f"config key 'model.{f.name}' = {v!r} must be a finite number >= 0")


def model_kwargs(cfg: Any) -> dict[str, Any]:
    """Builder keyword arguments of a resolved config: its model section plus the data's resolution and channels."""
    kw = {f.name: getattr(cfg.model, f.name) for f in dataclasses.fields(cfg.model) if f.name != "name"}
    return {**kw, "resolution": cfg.data.resolution, "channels": cfg.data.channels}


def build(name: str, **kwargs: Any) -> Any:
    """Call the builder `name`; an argument it does not take is an error that lists the ones it does."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    fn = MODELS[name].builder
    params = inspect.signature(fn).parameters
    bad = [k for k in kwargs if k not in params]
    if bad:
        raise ValueError(f"model {name!r} takes no argument {bad[0]!r} (it takes: {', '.join(params)})")
    try:
        return fn(**kwargs)
    except ValueError as e:
        raise ConfigError(f"model {name!r}: {e}") from None
