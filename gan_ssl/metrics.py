"""FID, KID, precision/recall and ISC through torch-fidelity, on any input gan_ssl knows.

All metric math is `torch_fidelity.calculate_metrics`; this module only turns user inputs into
uint8 datasets, picks and labels the feature extractor, and names torch-fidelity's cache entries.

    >>> from gan_ssl import metrics
    >>> r = metrics.compute("runs/ssgan", "fashion-mnist:test", n=10000)       # FID of 10k EMA samples
    >>> r["metrics"]["fid[fashion-mnist-cnn]"]

An INPUT is an image folder, an `.npy` of uint8 images ([N, C, H, W], [N, H, W] or [N, H, W, C]),
a dataset spec (`fashion-mnist:test`, `cifar10:train`, `folder:PATH`), a checkpoint (`.pt` file or run
folder: its EMA generator is sampled on the fly, `n` images) or, from Python, a uint8 tensor
[N, C, H, W] or `ImageData`. Dataset specs take the size and channels of the other input (Fashion-MNIST
is zero-padded 28 -> 32 as for training); two fixed inputs must already agree.

Extractors: `fashion-mnist-cnn` / `mnist-cnn` (offline, see `gan_ssl.evaluator`) and `inception`
(torch-fidelity's `inception-v3-compat`; weights from a path, `$GAN_SSL_INCEPTION_WEIGHTS` or
torch-fidelity's cache). Metric keys name the extractor: `fid[fashion-mnist-cnn]`, `fid[inception]`.
Reference statistics of dataset inputs are cached by torch-fidelity under `$TORCH_HOME/fidelity_cache`
with a name holding the dataset, split, shape, count, a pixel hash and the extractor's weight hash.
"""
from __future__ import annotations

import hashlib
import logging
import os
import pickle
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from gan_ssl import evaluator as ev
from gan_ssl.data import IMAGE_SUFFIXES, ImageData, list_images, load_images, parse_spec
from gan_ssl.errors import DataError, GanSslError, WeightsError

if TYPE_CHECKING:
    from gan_ssl.bundle import Bundle
    from gan_ssl.config import Config

log = logging.getLogger(__name__)

# The one table of defaults for `compute` and `gan-ssl fid` (tests check the CLI against it).
DEFAULTS: dict[str, Any] = {
    "features": "fashion-mnist-cnn",  # offline extractor; `inception` needs its weights file
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
_ALIASES = {INCEPTION_FIDELITY_NAME: INCEPTION}
_KEYS = {  # torch-fidelity result key -> our key prefix
    "frechet_inception_distance": "fid", "kernel_inception_distance_mean": "kid", "kernel_inception_distance_std": "kid_std",
    "precision": "precision", "recall": "recall", "f_score": "f_score",
    "inception_score_mean": "isc", "inception_score_std": "isc_std",
}
_DTYPE = "float64"  # torch-fidelity feature_extractor_internal_dtype: batch-size independent features
# Bumped whenever the pixels fed to torch-fidelity change (padding, resizing, channel conversion), so old
# cached reference statistics are never read for new inputs. Part of every cache name, with _DTYPE and
# the torch-fidelity version.
PREPROCESSING_VERSION = 2


# ---- feature extractors --------------------------------------------------------------------------

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
                "sha256": self.sha256, "resizer": self.resizer, "internal_dtype": _DTYPE, **self.info}


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


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
    name = _ALIASES.get(name, name)
    if name not in EXTRACTORS:
        raise DataError(f"unknown feature extractor {name!r}; known: {', '.join(EXTRACTORS)}")
    if name == INCEPTION:
        p = find_inception_weights(inception_weights, download)
        return Extractor(INCEPTION, INCEPTION_FIDELITY_NAME, p, _file_sha256(p), 3, INCEPTION_RESIZER,
                         {"feature_layer": "2048", "feature_dim": 2048})
    ev.register(name)
    path = ev.default_path(name)
    net, meta = ev.load_evaluator(path, name)
    info = {"feature_layer": "penultimate", "feature_dim": net.feature_dim, "test_accuracy": meta.get("test_accuracy"),
            "trained_on": f"{meta.get('data')}:train", "note": "domain metric: not comparable with Inception FID"}
    return Extractor(name, name, path, str(meta["sha256"]), None, ev.RESIZER, info)


# ---- inputs --------------------------------------------------------------------------------------

