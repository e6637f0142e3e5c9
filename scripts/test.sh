#!/usr/bin/env bash
# Set up a virtual environment (once) and run the test suite. The README's test command and
# what CI runs (.ci/run calls this very script).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip 2>/dev/null || true
# The core install needs no torch. When a later install step needs it, it must be
# `pip install torch==2.13.0` first (the local CPU wheel), never a plain `torch`.
.venv/bin/python -m pip install -q -e '.[dev]'

set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
