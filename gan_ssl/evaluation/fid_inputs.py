"""What FID/KID/PR compare: any INPUT gan_ssl knows (image folder, `.npy`, dataset spec, checkpoint, uint8
tensor, ImageData) as a uint8 dataset of the extractor's channels, with its shape, count and cache name."""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from gan_ssl.core.errors import DataError
from gan_ssl.data import IMAGE_SUFFIXES, ImageData, list_images, load_images, parse_spec
from gan_ssl.evaluation.fid_extractors import DEFAULTS, INTERNAL_DTYPE, Extractor
from gan_ssl.inference.load import load


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


def folder_input(path: Path, ext: Extractor) -> MetricInput:
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


def npy_input(path: Path, ext: Extractor) -> MetricInput:
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
    return tensor_input(torch.from_numpy(np.ascontiguousarray(arr)), str(path), "npy", ext)


def tensor_input(images: torch.Tensor, label: str, kind: str, ext: Extractor, info: dict[str, Any] | None = None) -> MetricInput:
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3) or images.shape[0] == 0:
        raise DataError(f"{label}: images must be uint8 [N >= 1, 1 or 3, H, W], got {images.dtype} {tuple(images.shape)}")
    c, h, w = images.shape[1:]
    return MetricInput(label, kind, TensorImages(images.contiguous(), ext.channels), (c, h, w), images.shape[0], None, info or {})


def checkpoint_input(path: Path, ext: Extractor, n: int, seed: int, batch_size: int, device: str) -> MetricInput:

    bundle = load(path, device)
    t0 = time.perf_counter()
    images = bundle.sample(n, seed, batch_size)  # uint8 [n, C, H, W]
    info = {"checkpoint": str(bundle.path), "step": bundle.step, "family": bundle.cfg.family, "model": bundle.cfg.model.name, "seed": seed,
            "samples": "EMA generator", "sample_seconds": round(time.perf_counter() - t0, 2)}
    return tensor_input(images, str(path), "checkpoint", ext, info)


def images_digest(images: torch.Tensor) -> str:
    """SHA-256 of uint8 images [N, C, H, W] with their shape (names cache entries by content)."""
    h = hashlib.sha256(str(tuple(images.shape)).encode())
    h.update(images.contiguous().numpy().tobytes())
    return h.hexdigest()


def reference_input(data: ImageData | torch.Tensor, label: str, ext: Extractor, cache: bool = True,
                    info: dict[str, Any] | None = None) -> MetricInput:
    """A reference set held in memory, cached by torch-fidelity under a name built from its pixels and the extractor."""
    images = data.images if isinstance(data, ImageData) else data
    inp = tensor_input(images, label, "dataset", ext, info)
    if cache:
        c, h, w = inp.shape
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in label)[:60]
        inp.cache_name = (f"gan_ssl-p{PREPROCESSING_VERSION}-{safe}-{c}x{h}x{w}-n{inp.n}-{images_digest(images)[:12]}-{ext.name}-"
                          f"{ext.sha256[:12]}-{INTERNAL_DTYPE}-tf{fidelity_version()}")
    return inp


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


def dataset_input(spec: str, ext: Extractor, like: tuple[int, int, int] | None, cache: bool) -> MetricInput:
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
        return tensor_input(spec, f"tensor{tuple(spec.shape)}", "tensor", ext)
    kind = classify_input(str(spec))
    p = Path(str(spec)).expanduser()
    if kind == "folder":
        return folder_input(p, ext)
    if kind == "npy":
        return npy_input(p, ext)
    if kind == "checkpoint":
        return checkpoint_input(p, ext, n, seed, batch_size, device)
    return dataset_input(str(spec), ext, like, cache)


def is_spec(x: Any) -> bool:
    return isinstance(x, (str, Path)) and not Path(str(x)).expanduser().exists() and classify_input(str(x)) == "dataset"


# Bumped whenever the pixels fed to torch-fidelity change (padding, resizing, channel conversion), so old
# cached reference statistics are never read for new inputs. Part of every cache name, with INTERNAL_DTYPE and
# the torch-fidelity version.
PREPROCESSING_VERSION = 2


def fidelity_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch-fidelity")
    except PackageNotFoundError:  # pragma: no cover - it is a dependency
        return "unknown"
