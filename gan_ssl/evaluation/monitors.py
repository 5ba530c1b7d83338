"""In-training evaluators (monitors): callables bundle -> {metric: value} that the loop runs every `eval.every`
steps on rank 0. The loop receives them (gan_ssl.engine.loop never imports evaluation); `default_evaluators`
builds those `cfg.eval` asks for."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from gan_ssl.config import Config
from gan_ssl.core.seeds import derive_seed
from gan_ssl.data import ImageData, load_images, parse_spec
from gan_ssl.engine.loop import Evaluator
from gan_ssl.evaluation import features as fe
from gan_ssl.evaluation.fid import DEFAULTS, compute, fid_key
from gan_ssl.evaluation.fid_extractors import resolve_extractor
from gan_ssl.evaluation.fid_inputs import reference_input, tensor_input
from gan_ssl.evaluation.probe import run_probe
from gan_ssl.families.bundle import Bundle

log = logging.getLogger(__name__)


def default_evaluators(cfg: Config, data: ImageData) -> list[Evaluator]:
    """In-training evaluators from `cfg.eval`: FID and the fast probe."""
    evs: list[Evaluator] = []
    if cfg.eval.every == 0:
        return evs
    if cfg.eval.fid:
        evs.append(fid_evaluator(cfg, data))
    if cfg.eval.probe:
        evs.append(probe_evaluator(cfg, data))
    return evs


def fid_evaluator(cfg: Config, data: ImageData) -> Callable[[Bundle], dict[str, float]]:
    """In-training FID: `cfg.eval.n` EMA samples (fixed seed) vs the training images, with `cfg.eval.features`.

    The extractor is checked now, so a missing one fails before training starts. The reference statistics
    are computed at the first evaluation and then read from torch-fidelity's cache.
    """
    ext = resolve_extractor(cfg.eval.features)
    ref = reference_input(data, f"{cfg.data.name}:{cfg.data.split}", ext, cache=True,
                          info={"split": cfg.data.split, "limit": cfg.data.limit,
                                "subset": cfg.data.subset, "subset_seed": cfg.data.subset_seed})
    key = fid_key(cfg.eval.n, cfg.data.split, ext.name)

    def evaluate(bundle: Bundle) -> dict[str, float]:
        images = bundle.sample(cfg.eval.n, seed=cfg.seed, batch_size=256)  # uint8 [n, C, H, W]
        fake = tensor_input(images, f"G_ema@{bundle.step}", "samples", ext)
        r = compute(fake, ref, extractor=ext, device=str(bundle.device), batch_size=DEFAULTS["batch_size"])
        return {key: r["metrics"][f"fid[{ext.name}]"]}

    return evaluate


def probe_evaluator(cfg: Config, data: ImageData) -> Callable[["Bundle"], dict[str, float]]:
    """In-training fast probe: D's features of a fixed set of `cfg.eval.probe_n` training images and as many
    test images (chosen once), one seed, all those labels -> {"probe_acc": test top-1}.

    Uses the dataset's test split; a folder without train/ and test/ holds out other training images instead.
    D is evaluated in eval mode without gradients and put back in the mode it was found in.
    """
    n = cfg.eval.probe_n
    if not data.has_labels:
        log.warning("eval.probe: %s has images without labels; the in-training probe is off", data.name)
        return lambda st: {}
    g = torch.Generator().manual_seed(derive_seed(cfg.seed, "eval.probe"))
    perm = torch.randperm(len(data), generator=g)
    name, path, _ = parse_spec(cfg.data.name)
    if name == "folder" and not (Path(str(path)).expanduser() / "test").is_dir():
        k = min(n, len(data) // 2)
        train_set = ImageData(data.images[perm[:k]], data.labels[perm[:k]], data.name, data.classes)
        test_set = ImageData(data.images[perm[k : 2 * k]], data.labels[perm[k : 2 * k]], data.name, data.classes)
    else:
        k = min(n, len(data))
        train_set = ImageData(data.images[perm[:k]], data.labels[perm[:k]], data.name, data.classes)
        d = cfg.data
        test_set = load_images(d.name, "test", d.resolution, d.channels, d.root, limit=n)
    if len(np.unique(train_set.labels.numpy())) < 2 or not test_set.has_labels:
        log.warning("eval.probe: need labelled train and test images of at least 2 classes; the in-training probe is off")
        return lambda st: {}

    def evaluate(bundle: "Bundle") -> dict[str, float]:
        rep = bundle.representation()
        a, names, _ = fe.representation_features(rep, train_set, None, fe.DEFAULT_POOL, fe.DEFAULT_GRID, device=bundle.device)
        b, _, _ = fe.representation_features(rep, test_set, names, fe.DEFAULT_POOL, fe.DEFAULT_GRID, device=bundle.device)
        r = run_probe(a, train_set.labels, b, test_set.labels, fractions=(1.0,), seeds=1)
        return {"probe_acc": round(r["fractions"]["1"]["mean"], 5)}

    return evaluate
