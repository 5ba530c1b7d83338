"""FID (and KID, precision/recall, ISC) over K sample seeds of a checkpoint: one value per seed, then the mean and
the sample standard deviation (ddof=1) of every metric, so a difference between two runs can be told from noise.

    $ gan-ssl fid runs/ssgan fashion-mnist:test --repeats 3
    >>> from gan_ssl import fid_repeats
    >>> r = fid_repeats.compute("runs/ssgan", "fashion-mnist:test", repeats=3, n=10000)
    >>> r["metrics"]["fid[fashion-mnist-cnn]"]          # {"mean": ..., "std": ..., "values": [v0, v1, v2]}

Repeat k samples every checkpoint input with seed `seed + k`, so it equals `gan-ssl fid --seed (seed + k)`.
The fixed side (a dataset spec, folder or .npy) is opened once; a dataset's reference statistics are computed by
the first repeat and read from torch-fidelity's cache by the others (folders and .npy files have no cache entry,
as in a plain `gan-ssl fid`).
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from gan_ssl.core.errors import DataError
from gan_ssl.evaluation import fid as metrics
from gan_ssl.evaluation.fid import DEFAULTS
from gan_ssl.evaluation.fid_inputs import MetricInput, classify_input

STD = "sample standard deviation over repeats (ddof=1)"


def _is_checkpoint(spec: Any) -> bool:
    """Whether an INPUT is a checkpoint; a path that does not exist and is no dataset spec raises DataError."""
    return isinstance(spec, (str, Path)) and classify_input(str(spec)) == "checkpoint"


def compute(input1: str | Path, input2: str | Path, repeats: int, seed: int = DEFAULTS["seed"], features: str = DEFAULTS["features"],
            n: int = DEFAULTS["n"], batch_size: int = DEFAULTS["batch_size"], device: str = DEFAULTS["device"],
            cache: bool = True, inception_weights: str | Path | None = None, verbose: bool = False, **which: Any) -> dict[str, Any]:
    """`metrics.compute` for seeds seed, ..., seed + repeats - 1 of the checkpoint input(s); `which` = fid, kid, prc, isc,
    kid_subset_size.

    Returns:
        {"repeats", "seeds", "std": how the std is computed, "metrics": {key: {"mean", "std", "values"}}, "runs": [one
         `metrics.compute` result per seed], "input1", "input2", "extractor", "batch_size", "seconds", "torch_fidelity"};
        std is None for one repeat.
    """
    if repeats < 1:
        raise DataError(f"repeats must be at least 1, got {repeats}")
    ckpt = [_is_checkpoint(x) for x in (input1, input2)]
    if not any(ckpt):
        raise DataError(f"--repeats resamples a checkpoint input, but {input1} and {input2} are fixed images (every repeat would "
                        "give the same numbers); pass a checkpoint (.pt file or run folder) or drop --repeats")
    t0 = time.perf_counter()
    ext = metrics.resolve_extractor(features, inception_weights)
    kw: dict[str, Any] = dict(n=n, batch_size=batch_size, device=device, cache=cache)
    fixed: dict[int, MetricInput] = {}
    runs = []
    for s in range(seed, seed + repeats):
        sides: list[Any] = [metrics.open_input(x, ext, seed=s, **kw) if c else None for x, c in zip((input1, input2), ckpt)]
        like = next(i.shape for i in sides if i is not None)
        for k, x in enumerate((input1, input2)):
            if sides[k] is None:  # the fixed side: opened once, in the checkpoint's image shape
                if k not in fixed:
                    fixed[k] = metrics.open_input(x, ext, like=like, seed=s, **kw)
                sides[k] = fixed[k]
        runs.append(metrics.compute(sides[0], sides[1], extractor=ext, seed=s, verbose=verbose, **kw, **which))
    summary = {}
    for key in runs[0]["metrics"]:
        values = [r["metrics"][key] for r in runs]
        summary[key] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if repeats > 1 else None, "values": values}
    last = runs[-1]
    return {"repeats": repeats, "seeds": list(range(seed, seed + repeats)), "std": STD, "metrics": summary, "runs": runs,
            "input1": last["input1"], "input2": last["input2"], "extractor": last["extractor"], "batch_size": batch_size,
            "seconds": round(time.perf_counter() - t0, 2), "torch_fidelity": last["torch_fidelity"]}


def format_result(r: dict[str, Any]) -> str:
    """Text of `gan-ssl fid --repeats K`: mean ± std and the per-seed values of each metric, then how they were measured."""
    seeds = r["seeds"]
    lines = [f"over {r['repeats']} sample seeds ({seeds[0]}..{seeds[-1]}): mean ± {STD}"]
    for key, m in r["metrics"].items():
        std = "n/a" if m["std"] is None else f"{m['std']:.4g}"
        per = ", ".join(f"{v:.6g}" for v in m["values"])
        lines.append(f"{key:<28} {m['mean']:.6g} ± {std}   per seed: {per}")
    last, notes = {**r, "metrics": {}}, []
    for side in ("input1", "input2"):
        if r[side]["kind"] == "checkpoint":
            last[side] = {**r[side], "seed": f"{seeds[0]}..{seeds[-1]}"}
            continue
        computed = sum(not run[side].get("reference_cached") for run in r["runs"])  # the others read torch-fidelity's cache
        last[side] = {**r[side], "reference_cached": False}
        how = "read from torch-fidelity's cache otherwise" if computed < r["repeats"] else "not cached"
        notes.append(f"{side} statistics: computed {computed} of {r['repeats']} times ({how})")
    return "\n".join([*lines, metrics.format_result(last), *notes])
