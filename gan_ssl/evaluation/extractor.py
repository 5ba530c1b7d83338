"""A small supervised CNN as an offline FID feature extractor for Fashion-MNIST / MNIST.

The standard Inception weights cannot always be downloaded. This module trains a small classifier
on the dataset itself (`gan-ssl evaluator train --data fashion-mnist`, > 92% test accuracy in a few
CPU minutes), saves it with its test accuracy and a content hash under `$GAN_SSL_HOME/evaluators/`,
and registers it into torch-fidelity (`register_feature_extractor`) so that FID, KID, precision/recall
and ISC all come from torch-fidelity's own code with it. Numbers computed with it are domain
metrics, always labelled with the extractor's name (`fid[fashion-mnist-cnn]`), never "the" FID.

Features: 'penultimate' ([B, feature_dim], the fully connected layer before the classifier, like
Inception's pool3) for FID/KID/PRC, and 'logits' ([B, classes]) for ISC. Inputs are uint8
[B, C, H, W]: RGB is turned to grey (ITU-R 601 luma), 28-px images are zero-padded to 32 (as the
GAN's training data), other sizes are resized bilinearly (antialiased) to 32.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gan_ssl.core.errors import DataError, WeightsError
from gan_ssl.core.files import write_atomic
from gan_ssl.core.progress import Progress
from gan_ssl.data import load_images
from gan_ssl.engine.checkpoint import to_bytes

log = logging.getLogger(__name__)

FORMAT = "gan_ssl.evaluator"  # a file-format tag written into every file (the module's old name): never change it
VERSION = 1
DATASETS = ("fashion-mnist", "mnist")  # datasets an evaluator CNN can be trained on
RESOLUTION = 32  # the CNN's input size: GAN images are 32 px; 28-px inputs are zero-padded to it
TARGET_ACCURACY = 0.92  # the accuracy a full `evaluator train` run is expected to reach on Fashion-MNIST
RESIZER = "grey (ITU-R 601 luma), 28 px zero-padded to 32, other sizes bilinear-antialias to 32x32"


def gan_home() -> Path:
    """The user cache: `$GAN_SSL_HOME`, default `~/.cache/gan_ssl`."""
    return Path(os.environ.get("GAN_SSL_HOME", Path.home() / ".cache" / "gan_ssl")).expanduser()


def extractor_name(data: str) -> str:
    """'fashion-mnist' -> 'fashion-mnist-cnn' (the name in torch-fidelity's registry and in metric keys)."""
    return f"{data}-cnn"


def default_path(name: str) -> Path:
    """Where `gan-ssl evaluator train` saves extractor `name`: $GAN_SSL_HOME/evaluators/NAME.pt."""
    return gan_home() / "evaluators" / f"{name}.pt"


def train_command(name: str) -> str:
    """The command that makes extractor `name`."""
    return f"gan-ssl evaluator train --data {name[: -len('-cnn')] if name.endswith('-cnn') else name}"


class EvalCNN(nn.Module):
    """float images [B, 1, 32, 32] in [-1, 1] -> features [B, feature_dim] -> logits [B, classes].

    Three 3x3 conv-BN-ReLU blocks (width, 2w, 4w channels), each followed by 2x2 max-pooling
    (32 -> 16 -> 8 -> 4), then a fully connected layer to `feature_dim` units (BN, ReLU): the
    features FID uses, like Inception's pool3. Flattening the 4x4 map, rather than averaging it,
    keeps the garment's layout, which global pooling loses (a shirt vs a T-shirt).
    """

    def __init__(self, width: int = 32, feature_dim: int = 128, classes: int = 10) -> None:
        super().__init__()
        chans = [1, width, 2 * width, 4 * width]
        layers: list[nn.Module] = []
        for i in range(3):
            layers += [nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False), nn.BatchNorm2d(chans[i + 1]),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        self.body = nn.Sequential(*layers)
        self.fc1 = nn.Sequential(nn.Linear(4 * width * 16, feature_dim, bias=False), nn.BatchNorm1d(feature_dim), nn.ReLU(inplace=True))
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(feature_dim, classes)
        self.width, self.classes, self.feature_dim = width, classes, feature_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x float [B, 1, 32, 32] in [-1, 1] -> features [B, feature_dim] (>= 0)."""
        assert x.ndim == 4 and x.shape[1:] == (1, RESOLUTION, RESOLUTION), x.shape
        return self.fc1(self.body(x).flatten(1))  # body: [B, 4w, 4, 4]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x float [B, 1, 32, 32] in [-1, 1] -> logits [B, classes]."""
        return self.fc(self.drop(self.features(x)))


def prepare(x: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 [B, C, H, W] (C = 1 or 3, any size) -> `dtype` [B, 1, 32, 32] in [-1, 1] (see RESIZER)."""
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] not in (1, 3):
        raise DataError(f"the evaluator CNN expects uint8 images [B, 1 or 3, H, W], got {x.dtype} {tuple(x.shape)}")
    y = x.to(dtype)
    if y.shape[1] == 3:
        w = torch.tensor([0.299, 0.587, 0.114], dtype=dtype, device=y.device).view(1, 3, 1, 1)
        y = (y * w).sum(1, keepdim=True)
    h, wd = y.shape[2:]
    if (h, wd) == (28, 28):
        y = F.pad(y, (2, 2, 2, 2))
    elif (h, wd) != (RESOLUTION, RESOLUTION):
        y = F.interpolate(y, size=(RESOLUTION, RESOLUTION), mode="bilinear", antialias=True, align_corners=False)
    return y / 127.5 - 1.0


def state_hash(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of a state dict (stable across torch.save layouts)."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())  # raw bytes, any dtype
    return h.hexdigest()


def load_evaluator(path: str | Path, name: str | None = None) -> tuple[EvalCNN, dict[str, Any]]:
    """Load a saved evaluator CNN (eval mode) and its metadata; checks format, name and content hash."""
    p = Path(path).expanduser()
    make = f"make it with: {train_command(name)}" if name else "make one with: gan-ssl evaluator train --data fashion-mnist"
    if not p.is_file():
        raise WeightsError(f"feature extractor {name or p.stem} not found at {p}; {make} (a few CPU minutes)")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise WeightsError(f"cannot read feature extractor {p} ({type(e).__name__}); {make}") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise WeightsError(f"{p} is not a gan_ssl evaluator file (no '{FORMAT}' tag); {make}")
    if name is not None and obj.get("name") != name:
        raise WeightsError(f"{p} holds extractor {obj.get('name')!r}, not {name!r}; {make}")
    state = obj["state_dict"]
    if state_hash(state) != obj.get("sha256"):
        raise WeightsError(f"feature extractor {p} is corrupt (content hash mismatch); {make}")
    arch = obj["arch"]
    net = EvalCNN(int(arch["width"]), int(arch["feature_dim"]), int(arch["classes"]))
    net.load_state_dict(state)
    net.eval().requires_grad_(False)
    meta = {k: v for k, v in obj.items() if k != "state_dict"}
    return net, meta


def save_evaluator(net: EvalCNN, meta: dict[str, Any], path: str | Path) -> str:
    """Save atomically with its content hash; returns the hash."""
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    digest = state_hash(state)
    arch = {"width": net.width, "feature_dim": net.feature_dim, "classes": net.classes, "resolution": RESOLUTION}
    obj = {"format": FORMAT, "version": VERSION, **meta, "arch": arch, "sha256": digest, "state_dict": state}
    write_atomic(to_bytes(obj), path)
    return digest


@torch.no_grad()
def accuracy(net: EvalCNN, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy of `net` (eval mode) on uint8 images [N, C, H, W] with labels [N]."""
    net.eval()
    correct = 0
    for i in range(0, len(images), batch_size):
        correct += int((net(prepare(images[i : i + batch_size])).argmax(1) == labels[i : i + batch_size]).sum())
    return correct / max(1, len(images))


def train_evaluator(data: str = "fashion-mnist", epochs: int = 4, batch_size: int = 128, lr: float = 3e-3, width: int = 16,
                    feature_dim: int = 128, seed: int = 0, limit: int = 0, root: str = "", out: str | Path | None = None,
                    progress: bool = True) -> dict[str, Any]:
    """Train the evaluator CNN on `data`'s training split and save it (default: `default_path`).

    Args:
        data: fashion-mnist or mnist.
        epochs: passes over the training images (4 reach ~92.4% on Fashion-MNIST with width 16).
        width, feature_dim: channels of the first conv block; size of the feature layer.
        limit: use only the first `limit` training and test images (0 = all); for smoke tests.
        out: file to write; default $GAN_SSL_HOME/evaluators/<data>-cnn.pt.

    Returns:
        A report: name, path, sha256, test_accuracy, train_seconds, epochs, n_train, n_test, ...
    """
    if data not in DATASETS:
        raise DataError(f"an evaluator CNN can be trained on {', '.join(DATASETS)}, not {data!r}")
    if epochs < 1 or batch_size < 2 or width < 1 or feature_dim < 1 or not (0 < lr < 1):
        raise DataError(f"bad evaluator training settings: epochs={epochs}, batch_size={batch_size}, width={width}, "
                        f"feature_dim={feature_dim}, lr={lr}")
    name = extractor_name(data)
    train = load_images(data, "train", RESOLUTION, 1, root, limit)
    test = load_images(data, "test", RESOLUTION, 1, root, limit)
    if len(train) < batch_size:
        raise DataError(f"{len(train)} training images are fewer than one batch of {batch_size}")
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG stream untouched
        torch.manual_seed(seed)
        g = torch.Generator().manual_seed(seed)
        net = EvalCNN(width, feature_dim, len(train.classes) or 10)
        opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=5e-4)
        steps_per_epoch = len(train) // batch_size
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.2)
        t0 = time.perf_counter()
        bar = Progress(total=epochs * steps_per_epoch, desc=f"train {name}", unit="step", enabled=progress)
        history = []
        for epoch in range(epochs):
            net.train()
            perm = torch.randperm(len(train), generator=g)
            for i in range(steps_per_epoch):
                idx = perm[i * batch_size : (i + 1) * batch_size]
                x = prepare(train.images[idx])  # [B, 1, 32, 32]; no augmentation: 4 epochs do not overfit
                loss = F.cross_entropy(net(x), train.labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.update(1)
                if i % 50 == 0:
                    bar.set_postfix({"loss": f"{loss.item():.3f}", **({"test_acc": f"{history[-1]:.4f}"} if history else {})})
            history.append(accuracy(net, test.images, test.labels))  # a progress signal; costs one test pass
            log.info("%s epoch %d: test accuracy %.4f", name, epoch + 1, history[-1])
        bar.close()
        train_s = time.perf_counter() - t0
    test_acc = history[-1]
    meta = {"name": name, "data": data, "test_accuracy": round(test_acc, 5), "train_seconds": round(train_s, 1),
            "epochs": epochs, "epoch_test_accuracy": [round(a, 5) for a in history], "batch_size": batch_size, "lr": lr,
            "width": width, "seed": seed, "n_train": len(train), "n_test": len(test),
            "threads": torch.get_num_threads(), "torch": str(torch.__version__),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    path = Path(out).expanduser() if out else default_path(name)
    digest = save_evaluator(net, meta, path)
    log.info("saved %s (test accuracy %.4f) to %s", name, test_acc, path)
    return {**meta, "path": str(path), "sha256": digest, "feature_dim": net.feature_dim,
            "meets_target": bool(test_acc >= TARGET_ACCURACY) if data == "fashion-mnist" else None}


# ---- torch-fidelity integration ------------------------------------------------------------------

@functools.cache
def extractor_class() -> type:
    """The torch-fidelity FeatureExtractorBase subclass wrapping EvalCNN (one class for every *-cnn name).

    Built on first use: importing torch_fidelity takes seconds, and training does not need it.
    """
    from torch_fidelity import FeatureExtractorBase

    class CNNFeatureExtractor(FeatureExtractorBase):  # type: ignore[misc, valid-type]
        """torch-fidelity extractor: uint8 [B, C, H, W] -> ('penultimate' [B, D], 'logits' [B, K]) in float32.

        Weights come from `feature_extractor_weights_path` (default: $GAN_SSL_HOME/evaluators/NAME.pt);
        `feature_extractor_internal_dtype='float64'` runs the network in float64, so features do not
        depend on the batch size.
        """

        def __init__(self, name: str, features_list: list[str], feature_extractor_weights_path: str | None = None,
                     feature_extractor_internal_dtype: str | None = None, **kwargs: Any) -> None:
            super().__init__(name, features_list)
            if feature_extractor_internal_dtype not in (None, "float32", "float64"):
                raise DataError(f"internal dtype must be float32 or float64, got {feature_extractor_internal_dtype!r}")
            self.dtype = torch.float64 if feature_extractor_internal_dtype == "float64" else torch.float32
            path = feature_extractor_weights_path or default_path(name)
            self.net, self.meta = load_evaluator(path, name)
            self.net.to(self.dtype)

        @staticmethod
        def get_provided_features_list() -> tuple[str, ...]:
            return "penultimate", "logits"

        @staticmethod
        def get_default_feature_layer_for_metric(metric: str) -> str:
            return {"isc": "logits", "fid": "penultimate", "kid": "penultimate", "prc": "penultimate"}[metric]

        @staticmethod
        def can_be_compiled() -> bool:
            return False

        @staticmethod
        def get_dummy_input_for_compile() -> torch.Tensor:
            return torch.zeros(1, 1, RESOLUTION, RESOLUTION, dtype=torch.uint8)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            x = prepare(x, self.dtype)  # [B, 1, 32, 32]
            feats = self.net.features(x)  # [B, D]
            out = {"penultimate": feats}
            if "logits" in self.features_list:
                out["logits"] = self.net.fc(feats)  # dropout is off in eval mode
            return tuple(out[k].to(torch.float32) for k in self.features_list)

    return CNNFeatureExtractor


def register(name: str) -> None:
    """Register extractor `name` (e.g. 'fashion-mnist-cnn') into torch-fidelity; idempotent."""
    from torch_fidelity import register_feature_extractor
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    if not name.endswith("-cnn") or name[: -len("-cnn")] not in DATASETS:
        raise DataError(f"unknown evaluator CNN {name!r}; known: {', '.join(extractor_name(d) for d in DATASETS)}")
    if name not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(name, extractor_class())
    elif FEATURE_EXTRACTORS_REGISTRY[name] is not extractor_class():
        raise DataError(f"torch-fidelity already has a different feature extractor named {name!r}")


def describe(path: str | Path, name: str) -> dict[str, Any]:
    """Metadata of a saved extractor (accuracy, hash, training time) without the weights."""
    _, meta = load_evaluator(path, name)
    return {k: meta[k] for k in ("name", "data", "sha256", "test_accuracy", "train_seconds", "epochs", "n_train", "created") if k in meta}

