"""The training state and its checkpoint: a family with its optimizers, the data order, counters, RNG and
gradient-scaler state; what a checkpoint holds (format version 2, everything keyed by name) and how a run
resumes from one bit-exactly."""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

import torch

from gan_ssl.config import Config, TrainConfig, flatten
from gan_ssl.core.device import autocast_factory, resolve_device, resolve_precision
from gan_ssl.core.errors import CheckpointError, ConfigError
from gan_ssl.core.seeds import derive_seed
from gan_ssl.data import BatchStream, FolderSource, ImageData
from gan_ssl.engine.distributed import DataParallelPhases, Dist, rank_seed
from gan_ssl.families import FAMILIES, Family, Phase, StepContext
from gan_ssl.families.resolve import from_dict

log = logging.getLogger(__name__)


# Config keys that may change when a run is resumed; anything else must match the checkpoint.
RESUMABLE_CHANGES = ("train.steps", "train.minutes", "train.sample_every", "train.ckpt_every", "train.keep_ckpts",
                     "train.log_every", "train.sample_grid", "train.device", "train.precision", "train.threads",
                     "train.channels_last", "train.sync_bn", "train.allow_world_change", "train.tensorboard", "data.workers",
                     "data.storage", "data.max_memory_gb", "eval.")


class TrainState(StepContext):
    """Everything a checkpoint restores: the family (nets, EMAs, optimizers, buffers), counters, data order,
    RNG and gradient-scaler state, the best evaluation and the training seconds spent so far; `dist` is this
    process's rank in a data-parallel run (rank 0 of 1 otherwise) and `ddp` the phases' DDP wrappers there."""

    def __init__(self, cfg: Config, family: Family, stream: BatchStream, scaler: torch.amp.GradScaler, device: torch.device,
                 dist: Dist | None = None) -> None:
        self.precision = resolve_precision(cfg.train.precision, device)
        if self.precision == "fp16" and device.type == "cpu":
            log.warning("train.precision=fp16 on the CPU: torch emulates fp16 math without native kernels (many times "
                        "slower than bf16); use bf16 or fp32 here, fp16 on GPUs")
        super().__init__(device, autocast_factory(device, self.precision), lambda loss: scaler.scale(loss).backward())
        self.cfg, self.family, self.stream, self.scaler = cfg, family, stream, scaler
        self.dist = dist or Dist()
        self.ddp: DataParallelPhases | None = None
        self.counters = {p.name: 0 for p in family.phases}
        self.best: dict[str, float] = {}
        self.elapsed = 0.0  # seconds of training over every session of this run (for train.minutes)


def build_state(cfg: Config, source: ImageData | FolderSource, dist: Dist | None = None, device: torch.device | None = None) -> TrainState:
    """Fresh family (networks, optimizers, EMAs), data order and scaler, all seeded from `cfg.seed`; in a
    data-parallel run every rank builds the same networks, then follows its own random stream."""
    dist = dist or Dist()
    device = device or resolve_device(cfg.train.device)
    torch.manual_seed(cfg.seed)
    family = FAMILIES[cfg.family](cfg, device, training=True)
    if cfg.train.lazy_correction:
        correct_lazy_optimizers(family)
    fmt = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    stream = BatchStream(source, cfg.train.batch_size, cfg.seed, device, fmt, family.make_inputs, cfg.data.workers,
                         rank=dist.rank, world=dist.world)
    scaler = torch.amp.GradScaler(device.type, enabled=resolve_precision(cfg.train.precision, device) == "fp16")
    if dist.enabled:
        torch.manual_seed(rank_seed(cfg.seed, dist.rank))
    return TrainState(cfg, family, stream, scaler, device, dist)


