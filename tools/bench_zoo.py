"""Every family's default config at the same wall-clock budget (through tools/bench_quality.py), one table.

    python tools/bench_zoo.py                                  # 10 training minutes each, 2 threads, seed 0
    python tools/bench_zoo.py --minutes 20 --zoo configs/pggan_fmnist.yaml,configs/stylegan_fmnist.yaml

Columns: images/s over the run, minutes of training until full resolution at alpha 1 (progressive families;
read from metrics.jsonl, logged every `train.log_every` steps), and FID/KID/precision/recall of 10k EMA
samples vs the Fashion-MNIST test split with the offline extractor. The canonical DCGAN (tools/bench_quality.py)
is the first row.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import bench_quality as bq  # noqa: E402

ZOO = ["configs/ssgan_fmnist.yaml", "configs/dcgan_fmnist.yaml", "configs/sngan_fmnist.yaml", "configs/ssgan_paper.yaml",
       "configs/pggan_fmnist.yaml", "configs/stylegan_fmnist.yaml", "configs/ssstylegan_fmnist.yaml", "configs/bigbigan_fmnist.yaml"]


def minutes_to_full_resolution(run: Path) -> float | None:
    """Training minutes at the first logged step at full resolution with alpha 1 (None: never, or not progressive)."""
    path = run / "metrics.jsonl"
    rows = [json.loads(ln) for ln in path.read_text().splitlines()] if path.is_file() else []
    rows = [r for r in rows if "resolution" in r and "alpha" in r]
    if not rows:
        return None
    import yaml

    full = float(yaml.safe_load((run / "config.yaml").read_text())["data"]["resolution"])
    return next((round(float(r["minutes"]), 2) for r in rows if float(r["resolution"]) >= full and float(r["alpha"]) >= 1.0), None)


def main() -> None:
    ap = bq.parser(__doc__)
    ap.add_argument("--zoo", default=",".join(ZOO), help="comma-separated configs (default: every family's preset)")
    ap.set_defaults(out=Path("/tmp/bench_zoo"))
    args = ap.parse_args()
    args.configs = args.zoo.split(",")
    entries = bq.entries_of(args)
    result = bq.run_bench(entries, args, "bench_zoo.json")
    first = min(int(s) for s in args.seeds.split(","))
    extra: dict[str, Any] = {}
    for name, config, _ in entries:
        if config is not None:
            extra[name] = minutes_to_full_resolution(args.out / bq._run_name(name, args, first))
    print("minutes of training to full resolution (progressive families):", json.dumps(extra))
    result["minutes_to_full_resolution"] = extra
    (args.out / "bench_zoo.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
