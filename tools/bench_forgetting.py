"""Forgetting in a non-stationary stream, with and without the rotation task (the SSGAN paper's simpler test).

    python tools/bench_forgetting.py                       # 10 tasks x 500 steps, seeds 0 and 1, ~10 CPU minutes
    python tools/bench_forgetting.py --task-steps 200 --seeds 0 --out /tmp/forget

Chen et al. 2019 (section 2, figure 2) motivate SSGAN with a classifier trained on a stream whose task changes
every k steps: without self-supervision the representation of earlier tasks is forgotten at each switch. Here the
network is the main job's discriminator (DCGAN D, width 64, BatchNorm) trained on Fashion-MNIST as a sequence of
1-vs-all tasks (class t against the other nine, t = 0, 1, ..., 9, `--task-steps` each; batch 64 of which half are
class t), by BCE on D's real/fake output, with or without SSGAN's rotation loss (weight 1.0, one random rotation
per image) on the same images. Every `--eval-every` steps: (a) the accuracy of D's output on the 1-vs-all tasks
already seen (test split, each task balanced), and (b) a linear probe of D's features (every block, avg+max pooled;
--probe-n training vs as many test images, all 10 classes), i.e. what the representation keeps. One PNG overlays the
curves of both arms (mean over seeds), one JSON holds every value.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from gan_ssl.data import ImageData, load_images, to_float
from gan_ssl.evaluation.features import DEFAULT_GRID, DEFAULT_POOL, representation_features
from gan_ssl.evaluation.probe import run_probe
from gan_ssl.families.gan import d_representation
from gan_ssl.families.ssl import RotationTask
from gan_ssl.models import build


def task_batch(data: ImageData, by_class: list[torch.Tensor], t: int, batch: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Half class t, half the other classes (uniform): images [B, 1, 32, 32] in [-1, 1], targets [B] (1 = class t)."""
    pos = by_class[t][torch.randint(len(by_class[t]), (batch // 2,), generator=g)]
    others = torch.cat([by_class[c] for c in range(len(by_class)) if c != t])
    neg = others[torch.randint(len(others), (batch - batch // 2,), generator=g)]
    idx = torch.cat([pos, neg])
    return to_float(data.images[idx]), torch.cat([torch.ones(batch // 2), torch.zeros(batch - batch // 2)])


@torch.no_grad()
def seen_task_accuracy(D: torch.nn.Module, test: ImageData, tasks: list[int]) -> float:
    """Mean over the tasks seen so far of D's balanced accuracy on class t vs the rest (test split)."""
    D.eval()
    logits = torch.cat([D(to_float(test.images[i : i + 1000])).float() for i in range(0, len(test), 1000)])
    accs = []
    for t in tasks:
        is_t = test.labels == t
        accs.append(0.5 * ((logits[is_t] > 0).float().mean() + (logits[~is_t] <= 0).float().mean()).item())
    D.train()
    return statistics.mean(accs)


def probe_accuracy(D: torch.nn.Module, probe_train: ImageData, probe_test: ImageData) -> float:
    rep = d_representation(D)
    D.eval()
    a, names, _ = representation_features(rep, probe_train, None, DEFAULT_POOL, DEFAULT_GRID)
    b, _, _ = representation_features(rep, probe_test, names, DEFAULT_POOL, DEFAULT_GRID)
    D.train()
    return run_probe(a, probe_train.labels, b, probe_test.labels, fractions=(1.0,), seeds=1)["fractions"]["1"]["mean"]


def run_arm(rotation: bool, seed: int, args: argparse.Namespace, train: ImageData, test: ImageData,
            probe_train: ImageData, probe_test: ImageData) -> list[dict[str, float]]:
    torch.manual_seed(seed)
    D = build("dcgan", resolution=32, channels=1, z_dim=100, g_width=64, d_width=64, spectral_norm=False)[1]
    rot = RotationTask(D, d_weight=1.0, g_weight=0.0, protocol="one")
    opt = torch.optim.Adam([*D.parameters(), *rot.parameters()], lr=2e-4, betas=(0.5, 0.999))
    by_class = [torch.nonzero(train.labels == c).flatten() for c in range(10)]
    g = torch.Generator().manual_seed(seed + 1)
    curve, t0 = [], time.perf_counter()
    for step in range(10 * args.task_steps):
        t = step // args.task_steps
        x, y = task_batch(train, by_class, t, args.batch, g)
        if rotation:  # upright and rotated rows in one pass (BatchNorm), the BCE on the upright rows only
            extra, context = rot.extra_inputs(x)
            logits, feats = D.forward_with_feature(torch.cat([x, extra]))
            loss = F.binary_cross_entropy_with_logits(logits[: x.shape[0]].float(), y)
            loss = loss + rot.loss("d", feats[: x.shape[0]], feats[x.shape[0]:], context)[0]
        else:
            loss = F.binary_cross_entropy_with_logits(D(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % args.eval_every == 0:
            row = {"step": step + 1, "task": t, "seen_tasks_acc": seen_task_accuracy(D, test, list(range(t + 1))),
                   "probe_acc": probe_accuracy(D, probe_train, probe_test), "seconds": round(time.perf_counter() - t0, 1)}
            curve.append(row)
            print(json.dumps({"rotation": rotation, "seed": seed, **row}), flush=True)
    return curve


def plot(results: dict[str, dict[str, list[dict[str, float]]]], args: argparse.Namespace, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for arm, by_seed in results.items():
        curves = list(by_seed.values())
        steps = [r["step"] for r in curves[0]]
        for ax, key in zip(axes, ("probe_acc", "seen_tasks_acc")):
            ax.plot(steps, [100 * statistics.mean(c[i][key] for c in curves) for i in range(len(steps))], marker=".",
                    label=f"{arm} ({len(curves)} seeds)")
    for ax, title in zip(axes, ("linear probe of D's features, 10 classes", "D's accuracy on the 1-vs-all tasks seen so far")):
        for k in range(1, 10):
            ax.axvline(k * args.task_steps, color="grey", lw=0.5, alpha=0.5)
        ax.set_title(title, fontsize=10), ax.set_xlabel(f"step (the task changes every {args.task_steps} steps)")
        ax.set_ylabel("test accuracy %"), ax.grid(alpha=0.3), ax.legend(fontsize=8)
    fig.tight_layout(), fig.savefig(path, dpi=110), plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task-steps", type=int, default=500, help="steps per 1-vs-all task (10 tasks)")
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--probe-n", type=int, default=2000, help="training (and test) images of the probe")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_forgetting"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train, test = load_images("fashion-mnist", "train", 32, 1), load_images("fashion-mnist", "test", 32, 1)
    g = torch.Generator().manual_seed(12345)
    pi, qi = torch.randperm(len(train), generator=g)[: args.probe_n], torch.randperm(len(test), generator=g)[: args.probe_n]
    probe_train = ImageData(train.images[pi], train.labels[pi], train.name)
    probe_test = ImageData(test.images[qi], test.labels[qi], test.name)
    results: dict[str, dict[str, list[dict[str, float]]]] = {"no rotation": {}, "rotation": {}}
    for seed in (int(s) for s in args.seeds.split(",")):
        for arm in results:
            results[arm][str(seed)] = run_arm(arm == "rotation", seed, args, train, test, probe_train, probe_test)
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / "forgetting_stream.png"
    plot(results, args, png)
    (args.out / "bench_forgetting.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=1))
    for arm, by_seed in results.items():
        finals = [c[-1] for c in by_seed.values()]
        print(f"{arm}: final probe {100 * statistics.mean(r['probe_acc'] for r in finals):.2f}%, "
              f"seen-task accuracy {100 * statistics.mean(r['seen_tasks_acc'] for r in finals):.2f}%")
    print(f"plot: {png}")


if __name__ == "__main__":
    main()
