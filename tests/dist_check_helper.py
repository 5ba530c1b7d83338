"""Run under torchrun (2 processes, gloo): `Dist.differing` on tensors that agree except one element of one tensor on
rank 1. Writes OUT_DIR/rank<r>.json per rank (argv[1]): the names each rank was told differ."""
import json
import sys
from pathlib import Path

import torch

from gan_ssl.engine.distributed import setup


def main() -> None:
    dist, _ = setup(torch.device("cpu"))
    tensors = {"a.weight": torch.ones(3, 4), "b.bias": torch.zeros(5), "c.u": torch.arange(6.0)}
    if dist.rank == 1:
        tensors["b.bias"][2] = 1e-9  # one ulp-sized change on one rank
    names = dist.differing(tensors)
    Path(sys.argv[1], f"rank{dist.rank}.json").write_text(json.dumps({"rank": dist.rank, "world": dist.world, "differ": names}))
    dist.close()


if __name__ == "__main__":
    main()
