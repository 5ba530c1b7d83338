"""SSGAN's representation claim at small scale on Fashion-MNIST: four setups, one budget, one table.

    python tools/bench_ssgan_claim.py                       # full budget (the configs' train.steps)
    python tools/bench_ssgan_claim.py --steps 200 --probe-limit 5000 --seeds 1   # a quick smoke run

Setups (same seed, steps and data): `sngan` (configs/sngan_fmnist.yaml), `ssgan` (configs/ssgan_fmnist.yaml),
`rotation-only` (the SSGAN config with loss.d_adv_weight=0: D learns rotation alone; G still gets alpha * rotation
loss and no adversarial signal), `random-d` (the SSGAN architecture, random init, no training). For each: offline
FID of the EMA generator against the test split (gan_ssl.metrics, where there is a trained generator) and the
linear probe of D at 1%, 10% and 100% labels (gan_ssl.probe); raw-pixel logistic regression is the reference row.

Runs go to --out/<setup>/ and are reused when they already reached the budget; probe and FID results are cached
there as JSON, so an interrupted benchmark continues where it stopped. Prints one table, then the JSON.
Targets (Chen et al. 2019, scaled down): SSGAN probe at 100% labels >= 90%; SSGAN FID <= SN-GAN FID and SSGAN
probe >= SN-GAN probe at equal budget.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from gan_ssl import features as fe
from gan_ssl.config import Config, resolve
from gan_ssl.errors import GanSslError
from gan_ssl.probe import FRACTIONS, run_probe

SETUPS: dict[str, tuple[str, list[str]]] = {
    "sngan": ("configs/sngan_fmnist.yaml", []),
    "ssgan": ("configs/ssgan_fmnist.yaml", []),
    "rotation-only": ("configs/ssgan_fmnist.yaml", ["loss.d_adv_weight=0"]),
    "random-d": ("configs/ssgan_fmnist.yaml", []),
}
TARGET_PROBE = 0.90


def _cached(path: Path, fn: Any) -> dict[str, Any]:
    if path.is_file():
        return json.loads(path.read_text())
    r = fn()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(r, indent=2))
    return r


def train_setup(name: str, cfg: Config, out: Path, progress: bool) -> Path:
    """Train (or resume, or reuse) one setup's run; returns its latest checkpoint."""
    from gan_ssl.checkpoint import load
    from gan_ssl.train import train

    latest = out / "checkpoints" / "latest.pt"
    if latest.is_file() and int(load(latest)["step"]) >= cfg.train.steps:
        return latest
    t0 = time.perf_counter()
    path = train(cfg, out, resume=latest.is_file(), progress=progress)
    (out / "train_seconds.json").write_text(json.dumps({"seconds": round(time.perf_counter() - t0, 1)}))
    return path


