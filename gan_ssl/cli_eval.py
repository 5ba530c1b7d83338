"""`gan-ssl` commands that use a trained network as a classifier: `finetune` (few labels, against the same network
from scratch) and `classify` (label new images with a saved classifier); registered on the group of gan_ssl.cli."""
from __future__ import annotations

import json
from pathlib import Path

import click

from gan_ssl.cli import _emit, _threads, cli


@cli.command()
@click.argument("source", type=click.Path())
@click.option("--data", "spec", required=True, help="Dataset spec with train and test splits (labels are read from it).")
@click.option("--label-fraction", "fractions", default="0.01,0.1", help="Comma-separated fractions of training labels.")
@click.option("--seeds", type=click.IntRange(1, 100), default=3, help="Label subsets (and scratch inits) per fraction.")
@click.option("--net", default=None, help="Network to fine-tune (D, encoder, ...) [default: the family's first].")
@click.option("--layers", default="all", help="Layers read by the linear head (see `features`).")
@click.option("--no-scratch", is_flag=True, help="Skip the same network trained from random init.")
@click.option("--max-steps", type=click.IntRange(1), default=3000, help="Optimizer steps per run at most (early stopping ends most runs sooner).")
@click.option("--limit", type=click.IntRange(0), default=0, help="Only the first N train and N test images (0 = all).")
@click.option("--save", type=click.Path(dir_okay=False), default=None, help="Write the fine-tuned classifier (first fraction, seed 0) here.")
@click.option("--threads", type=click.IntRange(0, 1024), default=0, help="torch intra-op threads (0 = torch's default).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def finetune(source: str, spec: str, fractions: str, seeds: int, net: str | None, layers: str, no_scratch: bool, max_steps: int,
             limit: int, save: str | None, threads: int, as_json: bool, quiet: bool) -> None:
    """Fine-tune a checkpoint's network (D, an encoder) with a linear head on few labels (the linear probe's labelled
    subsets), against the same architecture trained from random init on the same labels; test top-1 per fraction.

    \b
    Examples:
      gan-ssl finetune runs/ssgan --data fashion-mnist --label-fraction 0.01,0.1 --save clf.pt
      gan-ssl finetune runs/ssgan --data fashion-mnist --label-fraction 1.0 --seeds 1   # the supervised upper bound
    """
    from gan_ssl import finetune as ft
    from gan_ssl.probe import parse_fractions

    _threads(threads)
    r = ft.finetune(source, spec, parse_fractions(fractions), seeds, net, layers, not no_scratch, limit, max_steps, save, not quiet)
    _emit(r, as_json, ft.format_table)


@cli.command()
@click.argument("classifier", type=click.Path())
@click.option("--input", "source", required=True, help="An image, a folder of images, an .npy (uint8) or a dataset spec.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the labels as JSON here (default: print them).")
@click.option("--limit", type=click.IntRange(0), default=0, help="Only the first N images (0 = all).")
@click.option("--threads", type=click.IntRange(0, 1024), default=0, help="torch intra-op threads (0 = torch's default).")
def classify(classifier: str, source: str, out: str | None, limit: int, threads: int) -> None:
    """Label images with a classifier saved by `gan-ssl finetune --save` (images are fitted to its resolution).

    \b
    Example:
      gan-ssl classify clf.pt --input new_images/ --out labels.json
    """
    from gan_ssl import finetune as ft
    from gan_ssl.pretext import read_images

    _threads(threads)
    loaded = ft.load_classifier(classifier)
    data = loaded[1]["config"]["data"]
    images = read_images(source, data["channels"], data["resolution"], limit)  # fitted as training data is
    preds, classes = ft.classify(loaded, images)
    names = [classes[i] if i < len(classes) else str(i) for i in preds.tolist()]
    result = {"classifier": classifier, "input": source, "n": len(names), "labels": preds.tolist(), "classes": names}
    if out:
        Path(out).write_text(json.dumps(result, indent=2))
        click.echo(f"wrote {len(names)} labels to {out}")
    else:
        click.echo("\n".join(f"{i}\t{n}" for i, n in enumerate(names)))
