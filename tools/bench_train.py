"""Training throughput of each config on this machine: one JSON line per config.

    python tools/bench_train.py                      # every configs/*.yaml
    python tools/bench_train.py configs/ssgan_fmnist.yaml --steps 20 --vs train.channels_last=false

`--vs KEY=VALUE` (repeatable) times each config a second time with that override, interleaving the two so that
machine noise hits both alike, and reports the speed ratio (base / variant) in the same run.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from gan_ssl.data import ImageData, load_images
from gan_ssl.engine.loop import train_step
from gan_ssl.engine.state import build_state
from gan_ssl.families.resolve import resolve


def _setup(path: Path, overrides: list[str], data: ImageData):
    cfg = resolve(path, overrides)
    return cfg, build_state(cfg, data)


def _time(st, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        train_step(st)
    if st.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("configs", nargs="*", type=Path, help="YAML configs [default: configs/*.yaml]")
    ap.add_argument("--steps", type=int, default=20, help="timed G steps per config (after 3 warm-up steps)")
    ap.add_argument("--rounds", type=int, default=2, help="with --vs: alternating rounds of --steps each")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="override for every run")
    ap.add_argument("--vs", action="append", default=[], help="KEY=VALUE: also time each config with this override "
                    "(repeat it for a variant with several)")
    args = ap.parse_args()
    configs = args.configs or sorted(Path("configs").glob("*.yaml"))
    data = load_images("fashion-mnist", "train", 32, 1, limit=4096)
    for path in configs:
        base = _setup(path, args.overrides, data)
        runs = {"base": base}
        if args.vs:
            runs["variant"] = _setup(path, args.overrides + args.vs, data)
        secs = {k: 0.0 for k in runs}
        images = {k: 0 for k in runs}
        for k, (_, st) in runs.items():
            _time(st, 3)  # warm-up
        rounds = args.rounds if args.vs else 1
        for _ in range(rounds):
            for k, (_, st) in runs.items():
                before = st.images
                secs[k] += _time(st, args.steps)
                images[k] += st.images - before
        cfg = base[0]
        n = args.steps * rounds
        rec = {
            "config": str(path), "family": cfg.family, "model": cfg.model.name, "device": cfg.train.device, "threads": torch.get_num_threads(),
            "batch_size": cfg.train.batch_size, "n_dis": cfg.train.n_dis, "rotation": cfg.aux.rotation.d_weight > 0,
            "s_per_step": round(secs["base"] / n, 4),
            "img_s": round(images["base"] / secs["base"], 1),
            "est_min_per_2000_steps": round(secs["base"] / n * 2000 / 60, 1),
        }
        if args.vs:
            rec["vs"] = " ".join(args.vs)
            rec["variant_s_per_step"] = round(secs["variant"] / n, 4)
            rec["speedup_base_over_variant"] = round(secs["variant"] / secs["base"], 3)
        print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
