"""FID, KID, precision/recall and ISC through torch-fidelity, on any input gan_ssl knows.

All metric math is `torch_fidelity.calculate_metrics`; this module runs it and labels the result; the inputs
(fid_inputs: user inputs as uint8 datasets, torch-fidelity's cache names) and the feature extractors
(fid_extractors) have modules of their own.

    >>> from gan_ssl.evaluation import fid
    >>> r = fid.compute("runs/ssgan", "fashion-mnist:test", n=10000)       # FID of 10k EMA samples
    >>> r["metrics"]["fid[fashion-mnist-cnn]"]

An INPUT is an image folder, an `.npy` of uint8 images ([N, C, H, W], [N, H, W] or [N, H, W, C]),
a dataset spec (`fashion-mnist:test`, `cifar10:train`, `folder:PATH`), a checkpoint (`.pt` file or run
folder: its EMA generator is sampled on the fly, `n` images) or, from Python, a uint8 tensor
[N, C, H, W] or `ImageData`. Dataset specs take the size and channels of the other input (Fashion-MNIST
is zero-padded 28 -> 32 as for training); two fixed inputs must already agree.

Extractors: `fashion-mnist-cnn` / `mnist-cnn` (offline, see `gan_ssl.evaluation.extractor`) and `inception`
(torch-fidelity's `inception-v3-compat`; weights from a path, `$GAN_SSL_INCEPTION_WEIGHTS` or
torch-fidelity's cache). Metric keys name the extractor: `fid[fashion-mnist-cnn]`, `fid[inception]`.
Reference statistics of dataset inputs are cached by torch-fidelity under `$TORCH_HOME/fidelity_cache`
with a name holding the dataset, split, shape, count, a pixel hash and the extractor's weight hash.
"""
from __future__ import annotations

import logging
import pickle
import time
import zipfile
from pathlib import Path
from typing import Any

import torch

from gan_ssl.core.errors import DataError, GanSslError, WeightsError
from gan_ssl.evaluation.fid_extractors import DEFAULTS, INTERNAL_DTYPE, Extractor, resolve_extractor
from gan_ssl.evaluation.fid_inputs import MetricInput, is_spec, open_input

log = logging.getLogger(__name__)

_KEYS = {  # torch-fidelity result key -> our key prefix
    "frechet_inception_distance": "fid", "kernel_inception_distance_mean": "kid", "kernel_inception_distance_std": "kid_std",
    "precision": "precision", "recall": "recall", "f_score": "f_score",
    "inception_score_mean": "isc", "inception_score_std": "isc_std",
}


def _raised_by_fidelity_check(e: BaseException) -> bool:
    """Whether e was raised by torch-fidelity's own input checks (its `vassert` helper), not by torch inside it."""
    import traceback

    frames = traceback.extract_tb(e.__traceback__)
    return bool(frames) and "torch_fidelity" in Path(frames[-1].filename).parts and frames[-1].name == "vassert"


# ---- metrics -------------------------------------------------------------------------------------

def _cache_file(inp: MetricInput, ext: Extractor, layer: str) -> Path:
    return Path(torch.hub._get_torch_home()) / "fidelity_cache" / f"{inp.cache_name}-{ext.fidelity_name}-stat-fid-{layer}.pt"