class TensorImages(Dataset):
    """uint8 [N, C, H, W] in memory -> items uint8 [C', H, W] (grey expanded to 3 channels if asked)."""

    def __init__(self, images: torch.Tensor, channels: int | None = None) -> None:
        assert images.dtype == torch.uint8 and images.ndim == 4, (images.dtype, images.shape)
        self.images, self.expand = images, channels == 3 and images.shape[1] == 1

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> torch.Tensor:
        x = self.images[i]  # [C, H, W]
        return x.expand(3, -1, -1) if self.expand else x


class FileImages(Dataset):
    """Image files read lazily (in torch-fidelity's loader workers) -> uint8 [C', H, W]."""

    def __init__(self, files: list[Path], mode: str, channels: int | None = None) -> None:
        self.files, self.mode = files, ("RGB" if channels == 3 else mode)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        from PIL import Image, UnidentifiedImageError

        try:  # the headers were read up front; a file truncated past its header fails only here
            with Image.open(self.files[i]) as im:
                arr = np.asarray(im.convert(self.mode), dtype=np.uint8)
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            raise DataError(f"cannot read image {self.files[i]}: {type(e).__name__}: {str(e)[:120]}") from None
        t = torch.from_numpy(arr.copy())
        return t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)


@dataclass
class MetricInput:
    """One side of a comparison: a uint8 dataset plus what the numbers must be reported with."""

    label: str  # what the user passed
    kind: str  # dataset | folder | npy | checkpoint | tensor
    dataset: Dataset
    shape: tuple[int, int, int]  # (C, H, W) of the images before any channel expansion
    n: int
    cache_name: str | None = None  # torch-fidelity cache entry (dataset inputs only)
    info: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"input": self.label, "kind": self.kind, "n": self.n, "shape": list(self.shape), **self.info}


_GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}  # PIL modes read as 1 channel; everything else as RGB


def _folder_input(path: Path, ext: Extractor) -> MetricInput:
    from PIL import Image, UnidentifiedImageError

    files = list_images(path)
    if not files:
        others = [p.name for p in path.rglob("*") if p.is_file()][:3]
        extra = f" (it holds other files, e.g. {', '.join(others)})" if others else " (it is empty)"
        raise DataError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found under {path}{extra}")
    sizes: dict[tuple[int, int], Path] = {}
    chans: dict[int, Path] = {}
    for f in files:
        try:
            with Image.open(f) as im:
                size, mode = im.size, im.mode
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            raise DataError(f"cannot read image {f}: {type(e).__name__}: {str(e)[:120]}") from None
        sizes.setdefault(size, f)
        chans.setdefault(1 if mode in _GREY_MODES else 3, f)
    if len(sizes) > 1:
        (s1, f1), (s2, f2) = list(sizes.items())[:2]
        raise DataError(f"images under {path} differ in size: {f1.name} is {s1[0]}x{s1[1]}, {f2.name} is {s2[0]}x{s2[1]}; "
                        "resize them to one size first")
    if len(chans) > 1:
        raise DataError(f"images under {path} mix greyscale ({chans[1].name}) and colour ({chans[3].name}); convert them to one mode first")
    (w, h), c = next(iter(sizes)), next(iter(chans))
    return MetricInput(str(path), "folder", FileImages(files, "L" if c == 1 else "RGB", ext.channels), (c, h, w), len(files))


def _npy_input(path: Path, ext: Extractor) -> MetricInput:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"cannot read {path} as a numpy array: {str(e)[:150] or type(e).__name__}") from None
    if not isinstance(arr, np.ndarray):  # an .npz archive under an .npy name
        raise DataError(f"{path} is an .npz archive, not one array; save the images with np.save")
    if arr.dtype != np.uint8:
        raise DataError(f"{path} holds {arr.dtype} values; images must be uint8 in [0, 255] "
                        "(e.g. np.round((x + 1) * 127.5).clip(0, 255).astype(np.uint8) for [-1, 1] floats)")
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim == 4 and arr.shape[1] not in (1, 3) and arr.shape[3] in (1, 3):
        arr = arr.transpose(0, 3, 1, 2)  # [N, H, W, C] -> [N, C, H, W]
    if arr.ndim != 4 or arr.shape[1] not in (1, 3) or arr.shape[0] == 0:
        raise DataError(f"{path} has shape {tuple(arr.shape)}; expected N >= 1 uint8 images as [N, C, H, W], [N, H, W] or [N, H, W, C] with C = 1 or 3")
    return _tensor_input(torch.from_numpy(np.ascontiguousarray(arr)), str(path), "npy", ext)


def _tensor_input(images: torch.Tensor, label: str, kind: str, ext: Extractor, info: dict[str, Any] | None = None) -> MetricInput:
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3) or images.shape[0] == 0:
        raise DataError(f"{label}: images must be uint8 [N >= 1, 1 or 3, H, W], got {images.dtype} {tuple(images.shape)}")
    c, h, w = images.shape[1:]
    return MetricInput(label, kind, TensorImages(images.contiguous(), ext.channels), (c, h, w), images.shape[0], None, info or {})


