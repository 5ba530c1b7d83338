"""`gan-ssl report`: one self-contained HTML page describing a run directory.

The page shows the loss curves, rotation accuracies, in-training evaluations (FID, probe), throughput,
sample grids over time, the resolved config and the hardware facts. Plots are drawn with matplotlib
(Agg, no pyplot state) and every image is embedded as a base64 PNG data URI, so the single file can
be mailed or attached to an issue and opened anywhere without network access or other files.

    >>> from gan_ssl.evaluation.report import write_report
    >>> write_report("runs/ssgan")            # -> runs/ssgan/report.html
"""
from __future__ import annotations

import base64
import html
import io
import os
import platform
import re
from pathlib import Path
from typing import Any

from gan_ssl.core import runlog
from gan_ssl.core.errors import CheckpointError, DataError
from gan_ssl.engine import checkpoint as ckpt_io
from gan_ssl.evaluation import features as fe
from gan_ssl.evaluation.embedding import plot_embedding, tsne_2d

MAX_GRIDS = 8  # sample grids embedded: evenly spaced over the run, the last one always included
_STEP_PNG = re.compile(r"step_(\d+)\.png$")


def read_metrics(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """metrics.jsonl -> (training records, evaluation records {"step", "eval": {...}}), in file order."""
    train: list[dict[str, Any]] = []
    evals: list[dict[str, Any]] = []
    for rec in runlog.read_records(path):
        (evals if isinstance(rec.get("eval"), dict) else train).append(rec)
    return train, evals


def series(records: list[dict[str, Any]], keys: list[str]) -> dict[str, tuple[list[int], list[float]]]:
    """{key: (steps, values)} for every key, over the records that hold a number for it."""
    out: dict[str, tuple[list[int], list[float]]] = {}
    for k in keys:
        pts = [(int(r["step"]), float(r[k])) for r in records if isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool)]
        if pts:
            out[k] = ([s for s, _ in pts], [v for _, v in pts])
    return out


