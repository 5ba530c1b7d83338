#!/usr/bin/env bash
# The main job: set up, train SSGAN on Fashion-MNIST briefly, then FID and the discriminator's probe accuracy.
#   STEPS=2000 bash tools/demo.sh      # longer run (default 1000 G steps, ~6 min on 2 CPU cores)
#   OUT=runs/other bash tools/demo.sh  # another run folder; an existing run is resumed up to STEPS
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-1000}
OUT=${OUT:-runs/demo}
bash tools/setup.sh
G=.venv/bin/gan-ssl
say() { printf '\n==> %s\n' "$*"; }

if ! $G evaluator info --features fashion-mnist-cnn >/dev/null 2>&1; then
  say "training the offline FID feature extractor (small Fashion-MNIST CNN, once per machine)"
  $G evaluator train --data fashion-mnist
fi

RESUME=""
[ -f "$OUT/checkpoints/latest.pt" ] && RESUME="--resume"
say "training SSGAN (SN-GAN + self-modulated BN + rotation loss) for $STEPS G steps -> $OUT"
$G train configs/ssgan_fmnist.yaml --out "$OUT" --set train.steps="$STEPS" $RESUME

say "FID of 10,000 EMA samples against the Fashion-MNIST test set"
$G fid "$OUT" fashion-mnist:test --n 10000 --quiet | tee "$OUT/fid.txt"

say "linear probe of the discriminator's features (Fashion-MNIST train -> test)"
$G probe "$OUT" --data fashion-mnist --label-fraction 0.01,0.1,1.0 --seeds 1 | tee "$OUT/probe.txt"

say "done"
echo "samples:    $(ls "$OUT"/samples/*.png | tail -1)"
echo "checkpoint: $OUT/checkpoints/latest.pt"
echo "results:    $OUT/fid.txt $OUT/probe.txt"
