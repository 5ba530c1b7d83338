"""BigBiGAN's encoder as a representation on Fashion-MNIST (issue 12): against raw pixels, a random-init encoder and
the SSGAN discriminator trained for the same wall-clock budget; offline FID of both generators; reconstruction grids.

    python tools/bench_bigbigan.py --minutes 12 --threads 2 --seeds 2 --e-layers all   # the issue's table, idle machine (2 x 12 min training, ~40 min of 60k-label probes)
    python tools/bench_bigbigan.py --minutes 0.3 --probe-limit 1000 --seeds 1 --fid-n 500 --out /tmp/bench_bb_smoke   # smoke

Setups (same seed, threads and budget: `train.minutes`; `train.steps` is set high so that the budget decides):
  bigbigan   configs/bigbigan_fmnist.yaml
  ssgan      configs/ssgan_fmnist.yaml
Feature rows, each probed with gan_ssl.evaluation.probe (logistic regression, L2 chosen on a validation split of the labels)
at --fractions, and scored by 1-NN (cosine similarity after centring on the training mean; every training image
is a neighbour, labels of all of them are used):
  E all                         BigBiGAN's encoder read as the D rows are: every stage plus bn_crelu, avg+max pooled
                                (`gan-ssl probe RUN --net encoder`'s default)
  E pool, E bn_crelu            its pooled trunk alone, and the same after BN + CReLU (the BigBiGAN paper's readouts)
  random E ...                  the same encoder and layers with random weights (gan_ssl.evaluation.features.random_representation, seed 0)
  BigBiGAN F                    the x-trunk of BigBiGAN's joint D (every block, avg+max pooled)
  SSGAN D                       the SSGAN discriminator (every block, avg+max pooled), trained for the same minutes
  pixels                        raw pixels in [-1, 1]
FID: offline (`fashion-mnist-cnn`, `gan-ssl evaluator train` once per machine), --fid-n EMA samples against the test split.
Reconstructions: grids of test and train images next to G(E(x)) (gan_ssl.inference.reconstruct), their mean squared error and the
share of G(E(x)) that the offline Fashion-MNIST classifier puts in x's class (next to its accuracy on the x themselves).
Checks: E beats pixels by >= 4 points at 100% labels (issue 12), and a random-init E at every fraction and by >= 5
points at 1% (issue 26), each E layer; G(E(x)) keeps x's class for >= 75% of test images (issue 26).
Everything is cached as JSON under --out (runs are resumed or reused), so an interrupted benchmark continues.
Prints one table, then the JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from gan_ssl.config import Config
from gan_ssl.core.errors import GanSslError
from gan_ssl.data import ImageData
from gan_ssl.evaluation import features as fe
from gan_ssl.evaluation.probe import FRACTIONS, L2_GRID, run_probe
from gan_ssl.families.resolve import resolve

sys.path.insert(0, str(Path(__file__).parent))
from bench_ssgan_claim import _cached  # noqa: E402  (JSON-cached steps, shared by the benchmarks)

SETUPS = {"bigbigan": "configs/bigbigan_fmnist.yaml", "ssgan": "configs/ssgan_fmnist.yaml"}
E_LAYERS = ("all", "pool", "bn_crelu")  # "all": every stage + bn_crelu, avg+max pooled (the D rows' protocol)
MARGIN_OVER_PIXELS = 0.04  # issue 12's target at 100% labels
MARGIN_OVER_RANDOM_1PCT = 0.05  # issue 26: E's lead over a random-init E at 1% labels
RECON_CLASS_TARGET = 0.75  # issue 26: share of G(E(x)) the offline classifier puts in x's class


def train_setup(cfg: Config, out: Path, progress: bool) -> dict[str, Any]:
    """Train (or resume, or reuse) a run up to its budget; returns {ckpt, steps, minutes}."""
    from gan_ssl.api import train
    from gan_ssl.engine.checkpoint import load

    latest = out / "checkpoints" / "latest.pt"
    ck = load(latest) if latest.is_file() else None
    if ck is None or (int(ck["step"]) < cfg.train.steps and float(ck["elapsed"]) < 60 * cfg.train.minutes):
        train(cfg, out, resume=latest.is_file(), progress=progress)
    ck = load(latest)
    return {"ckpt": str(latest), "steps": int(ck["step"]), "minutes": round(float(ck["elapsed"]) / 60, 2)}


def nn1_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, chunk: int = 512) -> float:
    """1-nearest-neighbour test accuracy: cosine similarity of features centred on the training mean.
    train_x [N, F], test_x [M, F] -> the share of test rows whose nearest training row has their label."""
    mu = train_x.mean(0, keepdim=True)
    a, b = F.normalize(train_x - mu, dim=1), F.normalize(test_x - mu, dim=1)
    correct = 0
    for i in range(0, b.shape[0], chunk):
        j = (b[i : i + chunk] @ a.T).argmax(1)  # [chunk]
        correct += int((train_y[j] == test_y[i : i + chunk]).sum())
    return correct / max(1, b.shape[0])


def fid_of(ckpt: str, n: int) -> dict[str, Any]:
    """Offline FID of a checkpoint's EMA G vs Fashion-MNIST test, or {'fid': None, 'note': why}."""
    try:
        from gan_ssl.evaluation import fid as metrics

        r = metrics.compute(ckpt, "fashion-mnist:test", n=n)
        key = next(k for k in r["metrics"] if k.startswith("fid"))
        return {"fid": float(r["metrics"][key]), "key": key, "n": n, "reference": "fashion-mnist:test"}
    except (ImportError, GanSslError, StopIteration) as e:
        return {"fid": None, "note": f"FID unavailable: {type(e).__name__}: {str(e)[:300]}"}


