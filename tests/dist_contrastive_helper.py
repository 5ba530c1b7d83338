"""Run under torchrun (2 processes, gloo): ContraD's losses on each rank's half of a batch, embeddings gathered across
ranks, against one process on the whole batch. Writes OUT_DIR/rank<r>.json per rank (argv[1]): the losses and the
largest gap between the DDP-averaged gradients and the one-process gradients."""
import gc
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from gan_ssl.families.ssl import ContrastiveTask
from gan_ssl.models import build


def losses(task: ContrastiveTask, real1: torch.Tensor, real2: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    d, _ = task.loss("d", real1, real2, None)
    f, _ = task.loss("d_fake", fake, fake[:0], None)
    return d + f


def main() -> None:
    torch.manual_seed(0)
    D = build("dcgan", resolution=32, channels=1, z_dim=16, g_width=8, d_width=8)[1]
    task = ContrastiveTask(D, d_weight=1.0, fake_weight=0.5, temperature=0.2, proj_dim=8, hidden=16)
    B = 8  # global batch
    feats = [torch.randn(B, D.feature_dim) for _ in range(3)]  # features of view 1, view 2, fake views
    ref = losses(task, *feats)  # one process, whole batch (before the process group exists)
    ref.backward()
    ref_grads = [p.grad.clone() for p in task.parameters() if p.grad is not None]
    task.zero_grad()
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    rows = slice(rank * B // world, (rank + 1) * B // world)
    loss = losses(task, *(f[rows] for f in feats))
    loss.backward()
    grads = [p.grad.clone() for p in task.parameters() if p.grad is not None]
    for g in grads:  # what DDP does: the mean over ranks
        dist.all_reduce(g)
        g /= world
    gap = max((a - b).abs().max().item() for a, b in zip(grads, ref_grads))
    Path(sys.argv[1], f"rank{rank}.json").write_text(json.dumps({"rank": rank, "world": world, "loss": loss.item(), "ref": ref.item(),
                                                                "grad_gap": gap, "n_grads": len(grads), "ref_n_grads": len(ref_grads)}))
    del loss, grads  # free the autograd graph that holds gloo work before the group goes (else: terminate at exit)
    task.zero_grad(set_to_none=True)
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
