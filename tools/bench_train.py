"""Training throughput of each config on this machine: one JSON line per config.

    python tools/bench_train.py                      # every configs/*.yaml
    python tools/bench_train.py configs/ssgan_fmnist.yaml --steps 20 --vs train.channels_last=false

`--vs KEY=VALUE` (repeatable) times each config a second time with that override, interleaving the two so that
machine noise hits both alike, and reports the speed ratio (base / variant) in the same run.

`--compile forward|blocks` times each config a second time with its networks compiled by torch.compile (inductor):
`forward` compiles each network's forward and a discriminator's feature path (`feature`, which the D phases call),
`blocks` every block separately; the warm-up runs --warmup steps so that every shape (lazy phases included) is
compiled before timing, and the warm-up's seconds (compile included) are printed as compile_warmup_s. It is a measurement, not a training option: on this CPU it
did not pay (docs/performance.md).

`--roofline` adds, per config, the FLOPs of one loop step (torch's FLOP formulas, counted per dispatched op,
averaged over a cycle of --cycle steps so lazy phases count by their share), the achieved GFLOP/s and the fp32
and bf16 matmul rates of the same process (2048^3), so that the step reads as a fraction of what the matrix units
can do. `--profile N` prints torch.profiler's operator table (self CPU time, top N) over the timed steps:
docs/performance.md holds both.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from gan_ssl.data import ImageData, load_images
from gan_ssl.engine.loop import train_step
from gan_ssl.engine.state import build_state
from gan_ssl.families.resolve import resolve


def _setup(path: Path, overrides: list[str], data: ImageData):
    cfg = resolve(path, overrides)
    return cfg, build_state(cfg, data)


def compile_nets(st, mode: str) -> None:
    """torch.compile the state's networks in place (state_dict keys unchanged): see --compile."""
    import torch._dynamo
    from torch import nn

    torch._dynamo.config.cache_size_limit = 64  # one entry per module instance and input dtype/shape
    torch._dynamo.config.accumulated_cache_size_limit = 4096

    def units(m: nn.Module):
        for c in m.children():
            if isinstance(c, (nn.ModuleDict, nn.ModuleList)):
                yield from units(c)
            elif any(True for _ in c.parameters()):
                yield c

    for net in st.family.nets.values():
        if mode == "blocks":
            for unit in units(net):
                unit.compile()
        else:
            net.compile()
            if hasattr(net, "feature"):
                net.feature = torch.compile(net.feature)


