"""The one training loop: runs a family's named phases on a schedule and knows no network by name.

One loop step: `family.schedule(state)`, then every phase that is due (`step % every == 0` and its
`when(schedule)`, if any, holds), `repeat` times each: freeze every net but the phase's, draw a batch
if it wants one, zero its optimizer's gradients, run its function (forward + backward) with
spectral-norm weights cached for the phase (one power iteration per update, one sigma for every
forward of the phase), step the optimizer. Then the EMAs are updated and the step counter moves on.
Around the steps: metrics.jsonl, sample grids, in-training evaluation, atomic checkpoints, a NaN guard,
a wall-clock budget (`train.minutes`), and Ctrl-C handled at the next step boundary, so an interrupted
and resumed run is bit-identical to an uninterrupted one.

Under `torchrun --nproc-per-node N` the same loop runs data-parallel (gan_ssl.distributed): each phase's
nets in DDP, the batch order sharded per rank, rank 0 alone writing.

Run directory:
    config.yaml, metrics.jsonl, samples/step_NNNNNN.png, checkpoints/{latest,step_NNNNNN,best}.pt, tensorboard/ (train.tensorboard)
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch.nn.utils import parametrize

from gan_ssl import checkpoint as ckpt_io, runlog
from gan_ssl.bundle import Bundle
from gan_ssl.config import Config, flatten, from_dict, save_yaml
from gan_ssl.data import BatchStream, FolderSource, ImageData, open_training_data
from gan_ssl.distributed import DataParallelPhases, Dist, RankFailure, rank_seed
from gan_ssl.distributed import setup as setup_distributed
from gan_ssl.errors import CheckpointError, ConfigError, DivergenceError
from gan_ssl.seeds import derive_seed
from gan_ssl.subset import take_subset
from gan_ssl.families import FAMILIES, Family, Phase, StepContext
from gan_ssl.progress import Progress
from gan_ssl.tblog import TensorBoardLog

log = logging.getLogger(__name__)

# Config keys that may change when a run is resumed; anything else must match the checkpoint.
RESUMABLE_CHANGES = ("train.steps", "train.minutes", "train.sample_every", "train.ckpt_every", "train.keep_ckpts",
                     "train.log_every", "train.sample_grid", "train.device", "train.precision", "train.threads",
                     "train.channels_last", "train.sync_bn", "train.allow_world_change", "train.tensorboard", "data.workers",
                     "data.storage", "data.max_memory_gb", "eval.")

Evaluator = Callable[[Bundle], dict[str, float]]


class TrainState(StepContext):
    """Everything a checkpoint restores: the family (nets, EMAs, optimizers, buffers), counters, data order,
    RNG and gradient-scaler state, the best evaluation and the training seconds spent so far; `dist` is this
    process's rank in a data-parallel run (rank 0 of 1 otherwise) and `ddp` the phases' DDP wrappers there."""

    def __init__(self, cfg: Config, family: Family, stream: BatchStream, scaler: torch.amp.GradScaler, device: torch.device,
                 dist: Dist | None = None) -> None:
        self.precision = resolve_precision(cfg.train.precision, device)
        if self.precision == "fp16" and device.type == "cpu":
            log.warning("train.precision=fp16 on the CPU: torch emulates fp16 math without native kernels (the main config "
                        "ran 77x slower than bf16 on an AVX-512 EPYC); use bf16 or fp32 here, fp16 on GPUs")
        super().__init__(device, _autocast_factory(device, self.precision), lambda loss: scaler.scale(loss).backward())
        self.cfg, self.family, self.stream, self.scaler = cfg, family, stream, scaler
        self.dist = dist or Dist()
        self.ddp: DataParallelPhases | None = None
        self.counters = {p.name: 0 for p in family.phases}
        self.best: dict[str, float] = {}
        self.elapsed = 0.0  # seconds of training over every session of this run (for train.minutes)


def resolve_device(name: str) -> torch.device:
    """torch.device for a user's --device / train.device, with a one-line error when it is not usable here."""
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"device {name!r} is not a device; use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name} asked for, but CUDA is not available on this machine; use cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"device {name} asked for, but this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {name} asked for, but MPS is not available on this machine; use cpu")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device {name!r} is not supported; use cpu, cuda, cuda:N or mps")
    return dev