def reconstructions(ckpt: str, out: Path, n_grid: int, n_class: int) -> dict[str, Any]:
    """Test and train grids (x | G(E(x))) and, with the offline classifier, class agreement of G(E(x)) with x's label."""
    from gan_ssl.data import load_images
    from gan_ssl.evaluation import extractor as ev
    from gan_ssl.inference import reconstruct as rc

    r: dict[str, Any] = {}
    for split in ("test", "train"):
        g = rc.reconstruct(ckpt, "fashion-mnist", n_grid, out / f"recon_{split}.png", split=split)
        r[split] = {"grid": g["out"], "mse": round(g["mse"], 4)}
    try:
        net, _ = ev.load_evaluator(ev.default_path("fashion-mnist-cnn"), "fashion-mnist-cnn")
    except GanSslError as e:
        r["class_agreement"] = None
        r["note"] = str(e)[:300]
        return r
    test = load_images("fashion-mnist", "test", 32, 1)
    n = min(n_class, len(test))
    g = rc.reconstruct(ckpt, "fashion-mnist", n, split="test", seed=1)
    idx = torch.tensor(g["indices"])
    r["class_agreement"] = {"n": n, "recon": ev.accuracy(net, g["pairs"][:, 1], test.labels[idx]),
                            "real": ev.accuracy(net, g["pairs"][:, 0], test.labels[idx]), "mse": round(g["mse"], 4)}
    return r


def feature_rows(runs: dict[str, dict[str, Any]], data: dict[str, ImageData], progress: bool,
                 e_layers: tuple[str, ...] = E_LAYERS) -> dict[str, Callable[[], tuple[torch.Tensor, torch.Tensor]]]:
    """Row name -> a function giving (train features [N, F], test features [M, F])."""
    rows: dict[str, Callable[[], tuple[torch.Tensor, torch.Tensor]]] = {}

    def of(rep: fe.Representation, layers: str | None) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
        return lambda: (fe.representation_features(rep, data["train"], layers, progress=progress)[0],
                        fe.representation_features(rep, data["test"], layers, progress=progress)[0])

    if "bigbigan" in runs:
        E, cfg, _ = fe.load_representation(runs["bigbigan"]["ckpt"], "encoder")
        R = fe.random_representation(cfg, "encoder", seed=0)
        for layer in e_layers:
            if layer == "all" or layer in E.known:
                rows[f"E {layer}"] = of(E, layer)
                rows[f"random E {layer}"] = of(R, layer)
        rows["BigBiGAN F"] = of(fe.load_representation(runs["bigbigan"]["ckpt"], "D")[0], None)
    if "ssgan" in runs:
        rows["SSGAN D"] = of(fe.load_representation(runs["ssgan"]["ckpt"])[0], None)
    rows["pixels"] = lambda: (fe.pixel_features(data["train"]), fe.pixel_features(data["test"]))
    return rows


