"""The seeded, resumable batch stream: an epoch-permutation sampler, the training set a config names, and
batches {image, label, index, + what a family adds} in an order that a resumed run repeats exactly."""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.utils.data

from gan_ssl.core.errors import DataError
from gan_ssl.core.seeds import derive_seed
from gan_ssl.data.folder import FolderSource, folder_bytes
from gan_ssl.data.sources import ImageData, load_images, parse_spec, to_float


class EpochSampler:
    """Seeded, resumable batch order: a fresh permutation per epoch, incomplete tail batches dropped.

    The permutation of epoch e depends only on (seed, e), so the state is two integers and a resumed
    run sees exactly the batches an uninterrupted one would. `next(batch_size)` may change the batch
    size from call to call (progressive growing); the order stays a function of the sizes asked for.
    """

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        if n < batch_size:
            raise DataError(f"dataset has {n} images, fewer than one batch of {batch_size}; lower train.batch_size")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.epoch, self.pos = 0, 0
        self._perm = self._make_perm()

    def _make_perm(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(derive_seed(self.seed, "epoch", self.epoch))
        return torch.randperm(self.n, generator=g)

    def next(self, batch_size: int | None = None) -> torch.Tensor:
        """Indices of the next batch, [batch_size] int64."""
        bs = batch_size or self.batch_size
        if bs > self.n:
            raise DataError(f"dataset has {self.n} images, fewer than one batch of {bs}; lower the batch size")
        if self.pos + bs > self.n:
            self.epoch, self.pos = self.epoch + 1, 0
            self._perm = self._make_perm()
        idx = self._perm[self.pos : self.pos + bs]
        self.pos += bs
        return idx

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._perm = self._make_perm()


def open_training_data(cfg: Any) -> "ImageData | FolderSource":
    """The training set of a config: in memory, or a lazily read folder when `data.storage` says so
    (`auto`: a folder larger than `data.max_memory_gb` as uint8 at the training resolution)."""
    d = cfg.data
    name, path, split = parse_spec(d.name, d.split)
    if name == "folder" and d.storage != "memory":
        assert path is not None
        big = folder_bytes(path, split, d.resolution, d.channels, d.limit) > d.max_memory_gb * 2**30
        if d.storage == "stream" or big:
            return FolderSource(path, split, d.resolution, d.channels, d.limit)
    elif d.storage == "stream":
        raise DataError(f"data.storage=stream reads image folders (folder:PATH); {d.name} is held in memory, use storage=auto")
    return load_images(d.name, d.split, d.resolution, d.channels, d.root, d.limit)


def _collate(items: list[tuple[torch.Tensor, int, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.stack([i[0] for i in items]), torch.tensor([i[1] for i in items]), torch.tensor([i[2] for i in items])


class _BatchOrder:
    """Index lists from a copy of a sampler, forever (a DataLoader `batch_sampler`): this rank's slice
    [rank * B, (rank + 1) * B) of each global batch of world * B indices."""

    def __init__(self, sampler: EpochSampler, batch_size: int, rank: int = 0, world: int = 1) -> None:
        self.sampler = EpochSampler(sampler.n, batch_size * world, sampler.seed)
        self.sampler.load_state_dict(sampler.state_dict())
        self.lo, self.hi = rank * batch_size, (rank + 1) * batch_size

    def __iter__(self) -> Any:
        while True:
            yield self.sampler.next()[self.lo : self.hi].tolist()


Batch = dict[str, torch.Tensor]  # image [B, C, H, W] float in [-1, 1], label [B], index [B], + family keys


class BatchStream:
    """Training batches in a seeded, resumable order: {"image": float [B, C, H, W] in [-1, 1], "label": [B],
    "index": [B]} plus what `make_inputs(batch, generator)` adds (masks, low-resolution copies), drawn from a
    generator seeded by (seed, batch number), so a resumed run gets the same inputs.

    In-memory data is indexed directly; a FolderSource streams through a DataLoader whose workers
    prefetch in the sampler's order (the state is that of the batches handed out, not prefetched).

    Data-parallel (world > 1, gan_ssl.engine.distributed): every rank draws the same global order of world * B
    indices per batch and keeps rows [rank * B, (rank + 1) * B), so N ranks at B see, together, the
    batches one process at N * B sees; family inputs are drawn per rank (seed, batch number, rank).
    """

    def __init__(self, source: "ImageData | FolderSource", batch_size: int, seed: int, device: torch.device | str = "cpu",
                 memory_format: torch.memory_format = torch.contiguous_format,
                 make_inputs: Callable[[Batch, torch.Generator], Batch] | None = None, workers: int = 0,
                 rank: int = 0, world: int = 1) -> None:
        self.source, self.seed, self.device, self.memory_format = source, seed, torch.device(device), memory_format
        self.rank, self.world = rank, world
        if len(source) < batch_size * world:
            raise DataError(f"dataset has {len(source)} images, fewer than one global batch of {world} x {batch_size}; "
                            "lower train.batch_size or start fewer processes")
        self.sampler = EpochSampler(len(source), batch_size, seed)
        self.make_inputs, self.workers, self.drawn = make_inputs, workers, 0
        self._images = source.images.to(self.device) if isinstance(source, ImageData) else None
        self._labels = source.labels.to(self.device) if isinstance(source, ImageData) else None
        self._loader: Any = None
        self._loader_bs = 0

    def __len__(self) -> int:
        return len(self.source)

    def _stream(self, bs: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._loader is None or self._loader_bs != bs:
            # its own generator: a DataLoader seeds its workers from the global RNG otherwise, so rebuilding it
            # on resume would shift the training's random stream
            g = torch.Generator().manual_seed(derive_seed(self.seed, "loader", self.drawn, self.rank))
            dl = torch.utils.data.DataLoader(self.source, batch_sampler=_BatchOrder(self.sampler, bs, self.rank, self.world),
                                             num_workers=self.workers, generator=g,
                                             collate_fn=_collate, persistent_workers=False, prefetch_factor=2 if self.workers else None)
            self._loader, self._loader_bs = iter(dl), bs
        try:
            images, labels, idx = next(self._loader)
        except DataError as e:  # raised in a worker: the message ends with the original one-line error
            self._loader = None
            raise DataError(str(e).strip().splitlines()[-1].split(": ", 1)[-1]) from None
        expect = self._local(self.sampler.next(bs * self.world), bs)
        if not torch.equal(idx, expect):  # the loader and the sampler disagree: a bug, never a user error
            raise RuntimeError("streamed batch out of order: the DataLoader and the sampler disagree")
        return images, labels, idx

    def next(self, batch_size: int | None = None) -> Batch:
        """The next batch (of `batch_size` images, or the stream's default)."""
        bs = int(batch_size or self.sampler.batch_size)
        if self._images is not None:
            idx = self._local(self.sampler.next(bs * self.world), bs)
            dev_idx = idx.to(self.device)
            images, labels = self._images[dev_idx], self._labels[dev_idx]
        else:
            images, labels, idx = self._stream(bs)
            images, labels = images.to(self.device), labels.to(self.device)
        batch = {"image": to_float(images).contiguous(memory_format=self.memory_format), "label": labels, "index": idx}
        if self.make_inputs is not None:
            g = torch.Generator().manual_seed(derive_seed(self.seed, "inputs", self.drawn, self.rank))
            batch = self.make_inputs(batch, g)
        self.drawn += 1
        return batch

    def _local(self, idx: torch.Tensor, bs: int) -> torch.Tensor:
        """This rank's rows of a global batch of indices."""
        return idx[self.rank * bs : (self.rank + 1) * bs]

    def state_dict(self) -> dict[str, int]:
        return {**self.sampler.state_dict(), "drawn": self.drawn}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.load_state_dict(state)
        self.drawn = int(state.get("drawn", 0))
        self._loader = None
