"""Benchmark `gan-ssl fid`: feature-extraction images/s and end-to-end seconds for N vs N images.

    .venv/bin/python tools/bench_fid.py                     # 10k vs 10k, fashion-mnist-cnn
    .venv/bin/python tools/bench_fid.py --n 2000 --json bench.json

INPUT1 is N Fashion-MNIST training images written to an .npy (a stand-in for N generated samples,
or --ckpt to sample a checkpoint), INPUT2 is the `fashion-mnist:test` spec (10k images). Each
end-to-end number is measured cold (empty torch-fidelity cache) and warm (reference statistics cached),
through our wrapper (`gan_ssl.evaluation.fid.compute`, in process, and the `gan-ssl fid` CLI, as a fresh
process) and through `torch_fidelity.calculate_metrics` called directly on the same images held in
memory, with the same extractor and settings. ratio = direct seconds / wrapper seconds (>= 0.95 wanted).
Needs the trained extractor (`gan-ssl evaluator train --data fashion-mnist`).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _extract_rate(ext_name: str, images: torch.Tensor, batch_size: int, dtype: str) -> float:
    """Images/s of the torch-fidelity feature extractor alone (FID layer), uint8 [N, C, H, W] in memory."""
    from torch_fidelity.utils import create_feature_extractor

    from gan_ssl.evaluation import fid_extractors as metrics

    ext = metrics.resolve_extractor(ext_name)
    layer = str(ext.info["feature_layer"])
    fe = create_feature_extractor(ext.fidelity_name, [layer], cuda=False, feature_extractor_weights_path=str(ext.weights),
                                  feature_extractor_internal_dtype=dtype, verbose=False)
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            fe(images[i : i + batch_size])
    return len(images) / (time.perf_counter() - t0)


def _direct(a: torch.Tensor, b: torch.Tensor, ext_name: str, batch_size: int, cache_root: str, warm: bool) -> float:
    """Seconds for torch_fidelity.calculate_metrics on in-memory datasets of the same images."""
    import torch_fidelity

    from gan_ssl.evaluation import fid_extractors as metrics
    from gan_ssl.evaluation import fid_inputs

    ext = metrics.resolve_extractor(ext_name)
    t0 = time.perf_counter()
    torch_fidelity.calculate_metrics(
        input1=fid_inputs.TensorImages(a, ext.channels), input2=fid_inputs.TensorImages(b, ext.channels), fid=True,
        feature_extractor=ext.fidelity_name, feature_extractor_weights_path=str(ext.weights),
        feature_extractor_internal_dtype="float64", batch_size=batch_size, cuda=False, verbose=False,
        cache_root=cache_root, cache=warm, input2_cache_name="bench-direct-ref" if warm else None)
    return time.perf_counter() - t0


def _ours(npy: Path, ext_name: str, batch_size: int) -> tuple[float, float, bool]:
    from gan_ssl.evaluation import fid as metrics

    t0 = time.perf_counter()
    r = metrics.compute(str(npy), "fashion-mnist:test", features=ext_name, batch_size=batch_size)
    return time.perf_counter() - t0, r["metrics"][f"fid[{r['extractor']['name']}]"], r["input2"]["reference_cached"]


def _cli(npy: Path, ext_name: str, batch_size: int, env: dict[str, str]) -> tuple[float, float]:
    exe = Path(sys.executable).parent / "gan-ssl"
    t0 = time.perf_counter()
    out = subprocess.run([str(exe), "fid", str(npy), "fashion-mnist:test", "--features", ext_name, "--batch-size", str(batch_size),
                          "--quiet", "--json"], env=env, check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - t0, next(iter(json.loads(out)["metrics"].values()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10000, help="images in INPUT1 (INPUT2 is always the 10k test split)")
    ap.add_argument("--features", default="fashion-mnist-cnn")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--ckpt", default=None, help="sample INPUT1 from this checkpoint instead of using real images")
    ap.add_argument("--no-cli", action="store_true", help="skip the subprocess CLI timings")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()

    from gan_ssl import api
    from gan_ssl.data import load_images
    from gan_ssl.evaluation import fid as metrics

    tmp = Path(tempfile.mkdtemp(prefix="bench_fid_"))
    if args.ckpt:
        a = api.sample(args.ckpt, args.n, seed=0)
    else:
        a = load_images("fashion-mnist", "train", 32, 1, limit=args.n).images  # [n, 1, 32, 32]
    b = load_images("fashion-mnist", "test", 32, 1).images  # [10000, 1, 32, 32]
    npy = tmp / "input1.npy"
    np.save(npy, a.numpy())
    res: dict = {"n1": len(a), "n2": len(b), "features": args.features, "batch_size": args.batch_size,
                 "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
                 "load_avg_start": os.getloadavg()[0], "torch": torch.__version__}
    metrics.resolve_extractor(args.features)  # fail early, and register it

    for dtype in ("float64", "float32"):
        res[f"extract_img_s_{dtype}"] = round(_extract_rate(args.features, b[:4000], args.batch_size, dtype), 1)
        print(f"feature extraction {dtype}: {res[f'extract_img_s_{dtype}']:.0f} images/s", flush=True)

    os.environ["TORCH_HOME"] = str(tmp / "torch_ours")
    t, fid, cached = _ours(npy, args.features, args.batch_size)
    assert not cached
    res["ours_cold_s"], res["fid"] = round(t, 2), fid
    t, fid2, cached = _ours(npy, args.features, args.batch_size)
    assert cached and fid2 == fid
    res["ours_warm_s"] = round(t, 2)
    print(f"wrapper   cold {res['ours_cold_s']:.2f} s  warm {res['ours_warm_s']:.2f} s   fid {fid:.4f}", flush=True)

    root = str(tmp / "torch_direct" / "fidelity_cache")
    res["direct_cold_s"] = round(_direct(a, b, args.features, args.batch_size, root, warm=False), 2)
    _direct(a, b, args.features, args.batch_size, root, warm=True)  # fills the direct cache
    res["direct_warm_s"] = round(_direct(a, b, args.features, args.batch_size, root, warm=True), 2)
    print(f"direct    cold {res['direct_cold_s']:.2f} s  warm {res['direct_warm_s']:.2f} s", flush=True)
    res["ratio_cold"] = round(res["direct_cold_s"] / res["ours_cold_s"], 3)
    res["ratio_warm"] = round(res["direct_warm_s"] / res["ours_warm_s"], 3)
    print(f"ratio direct/wrapper: cold {res['ratio_cold']:.3f}  warm {res['ratio_warm']:.3f}  (>= 0.95 wanted)", flush=True)

    if not args.no_cli:
        env = {**os.environ, "TORCH_HOME": str(tmp / "torch_cli")}
        (t1, f1), (t2, f2) = _cli(npy, args.features, args.batch_size, env), _cli(npy, args.features, args.batch_size, env)
        assert f1 == f2 == fid, (f1, f2, fid)
        res["cli_cold_s"], res["cli_warm_s"] = round(t1, 2), round(t2, 2)
        print(f"gan-ssl fid (new process) cold {t1:.2f} s  warm {t2:.2f} s", flush=True)
    res["load_avg_end"] = os.getloadavg()[0]
    print(json.dumps(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
