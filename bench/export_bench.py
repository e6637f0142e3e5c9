#!/usr/bin/env python
"""Benchmark of ``curate export`` (a script, not a test).

Generates 200k synthetic scored traces of realistic size (question ~100 B, thinking 2-4 KB in
blank-line paragraphs, a short boxed answer; ``score``, ``answer_correct``, ``length_tokens``,
``repetition``, ``has_answer``, ``step_rewards`` as ``curate score`` writes them; ids shuffled
against input order) as zstd Parquet under ``bench/_work/export-<rows>/`` (git-ignored, kept for
later runs), then times, each run in a fresh subprocess so that the peak RSS (``ru_maxrss``) is
the run's own:

* ``export``: ``run_stage("export", IN, OUT)`` with the defaults (messages, r1, rows held in
  memory; shards under ``OUT/data/``, the card ``OUT/_README.md``);
* ``export-spill``: the same with ``--buffer 128MiB``, which forces the disk path (lz4 spill,
  rank windows of 64 MiB);
* ``baseline``: ``pl.read_parquet(IN/*.parquet).sort(score desc, id).write_parquet(OUT)``: the
  same rows ranked by the obvious in-memory route (no records built, no card).

Reports medians of ``--repeats`` runs (default 3, variants interleaved): rows/s, MB/s of text
(question + thinking + response bytes / wall time of the work, interpreter start-up excluded),
peak RSS, and each export's time and RSS against the baseline of the same run. Every variant
runs with POLARS_MAX_THREADS, RAYON_NUM_THREADS and OMP_NUM_THREADS set to ``--threads``
(default 2).

    .venv/bin/python bench/export_bench.py                   # 200k rows, 3 repeats
    .venv/bin/python bench/export_bench.py --rows 20000 --repeats 1   # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _child import emit, run_child

HERE = Path(__file__).resolve().parent
VARIANTS = ("export", "export-spill", "baseline")
SPILL_BUFFER = 128 * 1024**2
GEN_VERSION = 1
ROWS_PER_FILE = 50_000
POOL_WORDS = 3_000_000

WORDS = ("the of and to a in is that we so it for this with as be by on not are from at let then "
         "sum product term side root case step check wait hmm okay therefore thus hence because "
         "equation function integer prime remainder triangle angle area circle radius slope "
         "probability count multiply divide add subtract answer result first second next now "
         "x y z n k m = + - \\frac{1}{2} \\sqrt{3} 2 3 5 7 11 13 17 19 23 29 31 37 41 43").split()


def generate(folder: Path, rows: int, seed: int) -> None:
    """Traces cut from one long random word stream (so that they compress like real text,
    ~2.5-3x, instead of repeating themselves)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    stamp = folder.parent / f"{folder.name}.meta.json"
    meta = {"rows": rows, "seed": seed, "version": GEN_VERSION}
    if stamp.exists() and json.loads(stamp.read_text()) == meta:
        return
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    words = np.array(WORDS)
    stream = words[rng.integers(0, len(words), POOL_WORDS)].astype(object)
    # A paragraph break every ~60 words: steps, as a reasoning model writes them.
    stream[rng.random(POOL_WORDS) < 1 / 60] = "\n\n"
    pool = " ".join(stream.tolist()).replace(" \n\n ", "\n\n")
    sources = np.array(["openr1/math", "openthoughts/math", "limo", "s1k"])
    for f, start in enumerate(range(0, rows, ROWS_PER_FILE)):
        n = min(ROWS_PER_FILE, rows - start)
        idx = np.arange(start, start + n)
        lengths = rng.integers(2000, 4000, n)
        offsets = rng.integers(0, len(pool) - 4100, n)
        traj = [pool[o:o + k].strip() for o, k in zip(offsets.tolist(), lengths.tolist(),
                                                      strict=True)]
        q = idx // 4
        score = rng.random(n).astype(np.float32)
        steps = [rng.random(int(k)).astype(np.float32) for k in rng.integers(3, 40, n)]
        table = pa.table({
            "id": [f"t{(i * 7919) % rows:08d}" for i in idx],  # ids shuffled against order
            "question": [f"Problem {k}: find all integers x with {k % 97} x = {k} modulo "
                         f"{k % 13 + 2}, and give their sum." for k in q],
            "trajectory": traj,
            "response": [f"Therefore the sum is \\boxed{{{k % 97}}}." for k in q],
            "reference_answer": [str(k % 97) for k in q],
            "source": sources[q % len(sources)].tolist(),
            "score": pa.array(score, pa.float32(), mask=rng.random(n) < 0.02),
            "answer_correct": pa.array(rng.random(n) < 0.6),
            "length_tokens": pa.array(lengths // 4, pa.int32()),
            "repetition": pa.array(rng.random(n).astype(np.float32) * 0.2),
            "has_answer": pa.array(np.ones(n, dtype=bool)),
            "step_rewards": pa.array(steps, pa.list_(pa.float32())),
        })
        pq.write_table(table, folder / f"part-{f:05d}.parquet", compression="zstd",
                       row_group_size=2048)
    stamp.write_text(json.dumps(meta))


def _runner(variant: str, inp: str, out: str) -> None:
    """One timed run, in its own process: prints BENCH_RESULT {json}."""
    import polars as pl

    from curate.export.stage import ExportOptions
    from curate.stage import run_stage

    t0 = time.perf_counter()
    if variant == "baseline":
        df = (pl.read_parquet(f"{inp}/*.parquet")
              .sort(["score", "id"], descending=[True, False], nulls_last=True))
        os.makedirs(out, exist_ok=True)
        df.write_parquet(f"{out}/train.parquet", compression="zstd")
        rows = df.height
        text = int(sum(df[c].str.len_bytes().sum() for c in ("question", "trajectory",
                                                             "response")))
    else:
        opts = ExportOptions(buffer_bytes=SPILL_BUFFER) if variant == "export-spill" \
            else ExportOptions()
        s = run_stage("export", [inp], out, opts)
        rows, text = s["rows_out"], s["text_bytes"]
    wall = time.perf_counter() - t0
    out_bytes = sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file())
    emit({"wall_s": wall, "rows": rows, "text_bytes": text, "out_bytes": out_bytes})


