#!/usr/bin/env python
"""Benchmark of ``curate filter`` (a script, not a test).

Generates 200k short synthetic traces with a ``score`` column and 8 samples per question
(zstd Parquet under ``bench/_work/filter-<rows>/``, git-ignored, kept for later runs), then times,
each run in a fresh subprocess so that the peak RSS (``ru_maxrss``) is the run's own:

* ``top-k``: ``run_stage("filter", ...)`` with ``--top-k 5000`` (two passes: bounded candidates,
  then the writes);
* ``per-question``: the filter stage with ``--per-question 2``;
* ``where+min-score``: the filter stage with
  ``--where "source = 'synthetic/aime' OR length_tokens > 60" --min-score 0.3`` (one pass, no
  selection);
* ``baseline-top-k``: ``pl.read_parquet(...).sort(score desc, id).head(5000)`` written with
  ``write_parquet``: a full in-memory sort, the obvious alternative to the bounded buffer.

Reports medians of ``--repeats`` runs (default 3, variants interleaved): rows/s (input rows /
wall time of the work, interpreter start-up excluded), peak RSS, and for top-k the ratios
against the baseline measured in the same run. Every variant runs with POLARS_MAX_THREADS,
RAYON_NUM_THREADS and OMP_NUM_THREADS set to ``--threads`` (default 2).

    .venv/bin/python bench/filter_bench.py                 # 200k rows, 3 repeats
    .venv/bin/python bench/filter_bench.py --rows 20000 --repeats 1   # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

from _child import emit, run_child

HERE = Path(__file__).resolve().parent
SAMPLES_PER_QUESTION = 8
TOP_K = 5000
WHERE = "source = 'synthetic/aime' OR length_tokens > 60"
MIN_SCORE = 0.3
VARIANTS = ("top-k", "baseline-top-k", "per-question", "where+min-score")
GEN_VERSION = 1
ROWS_PER_FILE = 50_000

WORDS = ("the of and to a in is that we so it for this with as be by on not are from at let then "
         "sum product term side root case step check wait hmm okay therefore thus hence because "
         "equation function integer prime remainder triangle angle area circle radius slope "
         "probability count multiply divide add subtract answer result").split()


def generate(folder: Path, rows: int, seed: int) -> None:
    """Short traces, 8 samples per question, float32 score (5% null), length_tokens."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    stamp = folder.parent / f"{folder.name}.meta.json"  # beside: the folder is the INPUT
    meta = {"rows": rows, "seed": seed, "version": GEN_VERSION}
    if stamp.exists() and json.loads(stamp.read_text()) == meta:
        return
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    words = np.array(WORDS)
    sources = np.array(["synthetic/aime", "synthetic/amc", "synthetic/gsm", "synthetic/math"])
    for f, start in enumerate(range(0, rows, ROWS_PER_FILE)):
        n = min(ROWS_PER_FILE, rows - start)
        idx = np.arange(start, start + n)
        q = idx // SAMPLES_PER_QUESTION
        lengths = rng.integers(10, 120, n)
        traj = [" ".join(words[rng.integers(0, len(words), k)]) for k in lengths]
        score = rng.random(n).astype(np.float32)
        score_mask = rng.random(n) < 0.05
        table = pa.table({
            # ids shuffled against input order, so that id ties are not input order
            "id": [f"t{(i * 7919) % rows:07d}" for i in idx],
            "question": [f"Problem {k}: find the value of x when {k % 97} x = {k}." for k in q],
            "trajectory": traj,
            "response": [f"The answer is \\boxed{{{k % 97}}}." for k in q],
            "reference_answer": [str(k % 97) for k in q],
            "source": sources[q % len(sources)].tolist(),
            "score": pa.array(score, pa.float32(), mask=score_mask),
            "length_tokens": pa.array(lengths + 6, pa.int32()),
        })
        pq.write_table(table, folder / f"part-{f:05d}.parquet", compression="zstd",
                       row_group_size=8192)
    stamp.write_text(json.dumps(meta))


def _runner(variant: str, inp: str, out: str) -> None:
    """One timed run, in its own process: prints BENCH_RESULT {json}."""
    # Imports are not the work: both variants import polars and curate before the clock.
    import polars as pl

    from curate.select.filter import FilterOptions
    from curate.stage import run_stage

    t0 = time.perf_counter()
    if variant == "baseline-top-k":
        top = (pl.read_parquet(f"{inp}/*.parquet")
               .sort(["score", "id"], descending=[True, False], nulls_last=True).head(TOP_K))
        os.makedirs(out, exist_ok=True)
        top.write_parquet(f"{out}/part-00000.parquet")
        kept = top.height
    else:
        opts = {"top-k": FilterOptions(top_k=TOP_K),
                "per-question": FilterOptions(per_question=2),
                "where+min-score": FilterOptions(where=[WHERE], min_score=MIN_SCORE)}[variant]
        kept = run_stage("filter", [inp], out, opts)["rows_out"]
    wall = time.perf_counter() - t0
    emit({"wall_s": wall, "kept": kept})


def run_once(variant: str, inp: Path, work: Path, threads: int) -> dict:
    return run_child(__file__, variant, inp, work / f"out-{variant}-{os.getpid()}",
                     threads)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=HERE / "_work")
    args = ap.parse_args(argv)

    inp = args.work / f"filter-{args.rows}"
    t0 = time.perf_counter()
    generate(inp, args.rows, args.seed)
    print(f"input: {inp} ({args.rows:,} rows, {SAMPLES_PER_QUESTION} samples per question, "
          f"{sum(p.stat().st_size for p in inp.glob('*.parquet')) / 1e6:.1f} MB; ready in "
          f"{time.perf_counter() - t0:.1f} s)")
    for p in inp.glob("*.parquet"):  # warm the page cache for every variant alike
        p.read_bytes()
    results: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for _ in range(args.repeats):
        for v in VARIANTS:
            results[v].append(run_once(v, inp, args.work, args.threads))

    med = {}
    for v in VARIANTS:
        wall = statistics.median(r["wall_s"] for r in results[v])
        rss = statistics.median(r["maxrss_kib"] for r in results[v]) / 1024
        med[v] = (wall, rss)
        print(f"{v:16s} {args.rows / wall:>12,.0f} rows/s  {wall:7.2f} s  peak RSS "
              f"{rss:7.1f} MiB  kept {results[v][0]['kept']:,}  (median of {args.repeats})")
    (cw, cr), (bw, br) = med["top-k"], med["baseline-top-k"]
    print(f"top-k vs baseline (pl.read_parquet().sort().head({TOP_K})): time {cw / bw:.2f}x, "
          f"peak RSS {cr / br:.2f}x")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_run":
        _runner(*sys.argv[2:5])
    else:
        sys.exit(main())
