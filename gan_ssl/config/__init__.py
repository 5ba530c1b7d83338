"""The config schema: typed dataclass sections, coercion, ranges, YAML and dotted overrides (gan_ssl.config.schema).

This package knows no family or model; `gan_ssl.resolve` (gan_ssl.families.resolve) joins the schema with the
registries. `gan_ssl.config.resolve` and `gan_ssl.config.from_dict` still work: aliases kept for code written
against the flat layout.
"""
from typing import Any

from gan_ssl.config.schema import (
    CHOICES,
    RANGES,
    AuxConfig,
    Config,
    ContrastiveConfig,
    DataConfig,
    EvalConfig,
    LabelAugConfig,
    RotationConfig,
    TrainConfig,
    apply_updates,
    check_ranges,
    check_sections,
    deep_copy,
    flatten,
    load_yaml,
    merge,
    nest,
    parse_override,
    save_yaml,
)

_ALIASES = ("resolve", "from_dict", "validate")


def __getattr__(name: str) -> Any:
    """The back-compatible aliases `gan_ssl.config.resolve` / `from_dict` / `validate` (defined one layer up)."""
    if name in _ALIASES:
        from gan_ssl.families import resolve as resolution  # alias only: nothing in the package imports it this way

        return getattr(resolution, name)
    raise AttributeError(f"module 'gan_ssl.config' has no attribute {name!r}")