def checks(rows: dict[str, Any], reconstruction: dict[str, Any] | None = None) -> dict[str, bool | None]:
    """Issue 12's and issue 26's targets per E layer (None when a needed row is missing): E >= pixels + 4 points at
    100% labels, E > a random-init E at every fraction and by >= 5 points at 1%; G(E(x)) in x's class for >= 75%."""
    out: dict[str, bool | None] = {}
    acc = lambda name, f: rows[name]["probe"]["fractions"][f]["mean"] if name in rows and f in rows[name]["probe"]["fractions"] else None  # noqa: E731
    for layer in E_LAYERS:
        e = f"E {layer}"
        if e not in rows:
            continue
        a, p = acc(e, "1"), acc("pixels", "1")
        out[f"{e} >= pixels + 4 points @100%"] = None if a is None or p is None else a >= p + MARGIN_OVER_PIXELS
        for f in rows[e]["probe"]["fractions"]:
            r = acc(f"random {e}", f)
            out[f"{e} > random {e} @{float(f):.0%}"] = None if r is None else acc(e, f) > r
        r1, a1 = acc(f"random {e}", "0.01"), acc(e, "0.01")
        out[f"{e} >= random {e} + 5 points @1%"] = None if r1 is None or a1 is None else a1 >= r1 + MARGIN_OVER_RANDOM_1PCT
    ca = (reconstruction or {}).get("class_agreement")
    out["G(E(x)) keeps x's class >= 75%"] = None if not ca else ca["recon"] >= RECON_CLASS_TARGET
    return out