def native_bf16_cpu() -> bool:
    """Whether this CPU has native bf16 dot products (x86 avx512_bf16 or amx_bf16; read from /proc/cpuinfo)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """fp32 | bf16 | fp16 for a `train.precision` value on `device` (auto: bf16 where the chip computes it natively)."""
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        return "bf16" if device.type == "cpu" and native_bf16_cpu() else "fp32"
    return precision  # fp16 autocasts and scales the loss (GradScaler) on every device torch's AMP runs on, CPU included


def _autocast_factory(device: torch.device, precision: str) -> Callable[[], contextlib.AbstractContextManager]:
    """Autocast to bf16/fp16 (weights and optimizer states stay fp32), or a no-op for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return lambda: torch.autocast(device.type, dtype=dtype)


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


def save_grid(images: torch.Tensor, path: Path) -> None:
    """images [N, C, H, W] in [-1, 1] -> one PNG grid."""
    import torchvision.utils as vutils

    path.parent.mkdir(parents=True, exist_ok=True)
    nrow = int(math.ceil(math.sqrt(images.shape[0])))
    vutils.save_image(images.float().clamp(-1, 1) * 0.5 + 0.5, str(path), nrow=nrow, padding=1)


def numbered_checkpoints(folder: Path) -> list[Path]:
    """checkpoints/step_N.pt, oldest first by the step number (not by name: step_1000000 sorts after step_999999)."""
    found = [(int(p.stem[5:]), p) for p in folder.glob("step_*.pt") if p.stem[5:].isdigit()]
    return [p for _, p in sorted(found)]


class RunDir:
    """Paths and writers of a run directory."""

    def __init__(self, root: str | Path, main: bool = True) -> None:
        self.root, self.main = Path(root), main  # main: this process writes (rank 0 of a data-parallel run)
        self.ckpts = self.root / "checkpoints"
        self.samples = self.root / "samples"
        self.metrics = self.root / "metrics.jsonl"
        self.latest = self.ckpts / "latest.pt"
        self.tb: TensorBoardLog | None = None  # mirrors log() and the sample grids when train.tensorboard is on

    def log(self, record: dict[str, Any]) -> None:
        if not self.main:
            return
        with open(self.metrics, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            self.tb.log(record)

    def remove_torn_writes(self) -> None:
        """Delete temp files a killed checkpoint write left (checkpoints/.NAME.XXXX.tmp); the checkpoints stay whole."""
        if self.main and self.ckpts.is_dir():
            for tmp in self.ckpts.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)

    def truncate_metrics(self, step: int) -> None:
        """Drop lines logged after `step` (written before a crash, after the last checkpoint)."""
        if not self.main or not self.metrics.exists():
            return
        runlog.truncate(self.metrics, step)

    def write(self, st: TrainState, path: Path) -> None:
        sd = state_dict(st)  # a collective in a data-parallel run: every rank gets here
        if self.main:
            ckpt_io.write_atomic(ckpt_io.to_bytes({"format": ckpt_io.FORMAT, "version": ckpt_io.VERSION, **sd}), path)

    def save_checkpoint(self, st: TrainState, keep: int) -> Path:
        numbered = self.ckpts / f"step_{st.step:06d}.pt"
        self.write(st, numbered)
        self.write(st, self.latest)
        if keep > 0 and self.main:
            for old in numbered_checkpoints(self.ckpts)[:-keep]:
                old.unlink()
        return numbered