def fid_of(ckpt: Path, n: int, device: str) -> dict[str, Any]:
    """Offline FID of a checkpoint's EMA G vs Fashion-MNIST test, or {'fid': None, 'note': why}."""
    try:
        from gan_ssl import metrics

        r = metrics.compute(str(ckpt), "fashion-mnist:test", n=n, device=device)
        key = next(k for k in r["metrics"] if k.startswith("fid"))
        return {"fid": float(r["metrics"][key]), "key": key, "n": n, "reference": "fashion-mnist:test"}
    except (ImportError, AttributeError, GanSslError, StopIteration) as e:
        return {"fid": None, "note": f"FID unavailable: {type(e).__name__}: {str(e)[:300]}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=0, help="G steps per trained setup [default: the configs' train.steps]")
    ap.add_argument("--seed", type=int, default=0, help="training seed, the same for every setup")
    ap.add_argument("--seeds", type=int, default=3, help="probe seeds (label subsets) per fraction")
    ap.add_argument("--fractions", default=",".join(f"{f:g}" for f in FRACTIONS))
    ap.add_argument("--probe-limit", type=int, default=0, help="use the first N train and test images for probes (0 = all)")
    ap.add_argument("--fid-n", type=int, default=10000, help="EMA samples per FID")
    ap.add_argument("--grid", type=int, default=fe.DEFAULT_GRID, help="feature pooling grid (1 = global)")
    ap.add_argument("--setups", default=",".join(SETUPS), help="comma-separated subset of: " + ", ".join(SETUPS))
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="extra config override for every setup")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 leaves the other core to others)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_ssgan_claim"))
    ap.add_argument("--no-pixels", action="store_true", help="skip the raw-pixel reference row")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    fractions = tuple(float(f) for f in args.fractions.split(","))
    names = [s.strip() for s in args.setups.split(",") if s.strip()]
    tag = f"steps{args.steps or 'cfg'}_seed{args.seed}"
    probe_tag = f"probe_l{args.probe_limit}_s{args.seeds}_g{args.grid}_f{args.fractions}"

    results: dict[str, Any] = {"commands": {}, "setups": {}}
    data: dict[str, Any] = {}
    for name in names:
        preset, extra = SETUPS[name]
        over = [f"seed={args.seed}", "eval.every=0", f"train.threads={args.threads}", *extra, *args.overrides]
        over += [f"train.steps={args.steps}"] if args.steps else []
        cfg = resolve(preset, over)
        out = args.out / tag / name
        results["commands"][name] = f"gan-ssl train {preset} --out {out} " + " ".join(f"--set {o}" for o in over)
        if not data:
            data["train"] = fe.load_data(cfg, "fashion-mnist", "train", args.probe_limit)
            data["test"] = fe.load_data(cfg, "fashion-mnist", "test", args.probe_limit)
        row: dict[str, Any] = {"steps": 0 if name == "random-d" else cfg.train.steps}
        if name == "random-d":
            D = fe.random_discriminator(cfg, seed=args.seed)
            row["fid"] = {"fid": None, "note": "no generator"}
        else:
            ckpt = train_setup(name, cfg, out, not args.quiet)
            D, _, _ = fe.load_discriminator(ckpt)
            sec = out / "train_seconds.json"
            row["train_seconds"] = json.loads(sec.read_text())["seconds"] if sec.is_file() else None

        def do_probe() -> dict[str, Any]:
            a, _, _ = fe.discriminator_features(D, data["train"], None, fe.DEFAULT_POOL, args.grid, progress=not args.quiet)
            b, _, _ = fe.discriminator_features(D, data["test"], None, fe.DEFAULT_POOL, args.grid, progress=not args.quiet)
            return run_probe(a, data["train"].labels, b, data["test"].labels, fractions, args.seeds, not args.quiet)

        row["probe"] = _cached(out / f"{probe_tag}.json", do_probe)
        if name != "random-d":
            row["fid"] = _cached(out / f"fid_n{args.fid_n}.json", lambda: fid_of(ckpt, args.fid_n, "cpu"))
            if row["fid"]["fid"] is None:  # do not keep a failure in the cache: retry next time
                (out / f"fid_n{args.fid_n}.json").unlink()
        results["setups"][name] = row
        print(f"[{name}] done: {json.dumps({k: v for k, v in row.items() if k != 'probe'})}", flush=True)
    if not args.no_pixels and data:
        results["pixels"] = _cached(args.out / f"pixels_{probe_tag}.json", lambda: run_probe(
            fe.pixel_features(data["train"]), data["train"].labels, fe.pixel_features(data["test"]), data["test"].labels,
            fractions, args.seeds, not args.quiet))
    results["checks"] = checks(results)
    print(table(results, fractions))
    print(json.dumps(results, indent=2))


def _acc(row: dict[str, Any], f: str) -> float | None:
    c = row["probe"]["fractions"].get(f) if "probe" in row else row["fractions"].get(f)
    return None if c is None else c["mean"]


def checks(r: dict[str, Any]) -> dict[str, Any]:
    """The paper's claims as pass/miss lines (None when a needed number is missing)."""
    s = r["setups"]
    out: dict[str, Any] = {}
    if "ssgan" in s:
        a = _acc(s["ssgan"], "1")
        out["ssgan_probe_100pct_ge_0.90"] = None if a is None else a >= TARGET_PROBE
    if "ssgan" in s and "sngan" in s:
        fa, fb = s["ssgan"]["fid"]["fid"], s["sngan"]["fid"]["fid"]
        out["ssgan_fid_le_sngan"] = None if fa is None or fb is None else fa <= fb
        for f in s["ssgan"]["probe"]["fractions"]:
            out[f"ssgan_probe_ge_sngan@{f}"] = _acc(s["ssgan"], f) >= _acc(s["sngan"], f)
    return out


def table(r: dict[str, Any], fractions: tuple[float, ...]) -> str:
    keys = [f"{f:g}" for f in fractions]
    head = f"{'setup':<15}{'steps':>6}{'FID':>9}" + "".join(f"{f'probe@{float(k):.0%}':>17}" for k in keys)
    lines = [head]

    def cells(fr: dict[str, Any]) -> str:
        return "".join(f"{100 * fr[k]['mean']:>10.2f} ± {100 * fr[k]['std']:<4.2f}" for k in keys)

    for name, row in r["setups"].items():
        fid = row["fid"]["fid"]
        lines.append(f"{name:<15}{row['steps']:>6}{'n/a' if fid is None else f'{fid:.2f}':>9}" + cells(row["probe"]["fractions"]))
    if "pixels" in r:
        lines.append(f"{'pixels':<15}{'-':>6}{'-':>9}" + cells(r["pixels"]["fractions"]))
    notes = {row["fid"]["note"] for row in r["setups"].values() if row["fid"].get("note") and row["fid"]["note"] != "no generator"}
    lines += [f"note: {n}" for n in sorted(notes)]
    lines += [f"check {k}: {'PASS' if v else ('n/a' if v is None else 'MISS')}" for k, v in r["checks"].items()]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
