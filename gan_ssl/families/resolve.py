"""Config resolution: the one place where the schema (gan_ssl.config) meets the family and model registries.

    resolve(preset, overrides) -> Config: defaults <- preset (dict or YAML path) <- `key=value` overrides, with
    the `model` and `loss` sections typed by the chosen model and family, then every value validated.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from gan_ssl.config import (
    Config,
    apply_updates,
    check_ranges,
    check_sections,
    deep_copy,
    load_yaml,
    merge,
    nest,
    parse_override,
)
from gan_ssl.core.errors import ConfigError
from gan_ssl.families import FAMILIES
from gan_ssl.models import MODELS, check_model_section, model_section


def validate(cfg: Config) -> Config:
    """Check value ranges and choices that types alone cannot express, then the family's own rules."""
    check_sections(cfg)
    check_model_section(cfg.model)
    fam = FAMILIES[cfg.family]
    check_ranges(cfg, {f"loss.{k}": v for k, v in getattr(fam.loss_config, "RANGES", {}).items()},
                 {f"loss.{k}": v for k, v in getattr(fam.loss_config, "CHOICES", {}).items()})
    fam.check_common(cfg)
    fam.validate(cfg)
    return cfg


def skeleton(raw: dict[str, Any]) -> Config:
    """An all-defaults Config whose `model` and `loss` sections have the types the raw dict asks for."""
    fam_name = raw.get("family")
    model_raw = raw.get("model") if isinstance(raw.get("model"), dict) else {}
    model_name = model_raw.get("name")
    if fam_name is not None and (not isinstance(fam_name, str) or fam_name not in FAMILIES):
        raise ConfigError(f"config key 'family' = {fam_name!r} is not a family; known: {', '.join(sorted(FAMILIES))}")
    if model_name is not None and (not isinstance(model_name, str) or model_name not in MODELS):
        raise ConfigError(f"config key 'model.name' = {model_name!r} is not a model; known: {', '.join(sorted(MODELS))}")
    if fam_name is None:
        fam_name = MODELS[model_name].family if model_name else "gan"
    fam = FAMILIES[fam_name]
    if model_name is None:
        model_name = fam.default_model
    if MODELS[model_name].family != fam_name:
        ours = sorted(n for n, m in MODELS.items() if m.family == fam_name)
        raise ConfigError(f"model {model_name!r} belongs to family {MODELS[model_name].family!r}, not {fam_name!r}; "
                          f"models of {fam_name}: {', '.join(ours)}")
    return Config(family=fam_name, model=model_section(model_name)(), loss=fam.loss_config())


def resolve(preset: dict[str, Any] | str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Merge defaults <- preset (dict or YAML path) <- `key=value` overrides, then validate."""
    raw: dict[str, Any] = {}
    if preset is not None:
        base = preset if isinstance(preset, dict) else load_yaml(preset)
        merge(raw, deep_copy(base))
    for text in overrides:
        merge(raw, nest(*parse_override(text)))
    cfg = skeleton(raw)
    apply_updates(cfg, raw)
    return validate(cfg)


def from_dict(d: dict[str, Any]) -> Config:
    """Rebuild a Config from `Config.to_dict()` output (e.g. one embedded in a checkpoint)."""
    return resolve(d)

