#!/usr/bin/env bash
# The README's main job: set up (once), read the bundled real traces, score them offline on CPU
# with the signals scorer, keep the best 4 per question, remove duplicates and benchmark
# contamination, measure how the score ranks the labelled traces (curate eval), then
# score them again with a tiny random step PRM built offline (a stand-in for
# Gen-Verse/ReasonFlux-PRM-7B, which cannot be downloaded here).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# torch first, pinned to the local CPU wheel: a bare `torch` requirement pulls a CUDA build.
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e '.[hf,signals]' 'transformers>=5.16.1,<5.20'

.venv/bin/curate read sample_data/ -o out/read
.venv/bin/curate score out/read -o out/scored
.venv/bin/curate filter out/scored -o out/filtered --per-question 4 --overwrite
.venv/bin/curate dedup out/filtered -o out/deduped --overwrite
.venv/bin/curate decontam out/deduped -o out/clean --against math500,gsm8k,aime24,aime25 --overwrite
.venv/bin/curate eval out/scored
.venv/bin/curate report out/
[ -f out/tiny-prm/config.json ] || \
  .venv/bin/python -m curate.testing.tiny_models out/tiny-prm --context 4096 >/dev/null
.venv/bin/curate score out/read -o out/scored-prm --model out/tiny-prm
