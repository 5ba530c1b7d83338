"""`gan-ssl`: a thin click CLI over the Python API. User errors print one line and exit with code 2."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable

import click

from gan_ssl.errors import GanSslError


def _fail(msg: str) -> None:
    click.echo(f"error: {msg}", err=True)
    sys.exit(2)


class _Group(click.Group):
    """Turns project errors, missing files and interrupts into one line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GanSslError as e:
            _fail(str(e))
        except FileNotFoundError as e:
            _fail(f"file not found: {e.filename or e}")
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
    """
    from gan_ssl.config import resolve
    from gan_ssl.train import train as run_train

    cfg = resolve(config, list(overrides) + ([f"train.device={device}"] if device else []))
    out = Path(out_dir) if out_dir else Path("runs") / Path(config).stem
    click.echo(f"training {cfg.model.name} on {cfg.data.name} for {cfg.train.steps} steps -> {out}")
    last = run_train(cfg, out, resume=resume, progress=not quiet)
    click.echo(f"samples:    {out / 'samples'}")
    click.echo(f"checkpoint: {last}")
    click.echo(f"metrics:    {out / 'metrics.jsonl'}")


@cli.command()
@click.argument("ckpt", type=click.Path())
@click.option("--n", "n", type=click.IntRange(1), default=64, help="Number of images.")
@click.option("--out", "out", type=click.Path(), required=True, help="A folder for PNGs, or a file ending in .npy (uint8 N x C x H x W).")
@click.option("--seed", type=click.IntRange(0), default=0, help="Latent seed: the same seed gives the same images.")
@click.option("--batch-size", type=click.IntRange(1), default=256)
@click.option("--device", default="cpu")
def sample(ckpt: str, n: int, out: str, seed: int, batch_size: int, device: str) -> None:
    """Sample N images from a checkpoint's EMA generator.

    \b
    Examples:
      gan-ssl sample runs/ssgan/checkpoints/latest.pt --n 10000 --out samples.npy
      gan-ssl sample runs/ssgan --n 64 --out samples/ --seed 1
    """
    from gan_ssl import api

    images = api.sample(ckpt, n, seed, batch_size, device)
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

        p = r["params"]
        lines = [f"checkpoint: {r['checkpoint']}", f"model:      {r['model']}", f"step:       {r['step']}",
                 f"params:     G {p['G']:,}  D {p['D']:,}  aux {p['aux']:,}", f"aux tasks:  {', '.join(r['aux_tasks']) or 'none'}"]
        if r["best"]:
            lines.append(f"best:       {r['best']}")
        lines += ["config:", "  " + yaml.safe_dump(r["config"], sort_keys=False).rstrip().replace("\n", "\n  ")]
        return "\n".join(lines)

    _emit(api.info(ckpt), as_json, text)


def main() -> None:
    cli(prog_name="gan-ssl")


if __name__ == "__main__":
    main()
