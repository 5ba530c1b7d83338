"""data.subset: a seeded, class-balanced random subset of a training set, for low-data studies.

The rows drawn are kept on the returned source (`.rows`), so the loop can store them in the checkpoint and check
them on resume.
"""
from __future__ import annotations

import torch

from gan_ssl.core.errors import DataError
from gan_ssl.data.folder import FolderSource
from gan_ssl.data.sources import ImageData


def subset_rows(labels: torch.Tensor, subset: float, seed: int) -> torch.Tensor:
    """The rows (sorted, int64 [k]) of a seeded random subset of a set with these labels [N].

    subset: a count (an integer >= 1) or a fraction (0 < f < 1, k = round(f N)). With labels (none -1) and
    k >= the number of classes, every class gets floor(k / C) rows and k mod C classes, drawn at random, one more.
    """
    n = int(labels.shape[0])
    if subset >= 1 and subset != int(subset):
        raise DataError(f"data.subset must be a whole count (>= 1) or a fraction (< 1), got {subset:g}")
    k = int(subset) if subset >= 1 else round(subset * n)
    if not 1 <= k <= n:
        raise DataError(f"data.subset={subset:g} asks for {k} of {n} images; give a count from 1 to {n} or a fraction")
    g = torch.Generator().manual_seed(int(seed))
    classes = labels.unique()
    if not (labels >= 0).all() or k < len(classes):
        return torch.randperm(n, generator=g)[:k].sort().values
    per, extra = divmod(k, len(classes))
    order = classes[torch.randperm(len(classes), generator=g)]
    rows = []
    for i, c in enumerate(order.tolist()):
        members = torch.nonzero(labels == c).flatten()
        want = per + int(i < extra)
        if want > len(members):
            raise DataError(f"data.subset={subset:g}: class {c} has {len(members)} images, fewer than the {want} a balanced subset needs")
        rows.append(members[torch.randperm(len(members), generator=g)[:want]])
    return torch.cat(rows).sort().values


def take_subset(source: ImageData | FolderSource, subset: float, seed: int) -> ImageData | FolderSource:
    """`source` restricted to `subset_rows` of its labels (recorded in `.rows`); `subset` 0 returns it unchanged."""
    if not subset:
        return source
    rows = subset_rows(source.labels, subset, seed)
    if isinstance(source, ImageData):
        return ImageData(source.images[rows], source.labels[rows], source.name, source.classes, rows)
    return source.select(rows)
