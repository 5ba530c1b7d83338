#!/usr/bin/env bash
# Set everything up (and Debian's chromium for the report test), then run the whole test suite. Fails when any test fails or when no test ran.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
say() { printf '\n==> %s\n' "$*"; }
if ! command -v chromium >/dev/null 2>&1; then  # the headless browser tests/test_report.py renders `gan-ssl report` pages in
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
    say "installing Debian's chromium (headless; the report test renders HTML pages in it)"
    $SUDO apt-get update -q || true
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium \
      || echo "warning: could not install chromium; tests/test_report.py will fail without it"
  else
    echo "note: no apt-get; install chromium for tests/test_report.py"
  fi
else
  say "chromium present"
fi
printf '\n==> running the test suite (pytest)\n'
set +e
.venv/bin/python -m pytest -q --durations=10 "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi
exit "$rc"
