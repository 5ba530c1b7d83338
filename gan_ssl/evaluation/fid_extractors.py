"""The feature extractors of FID/KID/PR: the offline `fashion-mnist-cnn` / `mnist-cnn` networks
(gan_ssl.evaluation.extractor) and torch-fidelity's `inception-v3-compat` from a local weights file."""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gan_ssl.core.errors import DataError, WeightsError
from gan_ssl.core.files import sha256_file
from gan_ssl.evaluation import extractor as ev

log = logging.getLogger(__name__)

DEFAULT_FEATURES = "fashion-mnist-cnn"  # offline extractor; `inception` needs its weights file

# The one table of defaults for `compute` and `gan-ssl fid` (tests check the CLI against it).
DEFAULTS: dict[str, Any] = {
    "features": DEFAULT_FEATURES,  # offline extractor; `inception` needs its weights file
    "n": 10000,  # samples drawn from a checkpoint input: FID-10k, the usual size for small datasets
    "batch_size": 256,  # feature batch; float64 features make results independent of it
    "seed": 0,  # latent seed for checkpoint inputs
    "kid_subset_size": 1000,  # torch-fidelity's default; each input needs at least this many images
    "device": "cpu",
}


INCEPTION = "inception"


INCEPTION_FIDELITY_NAME = "inception-v3-compat"


INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"


INCEPTION_RESIZER = "torch-fidelity inception-v3-compat: grey expanded to RGB, TF1-compatible bilinear resize to 299x299"


EXTRACTORS = tuple(ev.extractor_name(d) for d in ev.DATASETS) + (INCEPTION,)


ALIASES = {INCEPTION_FIDELITY_NAME: INCEPTION}


INTERNAL_DTYPE = "float64"  # torch-fidelity feature_extractor_internal_dtype: batch-size independent features


@dataclass(frozen=True)
class Extractor:
    """A resolved feature extractor: the name users see, torch-fidelity's name, and its weights."""

    name: str  # in every metric key: fid[<name>]
    fidelity_name: str  # torch-fidelity registry name
    weights: Path
    sha256: str  # content hash of the weights (cache names use its first 12 hex digits)
    channels: int | None  # channels torch-fidelity must be fed (3 for Inception), None = as the input has them
    resizer: str
    info: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "torch_fidelity_name": self.fidelity_name, "weights": str(self.weights),
                "sha256": self.sha256, "resizer": self.resizer, "internal_dtype": INTERNAL_DTYPE, **self.info}


def inception_expected_path() -> Path:
    """Where torch-fidelity looks for the Inception weights: $TORCH_HOME/hub/checkpoints/<file>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def _download(url: str, dest: Path, timeout: float = 30.0) -> None:
    """Download `url` to `dest` atomically; the file name's hash prefix is checked as torch.hub does."""
    import tempfile
    import urllib.request

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".part")
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, os.fdopen(fd, "wb") as f:
            for chunk in iter(lambda: r.read(1 << 20), b""):
                f.write(chunk)
                h.update(chunk)
        prefix = INCEPTION_FILE.rsplit("-", 1)[-1].split(".")[0]
        if not h.hexdigest().startswith(prefix):
            raise OSError(f"downloaded file has sha256 {h.hexdigest()[:8]}..., expected {prefix}...")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def find_inception_weights(path: str | Path | None = None, download: bool | None = None) -> Path:
    """The Inception weights file: `path`, else $GAN_SSL_INCEPTION_WEIGHTS, else torch-fidelity's cache.

    When none exists, the file is downloaded into torch-fidelity's cache unless `download` is False
    (default: on unless $GAN_SSL_OFFLINE is set); failing that, WeightsError says what to do.
    """
    offline = ("Offline alternative: --features fashion-mnist-cnn (make it once with: "
               f"{ev.train_command('fashion-mnist-cnn')}); its numbers are labelled fid[fashion-mnist-cnn].")
    given = path or os.environ.get("GAN_SSL_INCEPTION_WEIGHTS")
    if given:
        p = Path(given).expanduser()
        if not p.is_file():
            src = "--inception-weights" if path else "$GAN_SSL_INCEPTION_WEIGHTS"
            raise WeightsError(f"Inception weights not found at {p} (given by {src}); torch-fidelity's file is {INCEPTION_FILE}. {offline}")
        return p
    expected = inception_expected_path()
    if expected.is_file():
        return expected
    if download is None:
        download = os.environ.get("GAN_SSL_OFFLINE", "") in ("", "0")
    reason = "downloads are off ($GAN_SSL_OFFLINE is set)"
    if download:
        from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

        try:
            log.info("downloading %s to %s", URL_INCEPTION_V3, expected)
            _download(URL_INCEPTION_V3, expected)
            return expected
        except OSError as e:
            reason = f"download failed: {str(e)[:150]}"
    raise WeightsError(f"Inception weights not found: torch-fidelity expects {expected} ({reason}). Put {INCEPTION_FILE} there "
                       f"(from the torch-fidelity v0.2.0 release), or pass --inception-weights PATH or set $GAN_SSL_INCEPTION_WEIGHTS. {offline}")


def resolve_extractor(name: str = DEFAULTS["features"], inception_weights: str | Path | None = None,
                      download: bool | None = None) -> Extractor:
    """Look up a feature extractor by name and check that its weights exist (and register it into torch-fidelity)."""
    name = ALIASES.get(name, name)
    if name not in EXTRACTORS:
        raise DataError(f"unknown feature extractor {name!r}; known: {', '.join(EXTRACTORS)}")
    if name == INCEPTION:
        p = find_inception_weights(inception_weights, download)
        return Extractor(INCEPTION, INCEPTION_FIDELITY_NAME, p, sha256_file(p), 3, INCEPTION_RESIZER,
                         {"feature_layer": "2048", "feature_dim": 2048})
    ev.register(name)
    path = ev.default_path(name)
    net, meta = ev.load_evaluator(path, name)
    info = {"feature_layer": "penultimate", "feature_dim": net.feature_dim, "test_accuracy": meta.get("test_accuracy"),
            "trained_on": f"{meta.get('data')}:train", "note": "domain metric: not comparable with Inception FID"}
    return Extractor(name, name, path, str(meta["sha256"]), None, ev.RESIZER, info)