def _checkpoint_input(path: Path, ext: Extractor, n: int, seed: int, batch_size: int, device: str) -> MetricInput:
    from gan_ssl import api

    bundle = api.load(path, device)
    t0 = time.perf_counter()
    images = bundle.sample(n, seed, batch_size)  # uint8 [n, C, H, W]
    info = {"checkpoint": str(bundle.path), "step": bundle.step, "family": bundle.cfg.family, "model": bundle.cfg.model.name, "seed": seed,
            "samples": "EMA generator", "sample_seconds": round(time.perf_counter() - t0, 2)}
    return _tensor_input(images, str(path), "checkpoint", ext, info)


def images_digest(images: torch.Tensor) -> str:
    """SHA-256 of uint8 images [N, C, H, W] with their shape (names cache entries by content)."""
    h = hashlib.sha256(str(tuple(images.shape)).encode())
    h.update(images.contiguous().numpy().tobytes())
    return h.hexdigest()


def reference_input(data: ImageData | torch.Tensor, label: str, ext: Extractor, cache: bool = True,
                    info: dict[str, Any] | None = None) -> MetricInput:
    """A reference set held in memory, cached by torch-fidelity under a name built from its pixels and the extractor."""
    images = data.images if isinstance(data, ImageData) else data
    inp = _tensor_input(images, label, "dataset", ext, info)
    if cache:
        c, h, w = inp.shape
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in label)[:60]
        inp.cache_name = (f"gan_ssl-p{PREPROCESSING_VERSION}-{safe}-{c}x{h}x{w}-n{inp.n}-{images_digest(images)[:12]}-{ext.name}-"
                          f"{ext.sha256[:12]}-{_DTYPE}-tf{_fidelity_version()}")
    return inp


def _raised_by_fidelity_check(e: BaseException) -> bool:
    """Whether e was raised by torch-fidelity's own input checks (its `vassert` helper), not by torch inside it."""
    import traceback

    frames = traceback.extract_tb(e.__traceback__)
    return bool(frames) and "torch_fidelity" in Path(frames[-1].filename).parts and frames[-1].name == "vassert"


def _fidelity_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch-fidelity")
    except PackageNotFoundError:  # pragma: no cover - it is a dependency
        return "unknown"


def classify_input(spec: str) -> str:
    """folder | npy | checkpoint | dataset, or a DataError saying what an INPUT can be."""
    p = Path(spec).expanduser()
    if p.is_dir():
        return "checkpoint" if (p / "checkpoints" / "latest.pt").is_file() else "folder"
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix == ".npy":
            return "npy"
        if suffix in (".pt", ".pth", ".ckpt"):
            return "checkpoint"
        what = "a single image; pass the folder that holds the images" if suffix in IMAGE_SUFFIXES else f"not a supported input ({suffix or 'no suffix'})"
        raise DataError(f"{spec} is {what}. An INPUT is an image folder, an .npy of uint8 images, a checkpoint (.pt or run folder) "
                        "or a dataset spec such as fashion-mnist:test or folder:PATH")
    if spec.startswith("folder:") or spec.split(":")[0] in ("fashion-mnist", "mnist", "cifar10"):
        return "dataset"
    raise DataError(f"input {spec!r} does not exist and is not a dataset spec. An INPUT is an image folder, an .npy of uint8 images, "
                    "a checkpoint (.pt or run folder) or a dataset spec such as fashion-mnist:test, mnist:train, cifar10:test, folder:PATH")


def _dataset_input(spec: str, ext: Extractor, like: tuple[int, int, int] | None, cache: bool) -> MetricInput:
    name, _, split = parse_spec(spec)
    if like is not None:
        c, h, w = like
        if h != w:
            raise DataError(f"dataset {spec} can only be matched to square images; the other input is {c}x{h}x{w}")
        res, chans = h, c
    else:
        res, chans = 32, (1 if name in ("fashion-mnist", "mnist") else 3)
    data = load_images(spec, split, res, chans)
    label = f"{data.name}:{split}"
    info = {"split": split, "resolution": res, "channels": chans,
            "preprocessing": "28 px zero-padded to 32" if name in ("fashion-mnist", "mnist") and res == 32 else f"fit to {res}x{res}"}
    return reference_input(data, label, ext, cache, info)


