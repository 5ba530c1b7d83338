#!/usr/bin/env bash
# Set up gan_ssl on a fresh Debian machine: Fashion-MNIST (Debian package), .venv, torch, the package.
# Safe to run again: every step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\n==> %s\n' "$*"; }
quiet_pip() { .venv/bin/pip install -q --disable-pip-version-check "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; }

TORCH_PINS="torch==2.14.1 torchvision==0.29.1"   # pip on this Python 3.11 takes both from local disk
PY=${PYTHON:-python3}

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ -z "${GAN_SSL_DATA:-}" ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
    say "installing Debian's dataset-fashion-mnist (Fashion-MNIST IDX files -> /usr/share/datasets/fashion-mnist)"
    $SUDO apt-get update -q || true
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist \
      || echo "warning: could not install dataset-fashion-mnist; set GAN_SSL_DATA to a folder with the IDX files"
  else
    echo "note: no apt-get; put the Fashion-MNIST IDX files in \$GAN_SSL_DATA/fashion-mnist (or let torchvision download them)"
  fi
else
  say "Fashion-MNIST data present"
fi

if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $($PY --version)"
  $PY -m venv .venv
fi
if ! .venv/bin/python -c "import torch, torchvision" >/dev/null 2>&1; then
  say "installing $TORCH_PINS (first, so nothing else pulls a different torch)"
  quiet_pip $TORCH_PINS
else
  say "torch $(.venv/bin/python -c 'import torch; print(torch.__version__)') present"
fi
say "installing gan_ssl (editable) with its test extra"
quiet_pip -e '.[test]'
.venv/bin/python -c "import gan_ssl, torch, torch_fidelity, lpips, click; print('gan_ssl', gan_ssl.__version__, '| torch', torch.__version__)"
