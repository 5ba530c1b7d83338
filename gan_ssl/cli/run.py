"""`gan-ssl` commands around a run: train, sample, info, report, export, reconstruct."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from gan_ssl.cli.common import SEED_MAX, check_device, cli, compute_options, emit, set_threads


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key (repeatable), e.g. --set train.steps=100.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None, help="Run directory [default: runs/<config name>].")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoints/latest.pt up to train.steps.")
@click.option("--device", default=None, help="Shorthand for --set train.device=DEVICE (cpu, cuda, cuda:1, mps).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(config: str, overrides: tuple[str, ...], out_dir: str | None, resume: bool, device: str | None, quiet: bool) -> None:
    """Train a GAN from a YAML CONFIG.

    \b
    Examples:
      gan-ssl train configs/ssgan_fmnist.yaml --out runs/ssgan
      gan-ssl train configs/ssgan_fmnist.yaml --out runs/ssgan --set train.steps=4000 --resume
      gan-ssl train configs/sngan_fmnist.yaml --set aux.rotation.d_weight=1.0 --device cuda
      torchrun --nproc-per-node 4 -m gan_ssl train configs/ssgan_fmnist.yaml --device cuda   (data-parallel)
    """
    from gan_ssl.api import train as run_train
    from gan_ssl.engine.distributed import env_world_size
    from gan_ssl.families.resolve import resolve

    cfg = resolve(config, list(overrides) + ([f"train.device={device}"] if device else []))
    out = Path(out_dir) if out_dir else Path("runs") / Path(config).stem
    budget = f" or {cfg.train.minutes:g} minutes" if cfg.train.minutes else ""
    world = env_world_size()
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 speaks
        run_train(cfg, out, resume=resume, progress=False)
        return
    procs = f" on {world} processes (global batch {world} x {cfg.train.batch_size})" if world > 1 else ""
    click.echo(f"training {cfg.family}/{cfg.model.name} on {cfg.data.name} for {cfg.train.steps} steps{budget}{procs} -> {out}")
    last = run_train(cfg, out, resume=resume, progress=not quiet)
    click.echo(f"samples:    {out / 'samples'}")
    click.echo(f"checkpoint: {last}")
    click.echo(f"metrics:    {out / 'metrics.jsonl'}")
    from gan_ssl.api import last_eval

    ev = last_eval(out)
    if ev:
        click.echo(f"eval at step {ev['step']}: " + ", ".join(f"{k} {v:.4g}" for k, v in ev["eval"].items()))


@cli.command()
@click.argument("ckpt", type=click.Path())
@click.option("--n", "n", type=click.IntRange(1), default=64, help="Number of images.")
@click.option("--out", "out", type=click.Path(), required=True, help="A folder for PNGs, or a file ending in .npy (uint8 N x C x H x W).")
@click.option("--seed", type=click.IntRange(0, SEED_MAX), default=0, help="Latent seed: the same seed gives the same images.")
@click.option("--batch-size", type=click.IntRange(1), default=256)
@click.option("--truncation", "psi", type=float, default=None, metavar="PSI",
              help="Truncation psi (stylegan): w = w_avg + PSI (w - w_avg); 1 = off, 0 = the average image.")
@click.option("--style-mix", "style_mix", default=None, metavar="ROWS,COLS",
              help="Write a style-mixing grid PNG to --out instead (stylegan): coarse styles of ROWS seeds x fine styles of COLS seeds.")
@compute_options
def sample(ckpt: str, n: int, out: str, seed: int, batch_size: int, psi: float | None, style_mix: str | None, device: str,
           threads: int) -> None:
    """Sample N images from a checkpoint's EMA generator (any family).

    \b
    Examples:
      gan-ssl sample runs/ssgan/checkpoints/latest.pt --n 10000 --out samples.npy
      gan-ssl sample runs/ssgan --n 64 --out samples/ --seed 1
      gan-ssl sample runs/stylegan --n 64 --out samples/ --truncation 0.7
      gan-ssl sample runs/stylegan --style-mix 4,6 --out mix.png
    """
    from gan_ssl import api

    set_threads(threads)
    if style_mix is not None:
        from gan_ssl.families.stylegan import parse_rows_cols
        from gan_ssl.inference.figures import style_mix_grid

        rows, cols = parse_rows_cols(style_mix)
        path = style_mix_grid(ckpt, rows, cols, out, seed, 1.0 if psi is None else psi, check_device(device))
        click.echo(f"wrote a {rows} x {cols} style-mixing grid (coarse styles by row, fine by column) to {path}")
        return
    options = {} if psi is None else {"truncation": psi}
    images = api.sample(ckpt, n, seed, batch_size, check_device(device), **options)
    path = api.save_images(images, out)
    click.echo(f"wrote {images.shape[0]} images {tuple(images.shape[1:])} to {path}")


@cli.command()
@click.argument("ckpt", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(ckpt: str, as_json: bool) -> None:
    """Model, step, config and parameter counts of a checkpoint.

    \b
    Example:
      gan-ssl info runs/ssgan/checkpoints/latest.pt
    """
    from gan_ssl import api

    def text(r: dict[str, Any]) -> str:
        import yaml

        params = "  ".join(f"{k} {v:,}" for k, v in r["params"].items())
        counters = ", ".join(f"{k} {v:,}" for k, v in r["counters"].items())
        lines = [f"checkpoint: {r['checkpoint']}" + (f" (migrated from format v{r['migrated_from']})" if r.get("migrated_from") else ""),
                 f"family:     {r['family']}", f"model:      {r['model']}",
                 f"step:       {r['step']} ({r['images']:,} real images, {r['minutes']} min; phase runs: {counters})",
                 f"params:     {params}", f"EMAs:       {', '.join(r['emas']) or 'none'}",
                 f"features:   {', '.join(r['representations']) or 'none'}"]
        if "aux_tasks" in r:
            lines.append(f"aux tasks:  {', '.join(r['aux_tasks']) or 'none'}")
        if "level_of_detail" in r:  # progressive families (Family.describe)
            lines.append(f"resolution: {r['current_resolution']} px of {r['resolution']} (level of detail {r['level_of_detail']:g}, "
                         f"fade-in alpha {r['alpha']:g})")
        if r["schedule"]:
            lines.append("schedule:   " + ", ".join(f"{k} {v:g}" for k, v in r["schedule"].items()))
        if r["best"]:
            lines.append(f"best:       {r['best']}")
        lines += ["config:", "  " + yaml.safe_dump(r["config"], sort_keys=False).rstrip().replace("\n", "\n  ")]
        return "\n".join(lines)

    emit(api.info(ckpt), as_json, text)


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None, help="HTML file [default: RUN_DIR/report.html].")
@click.option("--embedding", type=click.IntRange(0, 20000), default=2000,
              help="Test images in the t-SNE picture of the representation (0 = no picture).")
def report(run_dir: str, out: str | None, embedding: int) -> None:
    """Write one self-contained HTML page of a run: curves, evaluations, throughput, sample grids, config, hardware.

    \b
    Examples:
      gan-ssl report runs/ssgan
      gan-ssl report runs/ssgan --out ssgan.html
    """
    from gan_ssl import api

    click.echo(f"report: {api.write_report(run_dir, out, embedding)}")


@cli.command()
@click.argument("ckpt", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["safetensors"]), default="safetensors", help="Weight file format.")
@click.option("--out", "out", type=click.Path(file_okay=False), required=True, help="Export folder (new or empty).")
@click.option("--force", is_flag=True, help="Write into a non-empty --out, overwriting the files it writes.")
@click.option("--json", "as_json", is_flag=True, help="Print the written config.json.")
def export(ckpt: str, fmt: str, out: str, force: bool, as_json: bool) -> None:
    """Export a checkpoint's networks (EMA generator, D, encoder, ...) as pickle-free weight files plus config.json;
    load them with gan_ssl.load_generator(OUT).

    \b
    Example:
      gan-ssl export runs/ssgan --format safetensors --out export/ssgan
    """
    from gan_ssl.inference import export as ex

    emit(ex.export(ckpt, out, fmt, force), as_json, ex.format_export)


@cli.command()
@click.argument("ckpt", type=click.Path())
@click.option("--data", "spec", required=True, help="Dataset spec: fashion-mnist, mnist, cifar10, digits (scikit-learn's, offline), folder:PATH.")
@click.option("--split", type=click.Choice(["train", "test"]), default="test")
@click.option("--n", "n", type=click.IntRange(1, 1024), default=16, help="Images to reconstruct (a seeded random draw).")
@click.option("--seed", type=click.IntRange(0, SEED_MAX), default=0, help="Which images and which draw of z: the same seed gives the same grid.")
@click.option("--out", "out", type=click.Path(dir_okay=False), required=True, help="PNG grid: each image next to G(E(x)).")
@click.option("--no-ema", is_flag=True, help="Use the trained G instead of its EMA.")
@click.option("--mean", is_flag=True, help="z = E's mean instead of a draw mu + sigma * eps (eps from --seed).")
@compute_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def reconstruct(ckpt: str, spec: str, split: str, n: int, seed: int, out: str, no_ema: bool, mean: bool, device: str, threads: int,
                as_json: bool) -> None:
    """Reconstruct N images through a checkpoint's encoder and generator, x next to G(E(x)) (BigBiGAN).

    \b
    Examples:
      gan-ssl reconstruct runs/bigbigan --data fashion-mnist --n 16 --out recon.png
      gan-ssl reconstruct runs/bigbigan/checkpoints/latest.pt --data fashion-mnist --split train --n 64 --seed 1 --out recon.png
    """
    from gan_ssl.inference import reconstruct as rc

    set_threads(threads)
    r = rc.reconstruct(ckpt, spec, n, out, split, seed, ema=not no_ema, sample=not mean, device=check_device(device))
    r.pop("pairs")
    emit(r, as_json, lambda r: f"wrote {r['n']} pairs (x | G(E(x)), {r['generator']}, z = E's {r['z']}) of {r['data']}:{r['split']} to {r['out']}; "
          f"mean squared error {r['mse']:.4f} (images in [-1, 1])")
