"""Typed experiment configs: dataclass defaults <- YAML preset <- dotted `--set` overrides.

The dataclasses below are the one table of defaults shared by the CLI and the Python API.
Every value is validated (type and range) when a config is resolved, and an unknown key is an
error that lists the keys that do exist, so a typo never silently trains the wrong experiment.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from gan_ssl.errors import ConfigError


@dataclass
class DataConfig:
    name: str = "fashion-mnist"  # fashion-mnist | mnist | cifar10 | folder:PATH
    root: str = ""  # extra directory searched first for the data files ("" = only the defaults)
    split: str = "train"  # the split the GAN trains on
    resolution: int = 32  # 28-px Fashion-MNIST is padded to 32 so the 32-px models apply unchanged
    channels: int = 1  # 1 = grayscale, 3 = RGB; images are converted to this
    limit: int = 0  # use only the first N images (0 = all); handy for smoke runs and tests


@dataclass
class ModelConfig:
    name: str = "sngan"  # a registered family: see `gan_ssl.models.MODELS`
    z_dim: int = 128  # latent size used by SN-GAN and SSGAN papers
    g_width: int = 64  # base channel width of G; 256 in the paper, 64 trains on a CPU in minutes
    d_width: int = 64  # base channel width of D; 128 in the paper
    self_modulation: bool = True  # SN-GAN G: BN scale/shift from an MLP of z (Chen et al. 2019)
    spectral_norm: bool = False  # DCGAN D: spectral norm instead of BN (SN-GAN's D always has SN)


@dataclass
class LossConfig:
    adversarial: str = "hinge"  # hinge | ns (non-saturating); hinge is SN-GAN's and SSGAN's choice
    d_adv_weight: float = 1.0  # 0 trains D on its auxiliary tasks alone (rotation-only ablation)
    r1_gamma: float = 0.0  # R1 penalty on real images (Mescheder et al. 2018); 0 = off
    r1_every: int = 16  # lazy R1: apply every N D steps, scaled by N (StyleGAN2)


@dataclass
class RotationConfig:
    d_weight: float = 0.0  # beta in SSGAN: 1.0 in Chen et al. 2019; 0 switches the task off
    g_weight: float = 0.0  # alpha in SSGAN: 0.2 in Chen et al. 2019


@dataclass
class AuxConfig:
    rotation: RotationConfig = field(default_factory=RotationConfig)


@dataclass
class TrainConfig:
    steps: int = 2000  # generator steps
    batch_size: int = 64  # per D and G step
    n_dis: int = 1  # D steps per G step; 1 with Adam(0, 0.9) is cheap and stable at this size
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1_g: float = 0.0  # SN-GAN/SSGAN use beta1 = 0 with hinge loss
    beta2_g: float = 0.9
    beta1_d: float = 0.0
    beta2_d: float = 0.9
    ema_beta: float = 0.999  # EMA of G weights, used for sampling (Yazici et al. 2019)
    ema_start: int = 0  # G step at which the EMA starts averaging (before: a plain copy)
    sample_every: int = 250  # G steps between fixed-z sample grids
    ckpt_every: int = 500  # G steps between checkpoints (the last step is always saved)
    keep_ckpts: int = 3  # numbered checkpoints kept besides latest.pt (0 = keep all)
    log_every: int = 25  # G steps between metrics.jsonl lines
    sample_grid: int = 64  # images in each sample grid
    device: str = "cpu"  # cpu | cuda | cuda:N | mps
    channels_last: bool = True  # NHWC memory format: 1.6-1.8x faster convs on CPU (tools/bench_train.py)
    amp: bool = False  # autocast (bf16 on CPU, fp16 + grad scaling on CUDA); a GPU choice
    threads: int = 0  # torch intra-op threads (0 = torch's default)


@dataclass
class EvalConfig:
    every: int = 0  # G steps between in-training evaluations (0 = off)
    n: int = 2000  # EMA samples per in-training FID
    features: str = "fashion-mnist-cnn"  # feature extractor for FID (inception needs its weights)
    fid: bool = True  # compute FID at each evaluation
    probe: bool = True  # fast linear probe of D's features at each evaluation
    probe_n: int = 5000  # training images for the fast probe (test images: the same number)


@dataclass
class Config:
    seed: int = 0  # seeds every RNG: same seed on the same machine = same run
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    aux: AuxConfig = field(default_factory=AuxConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Choices and ranges checked on every resolve. Keys are dotted paths.
_CHOICES: dict[str, tuple[str, ...]] = {
    "loss.adversarial": ("hinge", "ns"),
}
_RANGES: dict[str, tuple[float, float]] = {
    "seed": (0, 2**63 - 1),
    "data.resolution": (8, 1024),
    "data.channels": (1, 3),
    "data.limit": (0, math.inf),
    "model.z_dim": (1, 4096),
    "model.g_width": (1, 4096),
    "model.d_width": (1, 4096),
    "loss.d_adv_weight": (0, math.inf),
    "loss.r1_gamma": (0, math.inf),
    "loss.r1_every": (1, 10**6),
    "aux.rotation.d_weight": (0, math.inf),
    "aux.rotation.g_weight": (0, math.inf),
    "train.steps": (1, 10**9),
    "train.batch_size": (2, 10**6),
    "train.n_dis": (1, 100),
    "train.lr_g": (1e-12, 1.0),
    "train.lr_d": (1e-12, 1.0),
    "train.beta1_g": (0, 0.9999),
    "train.beta2_g": (0, 0.99999),
    "train.beta1_d": (0, 0.9999),
    "train.beta2_d": (0, 0.99999),
    "train.ema_beta": (0, 1.0),
    "train.ema_start": (0, 10**9),
    "train.sample_every": (0, 10**9),
    "train.ckpt_every": (0, 10**9),
    "train.keep_ckpts": (0, 10**6),
    "train.log_every": (1, 10**9),
    "train.sample_grid": (1, 1024),
    "train.threads": (0, 1024),
    "eval.every": (0, 10**9),
    "eval.n": (2, 10**7),
    "eval.probe_n": (10, 10**7),
}


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(path: str, value: Any, typ: Any) -> Any:
    """Check `value` against the annotated type; ints are accepted for floats, and numeric strings
    for numbers (YAML 1.1 reads `1e-4` without a dot as a string)."""
    if typ in (int, float) and isinstance(value, str):
        try:
            value = float(value) if typ is float else int(value)
        except ValueError:
            pass
    if typ is bool:
        if isinstance(value, bool):
            return value
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif typ is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    else:  # pragma: no cover - nested dataclasses are handled by the caller
        raise TypeError(typ)
    name = getattr(typ, "__name__", str(typ))
    raise ConfigError(f"config key '{path}' must be {name}, got {value!r}")


def _apply(obj: Any, updates: dict[str, Any], prefix: str = "") -> None:
    """Recursively apply a nested dict of updates to a dataclass instance, type-checked."""
    if not isinstance(updates, dict):
        raise ConfigError(f"config section '{prefix.rstrip('.') or '<root>'}' must be a mapping, got {updates!r}")
    types = _field_types(type(obj))
    for key, value in updates.items():
        path = f"{prefix}{key}"
        if key not in types:
            known = ", ".join(f"{prefix}{k}" for k in types)
            raise ConfigError(f"unknown config key '{path}' (known: {known})")
        typ = types[key]
        if dataclasses.is_dataclass(typ):
            _apply(getattr(obj, key), value, prefix=f"{path}.")
        else:
            setattr(obj, key, _coerce(path, value, typ))


def _get(cfg: Config, path: str) -> Any:
    obj: Any = cfg
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def validate(cfg: Config) -> Config:
    """Check value ranges and choices that types alone cannot express."""
    for path, (lo, hi) in _RANGES.items():
        v = _get(cfg, path)
        if not (lo <= v <= hi) or (isinstance(v, float) and math.isnan(v)):
            hi_s = "inf" if hi == math.inf else f"{hi:g}"
            raise ConfigError(f"config key '{path}' = {v!r} is out of range [{lo:g}, {hi_s}]")
    for path, choices in _CHOICES.items():
        v = _get(cfg, path)
        if v not in choices:
            raise ConfigError(f"config key '{path}' = {v!r} must be one of {', '.join(choices)}")
    if cfg.train.device not in ("cpu", "mps") and not cfg.train.device.startswith("cuda"):
        raise ConfigError(f"config key 'train.device' = {cfg.train.device!r} must be cpu, cuda, cuda:N or mps")
    if cfg.loss.d_adv_weight == 0 and cfg.aux.rotation.d_weight == 0:
        raise ConfigError("D has nothing to learn: loss.d_adv_weight and aux.rotation.d_weight are both 0")
    from gan_ssl.models import MODELS  # local import: models import config types

    if cfg.model.name not in MODELS:
        raise ConfigError(f"config key 'model.name' = {cfg.model.name!r} is not a model; known: {', '.join(sorted(MODELS))}")
    return cfg


def parse_override(text: str) -> tuple[str, Any]:
    """Parse one `key=value` override; the value is read as YAML (so 1e-4, true, [1, 2] work)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value, e.g. train.steps=100")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def _nest(key: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cur = out
    parts = key.split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a dict; a missing or malformed file is a ConfigError."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {p} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping at the top level")
    return data


def resolve(preset: dict[str, Any] | str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Merge defaults <- preset (dict or YAML path) <- `key=value` overrides, then validate."""
    cfg = Config()
    if preset is not None:
        _apply(cfg, preset if isinstance(preset, dict) else load_yaml(preset))
    for text in overrides:
        key, value = parse_override(text)
        _apply(cfg, _nest(key, value))
    return validate(cfg)


def from_dict(d: dict[str, Any]) -> Config:
    """Rebuild a Config from `Config.to_dict()` output (e.g. one embedded in a checkpoint)."""
    return resolve(d)


def save_yaml(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
