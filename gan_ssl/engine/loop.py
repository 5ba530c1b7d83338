"""The one training loop: runs a family's named phases on a schedule and knows no network by name.

One loop step: `family.schedule(state)`, then every phase that is due (`step % every == 0` and its
`when(schedule)`, if any, holds), `repeat` times each: freeze every net but the phase's, draw a batch
if it wants one, zero its optimizer's gradients, run its function (forward + backward) with
spectral-norm weights cached for the phase (one power iteration per update, one sigma for every
forward of the phase), step the optimizer. Then the EMAs are updated and the step counter moves on.
Around the steps: metrics.jsonl, sample grids, in-training evaluation, atomic checkpoints, a NaN guard,
a wall-clock budget (`train.minutes`), and Ctrl-C handled at the next step boundary, so an interrupted
and resumed run is bit-identical to an uninterrupted one.

Under `torchrun --nproc-per-node N` the same loop runs data-parallel (gan_ssl.engine.distributed): each phase's
nets in DDP, the batch order sharded per rank, rank 0 alone writing.

The loop never imports evaluation: in-training evaluators (FID, the fast probe) come in as callables, or as a
factory of them (`gan_ssl.api.train` passes `gan_ssl.evaluation.monitors.default_evaluators`).
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch.nn.utils import parametrize

from gan_ssl.config import Config, save_yaml
from gan_ssl.core.device import resolve_device
from gan_ssl.core.errors import CheckpointError, ConfigError, DivergenceError
from gan_ssl.core.progress import Progress
from gan_ssl.core.seeds import derive_seed
from gan_ssl.data import FolderSource, ImageData, open_training_data, take_subset
from gan_ssl.engine import checkpoint as ckpt_io
from gan_ssl.engine.distributed import DataParallelPhases, Dist, RankFailure
from gan_ssl.engine.distributed import setup as setup_distributed
from gan_ssl.engine.rundir import RunDir, save_grid
from gan_ssl.engine.state import (TrainState, build_state, check_resume_compatible, check_world_size, load_state_dict, lr_scale,
                                  run_progress, scale_lrs)
from gan_ssl.engine.tensorboard import TensorBoardLog
from gan_ssl.families import Family, Phase
from gan_ssl.families.bundle import Bundle

log = logging.getLogger(__name__)


Evaluator = Callable[[Bundle], dict[str, float]]  # a bundle (EMA nets as they are now) -> {metric: value}
EvaluatorFactory = Callable[[Config, ImageData], list[Evaluator]]  # (config, evaluation images) -> evaluators


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
    """One loop step: the family's schedule and the lr schedule (`train.lr_decay`), every due phase `repeat` times,
    then the EMA updates."""
    fam = st.family
    st.sched = fam.schedule(st)
    t = st.cfg.train
    if t.lr_decay != "none":
        scale = lr_scale(t, run_progress(t, st.step, st.elapsed))
        scale_lrs(fam, scale)
        st.sched = {**st.sched, "lr_scale": scale}
    bs = int(st.sched.get("batch_size", t.batch_size))
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
          evaluators: list[Evaluator] | EvaluatorFactory | None = None, data: ImageData | FolderSource | None = None) -> Path:
    """Train `cfg` into `out_dir`; returns the path of the last checkpoint.

    With `resume`, continues from `out_dir/checkpoints/latest.pt` up to `cfg.train.steps` (and the
    `train.minutes` budget), restoring networks, optimizers, EMAs, counters, RNG state and data order:
    N steps then N more equal 2N. Ctrl-C stops after the step in progress with a checkpoint, then
    raises KeyboardInterrupt. Started by torchrun with several processes, it trains data-parallel.
    `evaluators`: callables run every `eval.every` steps on rank 0, or a factory called with (cfg, images)
    there; None runs none (`gan_ssl.train` passes the defaults of `cfg.eval`).
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


