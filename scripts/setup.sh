#!/usr/bin/env bash
# Set up curate in .venv (once; reruns install nothing new): the core, the transformers engine
# and the offline signals scorer. The README's first command runs this, then
# `.venv/bin/curate run sample_data/demo.toml`.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# torch first, pinned to the local CPU wheel: a bare `torch` requirement pulls a CUDA build.
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e '.[hf,signals]' 'transformers>=5.16.1,<5.20'