def run_once(variant: str, inp: Path, work: Path, threads: int) -> dict:
    return run_child(__file__, variant, inp, work / f"out-export-{variant}-{os.getpid()}",
                     threads)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=HERE / "_work")
    args = ap.parse_args(argv)

    inp = args.work / f"export-{args.rows}"
    t0 = time.perf_counter()
    # In a child process: Linux keeps a process's peak RSS across fork and exec, so a parent
    # that had built the data in memory would lend its peak to every timed child.
    subprocess.run([sys.executable, __file__, "_gen", str(inp), str(args.rows), str(args.seed)],
                   check=True)
    size = sum(p.stat().st_size for p in inp.glob("*.parquet"))
    print(f"input: {inp} ({args.rows:,} rows, {size / 1e6:.1f} MB of Parquet; ready in "
          f"{time.perf_counter() - t0:.1f} s)")
    for p in inp.glob("*.parquet"):  # warm the page cache for every variant alike
        with open(p, "rb") as fh:
            while fh.read(1 << 20):
                pass
    results: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for _ in range(args.repeats):
        for v in VARIANTS:
            results[v].append(run_once(v, inp, args.work, args.threads))

    med = {}
    for v in VARIANTS:
        rs = results[v]
        wall = statistics.median(r["wall_s"] for r in rs)
        rss = statistics.median(r["maxrss_kib"] for r in rs) / 1024
        text_mb = rs[0]["text_bytes"] / 1e6
        med[v] = (wall, rss)
        print(f"{v:13s} {rs[0]['rows'] / wall:>9,.0f} rows/s  {text_mb / wall:7.1f} MB/s of "
              f"text ({text_mb:,.0f} MB)  {wall:7.2f} s  peak RSS {rss:7.1f} MiB  output "
              f"{rs[0]['out_bytes'] / 1e6:,.1f} MB  (median of {args.repeats})")
    bw, br = med["baseline"]
    for v in ("export", "export-spill"):
        w, r = med[v]
        print(f"{v} vs baseline (pl.read_parquet().sort().write_parquet()): time {w / bw:.2f}x, "
              f"peak RSS {r / br:.2f}x")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_run":
        _runner(*sys.argv[2:5])
    elif len(sys.argv) > 1 and sys.argv[1] == "_gen":
        generate(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(main())
