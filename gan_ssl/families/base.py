"""The family protocol: what a training recipe declares so that the one loop (`gan_ssl.engine.loop`) can run it.

A family owns
    nets        named trainable networks            {"G": ..., "D": ..., "aux": ...}
    optimizers  one per trainable group             {"G": Adam(G), "D": Adam(D + aux)}
    emas        named averaged copies of a net      {"G_ema": EMA(G)}
    buffers     fixed tensors saved with the run    {"fixed_z": [64, z_dim]}
    phases      what one loop step runs, in order   [Phase("D", ...), Phase("Dreg", ...), Phase("G", ...)]
and answers `schedule(state)` (per-step values such as a level of detail or a learning rate),
`make_inputs(batch, generator)` (seeded per-batch inputs: masks, low-resolution copies), `grid()`
(the sample grid), `sample(...)` and `representation(name)` (what evaluators read). The loop knows
none of the names: it reads them from these declarations.
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import torch
from torch import nn

from gan_ssl.core.errors import ConfigError
from gan_ssl.core.seeds import derive_seed
from gan_ssl.data.stream import Batch
from gan_ssl.models import build, model_kwargs
from gan_ssl.nn.augment import diff_augment, parse_policy
from gan_ssl.nn.ema import EMA

if TYPE_CHECKING:
    from gan_ssl.config import Config
    from gan_ssl.data import FolderSource, ImageData

Logs = dict[str, torch.Tensor]


class StepContext:
    """What a phase function may read of the loop: the step, per-step schedule values, AMP and backward.

    `backward(loss)` goes through the loop's gradient scaler; `autocast()` is AMP or a no-op.
    """

    def __init__(self, device: torch.device, autocast: Callable[[], contextlib.AbstractContextManager],
                 backward: Callable[[torch.Tensor], None]) -> None:
        self.device, self.autocast, self.backward = device, autocast, backward
        self.step = 0  # loop steps done before this one
        self.images = 0  # real images drawn so far
        self.sched: dict[str, float] = {}
        self.counters: dict[str, int] = {}


PhaseFn = Callable[[Batch | None, StepContext], Logs]


@dataclass(frozen=True)
class Phase:
    """One kind of optimizer step.

    name:   also the prefix of its logged loss (`d_loss` for "D").
    nets:   networks it trains (requires_grad on; every other net is frozen while it runs).
    opt:    the optimizer it steps.
    fn:     (batch or None, context) -> {"loss": ..., terms to log}; does its own forward and backward.
    every:  runs at loop steps where step % every == 0.
    repeat: runs per due step (n_dis for a discriminator), each with a fresh batch.
    batch:  draws a real batch (False: fn gets None, e.g. a G phase that only samples z).
    when:   runs only while when(sched) is true, given the step's schedule values (e.g. a pre-training
            stage: `lambda s: s["stage"] == 0`); None = whenever `every` says.
    """

    name: str
    nets: tuple[str, ...]
    opt: str
    fn: PhaseFn
    every: int = 1
    repeat: int = 1
    batch: bool = True
    when: Callable[[dict[str, float]], bool] | None = None

    def due(self, step: int, sched: dict[str, float]) -> bool:
        """Whether this phase runs at loop step `step` with the step's schedule values."""
        return step % self.every == 0 and (self.when is None or bool(self.when(sched)))


@dataclass
class Representation:
    """A frozen feature extractor: images [B, C, H, W] in [-1, 1] -> named maps [B, C', H', W'] or [B, F].

    `layers` is what "all" means; `known` lists every name `features` can return.
    """

    name: str
    module: nn.Module
    features: Callable[[torch.Tensor], dict[str, torch.Tensor]]
    layers: list[str]
    known: list[str] = field(default_factory=list)


