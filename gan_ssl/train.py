"""One trainer for every unconditional GAN family: n_dis D steps per G step, EMA of G, sample grids,
metrics.jsonl, periodic evaluation, atomic checkpoints and exact resume.

Run directory:
    config.yaml, metrics.jsonl, samples/step_NNNNNN.png, checkpoints/{latest,step_NNNNNN,best}.pt
"""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from gan_ssl import checkpoint as ckpt_io
from gan_ssl.aux import build_aux_tasks
from gan_ssl.config import Config, from_dict, save_yaml
from gan_ssl.data import EpochSampler, ImageData, load_images, to_float
from gan_ssl.errors import CheckpointError, ConfigError, DivergenceError
from gan_ssl.models import build_models
from gan_ssl.models.base import Discriminator, Generator
from gan_ssl.objective import GANObjective

log = logging.getLogger(__name__)

# Config keys that may change when a run is resumed; anything else must match the checkpoint.
RESUMABLE_CHANGES = ("train.steps", "train.sample_every", "train.ckpt_every", "train.keep_ckpts", "train.log_every",
                     "train.sample_grid", "train.device", "train.amp", "train.threads", "train.channels_last", "eval.")

Evaluator = Callable[["TrainState"], dict[str, float]]


@dataclass
class TrainState:
    """Everything a checkpoint restores."""

    cfg: Config
    G: Generator
    D: Discriminator
    G_ema: Generator
    aux: nn.ModuleDict
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    sampler: EpochSampler
    fixed_z: torch.Tensor  # [sample_grid, z_dim]
    device: torch.device
    step: int = 0  # G steps done
    d_steps: int = 0
    best: dict[str, float] = field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name} but CUDA is not available on this machine; use --set train.device=cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"train.device={name} but MPS is not available on this machine; use --set train.device=cpu")
    return dev


def _adam(params: Any, lr: float, b1: float, b2: float) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr, betas=(b1, b2))


def build_state(cfg: Config, n_images: int) -> TrainState:
    """Fresh models, optimizers, EMA and data order, all seeded from `cfg.seed`."""
    device = resolve_device(cfg.train.device)
    torch.manual_seed(cfg.seed)
    G, D = build_models(cfg)
    aux = build_aux_tasks(cfg.aux, D)
    fmt = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    G, D, aux = G.to(device, memory_format=fmt), D.to(device, memory_format=fmt), aux.to(device)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    t = cfg.train
    opt_g = _adam(G.parameters(), t.lr_g, t.beta1_g, t.beta2_g)
    opt_d = _adam(list(D.parameters()) + list(aux.parameters()), t.lr_d, t.beta1_d, t.beta2_d)
    scaler = torch.amp.GradScaler(device.type, enabled=t.amp and device.type == "cuda")
    fixed_z = G.sample_z(t.sample_grid, torch.Generator().manual_seed(cfg.seed + 1), device)
    return TrainState(cfg, G, D, G_ema, aux, opt_g, opt_d, scaler, EpochSampler(n_images, t.batch_size, cfg.seed), fixed_z, device)


def state_dict(st: TrainState) -> dict[str, Any]:
    rng: dict[str, Any] = {"torch": torch.get_rng_state()}
    if st.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(st.device)
    return {
        "config": st.cfg.to_dict(),
        "step": st.step,
        "d_steps": st.d_steps,
        "models": {"G": st.G.state_dict(), "D": st.D.state_dict(), "G_ema": st.G_ema.state_dict(), "aux": st.aux.state_dict()},
        "optim": {"G": st.opt_g.state_dict(), "D": st.opt_d.state_dict()},
        "scaler": st.scaler.state_dict(),
        "sampler": st.sampler.state_dict(),
        "rng": rng,
        "fixed_z": st.fixed_z.cpu(),
        "best": dict(st.best),
        "meta": {"torch": str(torch.__version__), "time": time.time()},
    }