def lazy_ratios(phases: list[Phase]) -> dict[str, float]:
    """Per optimizer that also steps in lazy phases (every > 1): its steps per loop step in the phases that run
    every step over its steps in all of them (StyleGAN2-ADA's mb_ratio, k / (k + 1) for one phase every k)."""
    every_step: dict[str, float] = {}
    lazy: dict[str, float] = {}
    for ph in phases:
        book = every_step if ph.every == 1 else lazy
        book[ph.opt] = book.get(ph.opt, 0.0) + ph.repeat / ph.every
    return {opt: n / (n + lazy[opt]) for opt, n in every_step.items() if lazy.get(opt)}


def correct_lazy_optimizers(family: Family) -> dict[str, float]:
    """Scale the learning rate of each optimizer that steps in lazy phases by its ratio r and Adam's betas to the
    power r (StyleGAN2-ADA, training_loop.py), so the extra steps keep the step size and momentum horizon per
    loop step. Returns the ratios applied."""
    ratios = lazy_ratios(family.phases)
    for name, r in ratios.items():
        for group in family.optimizers[name].param_groups:
            group["lr"] *= r
            if "betas" in group:
                group["betas"] = tuple(b**r for b in group["betas"])
    return ratios


def run_progress(t: TrainConfig, step: int, elapsed: float) -> float:
    """Share of the run done, in [0, 1]: the larger of step / `train.steps` and elapsed seconds over the
    `train.minutes` budget (when there is one), so a schedule ends where the run will stop."""
    done = step / t.steps
    if t.minutes > 0:
        done = max(done, elapsed / (t.minutes * 60.0))
    return min(done, 1.0)


def lr_scale(t: TrainConfig, progress: float) -> float:
    """The learning-rate multiplier at `progress` (0-1) of the run: 1 for `train.lr_decay` none; for linear, 1 until
    `train.lr_decay_start`, then falling linearly to 0 at the end (SN-GAN's code and Mimicry: lr (1 - step / steps))."""
    if t.lr_decay == "none" or progress <= t.lr_decay_start:
        return 1.0
    return max(0.0, (1.0 - progress) / (1.0 - t.lr_decay_start))


def scale_lrs(family: Family, scale: float) -> None:
    """Set every optimizer's learning rates to `scale` times their base rates. The base rate of a parameter group
    is its lr the first time this runs (after the lazy correction); it is kept in the group as `base_lr`, so it
    travels in the optimizer's state dict and a resumed run scales the same rates."""
    for opt in family.optimizers.values():
        for group in opt.param_groups:
            group["lr"] = group.setdefault("base_lr", group["lr"]) * scale


def _rng_state(device: torch.device) -> dict[str, Any]:
    rng: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    return rng