class _Meter:
    """Sums logged tensors between log lines without a device sync per step."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, logs: dict[str, torch.Tensor]) -> None:
        for k, v in logs.items():
            v = v.detach().float()
            self.sums[k] = self.sums[k] + v if k in self.sums else v
            self.counts[k] = self.counts.get(k, 0) + 1

    def means(self) -> dict[str, float]:
        return {k: float(v) / self.counts[k] for k, v in self.sums.items()}

    def non_finite(self) -> list[str]:
        return [k for k, v in self.sums.items() if not torch.isfinite(v)]

    def reset(self) -> None:
        self.sums, self.counts = {}, {}


class _InterruptAtBoundary:
    """While active (main thread only), the first SIGINT sets `requested` and training stops after the step
    in progress, with a checkpoint; a second SIGINT raises KeyboardInterrupt at once (nothing saved)."""

    def __init__(self) -> None:
        self.requested = False
        self._prev: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("interrupt: stopping after this step with a checkpoint (Ctrl-C again stops at once without saving)")

    def __enter__(self) -> "_InterruptAtBoundary":
        if threading.current_thread() is threading.main_thread():
            self._prev = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._prev is not None:
            signal.signal(signal.SIGINT, self._prev)


def default_evaluators(cfg: Config, data: ImageData) -> list[Evaluator]:
    """In-training evaluators from `cfg.eval` (FID and the fast probe plug in here)."""
    evs: list[Evaluator] = []
    if cfg.eval.every == 0:
        return evs
    if cfg.eval.fid:
        from gan_ssl.metrics import fid_evaluator

        evs.append(fid_evaluator(cfg, data))
    if cfg.eval.probe:
        from gan_ssl.probe import probe_evaluator

        evs.append(probe_evaluator(cfg, data))
    return evs


def _set_trainable(family: Family, names: tuple[str, ...]) -> None:
    for name, net in family.nets.items():
        net.requires_grad_(name in names)


def run_phase(st: TrainState, ph: Phase, batch_size: int, meter: _Meter | None = None) -> None:
    """One optimizer step of a phase: freeze the other nets, draw a batch if it wants one, forward and backward
    with spectral-norm weights cached (one power iteration per update, one sigma for the whole phase), step."""
    fam = st.family
    _set_trainable(fam, ph.nets)
    opt = fam.optimizers[ph.opt]
    batch = st.stream.next(batch_size) if ph.batch else None
    if batch is not None:
        st.images += batch["image"].shape[0] * st.dist.world  # images of the global batch (schedules read it)
    opt.zero_grad(set_to_none=True)
    with parametrize.cached():
        logs = st.ddp.run(ph, batch, st) if st.ddp is not None else ph.fn(batch, st)
    st.scaler.step(opt)
    st.scaler.update()
    opt.zero_grad(set_to_none=True)  # frees the gradients; a later phase never sees them
    st.counters[ph.name] += 1
    if meter is not None:
        meter.add({(f"{ph.name.lower()}_loss" if k == "loss" else k): v for k, v in logs.items()})


def train_step(st: TrainState, meter: _Meter | None = None) -> None:
    """One loop step: the family's schedule, every due phase `repeat` times, then the EMA updates."""
    fam = st.family
    st.sched = fam.schedule(st)
    bs = int(st.sched.get("batch_size", st.cfg.train.batch_size))
    for ph in fam.phases:
        if ph.due(st.step, st.sched):
            for _ in range(ph.repeat):
                run_phase(st, ph, bs, meter)
    fam.update_emas(st.step)
    st.step += 1


def check_ranks_agree(st: TrainState) -> None:
    """Every parameter and buffer of every net and EMA is bit-identical on every rank (a collective), or RuntimeError.
    Running statistics are left out, as StyleGAN2-ADA's check leaves out its `*_avg` buffers: BatchNorm's and
    StyleGAN's w_avg are updated by each rank from its own rows (DDP hands every rank rank 0's BatchNorm statistics
    at the next forward; the checkpoint holds rank 0's)."""
    fam = st.family
    modules = {**fam.nets, **{name: ema.module for name, (_, ema) in fam.emas.items()}}
    tensors: dict[str, torch.Tensor] = {}
    for m, mod in modules.items():
        for path, sub in mod.named_modules():
            own = dict(sub.named_parameters(recurse=False))
            if not isinstance(sub, torch.nn.modules.batchnorm._BatchNorm):
                own.update({k: v for k, v in sub.named_buffers(recurse=False) if not k.endswith("_avg")})
            tensors.update({f"{m}.{path}.{k}".replace("..", "."): v for k, v in own.items()})
    bad = st.dist.differing(tensors)
    if bad:
        raise RuntimeError(f"data-parallel ranks disagree at step {st.step} on {len(bad)} tensor(s), first {bad[0]} "
                           "(a phase updated a net outside DDP, or a buffer is not synchronised)")


def bundle_of(st: TrainState) -> Bundle:
    """A live view of the state's family for evaluators (EMA networks as they are now)."""
    return Bundle(st.family, st.step)


def _evaluate(st: TrainState, evaluators: list[Evaluator], run: RunDir) -> None:
    st.family.prepare_eval()
    results: dict[str, float] = {}
    if st.dist.is_main:  # rank 0 evaluates; every rank learns the result (best.pt is written collectively)
        for ev in evaluators:
            results.update(ev(bundle_of(st)))
    results = st.dist.broadcast(results)
    run.log({"step": st.step, "eval": results})
    fid_keys = sorted(k for k in results if k.startswith("fid"))
    if fid_keys:
        key = fid_keys[0]
        if key not in st.best or results[key] < st.best[key]:
            st.best[key] = results[key]
            st.best["step"] = st.step
            run.write(st, run.ckpts / "best.pt")


