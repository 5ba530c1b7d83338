#!/usr/bin/env bash
# The main job: set up, train SSGAN on Fashion-MNIST for a few minutes, then samples, FID, the discriminator's
# probe accuracy and a one-page HTML report. About 11 minutes on a 2-core CPU from a fresh machine, install and the FID
# extractor included.
#   MINUTES=20 bash tools/demo.sh      # a longer run (default 8 training minutes; configs/ssgan_fmnist.yaml says why)
#   OUT=runs/other bash tools/demo.sh  # another run folder; an existing run is resumed up to the budget
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${MINUTES:-8}
OUT=${OUT:-runs/demo}
bash tools/setup.sh
G=.venv/bin/gan-ssl
say() { printf '\n==> %s\n' "$*"; }
t0=$(date +%s)

if ! $G evaluator info --features fashion-mnist-cnn >/dev/null 2>&1; then
  say "training the offline FID feature extractor (small Fashion-MNIST CNN, once per machine, about 1-4 minutes)"
  $G evaluator train --data fashion-mnist --quiet
fi

RESUME=""
[ -f "$OUT/checkpoints/latest.pt" ] && RESUME="--resume"
say "training SSGAN (rotation self-supervision on D) for $MINUTES minutes -> $OUT"
# eval.every: in-training FID (2k samples vs training images) and a fast D probe for the report's curves, about
# 10 s each here, outside the minutes budget; they leave the training itself unchanged
$G train configs/ssgan_fmnist.yaml --out "$OUT" --set train.minutes="$MINUTES" --set eval.every=2000 $RESUME

say "FID of 10,000 EMA samples against the Fashion-MNIST test set"
$G fid "$OUT" fashion-mnist:test --n 10000 --kid --prc --quiet | tee "$OUT/fid.txt"

say "linear probe of the discriminator's features with 1% and 10% of the labels (Fashion-MNIST train -> test), against raw pixels"
# 100% of the labels adds about 4 minutes here: gan-ssl probe runs/demo --data fashion-mnist --baseline pixels --baseline random
$G probe "$OUT" --data fashion-mnist --label-fraction 0.01,0.1 --seeds 1 --baseline pixels --quiet | tee "$OUT/probe.txt"

say "one-page report of the run (curves, samples over time, config, hardware) -> $OUT/report.html"
$G report "$OUT" >/dev/null

say "done in $(( ($(date +%s) - t0) / 60 )) min $(( ($(date +%s) - t0) % 60 )) s (after set-up)"
echo "checkpoint: $OUT/checkpoints/latest.pt"
echo "results:    $OUT/fid.txt $OUT/probe.txt $OUT/metrics.jsonl"
echo "final grid: $(ls "$OUT"/samples/*.png | tail -1)   <- open it: 64 EMA samples"
echo "report:     $OUT/report.html   <- open it in a browser: one self-contained page"