def open_input(spec: str | Path | torch.Tensor | ImageData | MetricInput, ext: Extractor, like: tuple[int, int, int] | None = None,
               n: int = DEFAULTS["n"], seed: int = DEFAULTS["seed"], batch_size: int = DEFAULTS["batch_size"],
               device: str = DEFAULTS["device"], cache: bool = True) -> MetricInput:
    """Turn one INPUT into a MetricInput; dataset specs are converted to `like` = (C, H, W) when given."""
    if isinstance(spec, MetricInput):
        return spec
    if isinstance(spec, ImageData):
        return reference_input(spec, spec.name, ext, cache)
    if isinstance(spec, torch.Tensor):
        return _tensor_input(spec, f"tensor{tuple(spec.shape)}", "tensor", ext)
    kind = classify_input(str(spec))
    p = Path(str(spec)).expanduser()
    if kind == "folder":
        return _folder_input(p, ext)
    if kind == "npy":
        return _npy_input(p, ext)
    if kind == "checkpoint":
        return _checkpoint_input(p, ext, n, seed, batch_size, device)
    return _dataset_input(str(spec), ext, like, cache)


def _is_spec(x: Any) -> bool:
    return isinstance(x, (str, Path)) and not Path(str(x)).expanduser().exists() and classify_input(str(x)) == "dataset"


# ---- metrics -------------------------------------------------------------------------------------

def _cache_file(inp: MetricInput, ext: Extractor, layer: str) -> Path:
    return Path(torch.hub._get_torch_home()) / "fidelity_cache" / f"{inp.cache_name}-{ext.fidelity_name}-stat-fid-{layer}.pt"


def compute(input1: Any, input2: Any = None, features: str = DEFAULTS["features"], fid: bool = True, kid: bool = False,
            prc: bool = False, isc: bool = False, n: int = DEFAULTS["n"], seed: int = DEFAULTS["seed"],
            batch_size: int = DEFAULTS["batch_size"], device: str = DEFAULTS["device"],
            kid_subset_size: int = DEFAULTS["kid_subset_size"], inception_weights: str | Path | None = None,
            cache: bool = True, verbose: bool = False, extractor: Extractor | None = None) -> dict[str, Any]:
    """Compute FID (and optionally KID, precision/recall, ISC) between two inputs with torch-fidelity.

    Precision/recall follow torch-fidelity: input1 is the generated set, input2 the real one. ISC uses input1 only.

    Returns:
        {"metrics": {"fid[<extractor>]": float, ...}, "input1": {...}, "input2": {...}, "extractor": {...},
         "batch_size", "kid_subset_size", "seconds", "torch_fidelity"}: every number with its sample
        counts, reference split and resizer.
    """
    import torch_fidelity

    if not (fid or kid or prc or isc):
        raise DataError("no metric requested: choose at least one of fid, kid, prc, isc")
    binary = fid or kid or prc
    if binary and input2 is None:
        raise DataError("FID, KID and precision/recall compare two inputs; give INPUT2")
    if batch_size < 1 or n < 1:
        raise DataError(f"batch size and n must be at least 1 (got {batch_size}, {n})")
    t0 = time.perf_counter()
    ext = extractor or resolve_extractor(features, inception_weights)
    dev = torch.device(device)
    kw = dict(n=n, seed=seed, batch_size=batch_size, device=device, cache=cache)
    first2 = input2 is not None and _is_spec(input1) and not _is_spec(input2)  # fix the non-spec side first
    if first2:
        in2 = open_input(input2, ext, **kw)
        in1 = open_input(input1, ext, like=in2.shape, **kw)
    else:
        in1 = open_input(input1, ext, **kw)
        in2 = open_input(input2, ext, like=in1.shape, **kw) if input2 is not None else None
    inputs = [in1] + ([in2] if in2 is not None else [])
    if in2 is not None and in1.shape != in2.shape:
        raise DataError(f"the inputs differ: {in1.label} is {'x'.join(map(str, in1.shape))} (CxHxW), {in2.label} is "
                        f"{'x'.join(map(str, in2.shape))}; metrics compare like with like, so resize or convert one of them")
    if kid:
        small = [i for i in inputs if i.n < kid_subset_size]
        if small:
            raise DataError(f"KID draws subsets of {kid_subset_size} images but {small[0].label} has only {small[0].n}; "
                            f"lower --kid-subset-size (to at most {min(i.n for i in inputs)}) or use more images")
    if fid and min(i.n for i in inputs) < 2:
        raise DataError(f"FID needs at least 2 images per input (a covariance); {min(inputs, key=lambda i: i.n).label} has "
                        f"{min(i.n for i in inputs)}")
    if prc and min(i.n for i in inputs) < 5:
        raise DataError("precision/recall needs at least 5 images per input (k = 3 nearest neighbours)")
    if isc and in1.n < 10:
        raise DataError(f"ISC splits input1 into 10 parts; {in1.label} has only {in1.n} images")
    layer = str(ext.info["feature_layer"])
    for i in inputs:
        i.info["reference_cached"] = bool(cache and i.cache_name and _cache_file(i, ext, layer).is_file())
    args = dict(input1=in1.dataset, input2=in2.dataset if in2 is not None else None, fid=fid, kid=kid, prc=prc, isc=isc,
                feature_extractor=ext.fidelity_name, feature_extractor_weights_path=str(ext.weights),
                feature_extractor_internal_dtype=_DTYPE, batch_size=batch_size, cuda=dev.type == "cuda", cache=cache,
                input1_cache_name=in1.cache_name if cache else None,
                input2_cache_name=in2.cache_name if cache and in2 is not None else None,
                kid_subset_size=kid_subset_size, save_cpu_ram=True, verbose=verbose)
    try:
        with torch.random.fork_rng(devices=[]):  # torch-fidelity's DataLoader draws a seed; keep the caller's stream
            raw = torch_fidelity.calculate_metrics(**args)
    except GanSslError:
        raise
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile) as e:
        raise WeightsError(f"cannot load {ext.name} weights from {ext.weights}: {type(e).__name__}: {str(e)[:150]}") from None
    except RuntimeError as e:
        if "state_dict" in str(e):
            raise WeightsError(f"{ext.weights} does not hold {ext.name} weights: {str(e).splitlines()[0][:200]}") from None
        raise
    except ValueError as e:
        if not _raised_by_fidelity_check(e):  # a ValueError from torch or from our code is a bug: keep its traceback
            raise
        raise DataError(f"torch-fidelity rejected the inputs: {e}") from None
    out = {f"{_KEYS[k]}[{ext.name}]": float(v) for k, v in raw.items() if k in _KEYS}
    return {"metrics": out, "input1": in1.describe(), **({"input2": in2.describe()} if in2 is not None else {}),
            "extractor": ext.describe(), "batch_size": batch_size, **({"kid_subset_size": kid_subset_size} if kid else {}),
            "seconds": round(time.perf_counter() - t0, 2), "torch_fidelity": torch_fidelity.__version__}


