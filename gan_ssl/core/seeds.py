"""One way to derive the seed of every random stream of a run from its root seed.

`derive_seed(root, "epoch", 3)` and `derive_seed(root, "inputs", 0, 0)` are independent 63-bit seeds: the
purpose is part of the hash, so two streams can never share a seed by arithmetic coincidence (the old
`seed * 1_000_003 + epoch` of epoch 1 was the `seed * 1_000_003 + 1` of batch 0's inputs).
"""
from __future__ import annotations

import hashlib


def derive_seed(root: int, *purpose: str | int) -> int:
    """A seed in [0, 2**63) that depends on the root seed and every part of the purpose, in order."""
    key = "\x1f".join([str(int(root)), *(f"{type(p).__name__}:{p}" for p in purpose)]).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") & (2**63 - 1)
