"""`gan-ssl`: a thin click CLI over the Python API. User errors print one line and exit with code 2."""
from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable

import click

from gan_ssl.errors import GanSslError


SEED_MAX = 2**63 - 2  # torch generators take 64-bit seeds; --style-mix also uses seed + 1


def _fail(msg: str) -> None:
    click.echo(f"error: {msg}", err=True)
    sys.exit(2)


class _Group(click.Group):
    """Turns project errors, usage errors, missing files and interrupts into one line instead of a traceback."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.pop("standalone_mode", None)
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except click.UsageError as e:  # bad option values, unknown options, missing arguments
            where = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
            _fail(f"{e.format_message()}{where}")
        except click.Abort:
            click.echo("interrupted", err=True)
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GanSslError as e:
            _fail(str(e))
        except FileNotFoundError as e:
            _fail(f"file not found: {e.filename or e}")
        except (PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError) as e:  # a path the user gave
            _fail(f"cannot use {e.filename or ''}: {e.strerror or type(e).__name__}")
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("-v", "--verbose", is_flag=True, help="Log more detail.")
def cli(verbose: bool) -> None:
    """gan_ssl: self-supervised GANs, FID from one command, discriminator features for few labels."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def _emit(result: dict[str, Any], as_json: bool, text: Callable[[dict[str, Any]], str]) -> None:
    click.echo(json.dumps(result, indent=2) if as_json else text(result))


def _device(value: str) -> str:
    """Validate --device like train.device (one line and exit 2 when it is not usable here)."""
    from gan_ssl.train import resolve_device

    return str(resolve_device(value))


def _threads(n: int) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