def _open_run(cfg: Config, out_dir: str | Path, resume: bool, dist: Dist) -> tuple[RunDir, dict[str, Any] | None]:
    """The run directory and, with `resume`, its latest checkpoint (checked against `cfg` and the world size)."""
    run = RunDir(out_dir, main=dist.is_main)
    run.tb = TensorBoardLog(run.root / "tensorboard") if cfg.train.tensorboard and dist.is_main else None  # fails here without the package
    saved = None
    if resume:
        if not run.latest.is_file():
            raise CheckpointError(f"nothing to resume: {run.latest} does not exist")
        saved = ckpt_io.load(run.latest)
        check_resume_compatible(cfg, saved["config"])
        check_world_size(cfg, saved, dist.world)
    elif run.latest.is_file():
        raise ConfigError(f"{run.root} already holds a run ({run.latest}); pass --resume to continue it or choose another --out")
    return run, saved


def _open_data(cfg: Config, data: ImageData | FolderSource | None) -> ImageData | FolderSource:
    """The training images (`data.subset` applied), checked against the config's shape."""
    source = take_subset(open_training_data(cfg) if data is None else data, cfg.data.subset, cfg.data.subset_seed)
    shape = tuple(source.images.shape[1:]) if isinstance(source, ImageData) else (source.channels, source.resolution, source.resolution)
    if shape != (cfg.data.channels, cfg.data.resolution, cfg.data.resolution):
        raise ConfigError(f"data images are {shape}, the config expects ({cfg.data.channels}, {cfg.data.resolution}, {cfg.data.resolution})")
    return source


def _train(cfg: Config, out_dir: str | Path, resume: bool, progress: bool, evaluators: list[Evaluator] | EvaluatorFactory | None,
           data: ImageData | FolderSource | None, dist: Dist, device: torch.device) -> Path:
    if cfg.train.sync_bn and dist.enabled and device.type != "cuda":
        raise ConfigError("train.sync_bn needs CUDA devices (torch's SyncBatchNorm runs on GPUs only); set it to false on CPU")
    run, saved = _open_run(cfg, out_dir, resume, dist)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    source = _open_data(cfg, data)
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
    if callable(evaluators):
        evaluators = evaluators(cfg, _eval_data(source, cfg)) if cfg.eval.every and dist.is_main else []
    try:
        Session(st, run, evaluators or [], progress and dist.is_main, run.latest if saved is not None else None).execute()
    finally:
        if st.ddp is not None:
            st.ddp.release()
    return run.latest


