"""An image folder read lazily (for sets larger than memory): FolderSource, and what it would take in memory."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.utils.data

from gan_ssl.core.errors import DataError
from gan_ssl.data.sources import IMAGE_SUFFIXES, ImageData, fit_resolution, list_images, read_image


class FolderSource(torch.utils.data.Dataset):
    """An image folder read lazily (for sets too large to hold in memory): item i -> (uint8 [C, R, R], label, i).

    Files and class labels are listed once, in the same sorted order `load_images` uses.
    """

    def __init__(self, path: str, split: str, resolution: int, channels: int, limit: int = 0) -> None:
        root = Path(path).expanduser()
        if not root.is_dir():
            raise DataError(f"image folder not found: {root}")
        if (root / "train").is_dir() and (root / "test").is_dir():
            root = root / split
        files = list_images(root)[: limit or None]
        if not files:
            raise DataError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found under {root}")
        self.classes = sorted({f.relative_to(root).parts[0] for f in files if len(f.relative_to(root).parts) > 1})
        idx = {c: i for i, c in enumerate(self.classes)}
        self.files, self.root = files, root
        self.labels = torch.tensor([idx[f.relative_to(root).parts[0]] if len(f.relative_to(root).parts) > 1 else -1 for f in files])
        self.resolution, self.channels, self.name = resolution, channels, f"folder:{path}"
        self.rows: torch.Tensor | None = None

    def select(self, rows: torch.Tensor) -> "FolderSource":
        """The same folder restricted to these rows (int64 [k]) of its file list, recorded in `.rows`."""
        out = object.__new__(FolderSource)
        out.__dict__.update(self.__dict__)
        out.files, out.labels, out.rows = [self.files[i] for i in rows.tolist()], self.labels[rows], rows.clone()
        return out

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        img = fit_resolution(read_image(self.files[i], self.channels).unsqueeze(0), self.resolution, pad_small=False)[0]
        return img, int(self.labels[i]), i

    def sample(self, n: int, seed: int) -> ImageData:
        """n images drawn at random (seeded, without replacement) across the whole folder, in memory (for
        evaluators: every class, not the first files in sorted order)."""
        rows = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[: min(n, len(self))].sort().values
        items = [self[int(i)] for i in rows]
        return ImageData(torch.stack([it[0] for it in items]), self.labels[rows].clone(), self.name, self.classes)


def folder_bytes(path: str, split: str, resolution: int, channels: int, limit: int = 0) -> int:
    """Bytes a folder's images take in memory as uint8 at this resolution (counted from the file list)."""
    root = Path(path).expanduser()
    if (root / "train").is_dir() and (root / "test").is_dir():
        root = root / split
    n = len(list_images(root)) if root.is_dir() else 0
    return min(n, limit or n) * channels * resolution * resolution
