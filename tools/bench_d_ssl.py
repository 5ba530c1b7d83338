"""Self-supervision on D, one ablation table at equal wall-clock time (through tools/bench_quality.py).

    python tools/bench_d_ssl.py                           # 10 training minutes per entry, seed 0, with DiffAugment and without
    python tools/bench_d_ssl.py --minutes 6 --seeds 0,1 --no-diffaug

Entries, all on the main job's recipe (configs/ssgan_fmnist.yaml) with its self-supervision swapped:
    base        no auxiliary task (the same network, loss, optimizers and EMA)
    rotation    SSGAN rotation (weights 1.0 / 0.2, the config's protocol)
    la-one      SSGAN-LA, one random rotation per image (about the cost of no aux)
    la-all      SSGAN-LA, every image in all four rotations (the paper's)
    contrastive ContraD: NT-Xent on SimCLR views + supervised-contrastive fakes, GAN head on stop-gradient features
each also with DiffAugment (translation,cutout) unless --no-diffaug. Reports images/s, offline FID/KID/PR of
10k samples vs the test split and the D probe at 1/10/100% labels, and names the best entry for FID and for
the probe.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bench_quality as bq  # noqa: E402

OFF = ["aux.rotation.d_weight=0", "aux.rotation.g_weight=0"]
METHODS = {
    "base": OFF,
    "rotation": ["aux.rotation.d_weight=1.0", "aux.rotation.g_weight=0.2"],
    "la-one": OFF + ["aux.label_aug.d_weight=1.0", "aux.label_aug.g_weight=1.0", "aux.label_aug.protocol=one"],
    "la-all": OFF + ["aux.label_aug.d_weight=1.0", "aux.label_aug.g_weight=1.0", "aux.label_aug.protocol=all"],
    "contrastive": OFF + ["aux.contrastive.d_weight=1.0"],
}
DIFFAUG = "train.diffaug=translation,cutout"


def main() -> None:
    ap = bq.parser(__doc__)
    ap.add_argument("--no-diffaug", action="store_true", help="only the entries without DiffAugment")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ", ".join(METHODS))
    ap.add_argument("--no-probe", action="store_true", help="skip the D probes (FID only)")
    ap.set_defaults(out=Path("/tmp/bench_d_ssl"))
    args = ap.parse_args()
    args.probe = not args.no_probe
    config = (args.configs or ["configs/ssgan_fmnist.yaml"])[0]
    entries: list[bq.Entry] = [] if args.no_baseline else [(bq.CANONICAL, None, [])]
    for m in args.methods.split(","):
        entries.append((m, config, list(METHODS[m])))
        if not args.no_diffaug:
            entries.append((f"{m}+diffaug", config, [*METHODS[m], DIFFAUG]))
    result = bq.run_bench(entries, args, "bench_d_ssl.json")
    ours = {k: v for k, v in result["summary"].items() if k != bq.CANONICAL}
    best_fid = min(ours, key=lambda k: ours[k]["fid"])
    best_probe = max(ours, key=lambda k: ours[k].get("probe_0.01", float("-inf")))
    verdict = {"best_fid": [best_fid, ours[best_fid]["fid"]], "best_probe_1pct": [best_probe, ours[best_probe].get("probe_0.01")]}
    print(json.dumps(verdict))


if __name__ == "__main__":
    main()
