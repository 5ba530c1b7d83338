"""Linear probe of frozen features: multinomial logistic regression with few labels.

Protocol (one label fraction, one seed):
  1. a stratified, seeded subset of the *training* set is labelled (`fraction` of each class);
  2. 20% of that subset (stratified, seeded) is held out as the validation split;
  3. features are standardised with the fit part's mean and std, and an L2-regularised logistic
     regression (scikit-learn, lbfgs) is fitted for every L2 strength in `L2_GRID`, strong to weak, warm-started;
  4. the strength with the best validation accuracy is refitted on the whole labelled subset;
  5. that model's top-1 accuracy on the test set is the result. The test set is never used to choose.
Means and standard deviations are over seeds 0..seeds-1.

scikit-learn's lbfgs is used rather than a hand-written optimiser. Each fit runs on one BLAS/OpenMP thread
(`FIT_THREADS`) and the (fraction, seed) fits of a probe run side by side on torch's thread count: the fits' matrix
products are narrow (10 classes), so a second thread inside a fit slows it down (2-core Xeon, docs/performance.md:
the demo's four fits took 44-63 s at 2 threads each, 13.7 s at 1 thread one after another, 10.6 s two at a time).
"""
from __future__ import annotations

import logging
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from gan_ssl.core.errors import ConfigError, DataError
from gan_ssl.core.progress import track
from gan_ssl.data import ImageData, parse_spec
from gan_ssl.evaluation import features as fe
from gan_ssl.evaluation.knn import run_knn
from gan_ssl.families.resolve import from_dict

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

FRACTIONS = (0.01, 0.1, 1.0)  # 1% = 600 Fashion-MNIST labels, the few-label regime SSGAN targets
SEEDS = 3  # subsets and validation splits per fraction; mean and std are over these
L2_GRID = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)  # weight decay per sample (C = 1 / (l2 * n)); 1e-4 or 1e-5 win at 100% labels on F-MNIST
VAL_FRACTION = 0.2  # share of the labelled subset held out to choose the L2 strength
FIT_THREADS = 1  # BLAS/OpenMP threads inside one fit; parallelism comes from fitting several at once (module docstring)
MAX_ITER = 300  # lbfgs iterations per fit; weak-L2 fits on 54k rows reach it, hence the warm-started L2 path
BASELINES = ("pixels", "random")  # raw pixels; the probed network's architecture with random weights
BASELINE_ALIASES = {"random-d": "random"}


def stratified_subset(labels: np.ndarray, fraction: float, seed: int, min_per_class: int = 2) -> np.ndarray:
    """Sorted indices of `fraction` of each class (at least `min_per_class`, at most all), drawn with `seed`.

    labels: int [N] -> indices int64 [n]; the same (labels, fraction, seed) always gives the same subset.
    """
    if not 0 < fraction <= 1:
        raise ConfigError(f"label fraction must be in (0, 1], got {fraction}")
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = min(len(idx), max(min_per_class, int(round(fraction * len(idx)))))
        picked.append(rng.permutation(idx)[:k])
    return np.sort(np.concatenate(picked)).astype(np.int64)