def _set_rng_state(rng: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and device.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"], device)


def state_dict(st: TrainState) -> dict[str, Any]:
    """The checkpoint of a state (format version 2: everything keyed by name). In a data-parallel run this is a
    collective (every rank's RNG state is gathered into it): every rank calls it, rank 0 writes it."""
    fam = st.family
    rng = _rng_state(st.device)
    if st.dist.enabled:
        rng["ranks"] = st.dist.gather(rng)
    return {
        "family": st.cfg.family,
        "config": st.cfg.to_dict(),
        "step": st.step, "images": st.images, "counters": dict(st.counters), "elapsed": st.elapsed,
        "nets": {k: m.state_dict() for k, m in fam.nets.items()},
        "emas": {k: ema.module.state_dict() for k, (_, ema) in fam.emas.items()},
        "optims": {k: o.state_dict() for k, o in fam.optimizers.items()},
        "buffers": {k: v.cpu() for k, v in fam.buffers.items()},
        "extra": fam.state_extra(),
        "sched": dict(st.sched),
        "scaler": st.scaler.state_dict(),
        "data": st.stream.state_dict(),
        "subset_rows": st.stream.source.rows,  # data.subset: the rows of the full split trained on (None: all)
        "rng": rng,
        "best": dict(st.best),
        "world_size": st.dist.world,
        "meta": {"torch": str(torch.__version__), "time": time.time(), "precision": st.precision, "device": str(st.device)},
    }


def _load_named(kind: str, targets: dict[str, Any], saved: dict[str, Any], load: Callable[[Any, Any], None]) -> None:
    missing = sorted(set(targets) - set(saved))
    if missing:
        raise CheckpointError(f"checkpoint has no {kind} {missing[0]!r} (it has: {', '.join(sorted(saved)) or 'none'})")
    for name, target in targets.items():
        try:
            load(target, saved[name])
        except (KeyError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"checkpoint {kind} {name!r} does not match the configured model: {str(e).splitlines()[0][:300]}") from None


def load_family_weights(family: Family, ck: dict[str, Any]) -> None:
    """Networks, EMAs and buffers of a (v2) checkpoint into a family built from its config."""
    _load_named("network", family.nets, ck["nets"], lambda m, sd: m.load_state_dict(sd))
    _load_named("EMA", {k: e for k, (_, e) in family.emas.items()}, ck["emas"], lambda e, sd: e.module.load_state_dict(sd))
    _load_named("buffer", family.buffers, ck["buffers"], lambda _, __: None)  # every buffer the family has must be there
    for k in family.buffers:
        family.buffers[k] = ck["buffers"][k].to(family.device)
    family.load_state_extra(ck.get("extra", {}))


def load_state_dict(st: TrainState, ck: dict[str, Any]) -> None:
    """Restore a state from a checkpoint written by `state_dict` (or migrated from version 1)."""
    load_family_weights(st.family, ck)
    _load_named("optimizer", st.family.optimizers, ck["optims"], lambda o, sd: o.load_state_dict(sd))
    if ck["scaler"]:  # empty when the scaler is disabled (CPU or no AMP)
        st.scaler.load_state_dict(ck["scaler"])
    st.stream.load_state_dict(ck["data"])
    saved_rows, rows = ck.get("subset_rows"), st.stream.source.rows
    if (saved_rows is None) != (rows is None) or (rows is not None and not torch.equal(saved_rows, rows)):
        raise CheckpointError("cannot resume: the data.subset drawn now is not the one the checkpoint trained on "
                              "(the dataset changed); resume with the same data")
    st.step, st.images, st.elapsed = int(ck["step"]), int(ck["images"]), float(ck.get("elapsed", 0.0))
    st.counters.update({k: int(v) for k, v in ck["counters"].items()})
    st.sched, st.best = dict(ck.get("sched", {})), dict(ck.get("best", {}))
    ranks = ck["rng"].get("ranks")
    if st.dist.enabled and ranks is not None and len(ranks) == st.dist.world:
        _set_rng_state(ranks[st.dist.rank], st.device)
    elif st.dist.enabled:  # a changed world size (allowed by train.allow_world_change): fresh per-rank streams
        torch.manual_seed(derive_seed(st.cfg.seed, "rank", st.dist.rank, "resumed at", st.step))
    else:
        _set_rng_state(ck["rng"], st.device)


def check_world_size(cfg: Config, saved: dict[str, Any], world: int) -> None:
    """A run resumes exactly only with the world size it was trained with; another one needs
    train.allow_world_change=true (same global batch order, fresh per-rank random streams)."""
    then = int(saved.get("world_size", 1))
    if then != world and not cfg.train.allow_world_change:
        raise ConfigError(f"cannot resume: the checkpoint was trained by {then} process(es), this run has {world}; "
                          f"start {then} (torchrun --nproc-per-node {then}) for an exact resume, or pass "
                          "--set train.allow_world_change=true to continue with a different batch per step")


def check_resume_compatible(cfg: Config, saved: dict[str, Any]) -> None:
    """A resumed run may change only the keys in RESUMABLE_CHANGES."""
    now, then = flatten(cfg.to_dict()), flatten(from_dict(saved).to_dict())  # keys added since take their defaults
    for key in sorted(set(now) | set(then)):
        if key.startswith(RESUMABLE_CHANGES):
            continue
        if now.get(key) != then.get(key):
            raise ConfigError(f"cannot resume: config key '{key}' is {now.get(key)!r} but the checkpoint was trained with {then.get(key)!r}")
