"""The GPU check of issue 25, one JSON file: run it whenever a GPU machine is at hand (at most about 5 minutes).

    bash tools/gpu_check.sh --prepare                 # here, once: data, the offline FID extractor and Mimicry into .bench/
    bash tools/gpu_check.sh --out gpu_check.json      # on the GPU machine (carry .bench): every section below
    bash tools/gpu_check.sh --cpu --steps 2           # the dry run on a CPU (a test runs it)

Sections (each records its own error instead of stopping the rest; the exit code is 1 if any failed):
  env         the device, torch/CUDA versions, and the same-process fp32 / bf16 matmul rates (2048^3; 4096^3 on a GPU)
  throughput  the main job (configs/ssgan_fmnist.yaml) at GPU settings (widths 128 unless --set says otherwise) for
              --steps loop steps at fp32, bf16 and fp16 (GradScaler): s/step, steps/s, images/s
  torchrun    a 1-process `torchrun` run (nccl on CUDA, gloo on the CPU) of 2k steps against k steps resumed to 2k: every
              tensor of the two final checkpoints compared (exact, and the largest difference)
  fid         `gan-ssl fid RUN fashion-mnist:test --device D` on that run's checkpoint (--fid-n samples)
  mimicry     Mimicry's SSGAN32 at its default widths (256/128) against the same network in gan_ssl at fp32 and bf16,
              interleaved on the device (tools/bench_peers.py), if torch-mimicry is in --mimicry
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
BUNDLE = ROOT / ".bench"
GPU_SET = ["model.g_width=128", "model.d_width=128"]  # the README's GPU example


def matmul_tflops(device: str, dtype: torch.dtype, n: int, reps: int = 5) -> float:
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(reps):
        _sync(device)
        t = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return round(2 * n**3 / best / 1e12, 3)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def section_env(a: argparse.Namespace) -> dict[str, Any]:
    n = 2048 if a.device == "cpu" else 4096
    r: dict[str, Any] = {"device": a.device, "torch": torch.__version__, "cuda": torch.version.cuda,
                         "name": torch.cuda.get_device_name() if a.device == "cuda" else "cpu",
                         "threads": torch.get_num_threads()}
    r[f"matmul_fp32_tflops_{n}"] = matmul_tflops(a.device, torch.float32, n)
    r[f"matmul_bf16_tflops_{n}"] = matmul_tflops(a.device, torch.bfloat16, n)
    return r


def _data(a: argparse.Namespace) -> Any:
    from gan_ssl.data import ImageData, load_images

    try:
        return load_images("fashion-mnist", "train", 32, 1, limit=a.images)
    except Exception as e:  # no dataset on this machine: throughput does not depend on the pixels
        print(f"gpu_check: Fashion-MNIST not found ({str(e)[:80]}...); random images for the throughput section", flush=True)
        g = torch.Generator().manual_seed(0)
        return ImageData(torch.randint(0, 256, (a.images, 1, 32, 32), generator=g, dtype=torch.uint8),
                         torch.zeros(a.images, dtype=torch.long), "fashion-mnist")


def section_throughput(a: argparse.Namespace) -> dict[str, Any]:
    from gan_ssl.engine.loop import train_step
    from gan_ssl.engine.state import build_state
    from gan_ssl.families.resolve import resolve

    data, out = _data(a), {}
    for precision in ("fp32", "bf16", "fp16"):
        if precision == "bf16" and a.device == "cuda" and not torch.cuda.is_bf16_supported():
            out[precision] = {"skipped": "this GPU has no bf16"}
            continue
        cfg = resolve(a.config, [f"train.device={a.device}", f"train.precision={precision}", *a.overrides])
        st = build_state(cfg, data)
        for _ in range(3):  # warm-up: kernels chosen, allocator filled
            train_step(st)
        _sync(a.device)
        t, images = time.perf_counter(), st.images
        for _ in range(a.steps):
            train_step(st)
        _sync(a.device)
        sec = time.perf_counter() - t
        out[precision] = {"s_per_step": round(sec / a.steps, 5), "steps_s": round(a.steps / sec, 2),
                          "img_s": round((st.images - images) / sec, 1), "scaler": st.scaler.is_enabled()}
    out["settings"] = {"config": a.config, "overrides": a.overrides, "steps": a.steps}
    return out


def _flat(obj: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    if isinstance(obj, dict):
        return {k: v for key, val in obj.items() for k, v in _flat(val, f"{prefix}/{key}").items()}
    if isinstance(obj, (list, tuple)):
        return {k: v for i, val in enumerate(obj) for k, v in _flat(val, f"{prefix}/{i}").items()}
    return {}


def compare_checkpoints(p: Path, q: Path) -> dict[str, Any]:
    """Every tensor of two checkpoints: how many differ and by how much at most."""
    x, y = (_flat(torch.load(f, map_location="cpu", weights_only=True)) for f in (p, q))
    keys = sorted(set(x) | set(y))  # networks, EMAs, optimizer states and RNG states alike
    missing = [k for k in keys if k not in x or k not in y or x[k].shape != y[k].shape]
    diffs = {k: float((x[k].double() - y[k].double()).abs().max()) if x[k].numel() else 0.0 for k in keys if k not in missing}
    differ = [k for k, d in diffs.items() if d > 0]
    return {"tensors": len(keys), "missing_or_reshaped": missing[:5], "differ": len(differ), "first_differ": differ[:5],
            "max_abs_diff": max(diffs.values(), default=0.0), "exact": not missing and not differ}


def _torchrun(a: argparse.Namespace, out: Path, steps: int, resume: bool) -> None:
    sets = [f"train.device={a.device}", f"train.steps={steps}", "train.minutes=0", f"train.ckpt_every={a.steps}",
            "train.sample_every=0", "eval.every=0", *a.overrides]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1", "-m", "gan_ssl", "train", a.config,
           "--out", str(out), "--quiet", *(["--resume"] if resume else [])]
    for s in sets:
        cmd += ["--set", s]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=a.timeout)
    if r.returncode:
        raise RuntimeError(f"torchrun exited {r.returncode}: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ''}")


def section_torchrun(a: argparse.Namespace) -> dict[str, Any]:
    full, part = a.work / "full", a.work / "part"
    t = time.perf_counter()
    _torchrun(a, full, 2 * a.steps, False)
    _torchrun(a, part, a.steps, False)
    _torchrun(a, part, 2 * a.steps, True)
    r = compare_checkpoints(full / "checkpoints" / "latest.pt", part / "checkpoints" / "latest.pt")
    r.update(backend="nccl" if a.device == "cuda" else "gloo", steps=2 * a.steps, seconds=round(time.perf_counter() - t, 1))
    if not r["exact"]:
        raise RuntimeError(f"the resumed run differs from the uninterrupted one: {json.dumps(r)}")
    return r


def section_fid(a: argparse.Namespace) -> dict[str, Any]:
    run = a.work / "full"
    cmd = [sys.executable, "-m", "gan_ssl", "fid", str(run), "fashion-mnist:test", "--device", a.device, "--n", str(a.fid_n),
           "--kid-subset-size", str(min(1000, a.fid_n)), "--json", "--quiet"]
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=a.timeout)
    if r.returncode:
        raise RuntimeError(f"gan-ssl fid exited {r.returncode}: {r.stderr.strip()[-300:]}")
    res = json.loads(r.stdout)
    return {"metrics": res["metrics"], "result": res, "seconds": round(time.perf_counter() - t, 1), "n": a.fid_n}


def section_mimicry(a: argparse.Namespace) -> dict[str, Any]:
    if not (a.mimicry / "torch_mimicry").is_dir():
        return {"skipped": f"no torch_mimicry in {a.mimicry} (bash tools/gpu_check.sh --prepare installs it there)"}
    import bench_peers as bp

    mm = bp.load_mimicry(a.mimicry)
    rgb = _data(argparse.Namespace(images=a.images)).images.expand(-1, 3, -1, -1).contiguous()  # SSGAN32 is RGB
    same = bp.SAME_WORK(256, 128) + [f"train.device={a.device}"]
    ours32, _ = bp.gan_ssl_step_fn(None, same + ["train.precision=fp32"], rgb)
    fns: dict[str, Callable[[], int]] = {"mimicry_fp32": bp.mimicry_step_fn(mm, rgb, 256, 128, 64, 0, a.device), "gan_ssl_fp32": ours32}
    if a.device == "cpu" or torch.cuda.is_bf16_supported():
        fns["gan_ssl_bf16"] = bp.gan_ssl_step_fn(None, same + ["train.precision=bf16"], rgb)[0]
    r: dict[str, Any] = bp.interleave(fns, max(1, a.steps // 4), 3)
    r["ratio_fp32"] = round(r["gan_ssl_fp32"]["img_s"] / r["mimicry_fp32"]["img_s"], 2)
    if "gan_ssl_bf16" in r:
        r["ratio_bf16"] = round(r["gan_ssl_bf16"]["img_s"] / r["mimicry_fp32"]["img_s"], 2)
    return r


def prepare(a: argparse.Namespace) -> None:
    """Fill .bench/ (git-ignored; `carry` it to the GPU machine): Fashion-MNIST, the offline extractor, Mimicry."""
    from gan_ssl.data.sources import _IDX_FILES, _find_idx, _search_dirs
    from gan_ssl.evaluation import extractor as ev

    data = BUNDLE / "data" / "fashion-mnist"
    data.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        for stem in _IDX_FILES[split]:
            f = _find_idx(stem, _search_dirs("fashion-mnist"))
            if f is None:
                raise SystemExit(f"error: Fashion-MNIST {split} not found here; sudo apt-get install dataset-fashion-mnist")
            shutil.copy2(f, data / f.name)
    weights = ev.default_path("fashion-mnist-cnn")
    if not weights.is_file():
        raise SystemExit(f"error: {weights} not found; run `gan-ssl evaluator train --data fashion-mnist` first")
    (BUNDLE / "home" / "evaluators").mkdir(parents=True, exist_ok=True)
    shutil.copy2(weights, BUNDLE / "home" / "evaluators" / weights.name)
    if not (BUNDLE / "mimicry" / "torch_mimicry").is_dir():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(BUNDLE / "mimicry"),
                        "torch-mimicry==0.1.16"], check=True)
    size = sum(f.stat().st_size for f in BUNDLE.rglob("*") if f.is_file()) / 2**20
    print(f"prepared {BUNDLE} ({size:.1f} MiB): carry it with the run (carry: [\".bench\"])")


SECTIONS = {"env": section_env, "throughput": section_throughput, "torchrun": section_torchrun, "fid": section_fid,
            "mimicry": section_mimicry}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu", action="store_true", help="the dry run: every section on the CPU, the CPU's widths")
    ap.add_argument("--steps", type=int, default=200, help="timed loop steps per precision; the torchrun check trains 2x this")
    ap.add_argument("--config", default="configs/ssgan_fmnist.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=None, help="config override for every section "
                    "(default on a GPU: model.g_width=128, model.d_width=128)")
    ap.add_argument("--images", type=int, default=8192, help="training images held for the throughput runs")
    ap.add_argument("--fid-n", type=int, default=10000, help="samples of the FID section")
    ap.add_argument("--mimicry", type=Path, default=BUNDLE / "mimicry", help="folder torch-mimicry was pip-installed into")
    ap.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset of: " + ", ".join(SECTIONS))
    ap.add_argument("--timeout", type=int, default=600, help="seconds per subprocess")
    ap.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    ap.add_argument("--prepare", action="store_true", help="fill .bench/ for a GPU machine, then stop")
    a = ap.parse_args()
    if a.prepare:
        prepare(a)
        return 0
    if not a.cpu and not torch.cuda.is_available():
        print("error: no CUDA device here; run with --cpu for the dry run", file=sys.stderr)
        return 2
    a.device = "cpu" if a.cpu else "cuda"
    a.overrides = a.overrides if a.overrides is not None else ([] if a.cpu else list(GPU_SET))
    result: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "argv": sys.argv[1:]}
    failed = []
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        a.work = Path(tmp)
        for name in a.sections.split(","):
            t = time.perf_counter()
            print(f"gpu_check: {name} ...", flush=True)
            try:
                result[name] = SECTIONS[name](a)
            except Exception as e:  # one section's failure is recorded; the others still run
                result[name] = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-1500:]}
                failed.append(name)
            result[name]["section_seconds"] = round(time.perf_counter() - t, 1)
    result["failed"] = failed
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k not in ("argv",)}, indent=1)[:4000])
    print(f"gpu_check: wrote {a.out}; failed sections: {', '.join(failed) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