class Family:
    """Base class of a training recipe (see the module docstring). Subclasses set the class attributes
    and fill nets, optimizers, emas, buffers and phases in __init__; `training=False` builds networks only."""

    name: ClassVar[str] = "family"
    loss_config: ClassVar[type]
    default_model: ClassVar[str]
    representations: ClassVar[tuple[str, ...]] = ()  # names `representation` takes; the first is the default
    supported_aux: ClassVar[tuple[str, ...]] = ()  # aux tasks (config sections of `aux`) this family's phases apply
    samples_from_noise: ClassVar[bool] = True  # whether `sample(n, seed)` draws images from noise (FID can score them)
    lazy_aux: ClassVar[bool] = False  # whether it schedules aux.rotation.every > 1 (lazy self-supervision phases)
    sample_options: ClassVar[tuple[str, ...]] = ()  # keyword options `sample` takes (truncation, ...)
    generator: ClassVar[str] = "G_ema"  # the net or EMA that `sample` and `grid` read (`gan-ssl export` labels it the generator)

    def __init__(self, cfg: "Config", device: torch.device | str = "cpu", training: bool = True) -> None:
        self.cfg, self.device, self.training = cfg, torch.device(device), training
        self.nets: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.emas: dict[str, tuple[str, EMA]] = {}  # ema name -> (source net name, EMA)
        self.buffers: dict[str, torch.Tensor] = {}
        self.phases: list[Phase] = []
        self.diffaug = parse_policy(cfg.train.diffaug, cfg.data.channels)  # DiffAugment ops for D's inputs (Zhao et al. 2020)

    # --- configuration -------------------------------------------------------------------------
    @classmethod
    def validate(cls, cfg: "Config") -> None:
        """Cross-key rules of this family's config; raise ConfigError with what to change."""

    @classmethod
    def check_common(cls, cfg: "Config") -> None:
        """Rules every family shares: only the aux tasks its phases apply may have a weight, and the DiffAugment
        policy must parse (no rotation, colour only for colour data)."""
        for name in (f.name for f in dataclasses.fields(cfg.aux)):
            sub = getattr(cfg.aux, name)
            if (sub.d_weight > 0 or getattr(sub, "g_weight", 0.0) > 0) and name not in cls.supported_aux:
                takes = ", ".join(f"aux.{n}" for n in cls.supported_aux) or "no auxiliary task"
                raise ConfigError(f"family {cls.name} does not apply aux.{name} (it takes {takes}); set its weights to 0")
        if cfg.aux.rotation.every > 1 and not cls.lazy_aux:
            raise ConfigError(f"family {cls.name} applies the rotation task at every step; set aux.rotation.every=1")
        parse_policy(cfg.train.diffaug, cfg.data.channels)
        if cfg.eval.every > 0 and cfg.eval.fid and not cls.samples_from_noise:
            raise ConfigError(f"family {cls.name} draws no unconditional samples, so eval.fid has nothing to score; set "
                              "eval.fid=false (the in-training probe still runs) or eval.every=0; score it after training with "
                              "`gan-ssl eval-inpaint` or `gan-ssl eval-sr`")
        if cfg.eval.every > 0 and cfg.eval.probe and not cls.representations:
            raise ConfigError(f"family {cls.name} exports no features for eval.probe; set eval.probe=false or eval.every=0")

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """DiffAugment of a batch D is about to see (the same policy for reals and fakes, in every phase); identity when off."""
        return diff_augment(x, self.diffaug) if self.diffaug else x

    def place(self, net: nn.Module) -> nn.Module:
        """`net` on the family's device, in the configured memory format (NHWC when train.channels_last)."""
        fmt = torch.channels_last if self.cfg.train.channels_last else torch.contiguous_format
        return net.to(self.device, memory_format=fmt)

    def track_generator(self, G: nn.Module) -> None:
        """An EMA of the net named G as `G_ema` (what sampling reads) and the fixed latents of the sample grid."""
        t = self.cfg.train
        self.emas["G_ema"] = ("G", EMA(G, t.ema_beta, t.ema_ramp, t.ema_start))
        self.buffers["fixed_z"] = G.sample_z(t.sample_grid, torch.Generator().manual_seed(derive_seed(self.cfg.seed, "fixed_z")), self.device)

    # --- the loop's hooks ----------------------------------------------------------------------
    def schedule(self, ctx: StepContext) -> dict[str, float]:
        """Per-step values (level of detail, alpha, lr, batch_size, ...), logged and read by phases."""
        return {}

    def fit_data(self, data: "ImageData | FolderSource") -> None:
        """Set state derived from the training data before a fresh run's first step, in `buffers` so that the
        checkpoint keeps it (the context encoder's mean-pixel fill); nothing by default."""

    def make_inputs(self, batch: Batch, generator: torch.Generator) -> Batch:
        """Add the family's inputs to a batch (mask, low_res) from a per-batch seeded generator."""
        return batch

    def ema_module(self, name: str) -> nn.Module:
        return self.emas[name][1].module

    def update_emas(self, step: int) -> None:
        for src, ema in self.emas.values():
            ema.update(self.nets[src], step)

    def prepare_eval(self) -> None:
        """Bring averaged networks up to date for sampling (e.g. BatchNorm standing statistics)."""

    def grid(self) -> torch.Tensor:
        """The fixed-input sample grid [N, C, H, W] in [-1, 1]."""
        raise NotImplementedError

    def state_extra(self) -> dict[str, Any]:
        """Family state beyond nets, EMAs, optimizers and buffers (tensors, numbers, strings only)."""
        return {}

    def load_state_extra(self, state: dict[str, Any]) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        """Facts for `gan-ssl info` (resolution, level of detail, ...)."""
        return {}

    # --- what evaluators read ------------------------------------------------------------------
    def sample(self, n: int, seed: int = 0, batch_size: int = 256, **options: Any) -> torch.Tensor:
        """n images as uint8 [n, C, H, W]; the same seed gives the same latents (and images, up to a grey level of
        kernel rounding) at any batch size."""
        raise NotImplementedError

    def representation(self, name: str | None = None) -> Representation:
        raise NotImplementedError

    def check_sample_options(self, options: dict[str, Any]) -> None:
        bad = [k for k in options if k not in self.sample_options]
        if bad:
            takes = ", ".join(self.sample_options) or "none"
            raise ConfigError(f"{self.name} sampling takes no option {bad[0]!r} (options: {takes})")

    def check_representation(self, name: str | None) -> str:
        if not self.representations:
            raise ConfigError(f"family {self.name} exports no features")
        name = name or self.representations[0]
        if name not in self.representations:
            raise ConfigError(f"family {self.name} has no network {name!r} to export features from; "
                              f"it has: {', '.join(self.representations)}")
        return name


FAMILIES: dict[str, type[Family]] = {}


def register_family(name: str) -> Callable[[type[Family]], type[Family]]:
    """Decorator: register a Family subclass under `name`; duplicates and non-families fail loudly."""

    def deco(cls: type[Family]) -> type[Family]:
        if name in FAMILIES:
            raise ValueError(f"family {name!r} is already registered")
        if not (isinstance(cls, type) and issubclass(cls, Family)):
            raise TypeError(f"family {name!r} must subclass Family")
        FAMILIES[name] = cls
        cls.name = name
        return cls

    return deco


def build_model(cfg: "Config") -> Any:
    """The networks of a resolved config's model (for the gan family: a (Generator, Discriminator) pair)."""
    return build(cfg.model.name, **model_kwargs(cfg))
