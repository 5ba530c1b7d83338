"""Benchmark the pretext tasks at their default configs: train (or reuse) the runs, then print and save the
eval-inpaint / eval-sr tables and the encoder probe, for Fashion-MNIST test and CIFAR-10 when it is present.

Run on an idle machine (numbers and minutes are for the README):
    python tools/bench_pretext.py --out runs/bench_pretext --threads 2
    python tools/bench_pretext.py --out runs/bench_pretext --lpips          # needs vgg16-397923af.pth in the hub cache
Check the script on tiny settings (seconds, numbers meaningless):
    python tools/bench_pretext.py --out /tmp/bench_tiny --tiny

Writes OUT/<dataset>/<config>/ (run directories, reused when their checkpoint exists), OUT/results.json and
OUT/results.md (the tables, with the commands and the training minutes).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from gan_ssl.api import train
from gan_ssl.core.errors import DataError
from gan_ssl.data import load_images
from gan_ssl.evaluation import pretext, probe
from gan_ssl.families.resolve import resolve

CONFIGS = ("inpaint_fmnist", "sr2x_fmnist", "sr4x_fmnist")
CIFAR = ["data.name=cifar10", "data.channels=3"]  # the same recipes on CIFAR-10 (colour: Y columns in the tables)
CIFAR_FILL = "loss.fill=-0.054"  # CIFAR-10's mean pixel (0.473) in [-1, 1]
TINY = ["data.limit=256", "train.steps=6", "train.batch_size=8", "train.sample_every=3", "train.ckpt_every=3", "train.sample_grid=9"]
TINY_MODEL = {"inpaint_fmnist": ["model.width=8", "model.bottleneck=16", "model.d_width=8", "loss.pretrain_steps=3"],
              "sr2x_fmnist": ["model.g_width=8", "model.n_blocks=2", "model.d_width=8", "loss.pretrain_steps=3"],
              "sr4x_fmnist": ["model.g_width=8", "model.n_blocks=2", "model.d_width=8", "loss.pretrain_steps=3"]}


def datasets(wanted: list[str]) -> list[str]:
    """The datasets to run: Fashion-MNIST always, CIFAR-10 only when its files are found."""
    out = []
    for name in wanted:
        try:
            load_images(name, "test", 32, 1 if name == "fashion-mnist" else 3, limit=1)
            out.append(name)
        except DataError as e:
            print(f"skipping {name}: {e}")
    return out


def overrides(config: str, dataset: str, tiny: bool, threads: int) -> list[str]:
    o = [f"train.threads={threads}"]
    if dataset == "cifar10":
        o += CIFAR + ([CIFAR_FILL] if config.startswith("inpaint") else [])
    if tiny:
        o += TINY + TINY_MODEL[config]
    return o


def run(config: str, dataset: str, root: Path, tiny: bool, threads: int) -> tuple[Path, dict[str, Any]]:
    """Train `config` on `dataset` into root/dataset/config unless its checkpoint exists; returns (run dir, info)."""
    out = root / dataset / config
    sets = overrides(config, dataset, tiny, threads)
    cmd = f"gan-ssl train configs/{config}.yaml --out {out} " + " ".join(f"--set {s}" for s in sets)
    if not (out / "checkpoints" / "latest.pt").is_file():
        print(f"$ {cmd}", flush=True)
        train(resolve(f"configs/{config}.yaml", sets), out, progress=True)
    ck = torch.load(out / "checkpoints" / "latest.pt", map_location="cpu", weights_only=True)
    return out, {"command": cmd, "step": int(ck["step"]), "train_minutes": round(float(ck["elapsed"]) / 60, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/bench_pretext"))
    ap.add_argument("--datasets", default="fashion-mnist,cifar10", help="comma-separated; CIFAR-10 is skipped when absent")
    ap.add_argument("--n", type=int, default=0, help="evaluation images (0 = the whole test split)")
    ap.add_argument("--masks", default="center,blocks,region", help="masks for eval-inpaint (the target is center)")
    ap.add_argument("--lpips", action="store_true", help="LPIPS (VGG) in the SR tables; needs vgg16-397923af.pth")
    ap.add_argument("--probe-fractions", default="0.01,0.1,1.0", help="label fractions of the encoder probe ('' = no probe)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tiny", action="store_true", help="tiny models, a few steps, 64 evaluation images: checks the script only")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    n = 64 if a.tiny else a.n
    results: dict[str, Any] = {"tiny": a.tiny, "threads": a.threads, "torch": torch.__version__, "datasets": {}}
    md = ["# Pretext-task benchmark" + (" (TINY: checks the script, numbers are meaningless)" if a.tiny else ""), ""]
    for ds in datasets(a.datasets.split(",")):
        res: dict[str, Any] = {}
        for config in CONFIGS:
            t0 = time.perf_counter()
            out, info = run(config, ds, a.out, a.tiny, a.threads)
            if config.startswith("inpaint"):
                info["eval"] = {m: pretext.eval_inpaint(out, n=n, mask=m, nn_database=512 if a.tiny else 0, progress=True)
                                for m in a.masks.split(",")}
                tables = [pretext.format_inpaint(r) for r in info["eval"].values()]
                if a.probe_fractions:
                    fr = probe.parse_fractions(a.probe_fractions)
                    limit = 200 if a.tiny else 0
                    info["probe"] = {net: probe.probe(out, ds, fr, 1 if a.tiny else 3, ("pixels",) if net == "encoder" else (),
                                                      limit=limit, net=net, grid=g)
                                     for net, g in (("encoder", 1), ("D", 1))}
                    tables += [probe.format_table(r) for r in info["probe"].values()]
            else:
                info["eval"] = pretext.eval_sr(out, n=n, lpips=a.lpips, progress=True)
                tables = [pretext.format_sr(info["eval"])]
            info["eval_seconds"] = round(time.perf_counter() - t0, 1)
            res[config] = info
            md += [f"## {ds}: {config} (step {info['step']}, {info['train_minutes']} training minutes at {a.threads} thread(s))", "",
                   f"`{info['command']}`", "", "```", *tables, "```", ""]
            print("\n\n".join(tables), flush=True)
        results["datasets"][ds] = res
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "results.json").write_text(json.dumps(results, indent=2))
    (a.out / "results.md").write_text("\n".join(md))
    print(f"wrote {a.out / 'results.json'} and {a.out / 'results.md'}")


if __name__ == "__main__":
    main()