def _keys(records: list[dict[str, Any]], pred: Any) -> list[str]:
    seen: dict[str, None] = {}
    for r in records:
        for k in r:
            if pred(k):
                seen.setdefault(k, None)
    return list(seen)


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def plot(curves: dict[str, tuple[list[int], list[float]]], title: str, ylabel: str) -> str:
    """A line plot of {label: (steps, values)} as a PNG data URI (matplotlib Agg, no global figure state)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.4), dpi=100)
    ax = fig.subplots()
    for label, (x, y) in curves.items():
        ax.plot(x, y, marker="o" if len(x) <= 12 else None, markersize=3, linewidth=1.2, label=label)
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if len(curves) > 1:
        ax.legend(fontsize=7, ncol=2 if len(curves) > 4 else 1)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return _png_uri(buf.getvalue())


def sample_grids(samples: Path, limit: int = MAX_GRIDS) -> list[tuple[int, Path]]:
    """Up to `limit` (step, png) of samples/step_*.png, evenly spaced over the run and always with the last."""
    found = sorted((int(m.group(1)), p) for p in samples.glob("step_*.png") if (m := _STEP_PNG.search(p.name)))
    if len(found) <= limit:
        return found
    idx = sorted({round(i * (len(found) - 1) / (limit - 1)) for i in range(limit)})
    return [found[i] for i in idx]


def cpu_model() -> str:
    """The CPU model name of this machine (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def run_facts(run_dir: Path, train: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(facts of the run from its checkpoint and metrics, facts of the machine writing the report)."""
    run: dict[str, Any] = {}
    latest = run_dir / "checkpoints" / "latest.pt"
    if latest.is_file():
        try:
            ck = ckpt_io.load(latest)
            meta = ck.get("meta", {})
            cfg = ck.get("config", {})
            run.update({"checkpoint": str(latest), "family": ck.get("family"), "model": cfg.get("model", {}).get("name"),
                        "step": ck.get("step"), "images seen": ck.get("images"),
                        "training minutes": round(float(ck.get("elapsed", 0.0)) / 60, 2),
                        "torch": meta.get("torch"), "precision": meta.get("precision"), "device": meta.get("device"),
                        "processes (torchrun world size)": int(ck.get("world_size", 1)),
                        "threads (train.threads per process, 0 = torch default)": cfg.get("train", {}).get("threads")})
        except CheckpointError as e:
            run["checkpoint"] = f"unreadable: {e}"
    else:
        run["checkpoint"] = f"none ({latest} does not exist)"
    for key in ("img_s", "it_s"):
        _, vals = series(train, [key]).get(key, ([], []))
        if vals:
            run[f"{key} last"] = vals[-1]
            run[f"{key} mean"] = round(sum(vals) / len(vals), 3)
    here = {"CPU model": cpu_model(), "logical CPUs": os.cpu_count(), "torch threads": _torch_threads(),
            "platform": platform.platform(), "python": platform.python_version()}
    return run, here


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 1.6em; }
.plots, .grids { display: flex; flex-wrap: wrap; gap: 12px; }
.plots img { width: 540px; max-width: 100%; }
figure { margin: 0; text-align: center; font-size: .85em; }
.grids img { width: 240px; image-rendering: pixelated; border: 1px solid #ccc; }
table { border-collapse: collapse; font-size: .9em; } td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: .85em; }
.note { color: #666; font-size: .9em; }
"""


def _table(d: dict[str, Any]) -> str:
    cell = lambda v: f"{v:.5g}" if isinstance(v, float) else str(v)  # noqa: E731
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(cell(v))}</td></tr>" for k, v in d.items())
    return f"<table>{rows}</table>"


def _img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{html.escape(alt)}">'


EMBEDDING_N = 2000  # test images in the report's t-SNE picture (about 10 s on 2 cores)


def embedding_section(run_dir: Path, n: int = EMBEDDING_N) -> str:
    """A t-SNE picture of the run's representation (D, or the family's first network) of n test images of its
    dataset, coloured by class (gan_ssl.evaluation.embedding), as HTML; a note instead when there is nothing to draw."""
    ckpt = run_dir / "checkpoints" / "latest.pt"
    if n <= 0:
        return '<p class="note">off (--embedding 0)</p>'
    if not ckpt.is_file():
        return '<p class="note">no checkpoints/latest.pt</p>'

    rep, cfg, meta = fe.load_representation(ckpt)
    try:
        data = fe.load_data(cfg, cfg.data.name, "test", n)
    except DataError as e:
        return f'<p class="note">no test split to draw: {html.escape(str(e))}</p>'
    if not data.has_labels:
        return '<p class="note">the test images have no labels to colour by</p>'
    feats, _, _ = fe.representation_features(rep, data)
    xy, rows = tsne_2d(feats, seed=0, max_points=n)
    buf = io.BytesIO()
    title = f"t-SNE of {rep.name} features, {len(rows)} {cfg.data.name} test images, step {meta['step']}"
    plot_embedding(xy, data.labels.numpy()[rows], data.classes, buf, title)
    return (_img(_png_uri(buf.getvalue()), title) + '<p class="note">every block of the network, avg+max pooled (the probe\'s '
            "features); t-SNE keeps neighbourhoods, not the distances between clusters</p>")


def render(run_dir: Path, embedding: int = EMBEDDING_N) -> str:
    """The report page of a run directory, as one HTML string (`embedding`: test images in the t-SNE picture, 0 = none)."""
    train, evals = read_metrics(run_dir / "metrics.jsonl")
    parts: list[str] = []

    def section(title: str, body: str) -> None:
        parts.append(f"<h2>{html.escape(title)}</h2>\n{body}")

    losses = series(train, _keys(train, lambda k: k.endswith("_loss")))
    rot = series(train, _keys(train, lambda k: k.startswith("rot_acc_")))
    curves = [_img(plot(losses, "losses", "loss"), "losses")] if losses else []
    if rot:
        curves.append(_img(plot(rot, "rotation accuracy", "accuracy"), "rotation accuracy"))
    section("Training curves", f'<div class="plots">{"".join(curves)}</div>' if curves else '<p class="note">no *_loss keys logged</p>')

    flat = [{"step": r["step"], **r["eval"]} for r in evals]
    ev_keys = _keys(flat, lambda k: k != "step")
    fid = series(flat, [k for k in ev_keys if k.startswith(("fid", "kid"))])
    other = series(flat, [k for k in ev_keys if not k.startswith(("fid", "kid"))])
    ev_plots = ([_img(plot(fid, "FID over training", "FID (lower is better)"), "FID")] if fid else []) + \
               ([_img(plot(other, "probe and other evaluations", "value"), "evaluations")] if other else [])
    last_ev = _table({"step": evals[-1]["step"], **evals[-1]["eval"]}) if evals else ""
    section("Evaluations (eval.every)", f'<div class="plots">{"".join(ev_plots)}</div>{last_ev}' if ev_plots
            else '<p class="note">no in-training evaluations in metrics.jsonl (set eval.every &gt; 0)</p>')

    img_s, it_s = series(train, ["img_s"]), series(train, ["it_s"])
    thr = ([_img(plot(img_s, "images per second", "img/s"), "img/s")] if img_s else []) + \
          ([_img(plot(it_s, "loop steps per second", "it/s"), "it/s")] if it_s else [])
    section("Throughput", f'<div class="plots">{"".join(thr)}</div>' if thr else '<p class="note">no img_s / it_s logged</p>')

    grids = sample_grids(run_dir / "samples")
    figs = "".join(f"<figure>{_img(_png_uri(p.read_bytes()), f'samples at step {s}')}<figcaption>step {s}</figcaption></figure>"
                   for s, p in grids)
    section("Sample grids (fixed inputs, EMA generator)", f'<div class="grids">{figs}</div>' if grids
            else '<p class="note">no samples/step_*.png</p>')

    section("The representation: t-SNE of test-image features, coloured by class", embedding_section(run_dir, embedding))

    run, here = run_facts(run_dir, train)
    section("Run: hardware and throughput (from the checkpoint and metrics.jsonl)", _table(run))
    section("Machine generating this report (not necessarily the machine that trained)", _table(here))

    cfg = run_dir / "config.yaml"
    section("Resolved config (config.yaml)", f"<pre>{html.escape(cfg.read_text())}</pre>" if cfg.is_file()
            else '<p class="note">no config.yaml</p>')

    title = f"gan_ssl report: {html.escape(run_dir.resolve().name)}"
    head = f'<meta charset="utf-8"><title>{title}</title><style>{_CSS}</style>'
    intro = (f'<h1>{title}</h1><p class="note">{html.escape(str(run_dir.resolve()))}: {len(train)} training records, '
             f"{len(evals)} evaluations, last step {max((int(r['step']) for r in train + evals), default=0)}</p>")
    return f"<!DOCTYPE html>\n<html><head>{head}</head><body>\n{intro}\n" + "\n".join(parts) + "\n</body></html>\n"


def write_report(run_dir: str | Path, out: str | Path | None = None, embedding: int = EMBEDDING_N) -> Path:
    """Write the report of `run_dir` to `out` (default RUN_DIR/report.html); returns its path.

    Raises DataError when `run_dir` is not a folder or holds no metrics.jsonl.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"run directory not found: {run_dir}")
    if not (run_dir / "metrics.jsonl").is_file():
        raise DataError(f"{run_dir} has no metrics.jsonl; pass a run directory written by `gan-ssl train`")
    page = render(run_dir, embedding)
    path = Path(out) if out is not None else run_dir / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
