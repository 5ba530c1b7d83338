"""Typed experiment configs: dataclass defaults <- YAML preset <- dotted `--set` overrides.

Generic sections (`data`, `aux`, `train`, `eval`) are the dataclasses below. Two sections belong
to the chosen family and model and are typed by them:
    `model`: the model builder's keyword arguments (`gan_ssl.models`), so `model.self_modulation`
             exists for sngan and is an unknown key for dcgan;
    `loss`:  the family's loss dataclass (`gan_ssl.families`).
`family` defaults to the family the model is registered under; `gan_ssl.families.resolve` types those two
sections and validates the whole (this package knows no family). Every value is validated (type and
range) when a config is resolved, and an unknown key is an error that lists the keys that do exist,
so a typo never silently trains the wrong experiment.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gan_ssl.core.errors import ConfigError


@dataclass
class DataConfig:
    name: str = "fashion-mnist"  # fashion-mnist | mnist | cifar10 | folder:PATH
    root: str = ""  # extra directory searched first for the data files ("" = only the defaults)
    split: str = "train"  # the split the GAN trains on
    resolution: int = 32  # 28-px Fashion-MNIST is padded to 32 so the 32-px models apply unchanged
    channels: int = 1  # 1 = grayscale, 3 = RGB; images are converted to this
    limit: int = 0  # use only the first N images (0 = all); handy for smoke runs and tests
    subset: float = 0  # train on a seeded random subset: a count (>= 1) or a fraction (< 1) of the images, the same
    # number from each class where labels exist (low-data studies); 0 = all
    subset_seed: int = 0  # which subset: fixed apart from `seed`, so training seeds compare on the same images
    storage: str = "auto"  # memory | stream | auto (stream a folder whose images exceed max_memory_gb)
    max_memory_gb: float = 4.0  # auto: largest image set held in memory as uint8
    workers: int = 2  # DataLoader worker processes when streaming (2 = this CPU's core count)


@dataclass
class RotationConfig:
    d_weight: float = 0.0  # beta in SSGAN: 1.0 in Chen et al. 2019; 0 switches the task off
    g_weight: float = 0.0  # alpha in SSGAN: 0.2 in Chen et al. 2019
    protocol: str = "all"  # all: 4 rotations of every image | split: a quarter each (Mimicry) | one: one random k per image
    every: int = 1  # 1: in every D and G step (the paper) | k > 1: lazy, every k steps with the weights times k
    lazy: str = "phases"  # how a lazy task runs: phases (Daux/Gaux steps of their own) | fold (its rows join the D and G
    # passes of every k-th step: no extra G forward and no extra optimiser steps)


@dataclass
class LabelAugConfig:
    d_weight: float = 0.0  # SSGAN-LA (Hou et al. 2021): D's CE over 2K classes (real rotated by k: 2k, fake: 2k+1); 0 = off
    g_weight: float = 0.0  # G's CE(fake_k, 2k) - CE(fake_k, 2k+1); the paper uses 1.0 for both
    protocol: str = "all"  # all: 4 rotations of every image (the paper's) | one: one random k per image (about no-aux cost) | split


@dataclass
class ContrastiveConfig:
    d_weight: float = 0.0  # ContraD (Jeong & Shin 2021): NT-Xent on two SimCLR views of reals; > 0 moves the real/fake score
    # onto a small head over stop-gradient features, so D's trunk learns only from the contrastive terms
    fake_weight: float = 1.0  # lambda_con: the supervised-contrastive term on fakes (fakes one class, reals negatives)
    temperature: float = 0.1  # tau of both terms, the paper's
    proj_dim: int = 128  # projection-head output size (the official code's d_project)
    hidden: int = 128  # projection heads' hidden width (the official code's d_hidden)


@dataclass
class AugSelfConfig:
    d_weight: float = 0.0  # AugSelf-GAN (Hou et al. 2023): D regresses the DiffAugment parameters of real views and their
    # negation for fake views (MSE); needs train.diffaug; the paper and its code use 1.0 for both weights; 0 = off
    g_weight: float = 0.0  # G's MSE(pred, params) - MSE(pred, -params) on its augmented fakes
    fuse: str = "difference"  # difference: the head reads D(augmented) - D(original), the paper's (every original costs a
    # D row) | single: D(augmented) alone (the official code's `sin` option; no extra rows)
    rows: float = 1.0  # share of each batch (first rows) the task reads; with `difference` only their originals are extra
    # D rows: 0.25 costs a quarter of the paper's extra rows (a variant; 1.0 = the paper)


@dataclass
class AuxConfig:
    rotation: RotationConfig = field(default_factory=RotationConfig)
    label_aug: LabelAugConfig = field(default_factory=LabelAugConfig)
    contrastive: ContrastiveConfig = field(default_factory=ContrastiveConfig)
    augself: AugSelfConfig = field(default_factory=AugSelfConfig)


@dataclass
class TrainConfig:
    steps: int = 2000  # loop steps (one step runs every phase due: for a GAN, n_dis D steps and one G step)
    minutes: float = 0.0  # wall-clock budget: stop at steps or after this many minutes, whichever first (0 = no budget)
    batch_size: int = 64  # images per phase run
    n_dis: int = 1  # D steps per G step; 1 with Adam(0, 0.9) is cheap and stable at this size
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1_g: float = 0.0  # SN-GAN/SSGAN use beta1 = 0 with hinge loss
    beta2_g: float = 0.9
    beta1_d: float = 0.0
    beta2_d: float = 0.9
    lazy_correction: bool = True  # StyleGAN2-ADA: an optimizer that also steps in lazy phases (Dreg, Daux, Gaux every k)
    # takes lr x r and betas ** r, r = its steps per loop step without them / with them (k / (k + 1) for one such phase)
    lr_decay: str = "none"  # none | linear: every optimizer's lr falls linearly to 0 at the end of the run (Mimicry's and the
    # SN-GAN code), the end being train.steps or the minutes budget, whichever the run reaches first
    lr_decay_start: float = 0.0  # share of the run (0-1) trained at the full lr before the linear decay begins
    ema_beta: float = 0.999  # EMA of G weights, used for sampling (Yazici et al. 2019)
    ema_ramp: str = "step"  # step: beta_t = min(beta, (1+t)/(10+t)), so early EMAs track G | none: beta from step 0
    ema_start: int = 0  # step at which the EMA starts averaging (before: a plain copy)
    sample_every: int = 250  # steps between fixed-input sample grids
    ckpt_every: int = 500  # steps between checkpoints (the last step is always saved)
    keep_ckpts: int = 3  # numbered checkpoints kept besides latest.pt (0 = keep all)
    log_every: int = 25  # steps between metrics.jsonl lines
    sample_grid: int = 64  # images in each sample grid
    device: str = "cpu"  # cpu | cuda | cuda:N | mps
    channels_last: bool = True  # NHWC memory format (tools/bench_train.py measures it per config)
    diffaug: str = ""  # DiffAugment policy for D's inputs, real and fake, both phases: translation,cutout (+ color for RGB); "" = off
    precision: str = "auto"  # fp32 | bf16 (autocast) | fp16 (autocast + GradScaler) | auto: bf16 where the chip has native
    # bf16 math (CPU flags avx512_bf16/amx_bf16; CUDA with bf16), else fp32 (timings: docs/performance.md)
    threads: int = 0  # torch intra-op threads (0 = torch's default; per process under torchrun)
    sync_bn: bool = False  # under torchrun: BatchNorm statistics over the global batch (SyncBatchNorm; CUDA only)
    allow_world_change: bool = False  # resume a torchrun run with another number of processes (not an exact resume)
    ddp_check: bool = False  # under torchrun: at every checkpoint, check that every rank holds the same parameters and
    # buffers of every net and EMA (StyleGAN2-ADA's check_ddp_consistency); a mismatch stops the run
    tensorboard: bool = False  # also write metrics and sample grids to RUN_DIR/tensorboard (pip install tensorboard); off
    # by default: metrics.jsonl and `gan-ssl report` need no extra package


@dataclass
class EvalConfig:
    every: int = 0  # steps between in-training evaluations (0 = off)
    n: int = 2000  # EMA samples per in-training FID
    features: str = "fashion-mnist-cnn"  # feature extractor for FID (inception needs its weights)
    fid: bool = True  # compute FID at each evaluation
    probe: bool = True  # fast linear probe of the representation's features at each evaluation
    probe_n: int = 5000  # training images for the fast probe (test images: the same number)


@dataclass
class Config:
    seed: int = 0  # seeds every RNG: same seed on the same machine = same run
    family: str = "gan"  # the training recipe: networks, optimizers and phases (gan_ssl.families)
    data: DataConfig = field(default_factory=DataConfig)
    model: Any = None  # the model builder's arguments plus `name` (typed per model)
    loss: Any = None  # the family's loss settings (typed per family)
    aux: AuxConfig = field(default_factory=AuxConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Choices and ranges of the generic sections, checked on every resolve. Keys are dotted paths.
CHOICES: dict[str, tuple[str, ...]] = {
    "data.storage": ("auto", "memory", "stream"),
    "aux.rotation.protocol": ("all", "split", "one"),
    "aux.rotation.lazy": ("phases", "fold"),
    "aux.label_aug.protocol": ("all", "split", "one"),
    "aux.augself.fuse": ("difference", "single"),
    "train.ema_ramp": ("step", "none"),
    "train.lr_decay": ("none", "linear"),
    "train.precision": ("auto", "fp32", "bf16", "fp16"),
}
RANGES: dict[str, tuple[float, float]] = {
    "seed": (0, 2**63 - 1),
    "data.resolution": (8, 1024),
    "data.channels": (1, 3),
    "data.limit": (0, math.inf),
    "data.subset": (0, math.inf),
    "data.subset_seed": (0, 2**63 - 1),
    "data.max_memory_gb": (0, math.inf),
    "data.workers": (0, 64),
    "aux.rotation.d_weight": (0, math.inf),
    "aux.rotation.g_weight": (0, math.inf),
    "aux.rotation.every": (1, 10**6),
    "aux.label_aug.d_weight": (0, math.inf),
    "aux.label_aug.g_weight": (0, math.inf),
    "aux.contrastive.d_weight": (0, math.inf),
    "aux.contrastive.fake_weight": (0, math.inf),
    "aux.contrastive.temperature": (1e-4, 100),
    "aux.contrastive.proj_dim": (1, 65536),
    "aux.contrastive.hidden": (1, 65536),
    "aux.augself.d_weight": (0, math.inf),
    "aux.augself.g_weight": (0, math.inf),
    "aux.augself.rows": (0.01, 1.0),
    "train.steps": (1, 10**9),
    "train.minutes": (0, 10**7),
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
    "train.lr_decay_start": (0, 0.999),
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
    else:  # pragma: no cover - a section type the loader does not know
        raise TypeError(typ)
    name = getattr(typ, "__name__", str(typ))
    raise ConfigError(f"config key '{path}' must be {name}, got {value!r}")


def apply_updates(obj: Any, updates: Any, prefix: str = "") -> None:
    """Recursively apply a nested dict of updates to a dataclass instance, type-checked."""
    if not isinstance(updates, dict):
        raise ConfigError(f"config section '{prefix.rstrip('.') or '<root>'}' must be a mapping, got {updates!r}")
    types = _field_types(type(obj))
    for key, value in updates.items():
        path = f"{prefix}{key}"
        if not isinstance(key, str) or key not in types:
            what = f"model {getattr(obj, 'name', '')!r}" if prefix == "model." else "this section"
            known = ", ".join(f"{prefix}{k}" for k in types)
            raise ConfigError(f"unknown config key '{path}' for {what} (known: {known})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            apply_updates(current, value, prefix=f"{path}.")
        else:
            setattr(obj, key, _coerce(path, value, types[key]))


def _get(cfg: Any, path: str) -> Any:
    obj: Any = cfg
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def check_ranges(cfg: Any, ranges: dict[str, tuple[float, float]], choices: dict[str, tuple[str, ...]]) -> None:
    """Raise ConfigError for the first dotted path whose value is out of its range or choices."""
    for path, (lo, hi) in ranges.items():
        v = _get(cfg, path)
        if not (lo <= v <= hi) or (isinstance(v, float) and math.isnan(v)):
            hi_s = "inf" if hi == math.inf else f"{hi:g}"
            raise ConfigError(f"config key '{path}' = {v!r} is out of range [{lo:g}, {hi_s}]")
    for path, options in choices.items():
        v = _get(cfg, path)
        if v not in options:
            raise ConfigError(f"config key '{path}' = {v!r} must be one of {', '.join(options)}")


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


def nest(key: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cur = out
    parts = key.split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
    return out


def merge(into: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `new` into `into` (in place): mappings merge, anything else replaces."""
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            merge(into[k], v)
        else:
            into[k] = v
    return into


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a dict; a missing, non-UTF-8 or malformed file is a ConfigError."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {p} is not UTF-8 text (byte {e.start}: {e.reason}); save it as UTF-8 YAML") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {p} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping at the top level")
    return data


def deep_copy(d: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of `d` (so merging never edits the caller's dict)."""
    return {k: deep_copy(v) if isinstance(v, dict) else v for k, v in d.items()}


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def save_yaml(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def check_sections(cfg: Config) -> None:
    """Ranges, choices and cross-key rules of the generic sections (the family checks its own afterwards)."""
    check_ranges(cfg, RANGES, CHOICES)
    if cfg.train.device not in ("cpu", "mps") and not cfg.train.device.startswith("cuda"):
        raise ConfigError(f"config key 'train.device' = {cfg.train.device!r} must be cpu, cuda, cuda:N or mps")
    if not math.isfinite(cfg.data.subset):
        raise ConfigError(f"config key 'data.subset' = {cfg.data.subset!r} must be a finite count or fraction")
    if cfg.data.channels not in (1, 3):
        raise ConfigError(f"config key 'data.channels' = {cfg.data.channels} must be 1 (greyscale) or 3 (RGB)")
    if cfg.data.subset >= 1 and cfg.data.subset != int(cfg.data.subset):
        raise ConfigError(f"config key 'data.subset' = {cfg.data.subset:g} must be a whole count of images (>= 1) or a fraction (< 1)")