def _compute_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--device and --threads, shared by every command that computes."""
    f = click.option("--threads", type=click.IntRange(0, 1024), default=0, help="torch intra-op threads (0 = torch's default).")(f)
    return click.option("--device", default="cpu", help="cpu, cuda, cuda:N or mps.")(f)


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
    from gan_ssl.config import resolve
    from gan_ssl.distributed import env_world_size
    from gan_ssl.train import train as run_train

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
@_compute_options
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

    _threads(threads)
    if style_mix is not None:
        from gan_ssl.families.stylegan import parse_rows_cols, style_mix_grid

        rows, cols = parse_rows_cols(style_mix)
        path = style_mix_grid(ckpt, rows, cols, out, seed, 1.0 if psi is None else psi, _device(device))
        click.echo(f"wrote a {rows} x {cols} style-mixing grid (coarse styles by row, fine by column) to {path}")
        return
    options = {} if psi is None else {"truncation": psi}
    images = api.sample(ckpt, n, seed, batch_size, _device(device), **options)
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

    _emit(api.info(ckpt), as_json, text)


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
    from gan_ssl import export as ex

    _emit(ex.export(ckpt, out, fmt, force), as_json, ex.format_export)


@cli.command()
@click.argument("input1")
@click.argument("input2")
@click.option("--features", default="fashion-mnist-cnn", help="Feature extractor: fashion-mnist-cnn, mnist-cnn (offline, "
              "`gan-ssl evaluator train`) or inception (torch-fidelity's inception-v3-compat; needs its weights file).")
@click.option("--kid", is_flag=True, help="Also KID (mean ± std over subsets).")
@click.option("--prc", is_flag=True, help="Also precision/recall (INPUT1 = generated, INPUT2 = real).")
@click.option("--isc", is_flag=True, help="Also the Inception Score of INPUT1 (with --features inception it is the standard ISC).")
@click.option("--n", "n", type=click.IntRange(1), default=10000, help="Images sampled from a checkpoint input.")
@click.option("--batch-size", type=click.IntRange(1), default=256)
@click.option("--seed", type=click.IntRange(0, SEED_MAX), default=0, help="Latent seed for checkpoint inputs.")
@click.option("--repeats", type=click.IntRange(1, 1000), default=1, help="Checkpoint inputs: K sample seeds (--seed, --seed + 1, ...); "
              "each metric per seed, then mean and sample std (ddof=1).")
@click.option("--kid-subset-size", type=click.IntRange(2), default=1000, help="KID subset size; each input needs this many images.")
@click.option("--inception-weights", type=click.Path(dir_okay=False), default=None,
              help="Inception weights file [default: $GAN_SSL_INCEPTION_WEIGHTS, else torch-fidelity's cache].")
@_compute_options
@click.option("--no-cache", is_flag=True, help="Do not read or write torch-fidelity's statistics cache.")
@click.option("--quiet", is_flag=True, help="No torch-fidelity progress on stderr.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def fid(input1: str, input2: str, features: str, kid: bool, prc: bool, isc: bool, n: int, batch_size: int, seed: int, repeats: int,
        kid_subset_size: int, inception_weights: str | None, device: str, threads: int, no_cache: bool, quiet: bool, as_json: bool) -> None:
    """FID (and KID, precision/recall, ISC) between INPUT1 and INPUT2, computed by torch-fidelity.

    An INPUT is an image folder, an .npy of uint8 images, a dataset spec (fashion-mnist:test,
    folder:PATH) or a checkpoint (.pt or run folder; N EMA samples). Every number is labelled with
    its extractor: fid[fashion-mnist-cnn] and fid[inception] are different metrics.

    \b
    Examples:
      gan-ssl fid runs/ssgan fashion-mnist:test
      gan-ssl fid samples.npy fashion-mnist:test --kid --prc --json
      gan-ssl fid fashion-mnist:train fashion-mnist:test
      gan-ssl fid runs/ssgan fashion-mnist:test --features inception --inception-weights weights-inception-2015-12-05-6726825d.pth
      gan-ssl fid runs/ssgan fashion-mnist:test --repeats 3 --json
    """
    from gan_ssl import fid_repeats, metrics

    _threads(threads)
    if repeats > 1:
        r = fid_repeats.compute(input1, input2, repeats, seed=seed, features=features, n=n, batch_size=batch_size, device=_device(device),
                                cache=not no_cache, inception_weights=inception_weights, verbose=not quiet, fid=True, kid=kid, prc=prc,
                                isc=isc, kid_subset_size=kid_subset_size)
        return _emit(r, as_json, fid_repeats.format_result)
    r = metrics.compute(input1, input2, features=features, fid=True, kid=kid, prc=prc, isc=isc, n=n, seed=seed,
                        batch_size=batch_size, device=_device(device), kid_subset_size=kid_subset_size,
                        inception_weights=inception_weights, cache=not no_cache, verbose=not quiet)
    _emit(r, as_json, metrics.format_result)


@cli.group()
def evaluator() -> None:
    """Offline FID feature extractors: a small CNN trained on the dataset itself."""


@evaluator.command("train")
@click.option("--data", type=click.Choice(["fashion-mnist", "mnist"]), default="fashion-mnist", help="Dataset to train on.")
@click.option("--epochs", type=click.IntRange(1), default=4)
@click.option("--batch-size", type=click.IntRange(2), default=128)
@click.option("--width", type=click.IntRange(1), default=16, help="Channels of the first conv block (then 2x, 4x).")
@click.option("--feature-dim", type=click.IntRange(1), default=128, help="Size of the feature layer FID uses.")
@click.option("--seed", type=click.IntRange(0, SEED_MAX), default=0)
@click.option("--limit", type=click.IntRange(0), default=0, help="Use only the first N train and test images (0 = all).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Output file [default: $GAN_SSL_HOME/evaluators/<data>-cnn.pt].")
@click.option("--threads", type=click.IntRange(0, 1024), default=0, help="torch intra-op threads (0 = torch's default).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def evaluator_train(data: str, epochs: int, batch_size: int, width: int, feature_dim: int, seed: int, limit: int, out: str | None,
                    threads: int, quiet: bool, as_json: bool) -> None:
    """Train the CNN feature extractor used by `gan-ssl fid --features <data>-cnn`.

    \b
    Examples:
      gan-ssl evaluator train --data fashion-mnist
      GAN_SSL_HOME=/data/cache gan-ssl evaluator train --data mnist --epochs 2
    """
    import torch

    from gan_ssl import evaluator as ev

    if threads:
        torch.set_num_threads(threads)
    r = ev.train_evaluator(data, epochs, batch_size, width=width, feature_dim=feature_dim, seed=seed, limit=limit, out=out, progress=not quiet)

    def text(r: dict[str, Any]) -> str:
        lines = [f"{r['name']}: test accuracy {r['test_accuracy']:.2%} on {r['n_test']} images, trained in {r['train_seconds']:.0f} s "
                 f"({r['epochs']} epochs on {r['n_train']} images, {r['threads']} threads)", f"saved:  {r['path']}", f"sha256: {r['sha256']}"]
        if r["meets_target"] is False:
            lines.append(f"warning: below the {ev.TARGET_ACCURACY:.0%} target; train longer (--epochs) before trusting its FID")
        return "\n".join(lines)

    _emit(r, as_json, text)


@evaluator.command("info")
@click.option("--features", default="fashion-mnist-cnn", help="Extractor name.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def evaluator_info(features: str, as_json: bool) -> None:
    """Where a trained extractor lives, its test accuracy and content hash.

    \b
    Example:
      gan-ssl evaluator info --features fashion-mnist-cnn
    """
    from gan_ssl import metrics

    e = metrics.resolve_extractor(features, download=False).describe()
    _emit(e, as_json, lambda d: "\n".join(f"{k}: {v}" for k, v in d.items()))


@cli.command()
@click.argument("ckpt", type=click.Path())
@click.option("--data", "spec", required=True, help="Dataset spec: fashion-mnist, mnist, cifar10, digits (scikit-learn's, offline), folder:PATH.")
@click.option("--split", type=click.Choice(["train", "test"]), default="train")
@click.option("--net", default=None, help="Network to read features from (D, encoder, ...) [default: the family's first].")
@click.option("--layers", default="all", help="Comma-separated layers (D: block1,...,penultimate; encoder: stage1,...,pool,bn_crelu) or 'all' (every block or stage; an unknown name lists the known ones).")
@click.option("--pool", type=click.Choice(["avg", "max", "avgmax"]), default="avgmax", help="Pooling of each layer's map.")
@click.option("--grid", type=click.IntRange(1, 8), default=1, help="Pool over a KxK grid (1 = global).")
@click.option("--out", "out", type=click.Path(dir_okay=False), required=True, help="Feature file (.pt, loads with weights_only=True).")
@click.option("--limit", type=click.IntRange(0), default=0, help="Only the first N images (0 = all).")
@click.option("--batch-size", type=click.IntRange(1), default=256)
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="Also a t-SNE picture of the features, coloured by class (PNG).")
@_compute_options
@click.option("--quiet", is_flag=True, help="No progress bar.")
def features(ckpt: str, spec: str, split: str, net: str | None, layers: str, pool: str, grid: int, out: str, limit: int, batch_size: int,
             plot: str | None, device: str, threads: int, quiet: bool) -> None:
    """Export frozen features of a checkpoint's network (D, or an encoder) on a dataset split (pooled per layer, concatenated).

    \b
    Examples:
      gan-ssl features runs/ssgan --data fashion-mnist --split train --out train_feats.pt
      gan-ssl features runs/ssgan --data fashion-mnist --split test --layers block3,block4 --pool avg --out test_feats.pt
      gan-ssl features runs/ssgan --data fashion-mnist --split test --out test_feats.pt --plot tsne.png
    """
    from gan_ssl import features as fe

    _threads(threads)
    fs = fe.export(ckpt, spec, split, layers, pool, grid, out, batch_size, _device(device), limit, progress=not quiet, net=net)
    dims = ", ".join(f"{n} {d}" for n, d in zip(fs["layers"], fs["layer_dims"]))
    click.echo(f"wrote features {tuple(fs['features'].shape)} ({dims}; pool {pool}) of {spec}:{split} to {out}")
    if plot:
        from gan_ssl.config import from_dict
        from gan_ssl.embedding import plot_embedding, tsne_2d

        xy, rows = tsne_2d(fs["features"])
        data = fe.load_data(from_dict(fs["config"]) if fs.get("config") else from_dict({}), spec, split, limit)
        title = f"t-SNE of {fs.get('net') or 'D'} features ({len(rows)} {spec}:{split} images), step {fs.get('step', 0)}"
        click.echo(f"wrote {plot_embedding(xy, fs['labels'].numpy()[rows], data.classes, plot, title)}")


@cli.command()
@click.argument("source", type=click.Path())
@click.option("--data", "spec", required=True, help="Dataset spec with train and test splits (labels are read from it).")
@click.option("--label-fraction", "fractions", default="0.01,0.1,1.0", help="Comma-separated fractions of training labels.")
@click.option("--seeds", type=click.IntRange(1, 100), default=3, help="Label subsets per fraction (mean ± std).")
@click.option("--baseline", "baselines", multiple=True, type=click.Choice(["pixels", "random", "random-d"]),
              help="Also probe raw pixels / the same network with random weights (repeatable; random-d is an alias of random).")
@click.option("--net", default=None, help="Network to probe when SOURCE is a checkpoint (D, encoder, ...) [default: the family's first].")
@click.option("--test-features", type=click.Path(dir_okay=False), default=None, help="Test feature file, when SOURCE is a train feature file.")
@click.option("--layers", default="all", help="Layers of the network when SOURCE is a checkpoint (see `features`); "
              "'each': also one row per layer, probed on its own.")
@click.option("--pool", type=click.Choice(["avg", "max", "avgmax"]), default="avgmax")
@click.option("--grid", type=click.IntRange(1, 8), default=1, help="Pool over a KxK grid (1 = global).")
@click.option("--limit", type=click.IntRange(0), default=0, help="Only the first N train and N test images (0 = all).")
@click.option("--batch-size", type=click.IntRange(1), default=256)
@click.option("--knn", is_flag=True, help="Also weighted kNN (cosine, k = 20 and 200, T = 0.07; Wu et al. 2018) on the same labels.")
@_compute_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def probe(source: str, spec: str, fractions: str, seeds: int, baselines: tuple[str, ...], net: str | None, test_features: str | None,
          layers: str, pool: str, grid: int, limit: int, batch_size: int, knn: bool, device: str, threads: int, as_json: bool,
          quiet: bool) -> None:
    """Linear probe (logistic regression, L2 chosen on a validation split of the training labels) of a
    checkpoint's frozen network (D, an encoder), or of exported features; test top-1 mean ± std per label fraction.

    \b
    Examples:
      gan-ssl probe runs/ssgan --data fashion-mnist --baseline pixels --baseline random-d --knn
      gan-ssl probe train_feats.pt --test-features test_feats.pt --data fashion-mnist --label-fraction 0.01 --json
    """
    from gan_ssl import probe as pr

    _threads(threads)
    r = pr.probe(source, spec, pr.parse_fractions(fractions), seeds, baselines, test_features, layers, pool, grid,
                 batch_size, _device(device), limit, progress=not quiet, net=net, knn=knn)
    _emit(r, as_json, pr.format_table)


# ---- pretext tasks: inpainting and super-resolution (gan_ssl.pretext) ------------------------------

@cli.command()
@click.argument("ckpt", type=click.Path())
@click.option("--data", "spec", required=True, help="Dataset spec: fashion-mnist, mnist, cifar10, digits (scikit-learn's, offline), folder:PATH.")
@click.option("--split", type=click.Choice(["train", "test"]), default="test")
@click.option("--n", "n", type=click.IntRange(1, 1024), default=16, help="Images to reconstruct (a seeded random draw).")
@click.option("--seed", type=click.IntRange(0, SEED_MAX), default=0, help="Which images and which draw of z: the same seed gives the same grid.")
@click.option("--out", "out", type=click.Path(dir_okay=False), required=True, help="PNG grid: each image next to G(E(x)).")
@click.option("--no-ema", is_flag=True, help="Use the trained G instead of its EMA.")
@click.option("--mean", is_flag=True, help="z = E's mean instead of a draw mu + sigma * eps (eps from --seed).")
@_compute_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def reconstruct(ckpt: str, spec: str, split: str, n: int, seed: int, out: str, no_ema: bool, mean: bool, device: str, threads: int,
                as_json: bool) -> None:
    """Reconstruct N images through a checkpoint's encoder and generator, x next to G(E(x)) (BigBiGAN).

    \b
    Examples:
      gan-ssl reconstruct runs/bigbigan --data fashion-mnist --n 16 --out recon.png
      gan-ssl reconstruct runs/bigbigan/checkpoints/latest.pt --data fashion-mnist --split train --n 64 --seed 1 --out recon.png
    """
    from gan_ssl import reconstruct as rc

    _threads(threads)
    r = rc.reconstruct(ckpt, spec, n, out, split, seed, ema=not no_ema, sample=not mean, device=_device(device))
    r.pop("pairs")
    _emit(r, as_json, lambda r: f"wrote {r['n']} pairs (x | G(E(x)), {r['generator']}, z = E's {r['z']}) of {r['data']}:{r['split']} to {r['out']}; "
          f"mean squared error {r['mse']:.4f} (images in [-1, 1])")


from gan_ssl import cli_pretext  # noqa: E402,F401  (registers inpaint, super-resolve, eval-inpaint, eval-sr)
from gan_ssl import cli_eval  # noqa: E402,F401  (registers finetune, classify)


def main() -> None:
    cli(prog_name="gan-ssl")


if __name__ == "__main__":
    main()
