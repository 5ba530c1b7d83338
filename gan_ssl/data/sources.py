"""Datasets by name, held in memory as uint8 and served as float batches in [-1, 1].

Specs: `fashion-mnist`, `mnist` (IDX files), `cifar10` (torchvision's python format),
`folder:PATH` (images found recursively; the first sub-folder level gives class labels).
A split may be appended to a spec (`fashion-mnist:test`); `load_images` also takes it as an argument.

Local files are looked up first (the config's `data.root`, `$GAN_SSL_DATA`, Debian's
`/usr/share/datasets/<name>`, the user cache); torchvision's download is the last resort.
"""
from __future__ import annotations

import gzip
import logging
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torch.utils.data

from gan_ssl.core.errors import DataError
from gan_ssl.core.progress import track

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_TV_NAMES = {"fashion-mnist": "FashionMNIST", "mnist": "MNIST"}
SYSTEM_DATA_DIR = Path("/usr/share/datasets")  # where Debian's dataset-* packages install
FASHION_CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]


@dataclass
class ImageData:
    """Images as uint8 [N, C, H, W] plus int64 labels [N] (-1 where unknown)."""

    images: torch.Tensor
    labels: torch.Tensor
    name: str
    classes: list[str] = field(default_factory=list)
    rows: torch.Tensor | None = None  # for a data.subset: the rows [N] of the full split these images are

    def __post_init__(self) -> None:
        if not isinstance(self.images, torch.Tensor) or self.images.dtype != torch.uint8 or self.images.ndim != 4:
            got = f"{self.images.dtype} {tuple(self.images.shape)}" if isinstance(self.images, torch.Tensor) else type(self.images).__name__
            raise DataError(f"{self.name}: images must be a uint8 tensor [N, C, H, W], got {got}")
        if not isinstance(self.labels, torch.Tensor) or tuple(self.labels.shape) != (self.images.shape[0],):
            got = tuple(self.labels.shape) if isinstance(self.labels, torch.Tensor) else type(self.labels).__name__
            raise DataError(f"{self.name}: labels must be a tensor [N] = [{self.images.shape[0]}], one per image, got {got}")

    def __len__(self) -> int:
        return self.images.shape[0]

    def batch(self, idx: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
        """Float images in [-1, 1], [B, C, H, W], for the given indices."""
        return to_float(self.images[idx].to(device, non_blocking=True))

    @property
    def has_labels(self) -> bool:
        return bool((self.labels >= 0).all())


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return x.float().div_(127.5).sub_(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255], rounding to nearest."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round_().to(torch.uint8)


def parse_spec(spec: str, split: str | None = None) -> tuple[str, str | None, str]:
    """Split `name[:split]` or `folder:PATH[:split]` into (name, path, split)."""
    if spec.startswith("folder:"):
        path = spec[len("folder:"):]
        for s in ("train", "test"):
            if path.endswith(":" + s):
                path, split = path[: -len(s) - 1], split or s
        if not path:
            raise DataError("dataset spec 'folder:' needs a path, e.g. folder:/data/my_images")
        return "folder", path, split or "train"
    name, _, sp = spec.partition(":")
    split = split or sp or "train"
    if name not in ("fashion-mnist", "mnist", "cifar10", "digits"):
        raise DataError(f"unknown dataset {spec!r}; use fashion-mnist, mnist, cifar10, digits or folder:PATH")
    if split not in ("train", "test"):
        raise DataError(f"unknown split {split!r} in {spec!r}; use train or test")
    return name, None, split


def data_home() -> Path:
    return Path(os.environ.get("GAN_SSL_HOME", Path.home() / ".cache" / "gan_ssl")) / "data"


def _search_dirs(name: str, root: str = "") -> list[Path]:
    dirs: list[Path] = []
    for base in [root, os.environ.get("GAN_SSL_DATA", "")]:
        if base:
            b = Path(base).expanduser()
            dirs += [b, b / name, b / _TV_NAMES.get(name, name) / "raw"]
    dirs += [SYSTEM_DATA_DIR / name, data_home() / name, data_home() / _TV_NAMES.get(name, name) / "raw"]
    return dirs


def _find_idx(stem: str, dirs: list[Path]) -> Path | None:
    for d in dirs:
        for suffix in ("", ".gz"):
            p = d / (stem + suffix)
            if p.is_file():
                return p
    return None


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
        zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
        if zero != 0 or dtype_code != 0x08:
            raise ValueError("not an unsigned-byte IDX file")
        shape = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
        arr = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
        return arr.reshape(shape)
    except (OSError, ValueError, struct.error, EOFError) as e:
        raise DataError(f"cannot read IDX file {path}: {e}") from None


def _load_mnist_like(name: str, split: str, root: str) -> ImageData:
    img_stem, lbl_stem = _IDX_FILES[split]
    dirs = _search_dirs(name, root)
    img_p, lbl_p = _find_idx(img_stem, dirs), _find_idx(lbl_stem, dirs)
    if img_p is None or lbl_p is None:
        _try_download(name, data_home())
        img_p, lbl_p = _find_idx(img_stem, dirs), _find_idx(lbl_stem, dirs)
    if img_p is None or lbl_p is None:
        looked = ", ".join(str(d) for d in dict.fromkeys(dirs))
        fix = "sudo apt-get install dataset-fashion-mnist" if name == "fashion-mnist" else f"download the {name} IDX files into $GAN_SSL_DATA/{name}"
        raise DataError(f"{name} {split} data not found (looked for {img_stem}[.gz] in: {looked}); fix: {fix}, or set data.root / $GAN_SSL_DATA")
    images = _read_idx(img_p)
    labels = _read_idx(lbl_p)
    if images.ndim != 3 or labels.shape != (images.shape[0],):
        raise DataError(f"{img_p} and {lbl_p} do not match: images {images.shape}, labels {labels.shape}")
    imgs = torch.from_numpy(images.copy()).unsqueeze(1)  # [N, 1, 28, 28]
    classes = FASHION_CLASSES if name == "fashion-mnist" else [str(i) for i in range(10)]
    return ImageData(imgs, torch.from_numpy(labels.astype(np.int64)), name, classes)


def _reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether the host of `url` accepts a connection within `timeout` seconds (no hang offline)."""
    import socket
    from urllib.parse import urlparse

    u = urlparse(url)
    try:
        with socket.create_connection((u.hostname or "", u.port or (443 if u.scheme == "https" else 80)), timeout=timeout):
            return True
    except OSError:
        return False


def _try_download(name: str, root: Path) -> None:
    """Last resort: torchvision's downloader, tried only when its mirror answers (offline: no hang)."""
    import torchvision

    cls = {"fashion-mnist": torchvision.datasets.FashionMNIST, "mnist": torchvision.datasets.MNIST}[name]
    if not any(_reachable(m) for m in cls.mirrors):
        log.info("no network: skipping the download of %s", name)
        return
    try:
        log.info("downloading %s to %s", name, root)
        cls(str(root), train=True, download=True)
        cls(str(root), train=False, download=True)
    except Exception as e:  # offline: the caller reports every path it looked in
        log.info("download of %s failed: %s", name, e)


def _load_cifar10(split: str, root: str) -> ImageData:
    import pickle

    for base in [root, os.environ.get("GAN_SSL_DATA", ""), str(data_home())]:
        if not base:
            continue
        for d in (Path(base).expanduser() / "cifar-10-batches-py", Path(base).expanduser() / "cifar10" / "cifar-10-batches-py"):
            if d.is_dir():
                files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
                xs, ys = [], []
                for fn in files:
                    try:
                        # CIFAR-10's official python format is a pickle of numpy arrays (torchvision reads it the same way)
                        with open(d / fn, "rb") as f:
                            entry = pickle.load(f, encoding="latin1")
                        xs.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                        ys.append(np.asarray(entry["labels"], dtype=np.int64))
                    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, KeyError, TypeError,
                            ValueError, IndexError) as e:
                        raise DataError(f"{d / fn} is not a CIFAR-10 python batch: {type(e).__name__}: {str(e)[:150]}") from None
                classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
                return ImageData(torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys)), "cifar10", classes)
    raise DataError("cifar10 not found: put torchvision's cifar-10-batches-py folder in data.root, $GAN_SSL_DATA or " f"{data_home()}")