def format_result(r: dict[str, Any]) -> str:
    """Human-readable lines: metrics first, then how they were measured."""
    m, e = r["metrics"], r["extractor"]
    lines = []
    for k, v in m.items():
        if k.startswith(("kid_std", "isc_std")):
            continue
        std = m.get(k.replace("kid[", "kid_std[").replace("isc[", "isc_std["))
        lines.append(f"{k:<28} {v:.6g}" + (f" ± {std:.3g}" if std is not None and k.startswith(("kid[", "isc[")) else ""))
    for key in ("input1", "input2"):
        if key in r:
            i = r[key]
            extra = [f"split {i['split']}"] if "split" in i else []
            if i["kind"] == "checkpoint":
                extra += [f"step {i['step']}", f"EMA samples, seed {i['seed']}"]
            if i.get("reference_cached"):
                extra.append("statistics from cache")
            lines.append(f"{key}: {i['input']} ({i['kind']}), {i['n']} images {'x'.join(map(str, i['shape']))}" + "".join(f", {x}" for x in extra))
    acc = f", test accuracy {e['test_accuracy']:.2%}" if e.get("test_accuracy") is not None else ""
    lines.append(f"extractor: {e['name']} (weights sha256 {e['sha256'][:12]}{acc}), layer {e['feature_layer']} "
                 f"({e['feature_dim']}-d), {e['internal_dtype']}; inputs: {e['resizer']}")
    if e.get("note"):
        lines.append(f"note: {e['note']}")
    lines.append(f"{r['seconds']:.1f} s, torch-fidelity {r['torch_fidelity']}, batch size {r['batch_size']}")
    return "\n".join(lines)


def fid_key(n: int, split: str, extractor: str) -> str:
    """The metrics.jsonl key of an in-training FID: fid2k_train[fashion-mnist-cnn] for 2,000 samples vs the
    training split; never the key `gan-ssl fid` uses for 10k samples vs the test split."""
    size = f"{n // 1000}k" if n % 1000 == 0 else str(n)
    return f"fid{size}_{split}[{extractor}]"


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
        fake = _tensor_input(images, f"G_ema@{bundle.step}", "samples", ext)
        r = compute(fake, ref, extractor=ext, device=str(bundle.device), batch_size=DEFAULTS["batch_size"])
        return {key: r["metrics"][f"fid[{ext.name}]"]}

    return evaluate
