"""Does self-supervision on D pay? Every method at equal wall-clock minutes and at equal steps, per data budget.

    python tools/bench_ssl.py                                   # the whole table (see --help for the defaults)
    python tools/bench_ssl.py --budgets 120 --methods none,rotation --seeds 0   # one slice; the cache fills the rest
    python tools/bench_ssl.py --report                          # table, PNGs and JSON from the cached runs only

Methods (each on the main job's CPU recipe, configs/ssgan_fmnist.yaml, or the named preset):
    none              no auxiliary task
    rotation          SSGAN rotation, the main job (weights 1.0 / 0.2, one rotation per image, lazy every 4 steps)
    la                SSGAN-LA as the paper defines it (configs/ssganla_fmnist.yaml: the 8-way head replaces real/fake)
    contrad           ContraD (configs/contrad_fmnist.yaml)
    diffaug           none + DiffAugment (translation, cutout; Zhao et al. 2020)
    rotation+diffaug  rotation + DiffAugment
    rotation-fold     rotation with aux.rotation.lazy=fold: the rotated rows join the D and G passes of every 4th step
                      instead of phases of their own (1.15x faster per step here)
    contrad-sn        ContraD with the paper's kind of D: spectral norm instead of BatchNorm (SNDCGAN-like)
    augself           AugSelf-GAN on diffaug (Hou et al. 2023): D regresses the DiffAugment parameters from
                      D(augmented) - D(original) (configs/augself_fmnist.yaml)
    augself-single    the same from D(augmented) alone: no extra D rows (the official code's `sin` option)
    augself-quarter   augself on the first quarter of each batch only: a quarter of the extra rows (a variant)
    la-plus, la+diffaug, rotation-every1, rotation-fold+diffaug, sngan-paper, ssgan-paper: extra entries (--methods)
Data budgets (`data.subset`, class-balanced, subset seed 0, the same images for every method and seed): all 60k
training images, 1200 (2%), 120 (0.2%, 12 per class).

Each run trains alone for --minutes of training time (sampling, evaluation and checkpoints do not count), with a
checkpoint every --ckpt-every steps and the fast D probe (eval.probe_n training vs as many test images, all 60k
training images to draw from) every --probe-every steps: the forgetting curve. Then the final EMA generator is
scored (--n samples vs the Fashion-MNIST test split, offline extractor: FID, KID, precision, recall) and D is
probed at 1% and 10% labels (3 label subsets each). Once every method of a (budget, seed) is trained, each is
scored again at the largest checkpoint step they all reached: the equal-steps column.

Every run is cached under --out (default ~/.cache/gan_ssl/bench_ssl, outside the work tree) as result.json
beside its run directory; a rerun trains and scores only what is missing, so the table can be built over several
sessions. Run nothing else CPU-heavy meanwhile: the equal-minutes column is only fair on an idle machine. To run
something else in between, create the file --pause (default <out>/PAUSE): the bench waits before its next run until
the file is gone.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
import bench_quality as bq  # noqa: E402

BASE = "configs/ssgan_fmnist.yaml"
OFF = ["aux.rotation.d_weight=0", "aux.rotation.g_weight=0"]
DIFFAUG = "train.diffaug=translation,cutout"
AUGSELF = ["aux.augself.d_weight=1", "aux.augself.g_weight=1"]  # AugSelf-GAN's weights (configs/augself_fmnist.yaml)
METHODS: dict[str, tuple[str, list[str]]] = {
    "none": (BASE, OFF),
    "rotation": (BASE, []),
    "la": ("configs/ssganla_fmnist.yaml", []),
    "contrad": ("configs/contrad_fmnist.yaml", []),
    "diffaug": (BASE, [*OFF, DIFFAUG]),
    "rotation+diffaug": (BASE, [DIFFAUG]),
    "la-plus": ("configs/ssganla_plus_fmnist.yaml", []),
    "la+diffaug": ("configs/ssganla_fmnist.yaml", [DIFFAUG]),
    "rotation-every1": (BASE, ["aux.rotation.every=1"]),
    "rotation-fold": (BASE, ["aux.rotation.lazy=fold"]),
    "rotation-fold+diffaug": (BASE, ["aux.rotation.lazy=fold", DIFFAUG]),
    "contrad-sn": ("configs/contrad_fmnist.yaml", ["model.spectral_norm=true"]),
    "augself": (BASE, [*OFF, DIFFAUG, *AUGSELF]),
    "augself-single": (BASE, [*OFF, DIFFAUG, *AUGSELF, "aux.augself.fuse=single"]),
    "augself-quarter": (BASE, [*OFF, DIFFAUG, *AUGSELF, "aux.augself.rows=0.25"]),
    "sngan-paper": ("configs/sngan_paper.yaml", []),
    "ssgan-paper": ("configs/ssgan_paper.yaml", []),
}
DEFAULT_METHODS = "none,rotation,la,contrad,diffaug,rotation+diffaug"
BUDGETS = {"all": 0, "1200": 1200, "120": 120}
METRICS = ("fid", "kid", "precision", "recall", "probe_0.01", "probe_0.1")
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}  # Student t, 97.5%


def run_dir(args: argparse.Namespace, budget: str, method: str, seed: int) -> Path:
    return args.out / f"m{args.minutes:g}" / budget / method / f"s{seed}"


def score_checkpoint(path: Path, args: argparse.Namespace) -> dict[str, float]:
    """FID/KID/PR of --n EMA samples vs the test split and the D probe at 1% and 10% labels (3 subsets each)."""
    from gan_ssl import api

    return {**bq.score(api.load(path).sample(args.n, seed=1234)), **bq.probe_run(path, "0.01,0.1")}


def wait_while_paused(args: argparse.Namespace) -> None:
    """Block while the --pause file exists (the CPU is lent to something else between runs)."""
    said = False
    while args.pause.exists():
        if not said:
            print(f"paused: waiting for {args.pause} to go", flush=True)
            said = True
        time.sleep(5)


def train_cell(budget: str, method: str, seed: int, args: argparse.Namespace, full: Any) -> dict[str, Any]:
    """Train one (budget, method, seed) run unless cached; score its final checkpoint. Returns the cached result."""
    from gan_ssl.api import train
    from gan_ssl.evaluation.monitors import probe_evaluator
    from gan_ssl.families.resolve import resolve

    out = run_dir(args, budget, method, seed)
    cache = out / "result.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    wait_while_paused(args)
    if out.exists():
        shutil.rmtree(out)
    config, extra = METHODS[method]
    over = [f"seed={seed}", f"train.minutes={args.minutes}", "train.steps=1000000000", f"train.threads={args.threads}",
            f"data.subset={BUDGETS[budget]}", "data.subset_seed=0", f"train.ckpt_every={args.ckpt_every}", "train.keep_ckpts=0",
            "train.sample_every=0", f"eval.every={args.probe_every}", "eval.fid=false", "eval.probe=true",
            f"eval.probe_n={args.probe_n}", *extra]
    cfg = resolve(config, over)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    train(cfg, out, progress=not args.quiet, evaluators=[probe_evaluator(cfg, full)])
    ck = torch.load(out / "checkpoints" / "latest.pt", weights_only=True, map_location="cpu")
    curve = [(r["step"], r["eval"]["probe_acc"]) for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
             if "eval" in r and "probe_acc" in r["eval"]]
    res = {"budget": budget, "method": method, "seed": seed, "steps": int(ck["step"]), "train_seconds": round(float(ck["elapsed"]), 1),
           "img_s": round(int(ck["images"]) / float(ck["elapsed"]), 1), "probe_curve": curve,
           "command": f"gan-ssl train {config} --out {out} " + " ".join(f"--set {o}" for o in over)}
    res["final"] = score_checkpoint(out / "checkpoints" / "latest.pt", args)
    res["wall_seconds"] = round(time.time() - t0, 1)
    cache.write_text(json.dumps(res, indent=1))
    print(json.dumps({k: v for k, v in res.items() if k not in ("probe_curve", "command")}), flush=True)
    return res


def equal_steps(budget: str, methods: list[str], seed: int, args: argparse.Namespace) -> None:
    """Score every method of (budget, seed) at the largest checkpoint step all of them reached (cached)."""
    cells = {m: run_dir(args, budget, m, seed) for m in methods}
    results = {m: json.loads((d / "result.json").read_text()) for m, d in cells.items()}
    common = min(r["steps"] for r in results.values()) // args.ckpt_every * args.ckpt_every
    if common == 0:
        return
    for m, r in results.items():
        if str(common) in r.get("at_steps", {}):
            continue
        ckpt = cells[m] / "checkpoints" / f"step_{common:06d}.pt"
        wait_while_paused(args)
        r.setdefault("at_steps", {})[str(common)] = score_checkpoint(ckpt, args)
        (cells[m] / "result.json").write_text(json.dumps(r, indent=1))
        print(json.dumps({"budget": budget, "method": m, "seed": seed, "at_step": common, **r["at_steps"][str(common)]}), flush=True)


def interval(vals: list[float]) -> tuple[float, float, float]:
    """Mean, sample std and the half-width of the 95% t interval of the mean."""
    mean = statistics.mean(vals)
    if len(vals) < 2:
        return mean, 0.0, float("nan")
    sd = statistics.stdev(vals)
    return mean, sd, T975.get(len(vals) - 1, 1.96) * sd / math.sqrt(len(vals))


def common_steps(rows: list[dict[str, Any]], ckpt_every: int) -> dict[tuple[str, int], int]:
    """Per (budget, seed): the largest checkpoint step every method's run reached (the equal-steps point)."""
    steps: dict[tuple[str, int], int] = {}
    for r in rows:
        key = (r["budget"], r["seed"])
        steps[key] = min(steps.get(key, r["steps"]), r["steps"])
    return {k: v // ckpt_every * ckpt_every for k, v in steps.items()}


def summarize(rows: list[dict[str, Any]], methods: list[str], budgets: list[str], ckpt_every: int) -> dict[str, Any]:
    """Per (budget, method): steps, img/s and each metric at equal minutes (final) and at equal steps."""
    common = common_steps(rows, ckpt_every)
    out: dict[str, Any] = {}
    for b in budgets:
        for m in methods:
            rs = [r for r in rows if r["budget"] == b and r["method"] == m]
            if not rs:
                continue
            cell: dict[str, Any] = {"seeds": [r["seed"] for r in rs], "steps": statistics.mean(r["steps"] for r in rs),
                                    "img_s": statistics.mean(r["img_s"] for r in rs)}
            for k in METRICS:
                vals = [r["final"][k] for r in rs if k in r["final"]]
                if vals:
                    cell[k] = dict(zip(("mean", "std", "ci95"), interval(vals)), runs=vals)
            at = [(common[(b, r["seed"])], r["at_steps"][str(common[(b, r["seed"])])]) for r in rs
                  if str(common.get((b, r["seed"]), -1)) in r.get("at_steps", {})]
            if at and len(at) == len(rs):
                cell["at_steps"] = {"steps": sorted({s for s, _ in at}),
                                    **{k: dict(zip(("mean", "std", "ci95"), interval([v[k] for _, v in at])), runs=[v[k] for _, v in at])
                                       for k in ("fid", "probe_0.01")}}
            out[f"{b}/{m}"] = cell
    return out


def _fmt(c: dict[str, Any] | None, f: str = "{:.2f}") -> str:
    if not c:
        return "-"
    ci = "" if math.isnan(c["ci95"]) else f" ± {f.format(c['ci95'])}"
    return f.format(c["mean"]) + ci


def table(summary: dict[str, Any], args: argparse.Namespace) -> str:
    head = ("| budget | method | seeds | steps | img/s | FID (equal minutes) | KID | precision | recall | D probe 1% | 10% | "
            "FID (equal steps) | probe 1% (equal steps) |")
    lines = [f"Fashion-MNIST, {args.minutes:g} training minutes per run at {args.threads} threads, one run at a time; "
             f"{args.n} EMA samples vs the test split, fid[fashion-mnist-cnn]; D probe = test top-1 % (3 label subsets); "
             "mean ± half-width of the 95% t interval over seeds", head, "|" + " --- |" * (head.count("|") - 1)]
    for key, c in summary.items():
        b, m = key.split("/", 1)
        at = c.get("at_steps", {})
        steps_note = f" @{'/'.join(map(str, at['steps']))}" if at else ""
        lines.append(f"| {b} | {m} | {','.join(map(str, c['seeds']))} | {c['steps']:.0f} | {c['img_s']:.0f} | {_fmt(c.get('fid'))} | "
                     f"{_fmt(c.get('kid'), '{:.3f}')} | {_fmt(c.get('precision'), '{:.3f}')} | {_fmt(c.get('recall'), '{:.3f}')} | "
                     f"{_fmt(c.get('probe_0.01'), '{:.1f}')} | {_fmt(c.get('probe_0.1'), '{:.1f}')} | "
                     f"{_fmt(at.get('fid'))}{steps_note} | {_fmt(at.get('probe_0.01'), '{:.1f}')} |")
    return "\n".join(lines)


def plots(rows: list[dict[str, Any]], summary: dict[str, Any], methods: list[str], budgets: list[str], out: Path) -> list[Path]:
    """fid_vs_budget.png (FID at equal minutes per method against the data budget, 95% error bars) and
    forgetting.png (the in-training D probe over steps, one panel per budget, mean over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = {"all": 60000, "1200": 1200, "120": 120}
    colors = plt.get_cmap("tab20").colors  # more methods than tab10's 10 colours: no two lines alike
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, m in enumerate(methods):
        pts = [(size[b], summary[f"{b}/{m}"]["fid"]) for b in budgets if f"{b}/{m}" in summary and "fid" in summary[f"{b}/{m}"]]
        if pts:
            xs = [x * (1 + 0.04 * (i - len(methods) / 2)) for x, _ in pts]  # a small offset keeps error bars apart
            ax.errorbar(xs, [c["mean"] for _, c in pts], yerr=[0 if math.isnan(c["ci95"]) else c["ci95"] for _, c in pts],
                        marker="o", capsize=3, label=m, color=colors[i % len(colors)])
    ax.set_xscale("log"), ax.set_yscale("log")
    ax.set_xlabel("training images (data.subset)"), ax.set_ylabel("FID vs test split (fashion-mnist-cnn), 95% CI")
    ax.set_title("FID at equal minutes by data budget"), ax.legend(fontsize=8), ax.grid(alpha=0.3, which="both")
    paths = [out / "fid_vs_budget.png"]
    fig.tight_layout(), fig.savefig(paths[0], dpi=110), plt.close(fig)
    fig, axes = plt.subplots(1, len(budgets), figsize=(5 * len(budgets), 4), squeeze=False)
    for ax, b in zip(axes[0], budgets):
        for i, m in enumerate(methods):
            curves = [dict(map(tuple, r["probe_curve"])) for r in rows if r["budget"] == b and r["method"] == m and r["probe_curve"]]
            if not curves:
                continue
            steps = sorted(set.intersection(*(set(c) for c in curves)))
            ax.plot(steps, [100 * statistics.mean(c[s] for c in curves) for s in steps], marker=".", label=f"{m} ({len(curves)} seeds)",
                    color=colors[i % len(colors)])
        ax.set_title(f"D probe over training, budget {b}"), ax.set_xlabel("step"), ax.set_ylabel("probe top-1 % (fast probe)")
        ax.grid(alpha=0.3), ax.legend(fontsize=7)
    paths.append(out / "forgetting.png")
    fig.tight_layout(), fig.savefig(paths[1], dpi=110), plt.close(fig)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default=DEFAULT_METHODS, help="comma-separated, from: " + ", ".join(METHODS))
    ap.add_argument("--budgets", default="120,1200,all", help="comma-separated, from: " + ", ".join(BUDGETS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--minutes", type=float, default=3.0, help="training minutes per run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ckpt-every", type=int, default=250, help="checkpoint interval (the equal-steps column reads these)")
    ap.add_argument("--probe-every", type=int, default=250, help="steps between in-training D probes (the forgetting curve)")
    ap.add_argument("--probe-n", type=int, default=2000, help="training (and test) images of the in-training probe")
    ap.add_argument("--n", type=int, default=10000, help="samples scored per run")
    ap.add_argument("--out", type=Path, default=Path.home() / ".cache" / "gan_ssl" / "bench_ssl")
    ap.add_argument("--report", action="store_true", help="no training: table and plots from the cached runs")
    ap.add_argument("--no-equal-steps", action="store_true", help="train and score the final checkpoints only (run the "
                    "equal-steps scoring later, once every method of a budget is trained)")
    ap.add_argument("--pause", type=Path, default=None, help="while this file exists, wait before the next run (default <out>/PAUSE)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    methods, budgets = args.methods.split(","), args.budgets.split(",")
    bad = [m for m in methods if m not in METHODS] + [b for b in budgets if b not in BUDGETS]
    if bad:
        ap.error(f"unknown method or budget: {', '.join(bad)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    args.pause = args.pause or args.out / "PAUSE"
    rows = []
    if not args.report:
        from gan_ssl.data import load_images

        full = load_images("fashion-mnist", "train", 32, 1)
        for b in budgets:
            for seed in seeds:
                for m in methods:
                    rows.append(train_cell(b, m, seed, args, full))
                if not args.no_equal_steps:
                    equal_steps(b, methods, seed, args)
    rows = [json.loads(p.read_text()) for b in budgets for m in methods for s in seeds
            if (p := run_dir(args, b, m, s) / "result.json").is_file()]
    summary = summarize(rows, methods, budgets, args.ckpt_every)
    text = table(summary, args)
    args.out.mkdir(parents=True, exist_ok=True)
    pngs = plots(rows, summary, methods, budgets, args.out)
    (args.out / "bench_ssl.json").write_text(json.dumps({"minutes": args.minutes, "threads": args.threads, "n": args.n,
                                                         "summary": summary, "rows": rows, "table": text}, indent=1))
    print(text)
    print("plots: " + ", ".join(map(str, pngs)))


if __name__ == "__main__":
    main()
