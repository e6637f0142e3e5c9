#!/usr/bin/env python
"""The signals scorer: speed on 2,000 real traces, and ranking quality on every labelled file.

    python bench/signals_bench.py speed              # traces/s, static vs full encoder
    python bench/signals_bench.py quality            # curate eval on ../shared/data/real
    python bench/signals_bench.py all --record       # both, appended to bench/RESULTS.md

Speed: `curate score` end to end (read, score, commit) on the first 2,000 rows of
processbench.parquet (maths solutions of 4 to 40 steps), torch pinned to 2 threads, medians of
``--repeats`` runs; the baseline is the same scorer with the full all-MiniLM-L6-v2 transformer
as encoder, timed in the same run on the first 50 rows (it is 10-100x slower).
Quality: the eval tables of `curate eval` for the signals scorer on each labelled file, plus the
tiny random PRM on ProcessBench to show the step-level path end to end (its F1 is meaningless).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real"
sys.path.insert(0, str(ROOT))

LABELLED = [  # file, extra eval options
    ("gsm8k_model_solutions.parquet", {}),
    ("qwen25math_rm_maj.parquet", {"baseline_columns": ["extra_json.rm_score"]}),
    ("processbench.parquet", {}),
    ("prmbench_target400.parquet", {}),
    ("prmbench_qwq.parquet", {}),
    ("bigbench_mistake.parquet", {}),
]


def _score(inputs, out, encoder, limit):
    from curate.scoring.stage import ScoreOptions
    from curate.stage import run_stage

    t0 = time.perf_counter()
    s = run_stage("score", inputs, out, ScoreOptions(encoder=encoder, limit=limit), overwrite=True)
    return time.perf_counter() - t0, s["rows_in"]


def speed(repeats: int) -> list[str]:
    import torch

    torch.set_num_threads(2)
    from curate.signals.encoder import load_encoder

    load_encoder("minilm-static")  # distilled once, outside the timing
    src = [str(REAL / "processbench.parquet")]
    fast, slow = [], []
    with tempfile.TemporaryDirectory() as tmp:
        _score(src, f"{tmp}/warm", "minilm-static", 50)
        for r in range(repeats):
            t, n = _score(src, f"{tmp}/s{r}", "minilm-static", 2000)
            fast.append(n / t)
            t, n = _score(src, f"{tmp}/f{r}", "minilm", 50)
            slow.append(n / t)
        t, n = _score(src, f"{tmp}/none", "none", 2000)
    f, s = statistics.median(fast), statistics.median(slow)
    return [f"signals scorer, processbench first 2,000 rows, 2 threads, medians of {repeats}:",
            f"  minilm-static encoder: {f:,.1f} traces/s (target >= 50)"
            + ("" if f >= 50 else "  TARGET MISSED"),
            f"  full minilm encoder (baseline, 50 rows): {s:,.1f} traces/s",
            f"  static / full: {f / s:.1f}x",
            f"  --encoder none (answer + hygiene only): {n / t:,.1f} traces/s"]


def _fmt(v, d=3):
    return "  -  " if v is None else f"{v:.{d}f}"


def quality(encoder: str) -> list[str]:
    from curate.evaluation.stage import EvalOptions, eval_stage
    from curate.scoring.stage import ScoreOptions

    lines = [f"signals scorer ({encoder}) on the labelled real files: AUROC [95% CI] / AP / "
             "top-1 per question (random, oracle) / ProcessBench F1 (threshold)"]
    sig_names = ("answer_correct", "alignment", "coherence", "quality", "ends_cleanly",
                 "has_answer", "repetition", "length_tokens", "min_step_reward")
    for name, extra in LABELLED:
        opts = EvalOptions(score_options=ScoreOptions(encoder=encoder), **extra)
        r = eval_stage([str(REAL / name)], opts)
        ci = r.get("auroc_ci95")
        top = (f"top-1 {_fmt(r['top1_accuracy'])} (random "
               f"{_fmt(r.get('baselines', {}).get('random', {}).get('top1_accuracy'))}, oracle "
               f"{_fmt(r.get('oracle_top1'))}, {r.get('questions', 0)} q)"
               if r.get("questions") else "top-1 n/a (one sample per question)")
        step = r.get("step_level") or {}
        lines.append(f"{name}: {r['labelled_rows']} labelled ({r.get('positives', 0)} correct)"
                     + (f" [{r['label_note']}]" if r.get("label_note") else ""))
        lines.append(f"  score: AUROC {_fmt(r['auroc'])}"
                     + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
                     + f", AP {_fmt(r['average_precision'])}, {top}"
                     + (f", ProcessBench F1 {_fmt(step.get('f1'))} (threshold "
                        f"{step.get('threshold')}, {step.get('test_rows')} test rows)"
                        if step else ""))
        sig = r.get("signals", {})
        lines.append("  signals AUROC: " + ", ".join(
            f"{k} {_fmt(sig[k]['auroc'])}" for k in sig_names if k in sig))
        for b, v in r.get("baselines", {}).items():
            if b in ("longest", "shortest") or b.startswith("extra_json"):
                lines.append(f"  baseline {b}: AUROC {_fmt(v.get('auroc'))}, top-1 "
                             f"{_fmt(v.get('top1_accuracy'))}")
    return lines


def tiny_prm() -> list[str]:
    from curate.evaluation.stage import EvalOptions, eval_stage
    from curate.scoring.stage import ScoreOptions
    from curate.testing.tiny_models import build_step_prm

    with tempfile.TemporaryDirectory() as tmp:
        model = build_step_prm(Path(tmp) / "prm")
        r = eval_stage([str(REAL / "processbench.parquet")],
                       EvalOptions(limit=400, score_options=ScoreOptions(
                           model=str(model), device="cpu", engine="hf")))
    s = r.get("step_level") or {}
    return [f"tiny RANDOM step PRM (meaningless weights; shows the step-level path runs end to "
            f"end), processbench first 400 rows: AUROC {_fmt(r['auroc'])}, ProcessBench F1 "
            f"{_fmt(s.get('f1'))} at threshold {s.get('threshold')} on {s.get('test_rows')} "
            f"test rows, {s.get('length_mismatch')} label-count mismatches"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("speed", "quality", "all"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--encoder", default="minilm-static")
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    lines = [f"signals bench, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, "
             f"{os.cpu_count()} cpus"]
    if args.what in ("speed", "all"):
        lines += speed(args.repeats)
    if args.what in ("quality", "all"):
        lines += quality(args.encoder)
        lines += tiny_prm()
    print("\n".join(lines))
    if args.record:
        with open(ROOT / "bench" / "RESULTS.md", "a") as f:
            f.write("\n## signals bench (issue 4)\n\n```\n" + "\n".join(lines) + "\n```\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