def table(r: dict[str, Any]) -> str:
    rows = r["rows"]
    keys = list(next(iter(rows.values()))["probe"]["fractions"])
    lines = [f"budget {r['minutes']} min per trained setup at {r['threads']} thread(s); "
             + "; ".join(f"{k}: {v['steps']} steps, FID {v['fid']['fid'] if v['fid']['fid'] is None else round(v['fid']['fid'], 2)}"
                         for k, v in r["runs"].items()),
             f"probe on {r['n_train']} train / {r['n_test']} test images, {r['seeds']} seed(s); test top-1 %, mean ± std",
             f"{'features':<20}{'dim':>6}" + "".join(f"{f'probe@{float(k):.0%}':>17}" for k in keys) + f"{'1-NN':>8}"]
    for name, row in rows.items():
        cells = "".join(f"{100 * row['probe']['fractions'][k]['mean']:>10.2f} ± {100 * row['probe']['fractions'][k]['std']:<4.2f}" for k in keys)
        lines.append(f"{name:<20}{row['probe']['dim']:>6}{cells}{100 * row['nn1']:>8.2f}")
    rec = r.get("reconstruction")
    if rec:
        ca = rec.get("class_agreement")
        lines.append(f"reconstructions: {rec['test']['grid']}, {rec['train']['grid']} (MSE test {rec['test']['mse']}, train {rec['train']['mse']})"
                     + (f"; classifier puts {100 * ca['recon']:.1f}% of G(E(x)) in x's class ({100 * ca['real']:.1f}% on x), n = {ca['n']}" if ca else ""))
    notes = {v["fid"]["note"] for v in r["runs"].values() if v["fid"].get("note")}
    lines += [f"note: {n}" for n in sorted(notes)]
    lines += [f"check {k}: {'PASS' if v else ('n/a' if v is None else 'MISS')}" for k, v in r["checks"].items()]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0, help="training budget per setup (train.minutes)")
    ap.add_argument("--seed", type=int, default=0, help="training seed of both setups")
    ap.add_argument("--seeds", type=int, default=3, help="probe seeds (label subsets) per fraction")
    ap.add_argument("--fractions", default=",".join(f"{f:g}" for f in FRACTIONS))
    ap.add_argument("--probe-limit", type=int, default=0, help="first N train and N test images for probes and 1-NN (0 = all)")
    ap.add_argument("--fid-n", type=int, default=10000, help="EMA samples per FID")
    ap.add_argument("--recon-n", type=int, default=32, help="images per reconstruction grid")
    ap.add_argument("--recon-class-n", type=int, default=2000, help="test images whose G(E(x)) the offline classifier labels")
    ap.add_argument("--setups", default=",".join(SETUPS), help="comma-separated subset of: " + ", ".join(SETUPS))
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="extra config override for every setup")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 leaves the other core to others)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_bigbigan"))
    ap.add_argument("--e-layers", default=",".join(E_LAYERS), help="E rows (each with its random-E row), from: " + ", ".join(E_LAYERS))
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    e_layers = tuple(s.strip() for s in args.e_layers.split(",") if s.strip())
    if set(e_layers) - set(E_LAYERS):
        ap.error(f"--e-layers: unknown {', '.join(sorted(set(e_layers) - set(E_LAYERS)))}; use {', '.join(E_LAYERS)}")
    torch.set_num_threads(args.threads)
    fractions = tuple(float(f) for f in args.fractions.split(","))
    names = [s.strip() for s in args.setups.split(",") if s.strip()]
    base = args.out / f"min{args.minutes:g}_seed{args.seed}"
    t0 = time.perf_counter()

    runs: dict[str, Any] = {}
    cfgs: dict[str, Config] = {}
    for name in names:
        over = [f"seed={args.seed}", "eval.every=0", f"train.threads={args.threads}", f"train.minutes={args.minutes}",
                "train.steps=1000000", "train.ckpt_every=1000", *args.overrides]
        cfgs[name] = cfg = resolve(SETUPS[name], over)
        out = base / name
        runs[name] = {"command": f"gan-ssl train {SETUPS[name]} --out {out} " + " ".join(f"--set {o}" for o in over),
                      **train_setup(cfg, out, not args.quiet)}
        runs[name]["fid"] = _cached(out / f"fid_n{args.fid_n}.json", lambda: fid_of(runs[name]["ckpt"], args.fid_n))
        if runs[name]["fid"]["fid"] is None:  # do not keep a failure: retry next time
            (out / f"fid_n{args.fid_n}.json").unlink()
        print(f"[{name}] {runs[name]['steps']} steps in {runs[name]['minutes']} min; fid {runs[name]['fid']}", flush=True)

    any_cfg = next(iter(cfgs.values())) if cfgs else resolve(SETUPS["bigbigan"])
    data = {s: fe.load_data(any_cfg, "fashion-mnist", s, args.probe_limit) for s in ("train", "test")}
    tag = f"l{args.probe_limit}_s{args.seeds}_f{args.fractions}_L2x{len(L2_GRID)}"
    rows: dict[str, Any] = {}
    for name, get in feature_rows(runs, data, not args.quiet, e_layers).items():
        slug = name.replace(" ", "_")
        where = base / ("bigbigan" if ("E " in name or "BigBiGAN" in name) else "ssgan" if "SSGAN" in name else "") / f"row_{slug}_{tag}.json"

        def compute(get: Callable[[], tuple[torch.Tensor, torch.Tensor]] = get, name: str = name) -> dict[str, Any]:
            a, b = get()
            y, yt = data["train"].labels, data["test"].labels
            return {"probe": run_probe(a, y, b, yt, fractions, args.seeds, not args.quiet, f"probe {name}"),
                    "nn1": nn1_accuracy(a, y, b, yt)}

        rows[name] = _cached(where, compute)
        cells = ", ".join(f"{k}: {100 * v['mean']:.2f}" for k, v in rows[name]["probe"]["fractions"].items())
        print(f"[{name}] probe {cells}; 1-NN {100 * rows[name]['nn1']:.2f}", flush=True)

    result: dict[str, Any] = {"minutes": args.minutes, "threads": args.threads, "seed": args.seed, "seeds": args.seeds,
                              "n_train": len(data["train"]), "n_test": len(data["test"]), "runs": runs, "rows": rows}
    if "bigbigan" in runs:
        rec_file = base / "bigbigan" / f"recon_n{args.recon_n}_c{args.recon_class_n}.json"
        result["reconstruction"] = _cached(rec_file, lambda: reconstructions(runs["bigbigan"]["ckpt"], base / "bigbigan", args.recon_n, args.recon_class_n))
        if result["reconstruction"]["class_agreement"] is None:  # no classifier yet: retry next time
            rec_file.unlink()
    result["checks"] = checks(rows, result.get("reconstruction"))
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(table(result))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