class Session:
    """One training session of a run: steps until `train.steps` or the minutes budget, with the periodic jobs
    between steps (log line, sample grid, evaluation, checkpoint) and the NaN guard before each of them."""

    def __init__(self, st: TrainState, run: RunDir, evaluators: list[Evaluator], progress: bool, last_ckpt: Path | None) -> None:
        self.st, self.run, self.evaluators, self.progress = st, run, evaluators, progress
        self.t = st.cfg.train
        self.meter = _Meter()
        self.budget = self.t.minutes * 60.0
        self.last_ckpt = last_ckpt
        self.bar: Progress | None = None

    def out_of_time(self) -> bool:
        return self.budget > 0 and self.st.elapsed >= self.budget

    def ensure_finite(self) -> None:
        """Stop before a NaN reaches a checkpoint, a grid or an evaluation (every rank together)."""
        bad = self.meter.non_finite()
        st = self.st
        if st.dist.any(bool(bad))[0]:
            bad = bad or ["a loss of another rank"]
            where = f"; the last good checkpoint is {self.last_ckpt}" if self.last_ckpt else "; no checkpoint was written"
            raise DivergenceError(f"training diverged: {', '.join(sorted(bad))} became NaN/inf by step {st.step}{where}. "
                                  "Lower the learning rates or add a regulariser (loss.r1_gamma)")

    def checkpoint(self) -> None:
        self.ensure_finite()
        self.st.family.prepare_eval()
        if self.t.ddp_check:
            check_ranks_agree(self.st)
        self.last_ckpt = self.run.save_checkpoint(self.st, self.t.keep_ckpts)

    def log_line(self, now: float) -> None:
        """One metrics.jsonl record: the mean losses since the last line (over ranks), the schedule, throughput."""
        self.ensure_finite()
        st, (t_last, step_last, img_last) = self.st, self.mark
        dt, ds = now - t_last, st.step - step_last
        means = st.dist.mean(self.meter.means())  # over ranks: the losses of the global batch
        rec = {"step": st.step, **{k: round(v, 5) for k, v in means.items()}, **st.sched,
               "it_s": round(ds / dt, 3), "img_s": round((st.images - img_last) / dt, 1), "minutes": round(st.elapsed / 60, 3)}
        self.run.log(rec)
        post = {k: f"{rec[k]:.3f}" for k in ("d_loss", "g_loss", "rot_acc_real") if k in rec}
        if self.budget:
            post["min"] = f"{st.elapsed / 60:.1f}/{self.t.minutes:g}"
        assert self.bar is not None
        self.bar.set_postfix(post)
        self.meter.reset()
        self.mark = (now, st.step, st.images)

    def save_samples(self) -> None:
        self.ensure_finite()
        st, run = self.st, self.run
        st.family.prepare_eval()
        if run.main:
            path = run.samples / f"step_{st.step:06d}.png"
            save_grid(st.family.grid(), path)
            if run.tb is not None:
                run.tb.grid(path, st.step)

    def execute(self) -> None:
        st, t, cfg = self.st, self.t, self.st.cfg
        if st.step >= t.steps or self.out_of_time():
            log.warning("nothing to do: the run is at step %d of %d (%.1f of %s minutes)", st.step, t.steps, st.elapsed / 60,
                        t.minutes or "unlimited")
            return
        # under a minutes budget the step count is usually a large upper bound: no step ETA then, the minutes instead
        self.bar = Progress(total=None if self.budget else t.steps, initial=st.step, desc=f"train {cfg.family}/{cfg.model.name}",
                            unit="step", enabled=self.progress)
        self.mark = (time.perf_counter(), st.step, st.images)  # time, step and images at the last log line
        evaluating = st.dist.broadcast(bool(self.evaluators))  # rank 0 holds the evaluators; every rank takes part
        clock = time.perf_counter()
        with _InterruptAtBoundary() as interrupt:
            try:
                while True:
                    train_step(st, self.meter)
                    now = time.perf_counter()
                    st.elapsed, clock = st.elapsed + (now - clock), now
                    self.bar.update(1)
                    # ranks' clocks and Ctrl-C differ: all stop together (one all-reduce per step under torchrun)
                    last, stop = st.dist.any(st.step >= t.steps or self.out_of_time(), interrupt.requested)
                    if st.step % t.log_every == 0 or last:
                        self.log_line(now)
                    if (t.sample_every and st.step % t.sample_every == 0) or last:
                        self.save_samples()
                    if evaluating and ((cfg.eval.every and st.step % cfg.eval.every == 0) or last):
                        self.ensure_finite()
                        _evaluate(st, self.evaluators, self.run)
                    if (t.ckpt_every and st.step % t.ckpt_every == 0) or last or stop:
                        self.checkpoint()
                    clock = time.perf_counter()  # sampling, evaluation and checkpoints do not count against the budget
                    self.mark = (self.mark[0] + clock - now, *self.mark[1:])  # nor in the logged img_s / it_s
                    if stop:
                        log.warning("interrupted at step %d; saved %s (continue with --resume)", st.step, self.run.latest)
                        raise KeyboardInterrupt
                    if last:
                        break
            finally:
                self.bar.close()
                if self.run.tb is not None:
                    self.run.tb.close()
        if self.out_of_time() and st.step < t.steps:
            log.warning("stopped at step %d: the %.1f-minute budget (train.minutes) is spent", st.step, t.minutes)