def validation_split(labels: np.ndarray, idx: np.ndarray, seed: int, val_fraction: float = VAL_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Split training indices `idx` into (fit, val), stratified: each class with >= 2 images gives >= 1 to each side."""
    rng = np.random.default_rng(seed + 7919)  # a stream apart from the subset's
    fit, val = [], []
    for c in np.unique(labels[idx]):
        members = rng.permutation(idx[labels[idx] == c])
        k = 0 if len(members) < 2 else min(len(members) - 1, max(1, int(round(val_fraction * len(members)))))
        val.append(members[:k])
        fit.append(members[k:])
    return np.sort(np.concatenate(fit)), np.sort(np.concatenate(val))


def _fit(X: np.ndarray, y: np.ndarray, l2: float, init: Any = None) -> Any:
    """Standardise, then fit L2 logistic regression with per-sample weight decay `l2`. X: float [n, F], y: int [n].

    `init` (a model `_fit` returned) warm-starts lbfgs from its weights: along the L2 grid, strong to weak,
    each fit starts near the previous optimum instead of at zero, so the weak-L2 fits that hit MAX_ITER end
    closer to their optimum (tools/bench_probe.py: same time, 85.9% vs 85.1% test for SSGAN's D at 100% labels).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    clf = LogisticRegression(C=1.0 / (l2 * len(y)), max_iter=MAX_ITER, warm_start=init is not None)
    if init is not None:
        prev = init[-1]
        clf.coef_, clf.intercept_ = prev.coef_.copy(), prev.intercept_.copy()
    model = make_pipeline(StandardScaler(), clf)
    with threadpool_limits(_threads()), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    return model


def _threads() -> int:
    """BLAS/OpenMP threads inside one fit (and prediction): FIT_THREADS, never more than torch's setting."""
    return max(1, min(FIT_THREADS, torch.get_num_threads()))


def _workers(jobs: int) -> int:
    """Fits run at once: torch's thread count (`--threads`, train.threads) over the fits' own threads, at most `jobs`."""
    return max(1, min(jobs, torch.get_num_threads() // _threads()))


def _accuracy(model: Any, X: np.ndarray, y: np.ndarray) -> float:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(_threads()):
        return float((model.predict(X) == y).mean())


def choose_l2(Xf: np.ndarray, yf: np.ndarray, Xv: np.ndarray, yv: np.ndarray, l2_grid: tuple[float, ...] = L2_GRID,
              warm_start: bool = True) -> tuple[Any, float, float]:
    """Fit the probe on (Xf, yf) for every L2 strength, strong to weak (warm-started), and keep the one with the best
    accuracy on (Xv, yv); ties keep the stronger L2. Returns (fitted pipeline, its L2, its validation accuracy)."""
    best_l2, best_val, best, prev = max(l2_grid), -1.0, None, None
    for l2 in sorted(l2_grid, reverse=True):
        prev = _fit(Xf, yf, l2, prev if warm_start else None)
        acc = _accuracy(prev, Xv, yv)
        if acc > best_val:
            best_l2, best_val, best = l2, acc, prev
    return best, best_l2, best_val


def probe_once(X: np.ndarray, y: np.ndarray, X_test: np.ndarray, y_test: np.ndarray, fraction: float, seed: int,
               l2_grid: tuple[float, ...] = L2_GRID, warm_start: bool = True) -> dict[str, Any]:
    """One probe run: returns {acc, val_acc, l2, n_labels, subset, fit, val} (index arrays into X).

    `warm_start=False` fits every L2 strength from zero: the same optimum in principle, but weak-L2 fits that
    hit MAX_ITER stop farther from it (tools/bench_probe.py compares the two)."""
    subset = stratified_subset(y, fraction, seed)
    fit, val = validation_split(y, subset, seed)
    best_l2, best_val, best = max(l2_grid), -1.0, None
    if len(val) and len(np.unique(y[fit])) > 1:  # the choice reads only training rows
        best, best_l2, best_val = choose_l2(X[fit], y[fit], X[val], y[val], l2_grid, warm_start)
    if len(np.unique(y[subset])) < 2:
        raise DataError("the labelled subset has a single class; raise --label-fraction")
    model = _fit(X[subset], y[subset], best_l2, best if warm_start else None)  # fit holds every class of the subset
    return {"acc": _accuracy(model, X_test, y_test), "val_acc": best_val, "l2": best_l2, "n_labels": int(len(subset)),
            "subset": subset, "fit": fit, "val": val}


def run_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
              fractions: tuple[float, ...] = FRACTIONS, seeds: int = SEEDS, progress: bool = False, desc: str = "probe",
              knn: bool = False) -> dict[str, Any]:
    """Probe accuracy per label fraction. train_x [N, F], train_y [N], test_x [M, F], test_y [M]. With `knn`, also
    the weighted kNN classifier (gan_ssl.evaluation.knn) on the same labelled subsets.

    Returns {dim, fractions: {"0.01": {n_labels, mean, std, accs, l2, val_acc}, ...}, [knn: {"k20": {...}, ...}], seconds}.
    """
    X, y = _as_numpy(train_x, train_y, "training")
    Xt, yt = _as_numpy(test_x, test_y, "test")
    if X.shape[1] != Xt.shape[1]:
        raise DataError(f"training features have {X.shape[1]} dims but test features {Xt.shape[1]}; export both from one checkpoint with the same --layers/--pool")
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")

    t0 = time.perf_counter()
    out: dict[str, Any] = {}
    jobs = [(f, s) for f in fractions for s in range(seeds)]
    runs: dict[float, list[dict[str, Any]]] = {f: [] for f in fractions}
    from threadpoolctl import threadpool_limits

    # independent fits side by side, each on _threads(); results come back in job order, so the output does not
    # depend on the number of workers (each fit is the same computation on the same thread count)
    workers = _workers(len(jobs))  # before the limit below: under OpenMP, torch reads its thread count from it
    with threadpool_limits(_threads()), ThreadPoolExecutor(max_workers=workers) as pool:
        done = pool.map(lambda job: probe_once(X, y, Xt, yt, job[0], job[1]), jobs)
        for (f, _), r in zip(jobs, track(done, desc=desc, unit="fit", enabled=progress, total=len(jobs))):
            runs[f].append(r)
    for f in fractions:
        accs = [r["acc"] for r in runs[f]]
        out[_key(f)] = {"n_labels": runs[f][0]["n_labels"], "mean": float(np.mean(accs)),
                        "std": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0, "accs": accs,
                        "l2": [r["l2"] for r in runs[f]], "val_acc": [r["val_acc"] for r in runs[f]]}
    result = {"dim": int(X.shape[1]), "fractions": out}
    if knn:

        subsets = {_key(f): [r["subset"] for r in runs[f]] for f in fractions}
        result["knn"] = run_knn(torch.from_numpy(X), torch.from_numpy(y), torch.from_numpy(Xt), torch.from_numpy(yt), subsets)
    return {**result, "seconds": round(time.perf_counter() - t0, 2)}


def _key(f: float) -> str:
    return f"{f:g}"


def _as_numpy(x: torch.Tensor, y: torch.Tensor, what: str) -> tuple[np.ndarray, np.ndarray]:
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise DataError(f"{what} features {tuple(x.shape)} and labels {tuple(y.shape)} do not match: need [N, F] and [N]")
    if (y < 0).any():
        raise DataError(f"{what} labels contain unknown (-1) entries; probing needs labelled data")
    return x.float().numpy(), y.long().numpy()


def parse_fractions(text: str) -> tuple[float, ...]:
    """'0.01,0.1,1.0' -> (0.01, 0.1, 1.0), each in (0, 1]."""
    try:
        vals = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise ConfigError(f"label fractions must be numbers like 0.01,0.1,1.0, got {text!r}") from None
    if not vals or any(not 0 < v <= 1 for v in vals):
        raise ConfigError(f"label fractions must be in (0, 1], got {text!r}")
    return tuple(dict.fromkeys(vals))


def _check_labels(fs: dict[str, Any], data: ImageData, path: str) -> None:
    y = fs["labels"]
    if y.shape[0] != len(data) or not torch.equal(y, data.labels):
        diff = "a different count" if y.shape[0] != len(data) else f"{int((y != data.labels).sum())} differing labels"
        raise DataError(f"feature file {path} does not match {data.name}: {y.shape[0]} rows vs {len(data)} images, {diff}; "
                        "export it from the same data, split and --limit")


def probe(source: str | Path, spec: str, fractions: tuple[float, ...] = FRACTIONS, seeds: int = SEEDS,
          baselines: tuple[str, ...] = (), test_features: str | Path | None = None, layers: str | None = None,
          pool: str = fe.DEFAULT_POOL, grid: int = fe.DEFAULT_GRID, batch_size: int = fe.DEFAULT_BATCH, device: str = "cpu",
          limit: int = 0, progress: bool = False, net: str | None = None, knn: bool = False) -> dict[str, Any]:
    """Probe a checkpoint's network (`net`: D, an encoder; default the family's first) or a train feature file
    plus `test_features`, and the chosen baselines, on one set of splits.

    Rows are named by the network ("D", "encoder"), "pixels" and "random <net>" (the same architecture, random init).
    `layers="each"`: every layer of the network is also probed on its own, one row per layer ("D block1", ...), after
    the row of all layers together (where the representation lives, as the SSL survey's Conv1-Conv5 tables).
    Returns {source, data, n_train, n_test, seeds, l2_grid, val_fraction, rows: {name: {dim, fractions, ...}}, seconds}.
    """
    baselines = tuple(BASELINE_ALIASES.get(b, b) for b in baselines)
    bad = [b for b in baselines if b not in BASELINES]
    if bad:
        raise ConfigError(f"unknown baseline {bad[0]!r}; use {' or '.join(BASELINES)}")
    t0 = time.perf_counter()
    name, _, _ = parse_spec(spec)
    rows: dict[str, Any] = {}
    each = layers == "each"
    layers = fe.DEFAULT_LAYERS if each else layers
    dims: list[int] = []
    if fe.is_feature_file(source):
        if test_features is None:
            raise ConfigError(f"{source} is a feature file: also pass --test-features (export it with `gan-ssl features CKPT --data {spec} --split test --out test.pt`)")
        tr, te = fe.load_features(source), fe.load_features(test_features)
        if not tr.get("config"):
            if "random" in baselines:
                raise ConfigError(f"{source} records no model config, so the random baseline cannot rebuild its architecture")
            cfg = from_dict({})
        else:
            cfg = from_dict(tr["config"])
        train_data = fe.load_data(cfg, spec, "train", limit or len(tr["labels"]))
        test_data = fe.load_data(cfg, spec, "test", limit or len(te["labels"]))
        _check_labels(tr, train_data, str(source))
        _check_labels(te, test_data, str(test_features))
        layers, pool, grid, dims = tr["layers"], tr["pool"], int(tr.get("grid", 1)), list(tr.get("layer_dims", []))
        net = tr.get("net") or net or "D"
        main = {"train": tr["features"], "test": te["features"], "meta": {k: tr[k] for k in ("checkpoint", "checkpoint_sha256", "step", "layers", "pool")}}
    else:
        rep, cfg, meta = fe.load_representation(source, net, device)
        net = rep.name
        train_data = fe.load_data(cfg, spec, "train", limit)
        test_data = fe.load_data(cfg, spec, "test", limit)
        a, names, dims = fe.representation_features(rep, train_data, layers, pool, grid, batch_size, device, progress, f"{net} features train")
        b, _, _ = fe.representation_features(rep, test_data, names, pool, grid, batch_size, device, progress, f"{net} features test")
        layers = names
        main = {"train": a, "test": b, "meta": {**meta, "layers": names, "pool": pool}}
    y, yt = train_data.labels, test_data.labels
    rows[net] = {**main["meta"], "grid": grid, **run_probe(main["train"], y, main["test"], yt, fractions, seeds, progress, f"probe {net}", knn)}
    if each:
        if len(dims) != len(layers):
            raise ConfigError(f"{source} does not record its layers' widths; export the features again to probe each layer")
        lo = 0
        for layer, d in zip(layers, dims):
            rows[f"{net} {layer}"] = {"layer": layer, **run_probe(main["train"][:, lo : lo + d], y, main["test"][:, lo : lo + d], yt,
                                                                   fractions, seeds, progress, f"probe {net} {layer}", knn)}
            lo += d
    if "pixels" in baselines:
        rows["pixels"] = run_probe(fe.pixel_features(train_data), y, fe.pixel_features(test_data), yt, fractions, seeds, progress, "probe pixels", knn)
    if "random" in baselines:
        R = fe.random_representation(cfg, net, seed=0, device=device)
        a, names, _ = fe.representation_features(R, train_data, layers, pool, grid, batch_size, device, progress, f"random {R.name} train")
        b, _, _ = fe.representation_features(R, test_data, names, pool, grid, batch_size, device, progress, f"random {R.name} test")
        rows[f"random {R.name}"] = {"init_seed": 0, "net": R.name, **run_probe(a, y, b, yt, fractions, seeds, progress, f"probe random {R.name}", knn)}
    return {"source": str(source), "data": name, "n_train": len(train_data), "n_test": len(test_data), "seeds": seeds,
            "l2_grid": list(L2_GRID), "val_fraction": VAL_FRACTION, "rows": rows, "seconds": round(time.perf_counter() - t0, 1)}


def format_table(result: dict[str, Any]) -> str:
    """Test top-1 (mean ± std over seeds, %) per label fraction, one row per feature source."""
    rows = result["rows"]
    fracs = list(next(iter(rows.values()))["fractions"])
    head = f"{'features':<18}{'dim':>6}" + "".join(f"{f'{float(f):.0%} labels':>18}" for f in fracs)
    lines = [f"linear probe on {result['data']} ({result['n_train']} train / {result['n_test']} test, {result['seeds']} seeds)", head]
    for name, r in rows.items():
        cells = "".join(f"{100 * c['mean']:>11.2f} ± {100 * c['std']:<4.2f}" for c in r["fractions"].values())
        lines.append(f"{name:<18}{r['dim']:>6}{cells}")
        for k, knn_cells in r.get("knn", {}).items():  # weighted kNN on the same labels (the same columns)
            cells = "".join(f"{100 * c['mean']:>11.2f} ± {100 * c['std']:<4.2f}" for c in knn_cells.values())
            lines.append(f"{'  kNN ' + k[1:]:<18}{'':>6}{cells}")
    if any("knn" in r for r in rows.values()):
        lines.append("kNN rows: weighted k-nearest neighbours (cosine similarity, weights exp(sim / 0.07)) on the same labelled images")
    n_labels = next(iter(rows.values()))["fractions"]
    lines.append("labels per fraction: " + ", ".join(f"{f}: {c['n_labels']}" for f, c in n_labels.items()) + f"  ({result['seconds']} s)")
    return "\n".join(lines)