def load_state_dict(st: TrainState, ck: dict[str, Any]) -> None:
    try:
        st.G.load_state_dict(ck["models"]["G"])
        st.D.load_state_dict(ck["models"]["D"])
        st.G_ema.load_state_dict(ck["models"]["G_ema"])
        st.aux.load_state_dict(ck["models"]["aux"])
        st.opt_g.load_state_dict(ck["optim"]["G"])
        st.opt_d.load_state_dict(ck["optim"]["D"])
        if ck["scaler"]:  # empty when the scaler is disabled (CPU or no AMP)
            st.scaler.load_state_dict(ck["scaler"])
    except (KeyError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"checkpoint does not match the configured models: {str(e).splitlines()[0][:300]}") from None
    st.sampler.load_state_dict(ck["sampler"])
    st.fixed_z = ck["fixed_z"].to(st.device)
    st.step, st.d_steps, st.best = int(ck["step"]), int(ck["d_steps"]), dict(ck.get("best", {}))
    torch.set_rng_state(ck["rng"]["torch"])
    if "cuda" in ck["rng"] and st.device.type == "cuda":
        torch.cuda.set_rng_state(ck["rng"]["cuda"], st.device)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_resume_compatible(cfg: Config, saved: dict[str, Any]) -> None:
    """A resumed run may change only the keys in RESUMABLE_CHANGES."""
    now, then = _flatten(cfg.to_dict()), _flatten(saved)
    for key in sorted(set(now) | set(then)):
        if key.startswith(RESUMABLE_CHANGES):
            continue
        if now.get(key) != then.get(key):
            raise ConfigError(f"cannot resume: config key '{key}' is {now.get(key)!r} but the checkpoint was trained with {then.get(key)!r}")


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """ema <- beta * ema + (1 - beta) * model, parameters only (BN statistics come from `refresh_bn_stats`)."""
    e, m = list(ema.parameters()), list(model.parameters())
    torch._foreach_lerp_(e, m, 1.0 - beta)