def compute(input1: Any, input2: Any = None, features: str = DEFAULTS["features"], fid: bool = True, kid: bool = False,
            prc: bool = False, isc: bool = False, n: int = DEFAULTS["n"], seed: int = DEFAULTS["seed"],
            batch_size: int = DEFAULTS["batch_size"], device: str = DEFAULTS["device"],
            kid_subset_size: int = DEFAULTS["kid_subset_size"], inception_weights: str | Path | None = None,
            cache: bool = True, verbose: bool = False, extractor: Extractor | None = None) -> dict[str, Any]:
    """Compute FID (and optionally KID, precision/recall, ISC) between two inputs with torch-fidelity.

    Precision/recall follow torch-fidelity: input1 is the generated set, input2 the real one. ISC uses input1 only.

    Returns:
        {"metrics": {"fid[<extractor>]": float, ...}, "input1": {...}, "input2": {...}, "extractor": {...},
         "batch_size", "kid_subset_size", "seconds", "torch_fidelity"}: every number with its sample
        counts, reference split and resizer.
    """
    import torch_fidelity

    if not (fid or kid or prc or isc):
        raise DataError("no metric requested: choose at least one of fid, kid, prc, isc")
    binary = fid or kid or prc
    if binary and input2 is None:
        raise DataError("FID, KID and precision/recall compare two inputs; give INPUT2")
    if batch_size < 1 or n < 1:
        raise DataError(f"batch size and n must be at least 1 (got {batch_size}, {n})")
    t0 = time.perf_counter()
    ext = extractor or resolve_extractor(features, inception_weights)
    dev = torch.device(device)
    kw = dict(n=n, seed=seed, batch_size=batch_size, device=device, cache=cache)
    first2 = input2 is not None and is_spec(input1) and not is_spec(input2)  # fix the non-spec side first
    if first2:
        in2 = open_input(input2, ext, **kw)
        in1 = open_input(input1, ext, like=in2.shape, **kw)
    else:
        in1 = open_input(input1, ext, **kw)
        in2 = open_input(input2, ext, like=in1.shape, **kw) if input2 is not None else None
    inputs = [in1] + ([in2] if in2 is not None else [])
    if in2 is not None and in1.shape != in2.shape:
        raise DataError(f"the inputs differ: {in1.label} is {'x'.join(map(str, in1.shape))} (CxHxW), {in2.label} is "
                        f"{'x'.join(map(str, in2.shape))}; metrics compare like with like, so resize or convert one of them")
    if kid:
        small = [i for i in inputs if i.n < kid_subset_size]
        if small:
            raise DataError(f"KID draws subsets of {kid_subset_size} images but {small[0].label} has only {small[0].n}; "
                            f"lower --kid-subset-size (to at most {min(i.n for i in inputs)}) or use more images")
    if fid and min(i.n for i in inputs) < 2:
        raise DataError(f"FID needs at least 2 images per input (a covariance); {min(inputs, key=lambda i: i.n).label} has "
                        f"{min(i.n for i in inputs)}")
    if prc and min(i.n for i in inputs) < 5:
        raise DataError("precision/recall needs at least 5 images per input (k = 3 nearest neighbours)")
    if isc and in1.n < 10:
        raise DataError(f"ISC splits input1 into 10 parts; {in1.label} has only {in1.n} images")
    layer = str(ext.info["feature_layer"])
    for i in inputs:
        i.info["reference_cached"] = bool(cache and i.cache_name and _cache_file(i, ext, layer).is_file())
    args = dict(input1=in1.dataset, input2=in2.dataset if in2 is not None else None, fid=fid, kid=kid, prc=prc, isc=isc,
                feature_extractor=ext.fidelity_name, feature_extractor_weights_path=str(ext.weights),
                feature_extractor_internal_dtype=INTERNAL_DTYPE, batch_size=batch_size, cuda=dev.type == "cuda", cache=cache,
                input1_cache_name=in1.cache_name if cache else None,
                input2_cache_name=in2.cache_name if cache and in2 is not None else None,
                kid_subset_size=kid_subset_size, save_cpu_ram=True, verbose=verbose)
    try:
        with torch.random.fork_rng(devices=[]):  # torch-fidelity's DataLoader draws a seed; keep the caller's stream
            raw = torch_fidelity.calculate_metrics(**args)
    except GanSslError:
        raise
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile) as e:
        raise WeightsError(f"cannot load {ext.name} weights from {ext.weights}: {type(e).__name__}: {str(e)[:150]}") from None
    except RuntimeError as e:
        if "state_dict" in str(e):
            raise WeightsError(f"{ext.weights} does not hold {ext.name} weights: {str(e).splitlines()[0][:200]}") from None
        raise
    except ValueError as e:
        if not _raised_by_fidelity_check(e):  # a ValueError from torch or from our code is a bug: keep its traceback
            raise
        raise DataError(f"torch-fidelity rejected the inputs: {e}") from None
    out = {f"{_KEYS[k]}[{ext.name}]": float(v) for k, v in raw.items() if k in _KEYS}
    return {"metrics": out, "input1": in1.describe(), **({"input2": in2.describe()} if in2 is not None else {}),
            "extractor": ext.describe(), "batch_size": batch_size, **({"kid_subset_size": kid_subset_size} if kid else {}),
            "seconds": round(time.perf_counter() - t0, 2), "torch_fidelity": torch_fidelity.__version__}


def format_result(r: dict[str, Any]) -> str:
    """Human-readable lines: metrics first, then how they were measured."""
    m, e = r["metrics"], r["extractor"]
    lines = []
    for k, v in m.items():
        if k.startswith(("kid_std", "isc_std")):
            continue
        std = m.get(k.replace("kid[", "kid_std[").replace("isc[", "isc_std["))
        lines.append(f"{k:<28} {v:.6g}" + (f" ± {std:.3g}" if std is not None and k.startswith(("kid[", "isc[")) else ""))
    for key in ("input1", "input2"):
        if key in r:
            i = r[key]
            extra = [f"split {i['split']}"] if "split" in i else []
            if i["kind"] == "checkpoint":
                extra += [f"step {i['step']}", f"EMA samples, seed {i['seed']}"]
            if i.get("reference_cached"):
                extra.append("statistics from cache")
            lines.append(f"{key}: {i['input']} ({i['kind']}), {i['n']} images {'x'.join(map(str, i['shape']))}" + "".join(f", {x}" for x in extra))
    acc = f", test accuracy {e['test_accuracy']:.2%}" if e.get("test_accuracy") is not None else ""
    lines.append(f"extractor: {e['name']} (weights sha256 {e['sha256'][:12]}{acc}), layer {e['feature_layer']} "
                 f"({e['feature_dim']}-d), {e['internal_dtype']}; inputs: {e['resizer']}")
    if e.get("note"):
        lines.append(f"note: {e['note']}")
    lines.append(f"{r['seconds']:.1f} s, torch-fidelity {r['torch_fidelity']}, batch size {r['batch_size']}")
    return "\n".join(lines)


def fid_key(n: int, split: str, extractor: str) -> str:
    """The metrics.jsonl key of an in-training FID: fid2k_train[fashion-mnist-cnn] for 2,000 samples vs the
    training split; never the key `gan-ssl fid` uses for 10k samples vs the test split."""
    size = f"{n // 1000}k" if n % 1000 == 0 else str(n)
    return f"fid{size}_{split}[{extractor}]"