def _time(st, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        train_step(st)
    if st.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def matmul_gflops(dtype: torch.dtype, n: int = 2048, reps: int = 5, device: str = "cpu") -> float:
    """The best of `reps` n^3 matmuls in `dtype`, GFLOP/s (the same process, the same threads as the step)."""
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    a @ b
    best = float("inf")
    for _ in range(reps):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        a @ b
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


class _FlopCount(TorchDispatchMode):
    """Sum of torch's FLOP formulas (torch.utils.flop_counter.flop_registry) over every op dispatched inside.
    FlopCounterMode itself fails on a step with R1 or a gradient penalty (StyleGAN, PGGAN): the backward hooks of
    its module tracker raise under autograd.grad. This mode tracks no modules."""

    def __init__(self) -> None:
        super().__init__()
        from torch.utils.flop_counter import flop_registry

        self.registry, self.total = flop_registry, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in self.registry and func is not torch.ops.prim.device.default:
            with self:  # a composite op without a formula: count what it decomposes into, as FlopCounterMode does
                r = func.decompose(*args, **kwargs)
                if r is not NotImplemented:
                    return r
        out = func(*args, **kwargs)
        formula = self.registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def step_flops(st, cycle: int) -> float:
    """FLOPs per loop step, counted over `cycle` steps (run for real: the state advances)."""
    with _FlopCount() as fc:
        for _ in range(cycle):
            train_step(st)
    return fc.total / cycle


def roofline(st, s_per_step: float, cycle: int) -> dict[str, float]:
    flops = step_flops(st, cycle)
    fp32, bf16 = matmul_gflops(torch.float32, device=str(st.device)), matmul_gflops(torch.bfloat16, device=str(st.device))
    achieved = flops / s_per_step / 1e9
    return {"gflop_per_step": round(flops / 1e9, 2), "achieved_gflops": round(achieved, 1), "matmul_fp32_gflops": round(fp32, 1),
            "matmul_bf16_gflops": round(bf16, 1), "pct_of_fp32_matmul": round(100 * achieved / fp32, 1),
            "pct_of_bf16_matmul": round(100 * achieved / bf16, 1), "cycle": cycle}


def profile_table(st, steps: int, top: int) -> str:
    """torch.profiler's operator table over `steps` loop steps, sorted by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            train_step(st)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top, max_name_column_width=48)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("configs", nargs="*", type=Path, help="YAML configs [default: configs/*.yaml]")
    ap.add_argument("--steps", type=int, default=20, help="timed loop steps per config (after --warmup steps)")
    ap.add_argument("--rounds", type=int, default=2, help="with --vs: alternating rounds of --steps each")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="override for every run")
    ap.add_argument("--vs", action="append", default=[], help="KEY=VALUE: also time each config with this override "
                    "(repeat it for a variant with several)")
    ap.add_argument("--compile", choices=("forward", "blocks"), help="also time each config with its networks compiled")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps before timing (compiling needs a lazy cycle or more)")
    ap.add_argument("--roofline", action="store_true", help="FLOPs per step, achieved GFLOP/s, and the same-run matmul rates")
    ap.add_argument("--cycle", type=int, default=4, help="steps the FLOP count averages over (the main job's lazy interval)")
    ap.add_argument("--profile", type=int, default=0, metavar="N", help="print the top N operators by self CPU time")
    args = ap.parse_args()
    configs = args.configs or sorted(Path("configs").glob("*.yaml"))
    data = load_images("fashion-mnist", "train", 32, 1, limit=4096)
    for path in configs:
        base = _setup(path, args.overrides, data)
        runs = {"base": base}
        if args.vs:
            runs["variant"] = _setup(path, args.overrides + args.vs, data)
        if args.compile:
            runs["compiled"] = _setup(path, args.overrides, data)
            compile_nets(runs["compiled"][1], args.compile)
        secs = {k: 0.0 for k in runs}
        images = {k: 0 for k in runs}
        warm = {k: _time(st, args.warmup) for k, (_, st) in runs.items()}  # warm-up (compiles)
        rounds = args.rounds if args.vs or args.compile else 1
        for _ in range(rounds):
            for k, (_, st) in runs.items():
                before = st.images
                secs[k] += _time(st, args.steps)
                images[k] += st.images - before
        cfg = base[0]
        n = args.steps * rounds
        rec = {
            "config": str(path), "family": cfg.family, "model": cfg.model.name, "device": cfg.train.device, "threads": torch.get_num_threads(),
            "batch_size": cfg.train.batch_size, "n_dis": cfg.train.n_dis, "rotation": cfg.aux.rotation.d_weight > 0,
            "s_per_step": round(secs["base"] / n, 4),
            "img_s": round(images["base"] / secs["base"], 1),
            "est_min_per_2000_steps": round(secs["base"] / n * 2000 / 60, 1),
        }
        if args.vs:
            rec["vs"] = " ".join(args.vs)
            rec["variant_s_per_step"] = round(secs["variant"] / n, 4)
            rec["speedup_base_over_variant"] = round(secs["variant"] / secs["base"], 3)
        if args.compile:
            rec["compile"] = args.compile
            rec["compiled_s_per_step"] = round(secs["compiled"] / n, 4)
            rec["speedup_compiled"] = round(secs["base"] / secs["compiled"], 3)
            rec["compile_warmup_s"] = round(warm["compiled"], 1)
        if args.roofline:
            rec.update(roofline(base[1], secs["base"] / n, args.cycle))
        print(json.dumps(rec), flush=True)
        if args.profile:
            print(profile_table(base[1], args.steps, args.profile), flush=True)


if __name__ == "__main__":
    main()
