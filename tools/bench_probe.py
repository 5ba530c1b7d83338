"""Linear-probe speed: the warm-started L2 path against fitting every L2 strength from zero, same features, one run.

    python tools/bench_probe.py RUN_OR_CKPT --grid 4 --fraction 1.0 --rounds 2 --threads 2
    python tools/bench_probe.py random-d --grid 2 --fraction 0.1          # a random-init D (no checkpoint needed)

Extracts D's features of Fashion-MNIST train and test once, then times `probe_once` (grid of L2_GRID, choice on the
validation split, refit, test accuracy) alternately warm and cold for --rounds rounds, so both see the same machine
load. Prints one JSON line: seconds per probe for each, their ratio, and both accuracies (they should agree).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from gan_ssl.evaluation import features as fe
from gan_ssl.evaluation.probe import probe_once
from gan_ssl.families.resolve import resolve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", help="a run folder or checkpoint, or 'random-d' (the SSGAN config's D, random init)")
    ap.add_argument("--grid", type=int, default=fe.DEFAULT_GRID)
    ap.add_argument("--fraction", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="first N train and test images (0 = all)")
    ap.add_argument("--threads", type=int, default=1)
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
