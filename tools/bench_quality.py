"""Quality at equal wall-clock time: the canonical DCGAN recipe vs gan_ssl configs, on Fashion-MNIST.

    python tools/bench_quality.py configs/ssgan_fmnist.yaml                      # 10 minutes each, 2 threads, seed 0
    python tools/bench_quality.py configs/ssgan_fmnist.yaml configs/sngan_fmnist.yaml --minutes 10 --seeds 0,1
    python tools/bench_quality.py configs/ssgan_fmnist.yaml --set train.lr_d=4e-4 --tag lr4

Each entry trains, one after the other (never sharing the cores), for the same budget of training
seconds (sample grids and checkpoints are not counted, for either side). The baseline is the canonical
DCGAN recipe of PyTorch's examples (ngf = ndf = 64, nz 100, BCE, Adam(2e-4, 0.5, 0.999), batch 64,
Fashion-MNIST zero-padded to 32), written here from the recipe and independent of gan_ssl's models and
loop, with no EMA; its samples come from G in train mode (batch statistics), as the recipe's own grids do.
Then 10k samples of each are scored against the Fashion-MNIST test split with the offline extractor
(FID, KID, precision/recall through torch-fidelity), both final grids are saved side by side in one PNG,
and one table and one JSON file are written (--out, default /tmp/bench_quality).

Runs are cached by (entry, seed, minutes, threads): a rerun only scores what is missing (--fresh retrains).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

CANONICAL = "canonical-dcgan"


# ---- the canonical DCGAN recipe (PyTorch examples/dcgan, adapted to 32 px: one up/down stage fewer) --------

def _weights_init(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def canonical_nets(nz: int = 100, ngf: int = 64, ndf: int = 64, nc: int = 1) -> tuple[nn.Module, nn.Module]:
    """G: z [B, nz, 1, 1] -> [B, nc, 32, 32]; D: [B, nc, 32, 32] -> probability [B]."""
    G = nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 4, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),  # 4x4
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),  # 8x8
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),  # 16x16
        nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh(),  # 32x32
    )
    D = nn.Sequential(
        nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),  # 16x16
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),  # 8x8
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, inplace=True),  # 4x4
        nn.Conv2d(ndf * 4, 1, 4, 1, 0, bias=False), nn.Sigmoid(), nn.Flatten(0),
    )
    G.apply(_weights_init)
    D.apply(_weights_init)
    return G, D


def train_canonical(images: torch.Tensor, minutes: float, seed: int, batch_size: int = 64, steps: int = 0) -> tuple[nn.Module, dict[str, Any]]:
    """The recipe's loop for `minutes` of training (or exactly `steps` steps when given): D on real (label 1) and
    fake (label 0), then G on the same fakes (label 1). images: uint8 [N, 1, 32, 32]."""
    torch.manual_seed(seed)
    G, D = canonical_nets()
    crit = nn.BCELoss()
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    n, t0, n_steps = images.shape[0], time.perf_counter(), 0
    budget = minutes * 60

    def done() -> bool:
        return n_steps >= steps if steps else time.perf_counter() - t0 >= budget

    while not done():
        perm = torch.randperm(n)
        for i in range(0, n - batch_size + 1, batch_size):
            real = images[perm[i : i + batch_size]].float().div(127.5).sub(1)
            D.zero_grad()
            err_real = crit(D(real), torch.ones(batch_size))
            err_real.backward()
            fake = G(torch.randn(batch_size, 100, 1, 1))
            err_fake = crit(D(fake.detach()), torch.zeros(batch_size))
            err_fake.backward()
            opt_d.step()
            G.zero_grad()
            err_g = crit(D(fake), torch.ones(batch_size))
            err_g.backward()
            opt_g.step()
            n_steps += 1
            if done():
                break
    secs = time.perf_counter() - t0
    return G, {"steps": n_steps, "train_seconds": round(secs, 1), "img_s": round(n_steps * batch_size / secs, 1)}


@torch.no_grad()
def sample_canonical(G: nn.Module, n: int, seed: int, batch_size: int = 64) -> torch.Tensor:
    """uint8 [n, 1, 32, 32] from G in train mode (batch statistics), as the recipe samples its grids."""
    G.train()
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 100, 1, 1, generator=g)
    out = [G(z[i : i + batch_size]) for i in range(0, n, batch_size)]
    return ((torch.cat(out).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


# ---- gan_ssl configs ----------------------------------------------------------------------------

def train_config(config: str, overrides: list[str], minutes: float, seed: int, threads: int, out: Path, progress: bool,
                 steps: int = 0) -> dict[str, Any]:
    """Train a gan_ssl config for `minutes` of training time (or exactly `steps` steps) into `out`; returns steps and speed."""
    from gan_ssl.api import train
    from gan_ssl.families.resolve import resolve

    budget = ["train.minutes=0", f"train.steps={steps}"] if steps else [f"train.minutes={minutes}", "train.steps=1000000000"]
    over = [f"seed={seed}", *budget, f"train.threads={threads}", "eval.every=0",
            "train.sample_every=0", "train.ckpt_every=0", *overrides]
    cfg = resolve(config, over)
    train(cfg, out, progress=progress)
    ck = torch.load(out / "checkpoints" / "latest.pt", weights_only=True, map_location="cpu")
    secs = float(ck["elapsed"])
    return {"steps": int(ck["step"]), "train_seconds": round(secs, 1), "img_s": round(int(ck["images"]) / secs, 1),
            "command": f"gan-ssl train {config} --out {out} " + " ".join(f"--set {o}" for o in over)}


# ---- scoring and the report -------------------------------------------------------------------------

def score(images: torch.Tensor) -> dict[str, float]:
    """FID, KID, precision/recall of uint8 samples [N, 1, 32, 32] vs the Fashion-MNIST test split (offline extractor)."""
    from gan_ssl.evaluation import fid as metrics

    r = metrics.compute(images, "fashion-mnist:test", kid=True, prc=True)
    m = r["metrics"]
    return {k.split("[")[0]: round(v, 4) for k, v in m.items()}


def side_by_side(grids: list[tuple[str, torch.Tensor]], path: Path) -> None:
    """One PNG: each entry's 8x8 grid of samples (uint8 [64, 1, 32, 32]) next to the others, with a gap."""
    import torchvision.utils as vutils

    tiles = [vutils.make_grid(g.float() / 255, nrow=8, padding=1, pad_value=1.0) for _, g in grids]
    gap = torch.ones(tiles[0].shape[0], tiles[0].shape[1], 12)
    row = torch.cat([t if i == 0 else torch.cat([gap, t], dim=2) for i, t in enumerate(tiles)], dim=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    vutils.save_image(row, str(path))


def _entry_name(config: str, tag: str) -> str:
    return Path(config).stem + (f"+{tag}" if tag else "")


def _run_name(name: str, args: argparse.Namespace, seed: int) -> str:
    budget = f"n{args.steps}" if args.steps else f"m{args.minutes:g}_t{args.threads}"
    return f"{name}_{budget}_s{seed}"


def probe_run(out: Path, fractions: str = "0.01,0.1,1.0", seeds: int = 3) -> dict[str, float]:
    """Linear probe of a run's representation (the family's default network, default features protocol):
    test top-1 per label fraction, mean over `seeds` label subsets."""
    from gan_ssl.evaluation import probe as pr

    r = pr.probe(out, "fashion-mnist", pr.parse_fractions(fractions), seeds)
    (row,) = r["rows"].values()
    return {f"probe_{k}": round(100 * v["mean"], 2) for k, v in row["fractions"].items()}


def run_entry(name: str, config: str | None, args: argparse.Namespace, seed: int, images: torch.Tensor,
              extra: list[str] | None = None) -> dict[str, Any]:
    """Train (or reuse) one entry at one seed, then score 10k samples (and probe its D with --probe); cached as
    JSON beside the run."""
    out = args.out / _run_name(name, args, seed)
    cache = out / "result.json"
    if cache.is_file() and not args.fresh:
        res = json.loads(cache.read_text())
        fr = getattr(args, "probe_fractions", "0.01,0.1,1.0")
        if getattr(args, "probe", False) and config is not None and any(f"probe_{float(f):g}" not in res for f in fr.split(",")):
            res.update(probe_run(out, fr))
            cache.write_text(json.dumps(res, indent=1))
        return res
    if out.exists():
        import shutil

        shutil.rmtree(out)
    out.mkdir(parents=True)
    torch.set_num_threads(args.threads)
    if config is None:
        G, info = train_canonical(images, args.minutes, seed, steps=args.steps)
        samples = sample_canonical(G, args.n, seed=1234)
    else:
        from gan_ssl import api

        info = train_config(config, [*args.overrides, *(extra or [])], args.minutes, seed, args.threads, out, not args.quiet, args.steps)
        samples = api.load(out).sample(args.n, seed=1234)
    torch.save(samples[:64].clone(), out / "grid.pt")
    res = {"entry": name, "seed": seed, **info, **score(samples), "n": args.n}
    if getattr(args, "probe", False) and config is not None:
        res.update(probe_run(out, getattr(args, "probe_fractions", "0.01,0.1,1.0")))
    cache.write_text(json.dumps(res, indent=1))
    return res


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per entry: mean (and std over seeds) of each metric."""
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(r["entry"] for r in rows):
        rs = [r for r in rows if r["entry"] == name]
        agg: dict[str, Any] = {"seeds": [r["seed"] for r in rs]}
        for k in ("fid", "kid", "precision", "recall", "steps", "img_s", "probe_0.01", "probe_0.1", "probe_1"):
            vals = [float(r[k]) for r in rs if k in r]
            if not vals:
                continue
            agg[k] = round(statistics.mean(vals), 4)
            agg[f"{k}_std"] = round(statistics.stdev(vals), 4) if len(vals) > 1 else 0.0
            agg[f"{k}_runs"] = vals
        out[name] = agg
    return out


def table(summary: dict[str, dict[str, Any]], minutes: float, threads: int) -> str:
    probes = any(k.startswith("probe_") for s in summary.values() for k in s)
    head = "| entry | seeds | steps | img/s | FID | KID | precision | recall |" + (" probe 1% | 10% | 100% |" if probes else "")
    lines = [f"Fashion-MNIST, {minutes:g} training minutes each at {threads} threads; 10k samples vs the test split, "
             "offline extractor fid[fashion-mnist-cnn]" + ("; linear probe of D (test top-1 %, 3 label subsets)" if probes else ""),
             head, "|" + " --- |" * (head.count("|") - 1)]
    for name, s in summary.items():
        pm = lambda k, f="{:.2f}": f.format(s[k]) + (f" ± {f.format(s[k + '_std'])}" if len(s["seeds"]) > 1 else "")  # noqa: E731
        row = (f"| {name} | {','.join(map(str, s['seeds']))} | {s['steps']:.0f} | {s['img_s']:.0f} | {pm('fid')} | "
               f"{pm('kid', '{:.3f}')} | {pm('precision', '{:.3f}')} | {pm('recall', '{:.3f}')} |")
        if probes:
            row += "".join(f" {pm(k, '{:.1f}')} |" if k in s else " - |" for k in ("probe_0.01", "probe_0.1", "probe_1"))
        lines.append(row)
    return "\n".join(lines)


Entry = tuple[str, "str | None", list[str]]  # (name, config path or None for the canonical DCGAN, extra overrides)


def parser(doc: str = __doc__) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("configs", nargs="*", help="gan_ssl YAML configs [default: configs/ssgan_fmnist.yaml]")
    ap.add_argument("--minutes", type=float, default=10.0, help="training minutes per entry")
    ap.add_argument("--steps", type=int, default=0, help="train exactly this many steps instead of --minutes (for screening "
                    "on a shared machine: pick the steps each entry makes in the minutes on an idle one)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seeds", default="0", help="comma-separated training seeds")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="override for every gan_ssl config")
    ap.add_argument("--tag", default="", help="suffix for the gan_ssl entries' names (to keep variants apart in the cache)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VAL,KEY=VAL",
                    help="another entry: the first config with these overrides (e.g. norot:aux.rotation.d_weight=0,aux.rotation.g_weight=0)")
    ap.add_argument("--probe", action="store_true", help="also probe each gan_ssl entry's D at 1/10/100%% labels")
    ap.add_argument("--probe-fractions", default="0.01,0.1,1.0",
                    help="label fractions of --probe (the 100%% fit takes most of a probe's minutes)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the canonical DCGAN")
    ap.add_argument("--n", type=int, default=10000, help="samples scored per run")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_quality"))
    ap.add_argument("--fresh", action="store_true", help="retrain even when a cached result exists")
    ap.add_argument("--quiet", action="store_true")
    return ap


def entries_of(args: argparse.Namespace) -> list[Entry]:
    """The canonical DCGAN (unless --no-baseline), each config, then each --variant of the first config."""
    configs = args.configs or ["configs/ssgan_fmnist.yaml"]
    entries: list[Entry] = [] if args.no_baseline else [(CANONICAL, None, [])]
    entries += [(_entry_name(c, args.tag), c, []) for c in configs]
    for v in args.variant:
        vname, _, over = v.partition(":")
        entries.append((_entry_name(configs[0], args.tag) + f"+{vname}", configs[0], [o for o in over.split(",") if o]))
    return entries


def run_bench(entries: list[Entry], args: argparse.Namespace, json_name: str = "bench_quality.json") -> dict[str, Any]:
    """Every entry at every seed, one after the other; then the summary table, the side-by-side PNG and the JSON."""
    from gan_ssl.data import load_images

    images = load_images("fashion-mnist", "train", 32, 1).images
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for name, config, extra in entries:
            r = run_entry(name, config, args, seed, images, extra)
            print(json.dumps(r), flush=True)
            rows.append(r)
    summary = summarize(rows)
    first = min(int(s) for s in args.seeds.split(","))
    grids = [(name, torch.load(args.out / _run_name(name, args, first) / "grid.pt", weights_only=True)) for name, _, _ in entries]
    png = args.out / f"side_by_side_{_run_name('', args, first).strip('_')}_{'_'.join(n for n, _, _ in entries)}.png"
    side_by_side(grids, png)
    text = table(summary, args.minutes, args.threads) if not args.steps else table(summary, 0, args.threads).replace(
        "0 training minutes each", f"{args.steps} steps each")
    result = {"minutes": args.minutes, "steps": args.steps, "threads": args.threads, "n": args.n, "rows": rows, "summary": summary,
              "grid_png": str(png), "order": [n for n, _, _ in entries], "table": text}
    (args.out / json_name).write_text(json.dumps(result, indent=1))
    print(text)
    print(f"grids (left to right: {', '.join(n for n, _, _ in entries)}): {png}")
    return result


def main() -> None:
    args = parser().parse_args()
    run_bench(entries_of(args), args)


if __name__ == "__main__":
    main()
