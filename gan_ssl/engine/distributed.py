"""Data-parallel training under `torchrun` with DistributedDataParallel (Li et al., VLDB 2020), for every family.

`gan-ssl train CONFIG` started by `torchrun --nproc-per-node N` runs N processes; each reads its rank from
the environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) and joins the default process
group (gloo on CPU, nccl on CUDA). Without torchrun (or with one process) nothing here does anything.

How the one loop uses it (gan_ssl.train):
    batches   every rank draws the same global batch order (world x train.batch_size images) and keeps its
              slice, so the order stays seeded and resumable and N x B equals 1 x N*B image for image;
    phases    the nets a phase trains are wrapped, as one module per distinct set of names, in a DDP whose
              forward runs the phase's function with its backward deferred: DDP sees the loss, averages the
              gradients across ranks in its buckets, and every rank steps the same optimizer to the same
              weights. No family names a wrapper: they come from `Phase.nets`;
    random    in-phase randomness (latents, augmentation) follows a per-rank stream, saved per rank;
    decisions stopping (budget, Ctrl-C, NaN) is agreed by all ranks, so none waits on a collective alone;
    writing   rank 0 alone writes checkpoints, grids, logs and evaluations.
"""
from __future__ import annotations

import datetime
import gc
import inspect
import os
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.distributed as dist
from torch import nn

from gan_ssl.core.errors import ConfigError, GanSslError
from gan_ssl.core.seeds import derive_seed
from gan_ssl.nn.layers import PlainBN

if TYPE_CHECKING:
    from gan_ssl.families.base import Batch, Family, Logs, Phase, StepContext


FAILED_KEY = "gan_ssl/failed_rank"  # in torchrun's store: the first failing rank's one-line error


class RankFailure(GanSslError):
    """Another rank of a data-parallel run failed; its one-line error is the message."""


def env_world_size() -> int:
    """Processes torchrun started (WORLD_SIZE), 1 without torchrun."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number (start runs with torchrun)") from None


class Dist:
    """This process's place in a run: rank, world size and the few collectives the loop needs.

    With world == 1 every method is the single-process identity (no process group exists).
    """

    def __init__(self, rank: int = 0, world: int = 1, local_rank: int = 0) -> None:
        self.rank, self.world, self.local_rank = rank, world, local_rank

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def any(self, *flags: bool) -> list[bool]:
        """For each flag, whether it is true on any rank: one all-reduce for all of them (a collective: every rank
        must call it at the same point)."""
        if not self.enabled:
            return [bool(f) for f in flags]
        t = torch.tensor([1 if f else 0 for f in flags], dtype=torch.int64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return [bool(v) for v in t.tolist()]

    def gather(self, obj: Any) -> list[Any]:
        """`obj` of every rank, in rank order (a collective)."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank (a collective)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """The mean over ranks of each value (a collective; every rank logs the same keys)."""
        if not self.enabled or not values:
            return values
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
        dist.all_reduce(t)
        return {k: float(v) / self.world for k, v in zip(keys, t.tolist())}

    def differing(self, tensors: dict[str, torch.Tensor]) -> list[str]:
        """Names of the tensors whose value on some rank differs from rank 0's (a collective; every rank passes the
        same names in the same order). Exact comparison: data-parallel ranks must hold bit-identical copies."""
        if not self.enabled:
            return []
        local = []
        for name, t in tensors.items():
            ref = t.detach().clone()
            dist.broadcast(ref, src=0)
            if not torch.equal(ref, t.detach()):
                local.append(name)
        return sorted({n for names in self.gather(local) for n in names})

    def fail(self, error: BaseException) -> str | None:
        """This rank stops on `error`: post its first line for the other ranks (the first rank to post wins), then
        leave the process group at once, without close()'s barrier: the other ranks' next collective fails within
        seconds (or torchrun stops them) instead of waiting out the 30-minute timeout. Returns the winning post,
        "rank R: message", or None when there is no group or store."""
        if not (self.enabled and dist.is_initialized()):
            return None
        line = (str(error).strip().splitlines() or [type(error).__name__])[0][:500]
        first = None
        try:
            store = dist.distributed_c10d._get_default_store()
            first = store.compare_set(FAILED_KEY, "", f"rank {self.rank}: {line}").decode()
        except Exception:  # the store went with a rank that hosted it: nothing to report
            pass
        try:
            dist.destroy_process_group()
        except Exception:
            pass
        return first or None

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.barrier()  # no rank leaves while another still talks to it (rank 0 writing the last checkpoint)
            gc.collect()  # DDP reducers still referenced by cycles go now, while the group and the interpreter live:
            dist.destroy_process_group()  # a gloo work freed at interpreter exit aborts the process


def setup(device: torch.device) -> tuple[Dist, torch.device]:
    """Join torchrun's process group when WORLD_SIZE > 1; returns (Dist, the device this rank trains on:
    cuda:LOCAL_RANK for a CUDA config). One process: (Dist(), device) and no process group."""
    world = env_world_size()
    if world == 1:
        return Dist(), device
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local_rank} but this node has {torch.cuda.device_count()} CUDA device(s); "
                              "start at most that many processes per node (--nproc-per-node)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise ConfigError(f"distributed training runs on cpu (gloo) or cuda (nccl), not {device.type}")
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    return Dist(rank, world, local_rank), device


class _SyncPlainBN(nn.SyncBatchNorm):
    """SyncBatchNorm with PlainBN's (x, z) call signature (z ignored)."""

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x)


