"""How good is a trained D as a representation? Every protocol of issue 23 on one checkpoint, one table.

    python tools/bench_repr.py RUN_OR_CKPT                       # 1% and 10% labels, 3 seeds, Fashion-MNIST
    python tools/bench_repr.py RUN --upper                       # + all labels: fine-tuned D and the supervised upper bound
    python tools/bench_repr.py RUN --transfer digits             # + the linear probe and kNN on another dataset

Rows: the linear probe and weighted kNN (k 20, 200) of D's features, of the same architecture at random init and of
raw pixels (one set of labelled subsets for all of them); D fine-tuned with a linear head against the same network
trained from random init on the same labels (gan_ssl.evaluation.finetune). Each protocol's seconds are recorded:
the speed figures. Results go to --out (JSON) and print as a Markdown table. Run it alone on the machine.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from gan_ssl.evaluation import finetune as ft
from gan_ssl.evaluation import probe as pr


def cell(c: dict[str, Any]) -> str:
    return f"{100 * c['mean']:.2f} ± {100 * c['std']:.2f}"


def table(r: dict[str, Any], fracs: list[str]) -> str:
    head = "| protocol | features | " + " | ".join(f"{float(f):.0%} labels" for f in fracs) + " |"
    lines = [head, "|" + " --- |" * (2 + len(fracs))]
    for name, row in r["probe"]["rows"].items():
        lines.append(f"| linear probe | {name} | " + " | ".join(cell(row["fractions"][f]) if f in row["fractions"] else "" for f in fracs) + " |")
        for k, cells in row.get("knn", {}).items():
            lines.append(f"| kNN {k} | {name} | " + " | ".join(cell(cells[f]) if f in cells else "" for f in fracs) + " |")
    for name, row in r["finetune"]["rows"].items():
        lines.append(f"| fine-tuning | {name} | " + " | ".join(cell(row["fractions"][f]) if f in row["fractions"] else "" for f in fracs) + " |")
    return "\n".join(lines)


def ranking(rows: dict[str, Any], key: Any) -> list[str]:
    return sorted(rows, key=lambda n: -key(rows[n]))


def finetune_all(a: argparse.Namespace, fracs: tuple[float, ...], seeds: int, r: dict[str, Any]) -> dict[str, Any]:
    """Fine-tuning with each of --recipes (rows "finetuned D (recipe)") and the scratch baseline once; seconds per recipe in r."""
    out: dict[str, Any] = {"rows": {}}
    for i, recipe in enumerate(a.recipes.split(",")):
        t0 = time.perf_counter()
        res = ft.finetune(a.source, a.data, fracs, seeds, max_steps=a.max_steps, limit=a.limit, recipe=recipe, scratch=i == 0)
        r.setdefault("recipe_seconds", {})[f"{recipe} {fracs}"] = round(time.perf_counter() - t0, 1)
        for name, row in res["rows"].items():
            out["rows"][f"{name} ({recipe})" if name.startswith("finetuned") else name] = row
        out.setdefault("recipe", res["recipe"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", help="a run folder or checkpoint")
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--fractions", default="0.01,0.1")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--max-steps", type=int, default=ft.MAX_STEPS)
    ap.add_argument("--recipes", default="lp-ft", help="fine-tuning recipes of the trained network, comma-separated, from: "
                    + ", ".join(ft.RECIPES) + " (the scratch baseline always uses full)")
    ap.add_argument("--upper", action="store_true", help="also fine-tune and train from scratch on all labels (1 seed)")
    ap.add_argument("--transfer", default="", help="also probe (with kNN) on this dataset, e.g. digits")
    ap.add_argument("--limit", type=int, default=0, help="only the first N train and N test images (smoke runs)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("bench_repr.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    fracs = pr.parse_fractions(a.fractions)
    keys = [f"{f:g}" for f in fracs]
    r: dict[str, Any] = {"source": a.source, "data": a.data, "seeds": a.seeds, "threads": a.threads, "torch": torch.__version__}
    t0 = time.perf_counter()
    r["probe"] = pr.probe(a.source, a.data, fracs, a.seeds, baselines=("pixels", "random"), knn=True, limit=a.limit)
    r["probe_seconds"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    r["finetune"] = finetune_all(a, fracs, a.seeds, r)
    r["finetune_seconds"] = round(time.perf_counter() - t0, 1)
    if a.upper:
        t0 = time.perf_counter()
        up = finetune_all(a, (1.0,), 1, r)
        for name, row in up["rows"].items():
            r["finetune"]["rows"][name]["fractions"].update(row["fractions"])
        r["upper_seconds"] = round(time.perf_counter() - t0, 1)
        keys_t = keys + ["1"]
    else:
        keys_t = keys
    if a.transfer:
        t0 = time.perf_counter()
        r["transfer"] = pr.probe(a.source, a.transfer, fracs, a.seeds, baselines=("pixels", "random"), knn=True, limit=a.limit)
        r["transfer_seconds"] = round(time.perf_counter() - t0, 1)
    rows = r["probe"]["rows"]
    r["rankings"] = {f: {"probe": ranking(rows, lambda x: x["fractions"][f]["mean"]),
                         **{f"knn {k}": ranking(rows, lambda x, k=k: x["knn"][k][f]["mean"]) for k in ("k20", "k200")}}
                     for f in keys}
    a.out.write_text(json.dumps(r, indent=1))
    print(table(r, keys_t))
    for f, rk in r["rankings"].items():
        agree = "agree" if len({tuple(v) for v in rk.values()}) == 1 else "DISAGREE"
        print(f"ranking at {float(f):.0%} labels ({agree}): " + "; ".join(f"{p}: {' > '.join(v)}" for p, v in rk.items()))
    if a.transfer:
        print(f"\ntransfer to {a.transfer}:")
        print(table({"probe": r["transfer"], "finetune": {"rows": {}}}, keys))
    print(f"seconds: probe + kNN {r['probe_seconds']}, fine-tuning {r['finetune_seconds']}"
          + (f", all labels {r['upper_seconds']}" if a.upper else "") + (f", transfer {r['transfer_seconds']}" if a.transfer else ""))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
