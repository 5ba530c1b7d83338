#!/usr/bin/env bash
# Set everything up, then run the whole test suite. Fails when any test fails or when no test ran.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
printf '\n==> running the test suite (pytest)\n'
set +e
.venv/bin/python -m pytest -q --durations=10 "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi
exit "$rc"