def convert_sync_bn(module: nn.Module) -> nn.Module:
    """Every BatchNorm2d (and PlainBN) inside `module` replaced in place by a SyncBatchNorm sharing its
    parameters and buffers, so batch statistics are those of the global batch. Optimizers keep working:
    the parameters are the same objects."""
    for name, child in module.named_children():
        if type(child) in (nn.BatchNorm2d, PlainBN):
            cls = _SyncPlainBN if isinstance(child, PlainBN) else nn.SyncBatchNorm
            new = cls(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            if child.affine:
                new.weight, new.bias = child.weight, child.bias
            new.running_mean, new.running_var = child.running_mean, child.running_var
            new.num_batches_tracked = child.num_batches_tracked
            new.train(child.training)
            setattr(module, name, new)
        else:
            convert_sync_bn(child)
    return module


class PhaseNets(nn.Module):
    """The nets one phase trains, as one module for DDP. forward(fn, batch, ctx) runs the phase function with
    ctx.backward collecting its losses instead of back-propagating, and returns (their sum, logs): DDP then
    knows the graph, and the loop's backward of the sum gives the same gradients as the function's own calls."""

    def __init__(self, nets: dict[str, nn.Module]) -> None:
        super().__init__()
        self.nets = nn.ModuleDict(nets)

    def forward(self, fn: Callable[["Batch | None", "StepContext"], "Logs"], batch: "Batch | None",
                ctx: "StepContext") -> tuple[torch.Tensor, "Logs"]:
        losses: list[torch.Tensor] = []
        backward = ctx.backward
        ctx.backward = losses.append
        try:
            logs = fn(batch, ctx)
        finally:
            ctx.backward = backward
        if not losses:
            raise RuntimeError("a phase function ran without calling ctx.backward")
        total = losses[0]
        for loss in losses[1:]:
            total = total + loss
        return total, logs


# buffers (BatchNorm statistics, spectral-norm vectors) follow rank 0's at each forward; the keyword's name changed in torch 2.14
_SYNC_BUFFERS = ({"forward_sync_buffers": True} if "forward_sync_buffers" in inspect.signature(nn.parallel.DistributedDataParallel).parameters
                 else {"broadcast_buffers": True})


class DataParallelPhases:
    """One DDP per distinct set of trained nets among a family's phases; `run(phase, batch, ctx)` replaces
    `phase.fn(batch, ctx)` in the loop (forward in DDP, then the deferred backward through ctx.backward)."""

    def __init__(self, family: "Family", sync_bn: bool = False) -> None:
        if sync_bn:
            for net in family.nets.values():
                convert_sync_bn(net)
        ids = [family.device.index] if family.device.type == "cuda" else None
        self.wrappers: dict[tuple[str, ...], nn.Module] = {}
        for ph in family.phases:
            if ph.nets not in self.wrappers:
                module = PhaseNets({n: family.nets[n] for n in ph.nets})
                # find_unused_parameters: a phase may leave some of its nets' parameters out (a lazy head, the
                # layers of other resolutions of a progressive G); their gradients stay None, as in one process
                self.wrappers[ph.nets] = nn.parallel.DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True,
                                                                             **_SYNC_BUFFERS)

    def release(self) -> None:
        """Drop the DDP wrappers (before the process group is destroyed)."""
        self.wrappers.clear()

    def run(self, ph: "Phase", batch: "Batch | None", ctx: "StepContext") -> "Logs":
        total, logs = self.wrappers[ph.nets](ph.fn, batch, ctx)
        ctx.backward(total)
        return logs


def rank_seed(seed: int, rank: int) -> int:
    """Seed of rank `rank`'s in-phase random stream (rank 0 of a distributed run included)."""
    return derive_seed(seed, "rank", rank)
