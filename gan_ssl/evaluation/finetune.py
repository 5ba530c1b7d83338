"""Fine-tuning a pretrained network with few labels: the semi-supervised value of GAN pretraining.

Protocol (one label fraction, one seed), the linear probe's splits (`gan_ssl.evaluation.probe`): the same stratified labelled
subset of the training set and the same validation split carved from it; the test split only scores.
  - the classifier is the network's pooled layers (the probe's features: every block, avg+max, global) and a linear
    head, trained with standard augmentation: random crops of the image padded by 1/8 of its side (the pad is the
    background, -1) and, where labels survive it, horizontal flips (not for digits); batch 64;
  - recipe `lp-ft` (the pretrained network's default; Kumar et al., "Fine-Tuning can Distort Pretrained Features and
    Underperform Out-of-Distribution", ICLR 2022): first the linear probe (the probe's L2 logistic regression on the
    fit rows, L2 chosen on the validation rows) becomes the head, then the whole network fine-tunes from there at a
    low learning rate (AdamW 1e-4, weight decay 1e-4) with BatchNorm's statistics frozen (eval mode: with a few
    hundred labels, batch statistics of augmented crops would move every feature the head was fitted on);
    the probe's state is the epoch-0 candidate, so fine-tuning is kept only where validation says it helps;
  - recipe `full` (the from-scratch baseline's, and available for the pretrained network): head and network from
    their starting weights together (AdamW, lr 1e-3 for the head and 3e-4 for the trunk, weight decay 1e-4),
    BatchNorm in training mode;
  - the validation accuracy is read every epoch, the best state is kept, and training stops after `PATIENCE` epochs
    without a better one or at `max_steps`;
  - the baselines use the same labels and seeds: the same architecture from random init (`scratch`, recipe `full`),
    and at 100% labels that is the supervised upper bound.
Means and standard deviations are over seeds 0..seeds-1.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gan_ssl.core.errors import CheckpointError, ConfigError, DataError
from gan_ssl.core.progress import track
from gan_ssl.core.seeds import derive_seed
from gan_ssl.data import ImageData
from gan_ssl.engine import checkpoint as ckpt_io
from gan_ssl.evaluation import features as fe
from gan_ssl.evaluation.probe import choose_l2, stratified_subset, validation_split
from gan_ssl.families.base import Representation
from gan_ssl.families.resolve import from_dict

BATCH = 64
LR_HEAD, LR_TRUNK, WEIGHT_DECAY = 1e-3, 3e-4, 1e-4
LR_LPFT = 1e-4  # lp-ft: one low rate for the probe-initialised head and the network
RECIPES = ("lp-ft", "full")
EPOCHS, PATIENCE, MAX_STEPS = 60, 8, 3000
NO_FLIP = ("mnist", "digits")  # datasets whose labels a horizontal flip can change (handwritten digits)
FORMAT = "gan_ssl.classifier"


class Classifier(nn.Module):
    """A representation's pooled layers [B, F], a fixed standardisation (x - shift) / scale (the identity unless the
    head came from the linear probe) and a linear head -> class logits [B, K]."""

    def __init__(self, rep: Representation, layers: list[str], dim: int, classes: int, pool: str = fe.DEFAULT_POOL) -> None:
        super().__init__()
        self.trunk, self.features, self.layers, self.pool = rep.module, rep.features, list(layers), pool
        self.head = nn.Linear(dim, classes)
        self.register_buffer("shift", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        named = self.features(x)
        return torch.cat([fe.pool_map(named[n], self.pool).float() for n in self.layers], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head((self.embed(x) - self.shift) / self.scale)


def augment(x: torch.Tensor, flip: bool, g: torch.Generator) -> torch.Tensor:
    """Random crops of x [B, C, H, W] padded by H/8 with the background value -1, and random horizontal flips."""
    B, _, H, W = x.shape
    p = max(1, H // 8)
    padded = F.pad(x, (p, p, p, p), value=-1.0)
    dy, dx = torch.randint(0, 2 * p + 1, (B,), generator=g), torch.randint(0, 2 * p + 1, (B,), generator=g)
    rows = (dy[:, None] + torch.arange(H))[:, :, None]  # [B, H, 1]: one gather for the whole batch
    cols = (dx[:, None] + torch.arange(W))[:, None, :]  # [B, 1, W]
    out = padded.permute(0, 2, 3, 1)[torch.arange(B)[:, None, None], rows, cols].permute(0, 3, 1, 2).contiguous()
    if flip:
        mirror = torch.rand(B, generator=g) < 0.5
        out[mirror] = out[mirror].flip(-1)
    return out


@torch.no_grad()
def accuracy(model: Classifier, data: ImageData, rows: np.ndarray | None = None, batch: int = 256) -> float:
    """Top-1 accuracy of model on data (or its `rows`), eval mode."""
    idx = torch.arange(len(data)) if rows is None else torch.as_tensor(rows, dtype=torch.long)
    was = model.training
    model.eval()
    right = 0
    for start in range(0, len(idx), batch):
        part = idx[start : start + batch]
        right += int((model(data.batch(part)).argmax(1) == data.labels[part]).sum())
    model.train(was)
    return right / max(1, len(idx))


def linear_probe_head(model: Classifier, data: ImageData, fit: np.ndarray, val: np.ndarray) -> dict[str, Any]:
    """Fit the probe's logistic regression on the frozen network's features of data[fit] (L2 chosen on data[val])
    and write it into the model: its standardisation into (shift, scale), its weights into the head (kept apart, so
    the head's weights have the probe's scale and fine-tuning moves them at a sensible rate)."""
    was = model.training
    model.eval()
    rows = np.concatenate([fit, val])
    with torch.no_grad():  # [len(fit) + len(val), F], in batches of about 256
        X = torch.cat([model.embed(data.batch(torch.as_tensor(part))) for part in np.array_split(rows, max(1, len(rows) // 256))])
    model.train(was)
    Xf, Xv = X[: len(fit)].numpy(), X[len(fit) :].numpy()
    yf, yv = data.labels[torch.as_tensor(fit)].numpy(), data.labels[torch.as_tensor(val)].numpy()
    if not len(val) or len(np.unique(yf)) < 2:
        raise DataError("lp-ft needs a validation split and two classes among the labelled images; raise --label-fraction")
    best, best_l2, best_val = choose_l2(Xf, yf, Xv, yv)  # the probe's L2 choice, on the fit rows only
    scaler, clf = best[0], best[-1]
    coef = torch.zeros(model.head.out_features, X.shape[1], dtype=torch.float64)
    bias = torch.full((model.head.out_features,), -1e4, dtype=torch.float64)  # classes absent from fit: never predicted
    classes = torch.as_tensor(clf.classes_)
    w, b = torch.as_tensor(clf.coef_).double(), torch.as_tensor(clf.intercept_).double()  # float32 for float32 features
    if len(classes) == 2:  # sklearn's binary form: one row for class 1
        w, b = torch.cat([-w / 2, w / 2]), torch.cat([-b / 2, b / 2])
    coef[classes], bias[classes] = w, b
    with torch.no_grad():
        model.head.weight.copy_(coef.float())
        model.head.bias.copy_(bias.float())
        model.shift.copy_(torch.as_tensor(scaler.mean_).float())
        model.scale.copy_(torch.as_tensor(scaler.scale_).float())
    return {"probe_val_acc": best_val, "probe_l2": best_l2}


def train_classifier(model: Classifier, data: ImageData, fit: np.ndarray, val: np.ndarray, seed: int, flip: bool,
                     max_steps: int = MAX_STEPS, epochs: int = EPOCHS, recipe: str = "full") -> dict[str, Any]:
    """Fine-tune model on data[fit], keep the state with the best accuracy on data[val] (read every epoch).
    `lp-ft`: the head starts as the linear probe, one low lr, BatchNorm statistics frozen, the start is epoch 0."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown fine-tuning recipe {recipe!r}; use one of {', '.join(RECIPES)}")
    g = torch.Generator().manual_seed(derive_seed(seed, "finetune"))
    info: dict[str, Any] = {}
    if recipe == "lp-ft":
        info = linear_probe_head(model, data, fit, val)
        opt = torch.optim.AdamW(model.parameters(), lr=LR_LPFT, weight_decay=WEIGHT_DECAY)
        model.eval().requires_grad_(True)  # BatchNorm keeps the statistics the probe was fitted with
        best = accuracy(model, data, val)
        info["start_val_acc"] = best
    else:
        trunk = [p for n, p in model.named_parameters() if not n.startswith("head.")]
        opt = torch.optim.AdamW([{"params": model.head.parameters(), "lr": LR_HEAD}, {"params": trunk, "lr": LR_TRUNK}],
                                weight_decay=WEIGHT_DECAY)
        model.train().requires_grad_(True)
        best = -1.0
    best_state, stale, steps, epoch, best_epoch = copy.deepcopy(model.state_dict()), 0, 0, 0, 0
    fit_t = torch.as_tensor(fit, dtype=torch.long)
    for epoch in range(1, epochs + 1):
        order = fit_t[torch.randperm(len(fit_t), generator=g)]
        for start in range(0, len(order), BATCH):
            part = order[start : start + BATCH]
            if len(part) < 2:  # BatchNorm needs two rows
                continue
            loss = F.cross_entropy(model(augment(data.batch(part), flip, g)), data.labels[part])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
        acc = accuracy(model, data, val)  # restores the mode: lp-ft's BatchNorm stays in eval mode
        if acc > best:
            best, best_state, stale, best_epoch = acc, copy.deepcopy(model.state_dict()), 0, epoch
        else:
            stale += 1
        if stale >= PATIENCE or steps >= max_steps:
            break
    model.load_state_dict(best_state)
    return {"val_acc": best, "steps": steps, "epochs": epoch, "best_epoch": best_epoch, "recipe": recipe, **info}