def _eval_data(source: ImageData | FolderSource, cfg: Config) -> ImageData:
    """In-memory images for evaluators: the training set, or a seeded sample across a streamed folder."""
    if isinstance(source, ImageData):
        return source
    return source.sample(max(cfg.eval.n, 2 * cfg.eval.probe_n), derive_seed(cfg.seed, "eval images"))


def train(cfg: Config, out_dir: str | Path, resume: bool = False, progress: bool = True,
          evaluators: list[Evaluator] | None = None, data: ImageData | FolderSource | None = None) -> Path:
    """Train `cfg` into `out_dir`; returns the path of the last checkpoint.

    With `resume`, continues from `out_dir/checkpoints/latest.pt` up to `cfg.train.steps` (and the
    `train.minutes` budget), restoring networks, optimizers, EMAs, counters, RNG state and data order:
    N steps then N more equal 2N. Ctrl-C stops after the step in progress with a checkpoint, then
    raises KeyboardInterrupt. Started by torchrun with several processes, it trains data-parallel.
    """
    dist, device = setup_distributed(resolve_device(cfg.train.device))
    try:
        result = _train(cfg, out_dir, resume, progress, evaluators, data, dist, device)
    except BaseException as e:
        first = dist.fail(e)  # no barrier: the other ranks must not wait for this one
        if first is not None and not first.startswith(f"rank {dist.rank}:"):
            raise RankFailure(f"stopped because {first}") from None  # this rank's error came from another's
        raise
    dist.close()
    return result


def _train(cfg: Config, out_dir: str | Path, resume: bool, progress: bool, evaluators: list[Evaluator] | None,
           data: ImageData | FolderSource | None, dist: Dist, device: torch.device) -> Path:
    if cfg.train.sync_bn and dist.enabled and device.type != "cuda":
        raise ConfigError("train.sync_bn needs CUDA devices (torch's SyncBatchNorm runs on GPUs only); set it to false on CPU")
    run = RunDir(out_dir, main=dist.is_main)
    run.tb = TensorBoardLog(run.root / "tensorboard") if cfg.train.tensorboard and dist.is_main else None  # fails here without the package
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    saved = None
    if resume:
        if not run.latest.is_file():
            raise CheckpointError(f"nothing to resume: {run.latest} does not exist")
        saved = ckpt_io.load(run.latest)
        check_resume_compatible(cfg, saved["config"])
        check_world_size(cfg, saved, dist.world)
    elif run.latest.is_file():
        raise ConfigError(f"{run.root} already holds a run ({run.latest}); pass --resume to continue it or choose another --out")
    source = take_subset(open_training_data(cfg) if data is None else data, cfg.data.subset, cfg.data.subset_seed)
    shape = tuple(source.images.shape[1:]) if isinstance(source, ImageData) else (source.channels, source.resolution, source.resolution)
    if shape != (cfg.data.channels, cfg.data.resolution, cfg.data.resolution):
        raise ConfigError(f"data images are {shape}, the config expects ({cfg.data.channels}, {cfg.data.resolution}, {cfg.data.resolution})")
    st = build_state(cfg, source, dist, device)
    if saved is None:
        st.family.fit_data(source)  # data-derived state (the inpainting fill); a resumed run has it in its buffers
    else:
        load_state_dict(st, saved)
        run.truncate_metrics(st.step)
        run.remove_torn_writes()
        log.info("resumed %s at step %d", run.latest, st.step)
    if dist.enabled:
        st.ddp = DataParallelPhases(st.family, sync_bn=cfg.train.sync_bn)
    if dist.is_main:
        run.root.mkdir(parents=True, exist_ok=True)
        save_yaml(cfg, run.root / "config.yaml")
        if saved is None and run.metrics.exists():
            run.metrics.unlink()  # left by a run that died before its first checkpoint
    if evaluators is None:
        evaluators = default_evaluators(cfg, _eval_data(source, cfg)) if cfg.eval.every and dist.is_main else []
    try:
        _loop(st, run, evaluators, progress and dist.is_main, run.latest if saved is not None else None)
    finally:
        if st.ddp is not None:
            st.ddp.release()
    return run.latest


