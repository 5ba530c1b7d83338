"""SSGAN's representation claim at small scale on Fashion-MNIST: four setups, one budget, one table.

    python tools/bench_ssgan_claim.py --threads 2           # 2,000 steps per setup, global and 4x4 pooling
    python tools/bench_ssgan_claim.py --train-seeds 0,1     # two training runs per setup, averaged
    python tools/bench_ssgan_claim.py --steps 200 --probe-limit 5000 --seeds 1 --grids 1   # a quick smoke run

Setups (same seed, steps and data): `no-rotation` (configs/ssgan_fmnist.yaml with the rotation weights at 0: the
same recipe without self-supervision), `ssgan` (configs/ssgan_fmnist.yaml), `rotation-only` (the SSGAN config with
loss.d_adv_weight=0 and the rotation task in every step: D learns rotation alone; G gets alpha * rotation loss and
no adversarial signal), `random-d` (the SSGAN architecture, random init, no training). For each: offline
FID of the EMA generator against the test split (gan_ssl.evaluation.fid, where there is a trained generator) and the
linear probe of D at 1%, 10% and 100% labels (gan_ssl.evaluation.probe); raw-pixel logistic regression is the reference row.

Probes run once per pooling grid in --grids: 1 is the issue's protocol (each block pooled globally, 256 dims at
width 32); 4 keeps a 4x4 layout per block (4,096 dims), the usual linear-evaluation protocol for conv features
(pool each map to a fixed small grid, e.g. Goyal et al. 2019). Both are reported; random-d gets the same pooling.
With several --train-seeds, FID is the mean over runs and probe cells pool every (run, probe seed) accuracy.

Runs go to --out/steps<S>_seed<k>/<setup>/ and are reused when they already reached the budget; probe and FID results are cached
there as JSON, so an interrupted benchmark continues where it stopped. Prints one table, then the JSON.
Targets (Chen et al. 2019, scaled down): SSGAN probe at 100% labels >= 90%; SSGAN FID <= no-rotation FID and SSGAN
probe >= no-rotation probe at equal steps (tools/bench_quality.py compares at equal minutes).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from gan_ssl.config import Config
from gan_ssl.core.errors import GanSslError
from gan_ssl.evaluation import features as fe
from gan_ssl.evaluation.probe import FRACTIONS, L2_GRID, run_probe
from gan_ssl.families.resolve import resolve

SETUPS: dict[str, tuple[str, list[str]]] = {
    "no-rotation": ("configs/ssgan_fmnist.yaml", ["aux.rotation.d_weight=0", "aux.rotation.g_weight=0"]),
    "ssgan": ("configs/ssgan_fmnist.yaml", []),
    "rotation-only": ("configs/ssgan_fmnist.yaml", ["loss.d_adv_weight=0", "aux.rotation.every=1"]),
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
    from gan_ssl.api import train
    from gan_ssl.engine.checkpoint import load

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
        from gan_ssl.evaluation import fid as metrics

        r = metrics.compute(str(ckpt), "fashion-mnist:test", n=n, device=device)
        key = next(k for k in r["metrics"] if k.startswith("fid"))
        return {"fid": float(r["metrics"][key]), "key": key, "n": n, "reference": "fashion-mnist:test"}
    except (ImportError, AttributeError, GanSslError, StopIteration) as e:
        return {"fid": None, "note": f"FID unavailable: {type(e).__name__}: {str(e)[:300]}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2000, help="G steps per trained setup (no wall-clock budget)")
    ap.add_argument("--train-seeds", default="0", help="comma-separated training seeds, the same for every setup")
    ap.add_argument("--seeds", type=int, default=3, help="probe seeds (label subsets) per fraction")
    ap.add_argument("--fractions", default=",".join(f"{f:g}" for f in FRACTIONS))
    ap.add_argument("--probe-limit", type=int, default=0, help="use the first N train and test images for probes (0 = all)")
    ap.add_argument("--fid-n", type=int, default=10000, help="EMA samples per FID")
    ap.add_argument("--grids", default="1,4", help="comma-separated feature pooling grids (1 = global)")
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
    seeds = [int(s) for s in args.train_seeds.split(",") if s.strip()]
    grids = [int(g) for g in args.grids.split(",") if g.strip()]
    tags = {g: _probe_tag(args, g) for g in grids}

    results: dict[str, Any] = {"commands": {}, "grids": grids, "train_seeds": seeds, "runs": {}, "setups": {}}
    data: dict[str, Any] = {}
    for name in names:
        runs = [run_setup(name, seed, args, data, tags, results["commands"]) for seed in seeds]
        results["runs"][name] = runs
        results["setups"][name] = aggregate(runs, grids)
        print(f"[{name}] done: fid {results['setups'][name]['fid']}", flush=True)
    if not args.no_pixels and data:
        results["pixels"] = _cached(args.out / f"pixels_{_probe_tag(args)}.json", lambda: run_probe(
            fe.pixel_features(data["train"]), data["train"].labels, fe.pixel_features(data["test"]), data["test"].labels,
            fractions, args.seeds, not args.quiet))
    results["checks"] = checks(results)
    print(table(results, fractions))
    print(json.dumps(results, indent=2))


def _probe_tag(args: argparse.Namespace, grid: int | None = None) -> str:
    """Cache-file stem of a probe result: everything that changes it (a new L2 grid re-probes)."""
    g = "" if grid is None else f"_g{grid}"
    return f"probe_l{args.probe_limit}_s{args.seeds}{g}_f{args.fractions}_L2x{len(L2_GRID)}"


def run_setup(name: str, seed: int, args: argparse.Namespace, data: dict[str, Any], tags: dict[int, str],
              commands: dict[str, str]) -> dict[str, Any]:
    """Train (or reuse) one setup at one training seed; probe its D at every grid and take its FID (cached)."""
    preset, extra = SETUPS[name]
    over = [f"seed={seed}", "eval.every=0", f"train.threads={args.threads}", *extra, *args.overrides]
    over += [f"train.steps={args.steps}", "train.minutes=0"]
    cfg = resolve(preset, over)
    out = args.out / f"steps{args.steps or 'cfg'}_seed{seed}" / name
    commands[f"{name}@seed{seed}"] = f"gan-ssl train {preset} --out {out} " + " ".join(f"--set {o}" for o in over)
    if not data:
        data["train"] = fe.load_data(cfg, "fashion-mnist", "train", args.probe_limit)
        data["test"] = fe.load_data(cfg, "fashion-mnist", "test", args.probe_limit)
    row: dict[str, Any] = {"seed": seed, "steps": 0 if name == "random-d" else cfg.train.steps, "probe": {}}
    if name == "random-d":
        D = fe.random_representation(cfg, seed=seed)
        row["fid"] = {"fid": None, "note": "no generator"}
    else:
        ckpt = train_setup(name, cfg, out, not args.quiet)
        D, _, _ = fe.load_representation(ckpt)
        sec = out / "train_seconds.json"
        row["train_seconds"] = json.loads(sec.read_text())["seconds"] if sec.is_file() else None
    fractions = tuple(float(f) for f in args.fractions.split(","))
    for grid, tag in tags.items():
        def do_probe(grid: int = grid) -> dict[str, Any]:
            a, _, _ = fe.representation_features(D, data["train"], None, fe.DEFAULT_POOL, grid, progress=not args.quiet)
            b, _, _ = fe.representation_features(D, data["test"], None, fe.DEFAULT_POOL, grid, progress=not args.quiet)
            return run_probe(a, data["train"].labels, b, data["test"].labels, fractions, args.seeds, not args.quiet)

        row["probe"][str(grid)] = _cached(out / f"{tag}.json", do_probe)
    if name != "random-d":
        row["fid"] = _cached(out / f"fid_n{args.fid_n}.json", lambda: fid_of(ckpt, args.fid_n, "cpu"))
        if row["fid"]["fid"] is None:  # do not keep a failure in the cache: retry next time
            (out / f"fid_n{args.fid_n}.json").unlink()
    return row


def aggregate(runs: list[dict[str, Any]], grids: list[int]) -> dict[str, Any]:
    """One row per setup: FID mean/std over training runs; per grid and fraction, mean/std over all probe accuracies."""
    fids = [r["fid"]["fid"] for r in runs if r["fid"]["fid"] is not None]
    note = next((r["fid"]["note"] for r in runs if r["fid"].get("note")), None)
    fid = {"fid": float(statistics.mean(fids)) if fids else None, "std": float(statistics.stdev(fids)) if len(fids) > 1 else 0.0,
           "runs": fids, **({"note": note} if note else {})}
    probe: dict[str, Any] = {}
    for g in grids:
        fr: dict[str, Any] = {}
        for f in runs[0]["probe"][str(g)]["fractions"]:
            accs = [a for r in runs for a in r["probe"][str(g)]["fractions"][f]["accs"]]
            fr[f] = {"mean": float(statistics.mean(accs)), "std": float(statistics.stdev(accs)) if len(accs) > 1 else 0.0, "accs": accs}
        probe[str(g)] = {"dim": runs[0]["probe"][str(g)]["dim"], "fractions": fr}
    return {"steps": runs[0]["steps"], "fid": fid, "probe": probe}


def _acc(probe: dict[str, Any], f: str) -> float | None:
    c = probe["fractions"].get(f)
    return None if c is None else c["mean"]


def checks(r: dict[str, Any]) -> dict[str, Any]:
    """The paper's claims as pass/miss lines per pooling grid (None when a needed number is missing)."""
    s = r["setups"]
    out: dict[str, Any] = {}
    if "ssgan" in s and "no-rotation" in s:
        fa, fb = s["ssgan"]["fid"]["fid"], s["no-rotation"]["fid"]["fid"]
        out["ssgan_fid_le_no_rotation"] = None if fa is None or fb is None else fa <= fb
    for g in r["grids"]:
        if "ssgan" in s:
            a = _acc(s["ssgan"]["probe"][str(g)], "1")
            out[f"grid{g}: ssgan_probe_100pct_ge_0.90"] = None if a is None else a >= TARGET_PROBE
        if "ssgan" in s and "no-rotation" in s:
            for f in s["ssgan"]["probe"][str(g)]["fractions"]:
                out[f"grid{g}: ssgan_probe_ge_no_rotation@{f}"] = _acc(s["ssgan"]["probe"][str(g)], f) >= _acc(s["no-rotation"]["probe"][str(g)], f)
    return out


