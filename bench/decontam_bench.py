#!/usr/bin/env python
"""`curate decontam`: throughput on 200k synthetic traces, recall on the real data's overlaps.

    python bench/decontam_bench.py                       # everything (~6 min here)
    python bench/decontam_bench.py --rows 20000 --repeats 1 --on question   # smoke run
    python bench/decontam_bench.py --record              # append to bench/RESULTS.md

1. **Throughput.** ``--rows`` (200,000) synthetic traces under ``bench/_work/decontam-<rows>/in/``
   (kept and reused): a question, a thinking part of ~250 words and a response of ~40 words.
   Questions are real (ProcessBench olympiad/omnimath, BIG-Bench-Mistake, Marco-o1: none in
   the four benchmarks) with a synthetic sentence around them; 2% of the rows carry a benchmark
   question as is, 1% one wrapped in a prompt template with its punctuation changed, 1% a
   13-word window of one inside other text, and 0.5% a whole benchmark question quoted in the
   thinking only (found by ``--on all``, not by ``--on question``). Each planted row is known,
   so recall and false positives on the synthetic set are printed too. The decontam stage
   (``curate.stage.run_stage("decontam", ...)``) against math500, gsm8k, aime24, aime25 runs
   in a fresh interpreter per run (peak RSS = its ``ru_maxrss``; time = the stage's own,
   interpreter start-up excluded), for each ``--on`` value, medians of ``--repeats``.
2. **Lookup structure.** The ways to test n-grams against the benchmark set, on the words of
   real ProcessBench solutions: xxh3_64 of each joined n-gram into a Python ``set``, the same
   hashes in a sorted numpy array with ``np.searchsorted``, and curate's (one hash per word, a
   polynomial over the window computed for the whole batch, ``np.searchsorted``).
3. **Recall** on the known overlaps of ``../shared/data/README.md`` through the bundled names
   and through the file paths (must be 100%), and the rows flagged where nothing is known.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real"
sys.path.insert(0, str(ROOT))

BENCHES = ["math500", "gsm8k", "aime24", "aime25"]
TAG = "@@result "
WRAPPERS = [
    "Solve the following math problem step by step. {q} Put the final answer in \\boxed{{}}.",
    "Return your final response within \\boxed{{}}. {q}",
    "Problem: \"{q}\" Think carefully.",
]


# --- data ---------------------------------------------------------------------------------------


def _real_questions() -> tuple[list[str], list[str]]:
    """(clean questions, benchmark questions). A few ProcessBench olympiad/omnimath questions
    are MATH-500 problems reformatted; any question sharing an 8-word window (lower case,
    whitespace split: a check independent of curate's) with a benchmark question is left out of
    the clean pool, so that "unplanted flagged" counts curate's false positives."""
    import pyarrow.parquet as pq

    clean = []
    pb = pq.read_table(REAL / "processbench.parquet", columns=["source", "question"]).to_pylist()
    clean += [r["question"] for r in pb if r["source"] in ("processbench/olympiadbench",
                                                           "processbench/omnimath")]
    for f in ("bigbench_mistake.parquet", "marco_o1_cot_demo.parquet"):
        clean += pq.read_table(REAL / f, columns=["question"]).column("question").to_pylist()
    bench = []
    for name in BENCHES:
        path = ROOT / "curate" / "select" / "benchmarks" / f"{name}.parquet"
        bench += pq.read_table(path, columns=["question"]).column("question").to_pylist()

    def grams(text):
        w = text.lower().split()
        return {" ".join(w[i:i + 8]) for i in range(max(1, len(w) - 7))}

    seen = set().union(*(grams(b) for b in bench))
    return sorted(q for q in set(clean) if not grams(q) & seen), bench


def ensure_data(work: Path, rows: int, seed: int = 0) -> tuple[Path, dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    meta_path = work / f"decontam-{rows}" / "planted.json"
    folder = meta_path.parent / "in"  # the traces alone: INPUT is this folder
    if meta_path.is_file():
        return folder, json.loads(meta_path.read_text())
    shutil.rmtree(meta_path.parent, ignore_errors=True)
    folder.mkdir(parents=True)
    from curate.select.decontam import words

    rng = random.Random(seed)
    clean, bench = _real_questions()
    long_items = [b for b in bench if len(words(b)) >= 20]
    vocab = [f"{a}{b}" for a in ("al", "be", "ko", "ru", "ti", "xe", "mo", "pa", "zu", "ne")
             for b in ("ra", "to", "mi", "son", "lek", "fy", "dor", "quin", "vas", "ept")]
    vocab += ["the", "so", "we", "then", "is", "of", "and", "=", "+", "x", "y", "2", "3", "10"]
    paragraphs = [" ".join(rng.choices(vocab, k=rng.randint(30, 80))) for _ in range(4000)]
    planted: dict[str, list[str]] = {"exact": [], "wrapped": [], "window": [], "thinking": []}
    t0 = time.time()
    per_file = 50_000
    for start in range(0, rows, per_file):
        recs = []
        for i in range(start, min(rows, start + per_file)):
            rid = f"s{i:07d}"
            q = rng.choice(clean)
            think = "\n\n".join(rng.sample(paragraphs, 4)) + f" step {i}"
            u = rng.random()
            if u < 0.02:
                q = rng.choice(bench)
                planted["exact"].append(rid)
            elif u < 0.03:
                bq = rng.choice(bench).replace("$", "").replace("?", " ?")
                q = rng.choice(WRAPPERS).format(q=bq)
                planted["wrapped"].append(rid)
            elif u < 0.04:  # 13 consecutive words of a benchmark question, as curate counts
                w = words(rng.choice(long_items))
                k = rng.randint(0, len(w) - 13)
                q = f"{rng.choice(paragraphs)[:80]} {' '.join(w[k:k + 13])} {q[:200]}"
                planted["window"].append(rid)
            elif u < 0.045:
                think = f"The problem says: {rng.choice(bench)}\n\n{think}"
                planted["thinking"].append(rid)
            else:
                q = f"{q} ({rng.choice(paragraphs)[:60]})"
            recs.append({"id": rid, "question": q, "trajectory": think,
                         "response": rng.choice(paragraphs)[:240] + f" \\boxed{{{i % 97}}}",
                         "source": "synthetic"})
        pq.write_table(pa.Table.from_pylist(recs), folder / f"part-{start // per_file:05d}"
                       ".parquet", compression="zstd")
    meta = {"rows": rows, "seed": seed, "planted": planted, "pool": len(clean),
            "generated_s": round(time.time() - t0, 1)}
    meta_path.write_text(json.dumps(meta))
    return folder, meta


# --- one timed run, in its own process -----------------------------------------------------------


def _run(inp: str, out: str, on: str) -> None:
    from curate.select.decontam import DecontamOptions
    from curate.stage import run_stage

    t0 = time.perf_counter()
    s = run_stage("decontam", [inp], out, DecontamOptions(against=BENCHES, on=on), overwrite=True)
    wall = time.perf_counter() - t0
    import pyarrow.parquet as pq

    dropped = pq.read_table(Path(out) / "_dropped", columns=["id"]).column("id").to_pylist() \
        if (Path(out) / "_dropped").is_dir() else []
    print(TAG + json.dumps({"wall": wall, "rows": s["rows_in"], "dropped": dropped,
                            "index_s": s["index_seconds"],
                            "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}),
          flush=True)


def measure(folder: Path, work: Path, on: str) -> dict:
    out = work / f"decontam-out-{os.getpid()}"
    for f in folder.glob("*.parquet"):  # a warm page cache for every run
        f.read_bytes()
    proc = subprocess.run([sys.executable, __file__, "_run", str(folder), str(out), on],
                          capture_output=True, text=True)
    shutil.rmtree(out, ignore_errors=True)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(TAG)), None)
    if proc.returncode or line is None:
        raise SystemExit(f"run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(line[len(TAG):])


def throughput(rows: int, repeats: int, ons: list[str], work: Path) -> list[str]:
    folder, meta = ensure_data(work, rows)
    size = sum(f.stat().st_size for f in folder.glob("*.parquet"))
    planted = meta["planted"]
    lines = [f"{rows:,} synthetic traces ({size / 1e6:.0f} MB Parquet, {meta['pool']:,} clean "
             "real questions; planted: "
             + ", ".join(f"{k} {len(v):,}" for k, v in planted.items())
             + f") against {'+'.join(BENCHES)}, medians of {repeats}"]
    for on in ons:
        runs = [measure(folder, work, on) for _ in range(repeats)]
        wall = statistics.median(r["wall"] for r in runs)
        rss = statistics.median(r["maxrss_kib"] for r in runs) / 1024
        dropped = set(runs[0]["dropped"])
        expect = {k: set(v) for k, v in planted.items()}
        should = set().union(*(v for k, v in expect.items() if on != "question" or
                               k != "thinking"))
        recall = {k: f"{len(v & dropped)}/{len(v)}" for k, v in expect.items()}
        extra = len(dropped - set().union(*expect.values()))
        ok = should <= dropped
        lines.append(f"--on {on}: {rows / wall:,.0f} traces/s ({wall:.1f} s, index "
                     f"{runs[0]['index_s']:.2f} s), peak RSS {rss:,.0f} MiB; flagged "
                     f"{len(dropped):,}; planted found " + ", ".join(f"{k} {v}" for k, v in
                                                                    recall.items())
                     + f"; unplanted flagged {extra}"
                     + ("" if ok else "  RECALL TARGET MISSED"))
    return lines


# --- the lookup structure ------------------------------------------------------------------------


def lookup_structures() -> list[str]:
    import numpy as np
    import pyarrow.parquet as pq
    import xxhash

    from curate.select.decontam import (
        BenchmarkIndex,
        load_benchmarks,
        window_hashes,
        word_hashes,
        words,
    )

    n = 13
    benches = load_benchmarks(BENCHES)
    items = [words(t) for b in benches for t in b.texts]
    texts = pq.read_table(REAL / "processbench.parquet", columns=["response"]) \
        .column("response").to_pylist()[:2000]
    docs = [words(t) for t in texts]
    n_windows = sum(max(0, len(d) - n + 1) for d in docs)

    def joined(ws):
        return [xxhash.xxh3_64_intdigest(" ".join(ws[i:i + n]).encode())
                for i in range(len(ws) - n + 1)]

    bench_set = {h for it in items for h in joined(it)}
    bench_sorted = np.array(sorted(bench_set), np.uint64)
    index = BenchmarkIndex(benches, n)
    out = []

    def timed(label, fn):
        best = min(_clock(fn) for _ in range(3))
        out.append(f"  {label}: {n_windows / best / 1e6:.2f} M n-grams/s ({best:.2f} s)")

    def xxh_set():
        return sum(h in bench_set for d in docs for h in joined(d))

    def xxh_sorted():
        hs = np.fromiter((h for d in docs for h in joined(d)), np.uint64)
        idx = np.minimum(np.searchsorted(bench_sorted, hs), len(bench_sorted) - 1)
        return int((bench_sorted[idx] == hs).sum())

    tab = index.tables[n]
    flat = [w for d in docs for w in d]
    seg_len = np.array([len(d) for d in docs])

    def polynomial_sorted():
        wh = window_hashes(word_hashes(flat), n)
        idx = np.minimum(np.searchsorted(tab.keys, wh), len(tab.keys) - 1)
        return int((tab.keys[idx] == wh).sum())

    def ours():  # the stage's own lookup: all window sizes, bitmap, searchsorted, verification
        found: dict = {}
        index._windows(flat, np.arange(len(docs)), seg_len, found)
        return len(found)

    head = [f"lookup structure, {n_windows:,} 13-grams of 2,000 ProcessBench solutions against "
            f"{len(bench_set):,} benchmark 13-grams (from word lists, hashing included, best of "
            "3):"]
    timed("xxh3_64(joined n-gram) + Python set", xxh_set)
    timed("xxh3_64(joined n-gram) + sorted numpy array, searchsorted", xxh_sorted)
    timed("hash per word, polynomial windows in numpy, searchsorted", polynomial_sorted)
    timed("curate (the above + a bitmap pre-filter, short-item sizes, verification)", ours)
    return head + out


def _clock(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# --- recall on the real data ---------------------------------------------------------------------

KNOWN = [  # label, file, source (None: all rows), benchmark, rows known
    ("ProcessBench-gsm8k", "processbench.parquet", "processbench/gsm8k", "gsm8k", 400),
    ("ProcessBench-math", "processbench.parquet", "processbench/math", "math500", 112),
    ("PRMBench-target", "prmbench_target400.parquet", None, "math500", 277),
    ("PRMBench-QwQ", "prmbench_qwq.parquet", None, "math500", 174),
    ("Qwen2.5-Math rm_maj", "qwen25math_rm_maj.parquet", None, "math500", 40),
    ("gsm8k_model_solutions", "gsm8k_model_solutions.parquet", None, "gsm8k", 5276),
]
REF = {"gsm8k": "ref_gsm8k_test.parquet", "math500": "ref_math500.parquet"}


def recall() -> list[str]:
    import pyarrow.parquet as pq

    from curate.select.decontam import DecontamOptions
    from curate.stage import run_stage

    def ws(t):
        return " ".join((t or "").split())

    refs = {k: {ws(q) for q in pq.read_table(REAL / f).column("question").to_pylist()}
            for k, f in REF.items()}
    files = sorted({k[1] for k in KNOWN} | {"bigbench_mistake.parquet",
                                            "marco_o1_cot_demo.parquet"})
    rows = {f: pq.read_table(REAL / f, columns=["id", "source", "question"]).to_pylist()
            for f in files}
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for how, against in (("bundled", BENCHES), ("path", [str(REAL / REF["gsm8k"]),
                                                             str(REAL / REF["math500"])])):
            t0 = time.perf_counter()
            run_stage("decontam", [str(REAL / f) for f in files], f"{tmp}/{how}",
                           DecontamOptions(against=against), overwrite=True)
            wall = time.perf_counter() - t0
            d = pq.read_table(f"{tmp}/{how}/_dropped").to_pylist()
            by = {r["id"]: r["contaminated_by"].split(":")[0] for r in d}
            name = {"gsm8k": "gsm8k", "math500": "math500"} if how == "bundled" else \
                {"gsm8k": "ref_gsm8k_test", "math500": "ref_math500"}
            lines.append(f"recall via {how} ({', '.join(Path(a).name for a in against)}; "
                         f"{sum(len(v) for v in rows.values()):,} rows in {wall:.1f} s):")
            for label, f, source, bench, count in KNOWN:
                grp = [r for r in rows[f] if source is None or r["source"] == source]
                known = [r["id"] for r in grp if ws(r["question"]) in refs[bench]]
                found = sum(1 for i in known if by.get(i) == name[bench])
                flagged = sum(1 for r in grp if r["id"] in by)
                mark = "" if found == len(known) == count else "  RECALL TARGET MISSED"
                lines.append(f"  {label} vs {bench}: known {len(known)} (README {count}), "
                             f"found {found} ({found / len(known):.0%}); rows flagged "
                             f"{flagged} of {len(grp)}{mark}")
            for label, f, source in (("ProcessBench-olympiadbench", "processbench.parquet",
                                      "processbench/olympiadbench"),
                                     ("ProcessBench-omnimath", "processbench.parquet",
                                      "processbench/omnimath"),
                                     ("BIG-Bench-Mistake", "bigbench_mistake.parquet", None),
                                     ("Marco-o1", "marco_o1_cot_demo.parquet", None)):
                grp = [r for r in rows[f] if source is None or r["source"] == source]
                per = {b: sum(1 for r in grp if by.get(r["id"]) == name[b]) for b in REF}
                lines.append(f"  {label} (nothing known): flagged " + ", ".join(
                    f"{per[b]} vs {b}" for b in REF) + f" of {len(grp)} rows")
    return lines


# --- driver --------------------------------------------------------------------------------------


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_run":
        _run(*sys.argv[2:5])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--on", default="question,all", help="--on values to time")
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "_work")
    ap.add_argument("--skip", default="", help="parts to skip: throughput,lookup,recall")
    ap.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    args = ap.parse_args()
    skip = set(args.skip.split(","))
    from importlib import metadata

    lines = [f"decontam bench: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}, "
             f"{platform.machine()}, nproc {os.cpu_count()}, python "
             f"{platform.python_version()}, pyarrow {metadata.version('pyarrow')}, numpy "
             f"{metadata.version('numpy')}"]
    if "throughput" not in skip:
        lines += throughput(args.rows, args.repeats, args.on.split(","), args.work)
    if "lookup" not in skip:
        lines += lookup_structures()
    if "recall" not in skip and REAL.is_dir():
        lines += recall()
    print("\n".join(lines))
    if args.record:
        with open(ROOT / "bench" / "RESULTS.md", "a") as f:
            f.write("\n## decontam bench\n\n```\n" + "\n".join(lines) + "\n```\n")


if __name__ == "__main__":
    main()
