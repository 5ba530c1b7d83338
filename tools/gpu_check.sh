#!/usr/bin/env bash
# The GPU check (issue 25): main-job throughput at fp32 / bf16 / fp16, a 1-GPU torchrun run that must resume exactly,
# `gan-ssl fid` on CUDA and Mimicry's SSGAN32 side by side, as one JSON file (tools/gpu_check.py says more).
#   bash tools/gpu_check.sh --prepare              # here: Fashion-MNIST, the FID extractor and Mimicry into .bench/
#   bash tools/gpu_check.sh --out gpu_check.json   # on a GPU machine, with .bench carried along
#   bash tools/gpu_check.sh --cpu --steps 2        # the CPU dry run (tests/test_gpu_check.py)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
if [ -d .bench/data ] && [ -z "${GAN_SSL_DATA:-}" ]; then export GAN_SSL_DATA="$PWD/.bench/data"; fi
if [ -d .bench/home ] && [ -z "${GAN_SSL_HOME:-}" ]; then export GAN_SSL_HOME="$PWD/.bench/home"; fi
exec "$PY" tools/gpu_check.py "$@"