@torch.no_grad()
def refresh_bn_stats(G: Generator, device: torch.device, n_batches: int = 8, batch_size: int = 64, seed: int = 0) -> None:
    """Recompute G's BatchNorm running statistics for its current weights ("standing statistics",
    Brock et al. 2019), from a fixed-seed set of latents, so eval-mode sampling matches the EMA weights."""
    bns = [m for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    G.train()
    g = torch.Generator().manual_seed(seed)
    for _ in range(n_batches):
        G(G.sample_z(batch_size, g, device))
    for m, mom in zip(bns, saved):
        m.momentum = mom
    G.eval()


def save_grid(images: torch.Tensor, path: Path) -> None:
    """images [N, C, H, W] in [-1, 1] -> one PNG grid."""
    import torchvision.utils as vutils

    path.parent.mkdir(parents=True, exist_ok=True)
    nrow = int(math.ceil(math.sqrt(images.shape[0])))
    vutils.save_image(images.float().clamp(-1, 1) * 0.5 + 0.5, str(path), nrow=nrow, padding=1)


class RunDir:
    """Paths and writers of a run directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.ckpts = self.root / "checkpoints"
        self.samples = self.root / "samples"
        self.metrics = self.root / "metrics.jsonl"
        self.latest = self.ckpts / "latest.pt"

    def log(self, record: dict[str, Any]) -> None:
        with open(self.metrics, "a") as f:
            f.write(json.dumps(record) + "\n")

    def truncate_metrics(self, step: int) -> None:
        """Drop lines logged after `step` (written before a crash, after the last checkpoint)."""
        if not self.metrics.exists():
            return
        keep = [ln for ln in self.metrics.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= step]
        self.metrics.write_text("".join(ln + "\n" for ln in keep))

    def save_checkpoint(self, st: TrainState, keep: int) -> Path:
        data = ckpt_io.to_bytes({"format": ckpt_io.FORMAT, "version": ckpt_io.VERSION, **state_dict(st)})
        numbered = self.ckpts / f"step_{st.step:06d}.pt"
        ckpt_io.write_atomic(data, numbered)
        ckpt_io.write_atomic(data, self.latest)
        if keep > 0:
            for old in sorted(self.ckpts.glob("step_*.pt"))[:-keep]:
                old.unlink()
        return numbered


def _autocast_factory(device: torch.device, enabled: bool) -> Callable[[], contextlib.AbstractContextManager]:
    if not enabled:
        return contextlib.nullcontext
    dtype = torch.bfloat16 if device.type == "cpu" else torch.float16
    return lambda: torch.autocast(device.type, dtype=dtype)


class _Meter:
    """Sums logged tensors between log lines without a device sync per step."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.bad: list[str] = []

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


def train(cfg: Config, out_dir: str | Path, resume: bool = False, progress: bool = True,
          evaluators: list[Evaluator] | None = None, data: ImageData | None = None) -> Path:
    """Train `cfg` into `out_dir`; returns the path of the last checkpoint.

    With `resume`, continues from `out_dir/checkpoints/latest.pt` up to `cfg.train.steps`, restoring
    models, optimizers, EMA, step counters, RNG state and data order: N steps then N more equal 2N.
    """
    run = RunDir(out_dir)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    saved = None
    if resume:
        if not run.latest.is_file():
            raise CheckpointError(f"nothing to resume: {run.latest} does not exist")
        saved = ckpt_io.load(run.latest)
        check_resume_compatible(cfg, saved["config"])
    elif run.latest.is_file():
        raise ConfigError(f"{run.root} already holds a run ({run.latest}); pass --resume to continue it or choose another --out")
    if data is None:
        d = cfg.data
        data = load_images(d.name, d.split, d.resolution, d.channels, d.root, d.limit)
    if data.images.shape[1:] != (cfg.data.channels, cfg.data.resolution, cfg.data.resolution):
        raise ConfigError(f"data images are {tuple(data.images.shape[1:])}, the config expects "
                          f"({cfg.data.channels}, {cfg.data.resolution}, {cfg.data.resolution})")
    st = build_state(cfg, len(data))
    if saved is not None:
        load_state_dict(st, saved)
        run.truncate_metrics(st.step)
        log.info("resumed %s at step %d", run.latest, st.step)
    run.root.mkdir(parents=True, exist_ok=True)
    save_yaml(cfg, run.root / "config.yaml")
    if saved is None and run.metrics.exists():
        run.metrics.unlink()  # left by a run that died before its first checkpoint
    images = data.images.to(st.device)
    evaluators = default_evaluators(cfg, data) if evaluators is None else evaluators

    t = cfg.train
    obj = make_objective(st)
    meter = _Meter()
    last_ckpt: Path | None = run.latest if saved is not None else None

    def ensure_finite() -> None:
        bad = meter.non_finite()
        if bad:
            where = f"; the last good checkpoint is {last_ckpt}" if last_ckpt else "; no checkpoint was written"
            raise DivergenceError(f"training diverged: {', '.join(sorted(bad))} became NaN/inf by step {st.step}{where}. "
                                  "Lower train.lr_d/train.lr_g or enable loss.r1_gamma")

    def checkpoint() -> None:
        nonlocal last_ckpt
        ensure_finite()
        refresh_bn_stats(st.G_ema, st.device, seed=cfg.seed)
        last_ckpt = run.save_checkpoint(st, t.keep_ckpts)

    from tqdm import tqdm

    bar = tqdm(total=t.steps, initial=st.step, desc=f"train {cfg.model.name}", unit="step", disable=not progress, dynamic_ncols=True)
    t_last, step_last = time.perf_counter(), st.step
    try:
        while st.step < t.steps:
            train_step(st, obj, images, meter)
            bar.update(1)

            last = st.step == t.steps
            if st.step % t.log_every == 0 or last:
                ensure_finite()
                now = time.perf_counter()
                dt, ds = now - t_last, st.step - step_last
                rec = {"step": st.step, **{k: round(v, 5) for k, v in meter.means().items()},
                       "it_s": round(ds / dt, 3), "img_s": round(ds * t.n_dis * t.batch_size / dt, 1)}
                run.log(rec)
                bar.set_postfix({k: f"{rec[k]:.3f}" for k in ("d_loss", "g_loss", "rot_acc_real") if k in rec})
                meter.reset()
                t_last, step_last = now, st.step
            if (t.sample_every and st.step % t.sample_every == 0) or last:
                ensure_finite()
                refresh_bn_stats(st.G_ema, st.device, seed=cfg.seed)
                with torch.no_grad():
                    save_grid(st.G_ema(st.fixed_z), run.samples / f"step_{st.step:06d}.png")
            if evaluators and ((cfg.eval.every and st.step % cfg.eval.every == 0) or last):
                ensure_finite()
                _evaluate(st, evaluators, run)
            if (t.ckpt_every and st.step % t.ckpt_every == 0) or last:
                checkpoint()
    except KeyboardInterrupt:
        bar.close()
        if st.step > 0 and not meter.non_finite():
            checkpoint()
            log.warning("interrupted at step %d; saved %s (continue with --resume)", st.step, run.latest)
        raise
    bar.close()
    return run.latest


def make_objective(st: TrainState) -> GANObjective:
    """The objective for a state, with AMP autocast and grad scaling as configured."""
    amp = _autocast_factory(st.device, st.cfg.train.amp)
    return GANObjective(st.G, st.D, st.aux, st.cfg.loss, amp, lambda loss: st.scaler.scale(loss).backward())


def train_step(st: TrainState, obj: GANObjective, images: torch.Tensor, meter: "_Meter | None" = None) -> None:
    """One G step: `n_dis` D phases (plus lazy R1), one G phase, the EMA update. images: uint8 [N, C, H, W]."""
    t, loss_cfg = st.cfg.train, st.cfg.loss
    fmt = torch.channels_last if t.channels_last else torch.contiguous_format
    st.G.train()
    st.D.requires_grad_(True)
    for _ in range(t.n_dis):
        idx = st.sampler.next().to(images.device)
        real = to_float(images[idx]).contiguous(memory_format=fmt)  # [B, C, H, W] in [-1, 1]
        z = st.G.sample_z(t.batch_size, device=st.device)
        st.opt_d.zero_grad(set_to_none=True)
        logs = obj.phase_d(real, z)
        if obj.do_r1 and st.d_steps % loss_cfg.r1_every == 0:
            logs.update(obj.phase_dreg(real, loss_cfg.r1_every))
        st.scaler.step(st.opt_d)
        st.scaler.update()
        st.d_steps += 1
        if meter is not None:
            meter.add(logs)
    st.D.requires_grad_(False)
    st.opt_g.zero_grad(set_to_none=True)
    logs = obj.phase_g(st.G.sample_z(t.batch_size, device=st.device))
    st.scaler.step(st.opt_g)
    st.scaler.update()
    update_ema(st.G_ema, st.G, t.ema_beta if st.step >= t.ema_start else 0.0)
    st.step += 1
    if meter is not None:
        meter.add(logs)


def _evaluate(st: TrainState, evaluators: list[Evaluator], run: RunDir) -> None:
    refresh_bn_stats(st.G_ema, st.device, seed=st.cfg.seed)
    results: dict[str, float] = {}
    for ev in evaluators:
        results.update(ev(st))
    run.log({"step": st.step, "eval": results})
    fid_keys = sorted(k for k in results if k.startswith("fid"))
    if fid_keys:
        key = fid_keys[0]
        if key not in st.best or results[key] < st.best[key]:
            st.best[key] = results[key]
            data = ckpt_io.to_bytes({"format": ckpt_io.FORMAT, "version": ckpt_io.VERSION, **state_dict(st)})
            ckpt_io.write_atomic(data, run.ckpts / "best.pt")


def config_of(ckpt: dict[str, Any]) -> Config:
    """The resolved config embedded in a checkpoint."""
    return from_dict(ckpt["config"])
