"""Linear-probe speed: the warm-started L2 path against fitting every L2 strength from zero, same features, one run.

    python tools/bench_probe.py RUN_OR_CKPT --grid 4 --fraction 1.0 --rounds 2 --threads 2
    python tools/bench_probe.py random-d --grid 2 --fraction 0.1          # a random-init D (no checkpoint needed)
    python tools/bench_probe.py RUN --fit-threads --fractions 0.01,0.1 --threads 2   # threads per fit, D and pixels

Extracts D's features of Fashion-MNIST train and test once, then times `probe_once` (grid of L2_GRID, choice on the
validation split, refit, test accuracy) alternately warm and cold for --rounds rounds, so both see the same machine
load. Prints one JSON line: seconds per probe for each, their ratio, and both accuracies (they should agree).

--fit-threads: `run_probe` on D's features and on raw pixels (the demo's probe: --fractions, one subset) with every
fit on --threads BLAS threads one after another (`FIT_THREADS` = --threads) against the default (one thread per
fit, --threads fits side by side), alternately for --rounds rounds; seconds and accuracies of each.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from gan_ssl.evaluation import features as fe
from gan_ssl.evaluation import probe as pr
from gan_ssl.evaluation.probe import probe_once
from gan_ssl.families.resolve import resolve


def fit_threads(args: argparse.Namespace, feats: dict, y, yt) -> None:
    """run_probe with FIT_THREADS = --threads (one fit at a time) against FIT_THREADS = 1 (--threads fits at once)."""
    fracs = pr.parse_fractions(args.fractions)
    default = pr.FIT_THREADS
    secs: dict[str, list[float]] = {"one_at_a_time": [], "side_by_side": []}
    accs: dict[str, dict] = {}
    for _ in range(args.rounds):
        for mode, n in (("one_at_a_time", args.threads), ("side_by_side", 1)):
            pr.FIT_THREADS = n
            t0 = time.perf_counter()
            accs[mode] = {name: {f: c["accs"] for f, c in pr.run_probe(torch.from_numpy(a), torch.from_numpy(y), torch.from_numpy(b),
                                                                      torch.from_numpy(yt), fracs, 1)["fractions"].items()}
                          for name, (a, b) in feats.items()}
            secs[mode].append(round(time.perf_counter() - t0, 2))
    pr.FIT_THREADS = default
    print(json.dumps({"source": args.source, "threads": args.threads, "fractions": args.fractions, "seconds": secs,
                      "speedup": round(statistics.median(secs["one_at_a_time"]) / statistics.median(secs["side_by_side"]), 2),
                      "accs": accs}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", help="a run folder or checkpoint, or 'random-d' (the SSGAN config's D, random init)")
    ap.add_argument("--grid", type=int, default=fe.DEFAULT_GRID)
    ap.add_argument("--fraction", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="first N train and test images (0 = all)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fit-threads", action="store_true", help="compare threads per fit instead (see above)")
    ap.add_argument("--fractions", default="0.01,0.1", help="label fractions of --fit-threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.source == "random-d":
        cfg = resolve("configs/ssgan_fmnist.yaml", [])
        D = fe.random_representation(cfg, seed=0)
    else:
        D, cfg, _ = fe.load_representation(args.source)
    tr = fe.load_data(cfg, "fashion-mnist", "train", args.limit)
    te = fe.load_data(cfg, "fashion-mnist", "test", args.limit)
    X = fe.representation_features(D, tr, None, fe.DEFAULT_POOL, args.grid)[0].numpy()
    Xt = fe.representation_features(D, te, None, fe.DEFAULT_POOL, args.grid)[0].numpy()
    y, yt = tr.labels.numpy(), te.labels.numpy()
    if args.fit_threads:
        fit_threads(args, {"D": (X, Xt), "pixels": (fe.pixel_features(tr).numpy(), fe.pixel_features(te).numpy())}, y, yt)
        return
    secs: dict[str, list[float]] = {"warm": [], "cold": []}
    acc: dict[str, float] = {}
    for _ in range(args.rounds):
        for mode in ("warm", "cold"):
            t0 = time.perf_counter()
            r = probe_once(X, y, Xt, yt, args.fraction, args.seed, warm_start=mode == "warm")
            secs[mode].append(time.perf_counter() - t0)
            acc[mode] = r["acc"]
    w, c = statistics.median(secs["warm"]), statistics.median(secs["cold"])
    print(json.dumps({"source": args.source, "grid": args.grid, "dim": int(X.shape[1]), "fraction": args.fraction,
                      "n_labels": r["n_labels"], "threads": args.threads,
                      "warm_s": round(w, 1), "cold_s": round(c, 1), "speedup": round(c / w, 2),
                      "acc_warm": round(acc["warm"], 4), "acc_cold": round(acc["cold"], 4)}))


if __name__ == "__main__":
    main()