def _classifier(rep: Representation, data: ImageData, layers: str | None) -> Classifier:
    names = fe.resolve_layers(rep, layers)
    with torch.no_grad():
        was = rep.module.training
        rep.module.eval()
        named = rep.features(data.batch(torch.arange(2)))
        rep.module.train(was)
    dim = sum(fe.pool_map(named[n], fe.DEFAULT_POOL).shape[1] for n in names)
    return Classifier(rep, names, dim, int(data.labels.max()) + 1)


def finetune(source: str | Path, spec: str, fractions: tuple[float, ...] = (0.01, 0.1), seeds: int = 3, net: str | None = None,
             layers: str | None = None, scratch: bool = True, limit: int = 0, max_steps: int = MAX_STEPS,
             save: str | Path | None = None, progress: bool = False, recipe: str = "lp-ft") -> dict[str, Any]:
    """Fine-tune a checkpoint's network (D, an encoder) with `recipe` and, with `scratch`, the same architecture from
    random init (recipe `full`), per label fraction and seed. Returns {source, data, rows: {"finetuned D": {fractions:
    {...}}, "scratch D": ...}}. `save`: the fine-tuned classifier of the first fraction and seed 0, for `gan-ssl classify`."""
    if recipe not in RECIPES:
        raise ConfigError(f"unknown fine-tuning recipe {recipe!r}; use one of {', '.join(RECIPES)}")
    t0 = time.perf_counter()
    rep, cfg, meta = fe.load_representation(source, net)
    train_data, test_data = fe.load_data(cfg, spec, "train", limit), fe.load_data(cfg, spec, "test", limit)
    if not train_data.has_labels or not test_data.has_labels:
        raise DataError(f"{spec} has unlabelled images; fine-tuning needs labels for training and test")
    flip = spec.split(":")[0] not in NO_FLIP
    y = train_data.labels.numpy()
    builders = {f"finetuned {rep.name}": lambda s: fe.load_representation(source, net)[0]}
    if scratch:  # the same architecture from random init (a fresh init per seed)
        builders[f"scratch {rep.name}"] = lambda s: fe.random_representation(cfg, net, seed=s)
    rows: dict[str, Any] = {name: {"fractions": {}} for name in builders}
    jobs = [(name, f, s) for f in fractions for s in range(seeds) for name in builders]
    saved = None
    for name, f, s in track(jobs, desc="finetune", unit="run", enabled=progress):
        subset = stratified_subset(y, f, s)
        fit, val = validation_split(y, subset, s)
        torch.manual_seed(derive_seed(s, "finetune head"))
        model = _classifier(builders[name](s), train_data, layers)
        r = train_classifier(model, train_data, fit, val, s, flip, max_steps, recipe=recipe if name.startswith("finetuned") else "full")
        r["acc"] = accuracy(model, test_data)
        cell = rows[name]["fractions"].setdefault(f"{f:g}", {"n_labels": int(len(subset)), "runs": []})
        cell["runs"].append(r)
        if save and saved is None and name.startswith("finetuned"):
            saved = save_classifier(model, cfg, rep.name, train_data.classes, spec, meta, save)
    for row in rows.values():
        for cell in row["fractions"].values():
            accs = [r["acc"] for r in cell["runs"]]
            cell.update(mean=float(np.mean(accs)), std=float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0, accs=accs)
    return {"source": str(source), "data": spec, "n_train": len(train_data), "n_test": len(test_data), "seeds": seeds,
            "flip": flip, "recipe": {"finetuned": recipe, "scratch": "full", "batch": BATCH, "lr_head": LR_HEAD, "lr_trunk": LR_TRUNK,
                                     "lr_lpft": LR_LPFT, "weight_decay": WEIGHT_DECAY, "epochs": EPOCHS, "patience": PATIENCE,
                                     "max_steps": max_steps},
            "rows": rows, "saved": str(saved) if saved else None, "seconds": round(time.perf_counter() - t0, 1)}


