"""Training speed against a peer: Mimicry's SSGAN32 (torch-mimicry 0.1.16) vs gan_ssl, interleaved in one process.

    pip install --no-deps --target /tmp/mimicry torch-mimicry==0.1.16     # bench-only; never a gan_ssl dependency
    python tools/bench_peers.py --mimicry /tmp/mimicry                    # widths 256/128 (the papers'), 2 threads
    python tools/bench_peers.py --mimicry /tmp/mimicry --g-width 64 --d-width 64 --steps 10 --rounds 3

Two comparisons, each as interleaved rounds (A, B, A, B, ...) so that machine noise hits both alike:
  1. identical work: SN-GAN ResNet 32 px with plain BatchNorm in G and bilinear up-sampling (Mimicry's GBlock),
     spectral-norm D with global sum pooling, hinge loss, rotation loss with weights 1.0 / 0.2 on a quarter
     of the batch in each rotation (`split`), batch 64, n_dis 1, Adam(2e-4, 0, 0.9), the same widths, RGB input
     (Mimicry's SSGAN32 has 3 output channels). gan_ssl runs at fp32 (like for like) and at its default precision.
  2. the default main-job config (configs/ssgan_fmnist.yaml) vs Mimicry's SSGAN32 at its default widths.
Images/s counts the real images of D steps. A sgemm figure (2048^3 fp32 matmul) from the same run says how fast
this machine is. One JSON line per comparison.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import types
from pathlib import Path
from typing import Any, Callable

import torch


def load_mimicry(root: Path) -> types.SimpleNamespace:
    """Mimicry's SSGAN32 networks and MetricLog, imported without running torch_mimicry/__init__.py (which pulls
    tensorboard and TensorFlow-based metrics that a --no-deps install lacks)."""
    pkg_dir = root / "torch_mimicry"
    if not pkg_dir.is_dir():
        raise SystemExit(f"error: no torch_mimicry under {root}; run: pip install --no-deps --target {root} torch-mimicry==0.1.16")
    for name, folder in (("torch_mimicry", pkg_dir), ("torch_mimicry.training", pkg_dir / "training")):
        pkg = types.ModuleType(name)  # a bare package: its __init__ (tensorboard, TF metrics) is not run
        pkg.__path__ = [str(folder)]  # type: ignore[attr-defined]
        sys.modules[name] = pkg
    from torch_mimicry.nets.ssgan.ssgan_32 import SSGANDiscriminator32, SSGANGenerator32
    from torch_mimicry.training.metric_log import MetricLog

    return types.SimpleNamespace(G=SSGANGenerator32, D=SSGANDiscriminator32, MetricLog=MetricLog)


def mimicry_step_fn(mm: types.SimpleNamespace, images: torch.Tensor, ngf: int, ndf: int, batch: int, seed: int,
                    device: str = "cpu") -> Callable[[], int]:
    """One Mimicry training iteration (D step then G step, as its Trainer runs them with n_dis 1), at fp32 on `device`."""
    torch.manual_seed(seed)
    dev = torch.device(device)
    G, D = mm.G(ngf=ngf).to(dev), mm.D(ndf=ndf).to(dev)
    opt_g = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.0, 0.9))
    state = {"step": 0}

    def step() -> int:
        idx = torch.randint(0, images.shape[0], (batch,))
        real = (images[idx].to(dev).float() / 127.5 - 1, torch.zeros(batch, dtype=torch.long, device=dev))
        log = mm.MetricLog()
        D.train_step(real, G, opt_d, log, device=dev, global_step=state["step"])
        G.train_step(real, D, opt_g, log, device=dev, global_step=state["step"])
        state["step"] += 1
        return batch

    return step


def gan_ssl_step_fn(config: str | None, overrides: list[str], images: torch.Tensor) -> tuple[Callable[[], int], Any]:
    from gan_ssl.data import ImageData
    from gan_ssl.engine.loop import train_step
    from gan_ssl.engine.state import build_state
    from gan_ssl.families.resolve import resolve

    cfg = resolve(config, overrides)
    data = ImageData(images, torch.zeros(images.shape[0], dtype=torch.long), "fashion-mnist")
    st = build_state(cfg, data)

    def step() -> int:
        before = st.images
        train_step(st)
        return st.images - before

    return step, st


def sgemm_gflops(n: int = 2048, reps: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def interleave(fns: dict[str, Callable[[], int]], steps: int, rounds: int, warmup: int = 2) -> dict[str, dict[str, float]]:
    """Images/s of each step function over `rounds` alternating rounds of `steps` steps (after a warm-up; CUDA work
    is waited for before each clock read)."""
    for f in fns.values():
        for _ in range(warmup):
            f()
    secs = {k: 0.0 for k in fns}
    imgs = {k: 0 for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            _sync()
            t = time.perf_counter()
            for _ in range(steps):
                imgs[k] += f()
            _sync()
            secs[k] += time.perf_counter() - t
    return {k: {"img_s": round(imgs[k] / secs[k], 1), "s_per_step": round(secs[k] / (steps * rounds), 4)} for k in fns}


def SAME_WORK(g_width: int, d_width: int) -> list[str]:  # noqa: N802 (a table, spelled like one)
    """gan_ssl's overrides for Mimicry's SSGAN32: SN-GAN ResNet 32 px, plain BN and bilinear up-sampling in G, spectral-norm
    D, hinge loss, split rotation 1.0 / 0.2, batch 64, n_dis 1, Adam(2e-4, 0, 0.9), RGB."""
    return ["model.name=sngan", "model.self_modulation=false", "model.upsample=bilinear", f"model.g_width={g_width}",
            f"model.d_width={d_width}", "model.z_dim=128", "data.channels=3", "loss.adversarial=hinge",
            "aux.rotation.d_weight=1.0", "aux.rotation.g_weight=0.2", "aux.rotation.protocol=split", "train.batch_size=64",
            "train.n_dis=1", "train.lr_g=2e-4", "train.lr_d=2e-4", "train.beta1_g=0", "train.beta2_g=0.9", "train.beta1_d=0",
            "train.beta2_d=0.9"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mimicry", type=Path, default=Path("/tmp/mimicry"), help="folder torch-mimicry was pip-installed into (--target)")
    ap.add_argument("--g-width", type=int, default=256, help="G width of the identical-work comparison (Mimicry's ngf)")
    ap.add_argument("--d-width", type=int, default=128, help="D width (Mimicry's ndf)")
    ap.add_argument("--steps", type=int, default=5, help="steps per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--config", default="configs/ssgan_fmnist.yaml", help="the default config of comparison 2")
    ap.add_argument("--only", choices=["identical", "default"], default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    mm = load_mimicry(args.mimicry)
    from gan_ssl.data import load_images

    rgb = load_images("fashion-mnist", "train", 32, 3, limit=8192).images  # [N, 3, 32, 32] uint8
    gray = load_images("fashion-mnist", "train", 32, 1, limit=8192).images
    gflops = round(sgemm_gflops(), 1)
    same = SAME_WORK(args.g_width, args.d_width)
    if args.only in (None, "identical"):
        ours32, st = gan_ssl_step_fn(None, same + ["train.precision=fp32"], rgb)
        ours_default, st2 = gan_ssl_step_fn(None, same + ["train.precision=auto"], rgb)
        fns = {"mimicry": mimicry_step_fn(mm, rgb, args.g_width, args.d_width, 64, 0), "gan_ssl_fp32": ours32,
               f"gan_ssl_{st2.precision}": ours_default}
        r = interleave(fns, args.steps, args.rounds)
        print(json.dumps({"comparison": "identical work (SSGAN32 ResNet, split rotation, batch 64)", "g_width": args.g_width,
                          "d_width": args.d_width, "threads": args.threads, "sgemm_gflops": gflops, **r,
                          "ratio_fp32": round(r["gan_ssl_fp32"]["img_s"] / r["mimicry"]["img_s"], 2),
                          f"ratio_{st2.precision}": round(r[f"gan_ssl_{st2.precision}"]["img_s"] / r["mimicry"]["img_s"], 2)}), flush=True)
    if args.only in (None, "default"):
        ours, st = gan_ssl_step_fn(args.config, [], gray)
        fns = {"mimicry_ssgan32_default": mimicry_step_fn(mm, rgb, 256, 128, 64, 0), "gan_ssl_default": ours}
        r = interleave(fns, args.steps, args.rounds)
        print(json.dumps({"comparison": f"defaults: Mimicry SSGAN32 (256/128, RGB) vs {args.config} ({st.cfg.model.name}, "
                                        f"{st.precision}, rotation {st.cfg.aux.rotation.protocol})", "threads": args.threads,
                          "sgemm_gflops": gflops, **r,
                          "ratio": round(r["gan_ssl_default"]["img_s"] / r["mimicry_ssgan32_default"]["img_s"], 2)}), flush=True)


if __name__ == "__main__":
    main()