def _loop(st: TrainState, run: RunDir, evaluators: list[Evaluator], progress: bool, last_ckpt: Path | None) -> None:
    cfg, t = st.cfg, st.cfg.train
    meter = _Meter()
    budget = t.minutes * 60.0

    def ensure_finite() -> None:
        bad = meter.non_finite()
        if st.dist.any(bool(bad))[0]:  # every rank stops together
            bad = bad or ["a loss of another rank"]
            where = f"; the last good checkpoint is {last_ckpt}" if last_ckpt else "; no checkpoint was written"
            raise DivergenceError(f"training diverged: {', '.join(sorted(bad))} became NaN/inf by step {st.step}{where}. "
                                  "Lower the learning rates or add a regulariser (loss.r1_gamma)")

    def checkpoint() -> None:
        nonlocal last_ckpt
        ensure_finite()
        st.family.prepare_eval()
        if t.ddp_check:
            check_ranks_agree(st)
        last_ckpt = run.save_checkpoint(st, t.keep_ckpts)

    def out_of_time() -> bool:
        return budget > 0 and st.elapsed >= budget

    if st.step >= t.steps or out_of_time():
        log.warning("nothing to do: the run is at step %d of %d (%.1f of %s minutes)", st.step, t.steps, st.elapsed / 60,
                    t.minutes or "unlimited")
        return
    # under a minutes budget the step count is usually a large upper bound: no step ETA then, the minutes instead
    bar = Progress(total=None if budget else t.steps, initial=st.step, desc=f"train {cfg.family}/{cfg.model.name}", unit="step", enabled=progress)
    t_last, step_last, img_last = time.perf_counter(), st.step, st.images
    evaluating = st.dist.broadcast(bool(evaluators))  # rank 0 holds the evaluators; every rank takes part
    clock = time.perf_counter()
    with _InterruptAtBoundary() as interrupt:
        try:
            while True:
                train_step(st, meter)
                now = time.perf_counter()
                st.elapsed, clock = st.elapsed + (now - clock), now
                bar.update(1)
                # ranks' clocks and Ctrl-C differ: all stop together (one all-reduce per step under torchrun)
                last, stop = st.dist.any(st.step >= t.steps or out_of_time(), interrupt.requested)
                if st.step % t.log_every == 0 or last:
                    ensure_finite()
                    dt, ds = now - t_last, st.step - step_last
                    means = st.dist.mean(meter.means())  # over ranks: the losses of the global batch
                    rec = {"step": st.step, **{k: round(v, 5) for k, v in means.items()}, **st.sched,
                           "it_s": round(ds / dt, 3), "img_s": round((st.images - img_last) / dt, 1), "minutes": round(st.elapsed / 60, 3)}
                    run.log(rec)
                    post = {k: f"{rec[k]:.3f}" for k in ("d_loss", "g_loss", "rot_acc_real") if k in rec}
                    if budget:
                        post["min"] = f"{st.elapsed / 60:.1f}/{t.minutes:g}"
                    bar.set_postfix(post)
                    meter.reset()
                    t_last, step_last, img_last = now, st.step, st.images
                if (t.sample_every and st.step % t.sample_every == 0) or last:
                    ensure_finite()
                    st.family.prepare_eval()
                    if run.main:
                        save_grid(st.family.grid(), run.samples / f"step_{st.step:06d}.png")
                        if run.tb is not None:
                            run.tb.grid(run.samples / f"step_{st.step:06d}.png", st.step)
                if evaluating and ((cfg.eval.every and st.step % cfg.eval.every == 0) or last):
                    ensure_finite()
                    _evaluate(st, evaluators, run)
                if (t.ckpt_every and st.step % t.ckpt_every == 0) or last or stop:
                    checkpoint()
                clock = time.perf_counter()  # sampling, evaluation and checkpoints do not count against the budget
                t_last += clock - now  # nor in the logged img_s / it_s (training throughput)
                if stop:
                    log.warning("interrupted at step %d; saved %s (continue with --resume)", st.step, run.latest)
                    raise KeyboardInterrupt
                if last:
                    break
        finally:
            bar.close()
            if run.tb is not None:
                run.tb.close()
    if out_of_time() and st.step < t.steps:
        log.warning("stopped at step %d: the %.1f-minute budget (train.minutes) is spent", st.step, t.minutes)


def config_of(ckpt: dict[str, Any]) -> Config:
    """The resolved config embedded in a checkpoint."""
    return from_dict(ckpt["config"])
