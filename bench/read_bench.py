#!/usr/bin/env python
"""Benchmark of the ingestion stage (``curate read``) against an I/O floor and a naive baseline.

It generates synthetic reasoning traces as Parquet (once; kept in the work folder), then times
three variants on the same input folders, each in its own subprocess so that the peak RSS is the
variant's own:

* ``curate``: ``curate.stage.run_stage("read", ...)`` (the ``ReadStage``: read, map, validate,
  count steps, write ``data/*.parquet``, ``_dropped/`` and ``_manifest.json``);
* ``floor``: ``polars.scan_parquet(...).sink_parquet(...)``, i.e. decode + re-encode, nothing else;
* ``naive``: ``pandas.read_parquet`` per file, a Python loop that splits each text on blank lines
  and builds the output rows, ``DataFrame.to_parquet``.

It reports medians (the machine is shared and noisy) and prints TARGET MISSED next to a missed
target, but never fails on one: it is a measurement, not a test. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from operator import itemgetter
from pathlib import Path

GB = 1e9  # sizes are decimal: "1 GB" is 1e9 bytes of Parquet on disk, MB/s is 1e6 bytes / s
MB = 1e6
MIB = 1024**2
GEN_VERSION = 1  # bump when the generator changes, so a stale work folder is regenerated
RESULT_TAG = "BENCH_RESULT "
ROWS_PER_BATCH = 2048  # curate.read.traces.ReadOptions().batch_rows: rows per batch, row group
VARIANTS = ("curate", "floor", "naive")
HERE = Path(__file__).resolve().parent


# --- synthetic traces -----------------------------------------------------------------------------
#
# Realistic compression matters more than realistic prose: the benchmark divides by the bytes on
# disk, and a generator that repeats itself would compress 10x and turn every variant into a
# zstd-decompression benchmark. So the text is built from a Zipf-distributed vocabulary with
# numbers and LaTeX-ish snippets mixed in (zstd gets about 3x on it, like on real traces), into a
# pool of ~80k distinct paragraphs (~25 MB, far larger than a 1 MB Parquet page, so a page almost
# never sees the same paragraph twice). A trace is then a cheap join of pool paragraphs.

COMMON = (
    "the of and to a in is that we so it for this with as be by on not are from at let then "
    "now which if but can since have has must equal equals number value sum product term terms "
    "side sides root roots case cases first second next step check again wait hmm okay "
    "therefore thus hence because means gives get compute substitute solve solving equation "
    "function integer integers prime divisible remainder modulo triangle angle area length "
    "circle radius point points line lines slope probability expected count ways multiply "
    "divide add subtract both only also maybe actually need find answer result correct right "
    "wrong mistake recall note consider assume suppose when where there each every all any "
    "two three four five ten hundred total left remaining possible impossible positive "
    "negative even odd smallest largest minimum maximum factor factors digits sequence"
).split()
STOCK = (
    "Wait, let me double-check that.", "Hmm, that doesn't seem right.", "Let me verify.",
    "So that works out.", "Okay, so far so good.", "Let me think about this differently.",
    "Actually, I made an arithmetic error above.", "Let me re-read the problem.",
    "That matches the earlier result.", "So the condition holds.", "Let me try small cases.",
    "Alternatively, we can use symmetry.", "Now plug this back in.", "Good, consistent.",
)
SYLLABLES = ("ka lo mi ter an ex pro ti on re de ca la ver sa po ri ment al ing ed er in co di "
             "tion um is ous").split()
N_PSEUDO = 800  # pseudo-words beyond COMMON: a math trace's vocabulary is small
N_PHRASES = 400_000
N_PARAGRAPHS = 80_000
N_QUESTIONS = 20_000
ROWS_PER_GROUP = 2048  # rows per generated row group (~8 MB on disk)
TRAJ_BYTES = (5_000, 18_000)  # uniform; with question and response a row is ~5-20 KB
ODD_BREAK_ROWS = 0.05  # share of traces with one run of 3 or 4 newlines instead of a blank line
SOURCES = ("synthetic/aime", "synthetic/amc", "synthetic/olympiad", "synthetic/gsm")


class Pools:
    """Deterministic text pools (bytes), built once in the parent and shared by forked workers."""

    def __init__(self, seed: int):
        import numpy as np

        rng = np.random.default_rng(seed)
        pseudo: set[str] = set()
        while len(pseudo) < N_PSEUDO:
            pseudo.add("".join(rng.choice(SYLLABLES, int(rng.integers(2, 5)))))
        words = COMMON + sorted(pseudo)
        weights = 1.0 / np.arange(1, len(words) + 1) ** 1.2
        weights /= weights.sum()

        n_math = 40_000
        a, b = rng.integers(1, 1000, n_math).tolist(), rng.integers(1, 1000, n_math).tolist()
        kind = rng.integers(0, 6, n_math).tolist()
        var = rng.choice(list("xyznkabcmp"), n_math).tolist()
        maths = [_math_snippet(*x) for x in zip(kind, a, b, var, strict=True)]
        digits = rng.integers(0, 6, 40_000)
        numbers = [str(x) for x in rng.integers(0, 10**6, 40_000) // 10**digits]
        tokens = words + numbers + maths

        # Phrases: 4-13 tokens; 3% numbers, 4% math snippets, the rest Zipf words.
        lens = rng.integers(4, 14, N_PHRASES)
        total = int(lens.sum())
        u = rng.random(total)
        ids = rng.choice(len(words), size=total, p=weights)
        ids = np.where(u < 0.03, len(words) + rng.integers(0, len(numbers), total), ids)
        ids = np.where(u > 0.96, len(words) + len(numbers) + rng.integers(0, n_math, total), ids)
        picked = [tokens[i] for i in ids.tolist()]
        ends = np.cumsum(lens).tolist()
        punct = rng.choice([".", ".", ".", ",", ":", "?"], N_PHRASES).tolist()
        phrases = []
        start = 0
        for end, p in zip(ends, punct, strict=True):
            s = " ".join(picked[start:end])
            phrases.append(s[0].upper() + s[1:] + p)
            start = end
        stock = rng.random(N_PHRASES) < 0.2
        for i in np.flatnonzero(stock).tolist():
            phrases[i] = STOCK[i % len(STOCK)]

        # Paragraphs of 1-9 phrases (mean ~300 bytes, i.e. ~40 steps in a 12 KB trajectory).
        plens = rng.integers(1, 10, N_PARAGRAPHS)
        order = rng.permutation(N_PHRASES).tolist()
        paras, k = [], 0
        for n in plens.tolist():
            paras.append(" ".join(phrases[order[(k + j) % N_PHRASES]] for j in range(n)))
            k += n
        self.paragraphs = [p.encode() for p in paras]
        self.para_len = np.array([len(p) for p in self.paragraphs], dtype=np.int64)
        self.questions = []
        for i in range(N_QUESTIONS):
            body = " ".join(phrases[order[(k + i * 3 + j) % N_PHRASES]] for j in range(3))
            self.questions.append(f"{body} Find the value of ${var[i]}$.")


def _math_snippet(kind: int, a: int, b: int, v: str) -> str:
    if kind == 0:
        return f"${v}^{{{a % 9 + 2}}} + {b}{v} = {a * b}$"
    if kind == 1:
        return f"$\\frac{{{a}}}{{{b}}}$"
    if kind == 2:
        return f"$\\sqrt{{{a}}} \\approx {a ** 0.5:.3f}$"
    if kind == 3:
        return f"${v}_{{{a % 20}}} = {b}$"
    if kind == 4:
        return f"$({a} - {b}) \\cdot {v} = {a - b}{v}$"
    return f"${a} \\times {b} = {a * b}$"


_POOLS: Pools | None = None  # set in the parent before forking the generator workers


def _joined(pieces: list[bytes], piece_len, ids, counts):
    """A string array whose row i is the concatenation of the next counts[i] pieces of ids.

    Built straight from one joined buffer and an offsets array: per-row Python strings would make
    generating 4 GB take minutes.
    """
    import numpy as np
    import pyarrow as pa

    cum = np.concatenate(([0], np.cumsum(piece_len[ids])))
    offsets = cum[np.concatenate(([0], np.cumsum(counts)))].astype(np.int32)
    data = b"".join(itemgetter(*ids.tolist())(pieces)) if len(ids) > 1 else pieces[ids[0]]
    return pa.StringArray.from_buffers(len(counts), pa.py_buffer(offsets.tobytes()),
                                       pa.py_buffer(data))


def _row_group(rng, file_index: int, first_row: int, n: int):
    """One row group of canonical traces."""
    import numpy as np
    import pyarrow as pa

    pools = _POOLS
    paras, plen = pools.paragraphs, pools.para_len
    n_para = len(paras)
    sep2, sep3, sep4 = n_para, n_para + 1, n_para + 2  # separator pieces after the paragraphs

    # Trajectory: k paragraphs joined by blank lines; a few traces get one 3- or 4-newline run.
    k = np.maximum(2, rng.integers(*TRAJ_BYTES, n) // int(plen.mean() + 2))
    ends = np.cumsum(k)
    inter = np.empty(2 * int(ends[-1]), dtype=np.int64)
    inter[0::2] = rng.integers(0, n_para, int(ends[-1]))
    inter[1::2] = sep2
    odd = np.flatnonzero(rng.random(n) < ODD_BREAK_ROWS)
    if len(odd):
        at = ends[odd] - k[odd] + rng.integers(0, k[odd] - 1)  # a paragraph that is not the last
        inter[2 * at + 1] = np.where(rng.random(len(odd)) < 0.5, sep3, sep4)
    inter = np.delete(inter, 2 * ends - 1)  # no separator after a row's last paragraph
    pieces = paras + [b"\n\n", b"\n\n\n", b"\n\n\n\n"]
    piece_len = np.concatenate((plen, [2, 3, 4]))
    trajectory = _joined(pieces, piece_len, inter, 2 * k - 1)

    # Response: 1-3 paragraphs, then a final line with the boxed answer (unique per row).
    answers = rng.integers(0, 100_000, n).tolist()
    finals = [f"Therefore, the final answer is $\\boxed{{{a}}}$.".encode() for a in answers]
    # Slots per row: para, sep, para, sep, ..., final line (1-3 paragraphs).
    slots = 2 * rng.integers(1, 4, n) + 1
    starts = np.cumsum(slots) - slots
    row_of_slot = np.repeat(np.arange(n), slots)
    slot_in_row = np.arange(int(slots.sum())) - starts[row_of_slot]
    last = slot_in_row == slots[row_of_slot] - 1
    r_ids = rng.integers(0, n_para, len(slot_in_row))
    r_ids[slot_in_row % 2 == 1] = sep2
    r_ids[last] = len(pieces) + row_of_slot[last]  # the finals follow the shared pieces
    response = _joined(pieces + finals, np.concatenate((piece_len, [len(f) for f in finals])),
                       r_ids, slots)

    q_ids = rng.integers(0, len(pools.questions), n).tolist()
    return pa.table({
        "id": pa.array([f"f{file_index:05d}-r{first_row + i:07d}" for i in range(n)]),
        "question": pa.array([pools.questions[i] for i in q_ids]),
        "trajectory": trajectory,
        "response": response,
        "reference_answer": pa.array([str(a) for a in answers]),
        "source": pa.array([SOURCES[i % len(SOURCES)] for i in q_ids]),
    })


def _generate_file(job: tuple[str, int, int, int]) -> dict:
    """Write one Parquet file of about target_bytes (zstd), seeded by its index."""
    import numpy as np
    import pyarrow.parquet as pq

    path, index, target_bytes, seed = job
    rng = np.random.default_rng([seed, index])
    tmp = path + ".tmp"
    rows = text_bytes = 0
    writer = None
    try:
        while True:
            table = _row_group(rng, index, rows, ROWS_PER_GROUP)
            if writer is None:
                # Dictionary-encoding the long texts is wasted effort (the writer gives up on
                # it after the first page); the repeated short columns keep it.
                writer = pq.ParquetWriter(tmp, table.schema, compression="zstd",
                                          use_dictionary=["question", "source"])
            writer.write_table(table, row_group_size=ROWS_PER_GROUP)
            rows += table.num_rows
            text_bytes += table.nbytes
            if os.path.getsize(tmp) >= target_bytes:
                break
    finally:
        if writer is not None:
            writer.close()
    os.replace(tmp, path)  # a file that exists is complete
    return {"name": os.path.basename(path), "rows": rows, "bytes": os.path.getsize(path),
            "text_bytes": text_bytes}


def ensure_data(work: Path, sizes: list[float], file_bytes: int, workers: int,
                seed: int) -> dict[float, dict]:
    """Generate (or reuse) the Parquet files; return, per size, its input folder and facts.

    All sizes share one set of files: a size's folder holds hard links to the first files, so the
    4 GB input costs 4 GB of disk, not 5, and its first GB is the 1 GB input.
    """
    global _POOLS
    # One folder per file size, so that a smoke run (small files) keeps the big run's files.
    data = work / f"data-{file_bytes / MB:g}MB"
    data.mkdir(parents=True, exist_ok=True)
    meta_path = data / "meta.json"
    want = {"version": GEN_VERSION, "seed": seed, "file_bytes": file_bytes}
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if {k: meta.get(k) for k in want} != want:  # another generator or seed: start afresh
        shutil.rmtree(data)
        data.mkdir(parents=True)
        meta = dict(want, files={})
    n_files = {s: max(1, round(s * GB / file_bytes)) for s in sizes}
    needed = max(n_files.values())
    todo = [(str(data / f"part-{i:05d}.parquet"), i, file_bytes, seed) for i in range(needed)
            if f"part-{i:05d}.parquet" not in meta["files"]
            or not (data / f"part-{i:05d}.parquet").is_file()]
    if todo:
        t0 = time.perf_counter()
        print(f"generating {len(todo)} file(s) of ~{file_bytes / MB:.0f} MB in {data} "
              f"({workers} workers)...", flush=True)
        _POOLS = Pools(seed)
        import multiprocessing as mp

        with mp.get_context("fork").Pool(workers) as pool:
            for info in pool.imap_unordered(_generate_file, todo):
                meta["files"][info["name"]] = info
                meta_path.write_text(json.dumps(meta, indent=1))
        secs = time.perf_counter() - t0
        made = sum(meta["files"][Path(j[0]).name]["bytes"] for j in todo)
        print(f"generated {made / GB:.2f} GB in {secs:.0f} s ({made / MB / secs:.0f} MB/s)",
              flush=True)

    out = {}
    for s in sizes:
        names = [f"part-{i:05d}.parquet" for i in range(n_files[s])]
        folder = work / f"in-{s:g}gb"
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir()
        for name in names:
            try:
                os.link(data / name, folder / name)
            except OSError:  # a filesystem without hard links
                shutil.copyfile(data / name, folder / name)
        files = [meta["files"][n] for n in names]
        out[s] = {"folder": folder, "files": len(files),
                  "rows": sum(f["rows"] for f in files),
                  "bytes": sum(f["bytes"] for f in files),
                  "text_bytes": sum(f["text_bytes"] for f in files)}
    return out


# --- the variants (each runs in a fresh subprocess: `read_bench.py _run VARIANT IN OUT`) ----------


def run_curate(inp: str, out: str, profile: int = 0) -> dict:
    from curate.read.traces import ReadOptions
    from curate.stage import run_stage

    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    t0 = time.perf_counter()
    summary = run_stage("read", [inp], out, ReadOptions(), overwrite=True)
    wall = time.perf_counter() - t0
    if prof is not None:
        import pstats

        prof.disable()
        pstats.Stats(prof, stream=sys.stdout).sort_stats("cumulative").print_stats(profile)
    return {"wall": wall, "rows_in": summary["rows_in"], "rows_out": summary["rows_out"]}


def run_floor(inp: str, out: str, profile: int = 0) -> dict:
    import polars as pl

    os.makedirs(out, exist_ok=True)
    t0 = time.perf_counter()
    # Row groups of curate's batch size: polars' default (up to 512^2 rows) buffers a whole row
    # group in memory, ~3 GB of these traces, which would make the floor's RSS grow with the input.
    pl.scan_parquet(os.path.join(inp, "*.parquet")).sink_parquet(
        os.path.join(out, "all.parquet"), row_group_size=ROWS_PER_BATCH)
    return {"wall": time.perf_counter() - t0}


def run_naive(inp: str, out: str, profile: int = 0) -> dict:
    """What one would write without thinking about memory or vectorising: rows as Python dicts."""
    import pandas as pd

    os.makedirs(out, exist_ok=True)
    t0 = time.perf_counter()
    seen: set[str] = set()
    rows_in = rows_out = steps = 0
    for k, path in enumerate(sorted(Path(inp).glob("*.parquet"))):
        df = pd.read_parquet(path)
        rows = []
        for rec in df.to_dict("records"):
            rows_in += 1
            q, r = rec["question"], rec["response"]
            if not q or q.isspace() or not r or r.isspace() or rec["id"] in seen:
                continue
            seen.add(rec["id"])
            t_steps = [s for s in (rec["trajectory"] or "").split("\n\n") if s.strip()]
            r_steps = [s for s in r.split("\n\n") if s.strip()]
            steps += len(t_steps) + len(r_steps)
            rows.append({"id": rec["id"], "question": q, "trajectory": rec["trajectory"] or "",
                         "response": r, "reference_answer": rec["reference_answer"],
                         "source": rec["source"]})
        rows_out += len(rows)
        pd.DataFrame(rows).to_parquet(os.path.join(out, f"part-{k:05d}.parquet"),
                                      compression="zstd", index=False)
        del df, rows
    return {"wall": time.perf_counter() - t0, "rows_in": rows_in, "rows_out": rows_out,
            "steps": steps}


def _runner(argv: list[str]) -> None:
    import resource

    variant, inp, out = argv[:3]
    profile = int(argv[3]) if len(argv) > 3 else 0
    res = {"curate": run_curate, "floor": run_floor, "naive": run_naive}[variant](inp, out, profile)
    # ru_maxrss is KiB on Linux: the peak resident set of this process over its whole life.
    res["maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(RESULT_TAG + json.dumps(res), flush=True)


# --- the driver ----------------------------------------------------------------------------------


def warm(folder: Path) -> None:
    """Read every input file once so that all variants start with a warm page cache (dropping
    the cache needs root; warming it is the fair alternative)."""
    buf = bytearray(8 * MIB)
    for f in sorted(folder.glob("*.parquet")):
        with open(f, "rb", buffering=0) as fh:
            while fh.readinto(buf):
                pass


def measure(variant: str, folder: Path, out: Path, env: dict, timeout: float,
            profile: int = 0) -> dict:
    """One run of a variant in a fresh interpreter; its output is deleted afterwards."""
    shutil.rmtree(out, ignore_errors=True)
    warm(folder)
    cmd = [sys.executable, str(Path(__file__).resolve()), "_run", variant, str(folder), str(out)]
    if profile:
        cmd.append(str(profile))
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        shutil.rmtree(out, ignore_errors=True)
        return {"error": f"timed out after {timeout:.0f} s"}
    process_wall = time.perf_counter() - t0
    out_bytes = sum(p.stat().st_size for p in out.rglob("*.parquet")) if out.exists() else 0
    shutil.rmtree(out, ignore_errors=True)
    lines = proc.stdout.splitlines()
    result = next((json.loads(ln[len(RESULT_TAG):]) for ln in reversed(lines)
                   if ln.startswith(RESULT_TAG)), None)
    if proc.returncode != 0 or result is None:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        return {"error": f"exit {proc.returncode}:\n{tail}"}
    result["process_wall"] = process_wall
    result["out_bytes"] = out_bytes
    result["stdout"] = "\n".join(ln for ln in lines if not ln.startswith(RESULT_TAG))
    return result


def machine_facts(threads: int) -> list[str]:
    from importlib import metadata

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        kib = next(int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
                   if ln.startswith("MemTotal:"))
        mem = f"{kib / 1024**2:.1f} GiB"
    except (OSError, StopIteration):
        pass
    versions = []
    for name in ("pyarrow", "polars", "pandas", "numpy"):
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} -")
    rev = "?"
    try:
        repo = HERE.parent
        rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--",
                                "curate"], capture_output=True, text=True).stdout.strip()
        rev += "+dirty(curate/)" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        pass
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    return [
        f"date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"machine: {cpu}, nproc {os.cpu_count()} (usable {affinity}), RAM {mem}, "
        f"{platform.system()} {platform.release()}",
        f"python {platform.python_version()}, {', '.join(versions)}, curate git {rev}",
        f"threads pinned to {threads} (POLARS_MAX_THREADS, RAYON_NUM_THREADS, OMP_NUM_THREADS)",
    ]


def _fmt_rate(x: float | None, unit: str) -> str:
    return "-" if x is None else f"{x:,.1f} {unit}" if x < 100 else f"{x:,.0f} {unit}"


def _check(ok: bool) -> str:
    return "ok" if ok else "TARGET MISSED"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,4",
                    help="input sizes in GB of Parquet on disk, comma-separated (default 1,4)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per variant and size (median)")
    ap.add_argument("--threads", type=int, default=2, help="thread pin for every variant")
    ap.add_argument("--work", type=Path, default=HERE / "_work",
                    help="folder for the generated inputs and the outputs (default bench/_work)")
    ap.add_argument("--naive-max-gb", type=float, default=1.0,
                    help="skip the naive baseline above this size (default 1)")
    ap.add_argument("--file-mb", type=float, default=None,
                    help="size of each generated Parquet file (default: 256 MiB, or a quarter "
                         "of the smallest size if that is less)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=3600, help="seconds allowed for one run")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="subset to run")
    ap.add_argument("--profile", action="store_true",
                    help="also cProfile one curate run on the smallest size (top 15, cumulative)")
    ap.add_argument("--record", action="store_true",
                    help="append the summary block to bench/RESULTS.md")
    args = ap.parse_args(argv)

    sizes = sorted({float(s) for s in args.sizes.split(",") if s.strip()})
    variants = [v for v in VARIANTS if v in args.variants.split(",")]
    if not sizes or min(sizes) <= 0 or args.repeats < 1 or not variants:
        ap.error("need positive --sizes, --repeats >= 1 and at least one known variant")
    file_bytes = int(args.file_mb * MB if args.file_mb else min(256 * MIB, min(sizes) * GB / 4))
    work = args.work.resolve()

    env = dict(os.environ)
    for var in ("POLARS_MAX_THREADS", "RAYON_NUM_THREADS", "OMP_NUM_THREADS",
                "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(args.threads)  # OMP_NUM_THREADS also sizes Arrow's CPU thread pool

    facts = machine_facts(args.threads)
    print("\n".join(facts), flush=True)
    t0 = time.perf_counter()
    inputs = ensure_data(work, sizes, file_bytes, max(1, args.threads), args.seed)
    print(f"inputs ready in {time.perf_counter() - t0:.0f} s", flush=True)

    results: dict[float, dict[str, dict]] = {}
    for size in sizes:
        info = inputs[size]
        print(f"\n== {size:g} GB: {info['bytes'] / MB:,.0f} MB on disk in {info['files']} files, "
              f"{info['rows']:,} traces, {info['text_bytes'] / MB:,.0f} MB in memory "
              f"(zstd {info['text_bytes'] / info['bytes']:.1f}x)", flush=True)
        todo = [v for v in variants if v != "naive" or size <= args.naive_max_gb + 1e-9]
        if "naive" in variants and "naive" not in todo:
            print(f"   naive: skipped above --naive-max-gb {args.naive_max_gb:g}")
        runs: dict[str, list[dict]] = {v: [] for v in todo}
        errors: dict[str, str] = {}
        for rep in range(args.repeats):  # interleaved, so slow drift hits all variants alike
            for v in todo:
                if v in errors:
                    continue
                r = measure(v, info["folder"], work / f"out-{v}-{os.getpid()}", env, args.timeout)
                if "error" in r:
                    errors[v] = r["error"]
                    print(f"   {v:6s} run {rep + 1}: FAILED {r['error']}", flush=True)
                    continue
                runs[v].append(r)
                print(f"   {v:6s} run {rep + 1}/{args.repeats}: {r['wall']:7.2f} s "
                      f"(process {r['process_wall']:.2f} s), peak RSS "
                      f"{r['maxrss_kib'] / 1024:,.0f} MiB, output {r['out_bytes'] / MB:,.0f} MB",
                      flush=True)
        med = {}
        for v, rs in runs.items():
            if not rs:
                continue
            wall = statistics.median(r["wall"] for r in rs)
            med[v] = {"wall": wall, "mbps": info["bytes"] / MB / wall,
                      "tps": info["rows"] / wall,
                      "rss_mib": statistics.median(r["maxrss_kib"] for r in rs) / 1024}
        results[size] = med
        print(f"   {'variant':8s} {'wall s':>8s} {'MB/s':>9s} {'traces/s':>10s} {'peak RSS':>11s}")
        for v, m in med.items():
            print(f"   {v:8s} {m['wall']:8.2f} {m['mbps']:9.1f} {m['tps']:10,.0f} "
                  f"{m['rss_mib']:7,.0f} MiB")
        for line in _ratio_lines(med):
            print("   " + line)

    block = _summary_block(facts, args, sizes, inputs, results)
    print("\n" + "\n".join(block))
    if args.record:
        path = HERE / "RESULTS.md"
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        new = not path.exists()
        with open(path, "a") as fh:
            if new:
                fh.write("# Read-stage benchmark results\n\nAppended by "
                         "`bench/read_bench.py --record`; newest last.\n")
            fh.write(f"\n## {stamp}\n\n```\n" + "\n".join(block) + "\n```\n")
        print(f"\nappended to {path}")

    if args.profile and "curate" in variants:
        size = sizes[0]
        print(f"\n== cProfile of one curate run on {size:g} GB (top 15 by cumulative time)")
        r = measure("curate", inputs[size]["folder"], work / f"out-curate-{os.getpid()}", env,
                    args.timeout, profile=15)
        print(r.get("error") or r["stdout"])
    return 0


def _ratio_lines(med: dict) -> list[str]:
    lines = []
    c = med.get("curate")
    if c and "floor" in med:
        x = c["mbps"] / med["floor"]["mbps"]
        lines.append(f"curate/floor {x:.2f}x (target >= 0.5x) {_check(x >= 0.5)}")
    if c and "naive" in med:
        x = c["mbps"] / med["naive"]["mbps"]
        lines.append(f"curate/naive {x:.2f}x (target > 1x) {_check(x > 1)}")
    return lines


def _summary_block(facts, args, sizes, inputs, results) -> list[str]:
    head = (f"read bench: --sizes {args.sizes} --repeats {args.repeats} --threads {args.threads}"
            f" (medians)")
    block = [head, *facts]
    for size in sizes:
        med, info = results[size], inputs[size]
        parts = [f"{v} {_fmt_rate(m['mbps'], 'MB/s')} {m['tps']:,.0f} tr/s "
                 f"{m['rss_mib']:,.0f} MiB" for v, m in med.items()]
        block.append(f"{size:g} GB ({info['files']} files, {info['rows']:,} traces): "
                     + " | ".join(parts))
        ratios = _ratio_lines(med)
        if ratios:
            block.append(f"{size:g} GB: " + "; ".join(ratios))
    lo, hi = sizes[0], sizes[-1]
    if len(sizes) > 1 and "curate" in results[lo] and "curate" in results[hi]:
        x = results[hi]["curate"]["rss_mib"] / results[lo]["curate"]["rss_mib"]
        block.append(f"curate peak RSS {hi:g} GB / {lo:g} GB: {x:.2f}x "
                     f"(target 0.8-1.2x, streaming) {_check(0.8 <= x <= 1.2)}")
    return block


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_run":
        _runner(sys.argv[2:])
    else:
        sys.exit(main())
