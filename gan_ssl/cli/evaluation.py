"""`gan-ssl` evaluation commands: fid, evaluator (the offline FID network), features, probe, finetune (few labels,
against the same network from scratch) and classify (label new images with a saved classifier)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from gan_ssl.cli.common import SEED_MAX, check_device, cli, compute_options, emit, set_threads


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
@compute_options
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
    from gan_ssl.evaluation import fid as metrics
    from gan_ssl.evaluation import fid_repeats

    set_threads(threads)
    if repeats > 1:
        r = fid_repeats.compute(input1, input2, repeats, seed=seed, features=features, n=n, batch_size=batch_size, device=check_device(device),
                                cache=not no_cache, inception_weights=inception_weights, verbose=not quiet, fid=True, kid=kid, prc=prc,
                                isc=isc, kid_subset_size=kid_subset_size)
        return emit(r, as_json, fid_repeats.format_result)
    r = metrics.compute(input1, input2, features=features, fid=True, kid=kid, prc=prc, isc=isc, n=n, seed=seed,
                        batch_size=batch_size, device=check_device(device), kid_subset_size=kid_subset_size,
                        inception_weights=inception_weights, cache=not no_cache, verbose=not quiet)
    emit(r, as_json, metrics.format_result)


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

    from gan_ssl.evaluation import extractor as ev

    if threads:
        torch.set_num_threads(threads)
    r = ev.train_evaluator(data, epochs, batch_size, width=width, feature_dim=feature_dim, seed=seed, limit=limit, out=out, progress=not quiet)

    def text(r: dict[str, Any]) -> str:
        lines = [f"{r['name']}: test accuracy {r['test_accuracy']:.2%} on {r['n_test']} images, trained in {r['train_seconds']:.0f} s "
                 f"({r['epochs']} epochs on {r['n_train']} images, {r['threads']} threads)", f"saved:  {r['path']}", f"sha256: {r['sha256']}"]
        if r["meets_target"] is False:
            lines.append(f"warning: below the {ev.TARGET_ACCURACY:.0%} target; train longer (--epochs) before trusting its FID")
        return "\n".join(lines)

    emit(r, as_json, text)


@evaluator.command("info")
@click.option("--features", default="fashion-mnist-cnn", help="Extractor name.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def evaluator_info(features: str, as_json: bool) -> None:
    """Where a trained extractor lives, its test accuracy and content hash.

    \b
    Example:
      gan-ssl evaluator info --features fashion-mnist-cnn
    """
    from gan_ssl.evaluation import fid as metrics

    e = metrics.resolve_extractor(features, download=False).describe()
    emit(e, as_json, lambda d: "\n".join(f"{k}: {v}" for k, v in d.items()))


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
@compute_options
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
    from gan_ssl.evaluation import features as fe

    set_threads(threads)
    fs = fe.export(ckpt, spec, split, layers, pool, grid, out, batch_size, check_device(device), limit, progress=not quiet, net=net)
    dims = ", ".join(f"{n} {d}" for n, d in zip(fs["layers"], fs["layer_dims"]))
    click.echo(f"wrote features {tuple(fs['features'].shape)} ({dims}; pool {pool}) of {spec}:{split} to {out}")
    if plot:
        from gan_ssl.evaluation.embedding import plot_embedding, tsne_2d
        from gan_ssl.families.resolve import from_dict

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
@compute_options
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
    from gan_ssl.evaluation import probe as pr

    set_threads(threads)
    r = pr.probe(source, spec, pr.parse_fractions(fractions), seeds, baselines, test_features, layers, pool, grid,
                 batch_size, check_device(device), limit, progress=not quiet, net=net, knn=knn)
    emit(r, as_json, pr.format_table)


# ---- pretext tasks: inpainting and super-resolution (gan_ssl.evaluation.pretext) ------------------------------


@cli.command()
@click.argument("source", type=click.Path())
@click.option("--data", "spec", required=True, help="Dataset spec with train and test splits (labels are read from it).")
@click.option("--label-fraction", "fractions", default="0.01,0.1", help="Comma-separated fractions of training labels.")
@click.option("--seeds", type=click.IntRange(1, 100), default=3, help="Label subsets (and scratch inits) per fraction.")
@click.option("--net", default=None, help="Network to fine-tune (D, encoder, ...) [default: the family's first].")
@click.option("--layers", default="all", help="Layers read by the linear head (see `features`).")
@click.option("--no-scratch", is_flag=True, help="Skip the same network trained from random init.")
@click.option("--recipe", type=click.Choice(["lp-ft", "full"]), default="lp-ft", show_default=True,
              help="lp-ft: the linear probe becomes the head, then the whole network at a low lr with BatchNorm statistics "
                   "frozen (Kumar et al. 2022); full: head and network together from the start (the scratch baseline's recipe).")
@click.option("--max-steps", type=click.IntRange(1), default=3000, help="Optimizer steps per run at most (early stopping ends most runs sooner).")
@click.option("--limit", type=click.IntRange(0), default=0, help="Only the first N train and N test images (0 = all).")
@click.option("--save", type=click.Path(dir_okay=False), default=None, help="Write the fine-tuned classifier (first fraction, seed 0) here.")
@click.option("--threads", type=click.IntRange(0, 1024), default=0, help="torch intra-op threads (0 = torch's default).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def finetune(source: str, spec: str, fractions: str, seeds: int, net: str | None, layers: str, no_scratch: bool, recipe: str,
             max_steps: int, limit: int, save: str | None, threads: int, as_json: bool, quiet: bool) -> None:
    """Fine-tune a checkpoint's network (D, an encoder) with a linear head on few labels (the linear probe's labelled
    subsets), against the same architecture trained from random init on the same labels; test top-1 per fraction.

    \b
    Examples:
      gan-ssl finetune runs/ssgan --data fashion-mnist --label-fraction 0.01,0.1 --save clf.pt
      gan-ssl finetune runs/ssgan --data fashion-mnist --label-fraction 1.0 --seeds 1   # the supervised upper bound
    """
    from gan_ssl.evaluation import finetune as ft
    from gan_ssl.evaluation.probe import parse_fractions

    set_threads(threads)
    r = ft.finetune(source, spec, parse_fractions(fractions), seeds, net, layers, not no_scratch, limit, max_steps, save, not quiet,
                    recipe=recipe)
    emit(r, as_json, ft.format_table)


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
    from gan_ssl.evaluation import finetune as ft
    from gan_ssl.evaluation.pretext import read_images

    set_threads(threads)
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