def save_classifier(model: Classifier, cfg: Any, net: str, classes: list[str], spec: str, meta: dict[str, Any],
                    path: str | Path) -> Path:
    """A weights_only-loadable classifier file: the model config, the trunk and head weights, layers, classes."""
    obj = {"format": FORMAT, "version": 1, "config": cfg.to_dict(), "net": net, "layers": model.layers, "pool": model.pool,
           "trunk": model.trunk.state_dict(), "head": model.head.state_dict(), "shift": model.shift, "scale": model.scale,
           "classes": list(classes), "data": spec,
           "checkpoint": meta.get("checkpoint", "")}
    ckpt_io.write_atomic(ckpt_io.to_bytes(obj), path)
    return Path(path)


def load_classifier(path: str | Path) -> tuple[Classifier, dict[str, Any]]:
    """A classifier saved by `finetune(save=...)`, in eval mode, and its file's fields."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"classifier file not found: {p}")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # a foreign or torn file
        raise CheckpointError(f"cannot load classifier {p}: {str(e).splitlines()[0][:150] if str(e) else type(e).__name__}") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not a gan_ssl classifier (write one with `gan-ssl finetune ... --save`)")
    rep = fe.random_representation(from_dict(obj["config"]), obj["net"], seed=0)
    model = Classifier(rep, obj["layers"], obj["head"]["weight"].shape[1], obj["head"]["weight"].shape[0], obj["pool"])
    try:
        model.trunk.load_state_dict(obj["trunk"])
        model.head.load_state_dict(obj["head"])
        if "shift" in obj:  # files from before lp-ft have no standardisation: the identity
            model.shift.copy_(obj["shift"])
            model.scale.copy_(obj["scale"])
    except RuntimeError as e:
        raise CheckpointError(f"{p} does not match its own config: {str(e).splitlines()[0][:200]}") from None
    return model.eval(), obj


@torch.no_grad()
def classify(loaded: tuple[Classifier, dict[str, Any]], images: torch.Tensor, batch: int = 256) -> tuple[torch.Tensor, list[str]]:
    """Labels [N] and the class names of uint8 images [N, C, H, W] (at the classifier's resolution) under a classifier
    from `load_classifier`."""
    model, obj = loaded
    cfg = obj["config"]["data"]
    if tuple(images.shape[1:]) != (cfg["channels"], cfg["resolution"], cfg["resolution"]):
        raise DataError(f"images are {tuple(images.shape[1:])}, the classifier takes "
                        f"({cfg['channels']}, {cfg['resolution']}, {cfg['resolution']})")
    data = ImageData(images, torch.zeros(len(images), dtype=torch.long), "input")
    preds = [model(data.batch(torch.arange(s, min(s + batch, len(data))))).argmax(1) for s in range(0, len(data), batch)]
    return (torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)), obj["classes"]


def format_table(r: dict[str, Any]) -> str:
    """Test top-1 (mean ± std over seeds, %) per label fraction, one row per network."""
    fracs = list(next(iter(r["rows"].values()))["fractions"])
    lines = [f"fine-tuning on {r['data']} ({r['n_train']} train / {r['n_test']} test, {r['seeds']} seeds; flips {'on' if r['flip'] else 'off'})",
             f"{'network':<20}" + "".join(f"{f'{float(f):.0%} labels':>18}" for f in fracs)]
    for name, row in r["rows"].items():
        lines.append(f"{name:<20}" + "".join(f"{100 * c['mean']:>11.2f} ± {100 * c['std']:<4.2f}" for c in row["fractions"].values()))
    if r.get("saved"):
        lines.append(f"saved the fine-tuned classifier ({fracs[0]} labels, seed 0) to {r['saved']}")
    return "\n".join(lines + [f"({r['seconds']} s)"])