def table(r: dict[str, Any], fractions: tuple[float, ...]) -> str:
    keys = [f"{f:g}" for f in fractions]
    n = len(r["train_seeds"])
    lines = [f"{n} training run(s) per setup (seeds {', '.join(map(str, r['train_seeds']))}); test top-1 in %, mean ± std"]

    def cells(fr: dict[str, Any]) -> str:
        return "".join(f"{100 * fr[k]['mean']:>10.2f} ± {100 * fr[k]['std']:<4.2f}" for k in keys)

    for g in r["grids"]:
        lines.append(f"pooling: {'global' if g == 1 else f'{g}x{g} grid'} (avg+max per block)")
        lines.append(f"{'setup':<15}{'steps':>6}{'FID':>9}{'dim':>6}" + "".join(f"{f'probe@{float(k):.0%}':>17}" for k in keys))
        for name, row in r["setups"].items():
            fid = row["fid"]["fid"]
            p = row["probe"][str(g)]
            lines.append(f"{name:<15}{row['steps']:>6}{'n/a' if fid is None else f'{fid:.2f}':>9}{p['dim']:>6}" + cells(p["fractions"]))
        if "pixels" in r:
            lines.append(f"{'pixels':<15}{'-':>6}{'-':>9}{r['pixels']['dim']:>6}" + cells(r["pixels"]["fractions"]))
    notes = {row["fid"]["note"] for row in r["setups"].values() if row["fid"].get("note") and row["fid"]["note"] != "no generator"}
    lines += [f"note: {n}" for n in sorted(notes)]
    lines += [f"check {k}: {'PASS' if v else ('n/a' if v is None else 'MISS')}" for k, v in r["checks"].items()]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