def _load_digits(split: str) -> ImageData:
    """scikit-learn's bundled handwritten digits (UCI optdigits test set: 1,797 8x8 images, 17 grey levels), offline:
    a fixed stratified two-thirds / one-third train / test split (seed 0). A small transfer target, e.g. for a
    Fashion-MNIST D; images are upsampled to the resolution asked for."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(np.round(d.images * (255 / 16)).astype(np.uint8))[:, None]  # [1797, 1, 8, 8]
    y = torch.from_numpy(d.target.astype(np.int64))
    rng = np.random.default_rng(0)
    test = np.sort(np.concatenate([rng.permutation(np.flatnonzero(d.target == c))[: int(np.sum(d.target == c)) // 3]
                                   for c in range(10)]))
    rows = torch.from_numpy(test if split == "test" else np.setdiff1d(np.arange(len(y)), test))
    return ImageData(x[rows], y[rows], "digits", [str(c) for c in range(10)])


def read_image(path: Path, channels: int) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB")
            arr = np.asarray(im, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot read image {path}: {type(e).__name__}: {e}") from None
    t = torch.from_numpy(arr.copy())
    return t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)  # [C, H, W]


def list_images(path: Path) -> list[Path]:
    """Image files under `path`, recursively, in a stable (sorted) order."""
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _load_folder(path: str, split: str, channels: int, resolution: int) -> ImageData:
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    if (root / "train").is_dir() and (root / "test").is_dir():
        root = root / split
    files = list_images(root)
    if not files:
        raise DataError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found under {root}")
    class_names = sorted({f.relative_to(root).parts[0] for f in files if len(f.relative_to(root).parts) > 1})
    class_idx = {c: i for i, c in enumerate(class_names)}
    imgs, labels = [], []

    for f in track(files, desc=f"reading {root}", unit="img", enabled=len(files) >= 2000):
        img = read_image(f, channels)
        imgs.append(fit_resolution(img.unsqueeze(0), resolution, pad_small=False)[0])
        parts = f.relative_to(root).parts
        labels.append(class_idx[parts[0]] if len(parts) > 1 else -1)
    return ImageData(torch.stack(imgs), torch.tensor(labels, dtype=torch.int64), f"folder:{path}", class_names)


def fit_resolution(x: torch.Tensor, resolution: int, pad_small: bool = True) -> torch.Tensor:
    """uint8 [N, C, H, W] -> uint8 [N, C, R, R].

    Images up to 4 px smaller than R on each side (28 -> 32) are zero-padded, which keeps the pixels
    exact; anything else is resized on the shorter side (antialiased) and centre-cropped.
    """
    n, c, h, w = x.shape
    if h == resolution and w == resolution:
        return x
    if pad_small and h == w and 0 < resolution - h <= 4:
        p = resolution - h
        return F.pad(x, (p // 2, p - p // 2, p // 2, p - p // 2))
    scale = resolution / min(h, w)
    nh, nw = max(resolution, round(h * scale)), max(resolution, round(w * scale))
    y = F.interpolate(x.float(), size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
    top, left = (nh - resolution) // 2, (nw - resolution) // 2
    y = y[:, :, top : top + resolution, left : left + resolution]
    return y.round().clamp(0, 255).to(torch.uint8)


def _fit_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    if x.shape[1] == channels:
        return x
    if channels == 3 and x.shape[1] == 1:
        return x.expand(-1, 3, -1, -1).contiguous()
    # RGB -> gray with ITU-R 601 luma, as PIL's convert("L")
    w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (x.float() * w).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)


def load_images(spec: str, split: str | None = None, resolution: int = 32, channels: int = 1, root: str = "", limit: int = 0) -> ImageData:
    """Load a dataset by spec, converted to `channels` x `resolution` x `resolution` uint8 images."""
    name, path, split = parse_spec(spec, split)
    if name == "folder":
        assert path is not None
        data = _load_folder(path, split, channels, resolution)
    elif name == "cifar10":
        data = _load_cifar10(split, root)
    elif name == "digits":
        data = _load_digits(split)
    else:
        data = _load_mnist_like(name, split, root)
    if limit:
        data = ImageData(data.images[:limit], data.labels[:limit], data.name, data.classes)
    imgs = _fit_channels(fit_resolution(data.images, resolution), channels)
    return ImageData(imgs, data.labels, data.name if name != "folder" else data.name, data.classes)


