#!/usr/bin/env python
"""`curate dedup`: recall, precision, throughput and memory on planted duplicates, the library
choice (rensa vs datasketch) and the shingle study on real same-question solutions.

    python bench/select_bench.py                    # 200k traces (~4 min here)
    python bench/select_bench.py --rows 20000       # smoke run
    python bench/select_bench.py --record           # append to bench/RESULTS.md

Data (generated once per --rows/--seed under bench/_work/dedup-ROWS-sSEED/, git-ignored):
maths-looking traces of 6-11 real solution steps sampled from ProcessBench's response_steps
(a few hundred words: the thinking is the steps, the response the last step and a boxed answer),
75% distinct originals and 25% planted duplicates of a random original, in four kinds:
``copy`` (identical), ``surface`` (spaces/newlines, upper case, full-width digits, the ﬁ
ligature: identical after normalisation), ``step_removed`` (one step left out) and
``reworded`` (one sentence rotated, with synonyms and a filler word). Rows are shuffled; scores
are random (2% null), so which row of a cluster is kept is random too.

Measured:
- recall per bin of the planted pair's true Jaccard (exact, in plain Python on normalize_text
  word 5-grams, independent of curate's hashing): a pair is found when both rows end in the same
  cluster (kept row = the cluster);
- precision: share of dropped rows whose dup_of really is at true Jaccard ≥ 0.8 (or equal after
  normalisation for exact drops), and share of originals without planted duplicates kept;
- throughput of the dedup stage (`run_stage("dedup", ...)`) end to end (2 reads of INPUT,
  writing OUT) in a fresh process, its peak RSS (ru_maxrss), and the ratio against
  datasketch's straightforward loop (normalise, shingle, MinHash.update_batch, MinHashLSH
  query + insert) timed on the first --baseline-rows;
- signatures alone, rensa (curate's numpy shingle hashing + R-MinHash) vs datasketch MinHash on
  the same rows, and how each one's estimated Jaccard tracks the exact one on planted pairs;
- shingle study on qwen25math_rm_maj.parquet (8 sampled solutions of each of 100 questions):
  Jaccard between same-question solutions for word 1/3/5-grams and char 5-grams, how many
  non-identical pairs each would merge at 0.8 and how many of those have different final
  answers; and the median Jaccard of each planted kind under the same shingles.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real"
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from curate.select.normalize import normalize_text  # noqa: E402

KINDS = ("copy", "surface", "step_removed", "reworded")
THRESHOLD = 0.8
BINS = [(0.0, 0.5), (0.5, 0.7), (0.7, 0.8), (0.8, 0.85), (0.85, 0.9), (0.9, 0.95),
        (0.95, 1.0), (1.0, 1.0)]
SYN = {"calculate": "compute", "compute": "calculate", "so": "thus", "total": "sum",
       "find": "determine", "need": "have", "the": "this", "is": "equals", "we": "one",
       "number": "amount", "then": "next", "therefore": "hence"}
FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


# --- data -----------------------------------------------------------------------------------

def _surface(text: str, rng: random.Random) -> str:
    """Same text after NFKC + casefold + whitespace collapse."""
    out = []
    for w in text.split(" "):
        r = rng.random()
        if r < 0.1:
            w = w.upper()
        elif r < 0.15:
            w = w.translate(FULLWIDTH)
        elif r < 0.2:
            w = w.replace("fi", "ﬁ")
        out.append(w)
        out.append(rng.choice([" ", " ", " ", "  ", " \n ", "\t"]))
    return "".join(out[:-1])


def _reword(steps: list[str], rng: random.Random) -> list[str]:
    steps = list(steps)
    order = sorted(range(len(steps)), key=lambda i: -len(steps[i].split()))[:3]
    i = rng.choice(order)
    sentences = steps[i].split(". ")
    j = max(range(len(sentences)), key=lambda k: len(sentences[k].split()) * rng.random())
    w = sentences[j].split(" ")
    if len(w) >= 4:
        k = len(w) // 2
        w = w[k:] + ["clearly,"] + w[:k]
    sentences[j] = " ".join(SYN.get(x.lower(), x) for x in w)
    steps[i] = ". ".join(sentences)
    return steps


def _trace(steps: list[str], answer: int) -> tuple[str, str]:
    return "\n\n".join(steps[:-1]), f"{steps[-1]}\n\nThe answer is \\boxed{{{answer}}}."


def generate(folder: Path, rows: int, seed: int) -> None:
    rng = random.Random(seed)
    pb = pl.read_parquet(REAL / "processbench.parquet")
    pool = sorted({s.strip() for steps in pb["response_steps"].to_list() for s in steps
                   if len(s.split()) >= 5})
    questions = pb["question"].unique().sort().to_list()
    n_dup = rows // 4
    n_orig = rows - n_dup
    recs = []
    originals = []
    for _ in range(n_orig):
        steps = rng.sample(pool, rng.randint(6, 11))
        answer = rng.randint(1, 999)
        originals.append((steps, answer))
        t, r = _trace(steps, answer)
        recs.append(("orig", -1, rng.choice(questions), t, r))
    for _ in range(n_dup):
        o = rng.randrange(n_orig)
        steps, answer = originals[o]
        kind = rng.choice(KINDS)
        if kind == "step_removed":
            steps = list(steps)
            del steps[rng.randrange(len(steps) - 1)]
        elif kind == "reworded":
            steps = _reword(steps, rng)
        t, r = _trace(steps, answer)
        if kind == "surface":
            t, r = _surface(t, rng), _surface(r, rng)
        recs.append((kind, o, recs[o][2], t, r))
    ids = [f"t{i:07d}" for i in range(rows)]
    rng.shuffle(ids)
    scores = [None if rng.random() < 0.02 else rng.random() for _ in range(rows)]
    df = pl.DataFrame({
        "id": ids, "question": [r[2] for r in recs], "trajectory": [r[3] for r in recs],
        "response": [r[4] for r in recs], "score": pl.Series(scores, dtype=pl.Float32),
    })
    truth = pl.DataFrame({"id": ids, "kind": [r[0] for r in recs],
                          "orig_id": [ids[r[1]] if r[1] >= 0 else None for r in recs]})
    df = df.sample(fraction=1.0, shuffle=True, seed=seed)
    (folder / "data").mkdir(parents=True, exist_ok=True)
    parts = 8
    step = (rows + parts - 1) // parts
    for p in range(parts):
        df.slice(p * step, step).write_parquet(folder / "data" / f"part-{p:05d}.parquet")
    truth.write_parquet(folder / "truth.parquet")


# --- exact reference ------------------------------------------------------------------------

def shingles(text: str, kind: str = "word", n: int = 5) -> set:
    t = normalize_text(text)
    u = t.split() if kind == "word" else list(t)
    if not u:
        return set()
    if len(u) < n:
        return {tuple(u)}
    return {tuple(u[i:i + n]) for i in range(len(u) - n + 1)}


def jac(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


# --- measurements ---------------------------------------------------------------------------

CHILD = """
import glob, json, sys, threading, time
sys.path.insert(0, {root!r})
from curate.select.dedup import DedupOptions
from curate.stage import run_stage


def rss_kib(pid):
    try:
        for line in open(f"/proc/{{pid}}/status"):
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


peak = {{"total": 0}}
stop = threading.Event()


def sample():  # RSS of this process + its worker processes, every 0.1 s
    while not stop.is_set():
        kids = []
        for f in glob.glob("/proc/self/task/*/children"):
            kids += open(f).read().split()
        peak["total"] = max(peak["total"], rss_kib("self") + sum(rss_kib(k) for k in kids))
        time.sleep(0.1)


threading.Thread(target=sample, daemon=True).start()
if __name__ == "__main__":
    t = time.perf_counter()
    s = run_stage("dedup", [{data!r}], {out!r}, DedupOptions(workers={workers}), overwrite=True)
    s["wall"] = time.perf_counter() - t
    stop.set()
    hwm = int([x for x in open("/proc/self/status") if x.startswith("VmHWM")][0].split()[1])
    # VmHWM, not ru_maxrss: ru_maxrss carries the parent's peak across fork + exec
    s["rss"] = {{"main": hwm / 1024, "total": max(peak["total"], hwm) / 1024}}
    print(json.dumps(s))
"""


def run_dedup(data: Path, out: Path, workers: int = 0) -> tuple[dict, dict]:
    env = {**os.environ, "POLARS_MAX_THREADS": "2", "RAYON_NUM_THREADS": "2",
           "OMP_NUM_THREADS": "2"}
    code = CHILD.format(root=str(ROOT), data=str(data), out=str(out), workers=workers)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       check=True)
    s = json.loads(p.stdout.strip().splitlines()[-1])
    return s, s.pop("rss")  # ru_maxrss is KiB on Linux


def evaluate(out: Path, trace: dict, truth: pl.DataFrame) -> list[str]:
    kept = set(pl.read_parquet(out / "data" / "*.parquet", columns=["id"])["id"].to_list())
    dropped = pl.read_parquet(out / "_dropped" / "*.parquet")
    dup_of = dict(zip(dropped["id"].to_list(), dropped["dup_of"].to_list(), strict=True))
    reason = dict(zip(dropped["id"].to_list(), dropped["drop_reason"].to_list(), strict=True))

    def cluster(i):
        return i if i in kept else dup_of[i]

    lines = []
    planted = truth.filter(pl.col("orig_id").is_not_null())
    pairs = list(zip(planted["id"].to_list(), planted["orig_id"].to_list(),
                     planted["kind"].to_list(), strict=True))
    stats = {b: [0, 0] for b in BINS}
    by_kind = {k: [0, 0, []] for k in KINDS}
    for d, o, kind in pairs:
        j = jac(shingles(trace[d]), shingles(trace[o]))
        if normalize_text(trace[d]) == normalize_text(trace[o]):
            j = 1.0
        found = cluster(d) == cluster(o)
        for b in BINS:
            if (b[0] <= j < b[1]) or (b == (1.0, 1.0) and j == 1.0):
                stats[b][0] += 1
                stats[b][1] += found
                break
        by_kind[kind][0] += 1
        by_kind[kind][1] += found
        by_kind[kind][2].append(j)
    lines.append("recall of planted (original, duplicate) pairs by true Jaccard (word 5-grams):")
    for b, (n, f) in stats.items():
        label = "J = 1 (equal after normalisation)" if b == (1.0, 1.0) else \
            f"J in [{b[0]:.2f}, {b[1]:.2f})"
        if n:
            lines.append(f"  {label}: {f / n:.4f} of {n:,} pairs")
    hi = [(n, f) for b, (n, f) in stats.items() if b[0] >= THRESHOLD + 0.05]
    n_hi, f_hi = sum(n for n, _ in hi), sum(f for _, f in hi)
    r_hi = f_hi / n_hi if n_hi else float("nan")
    lines.append(f"  recall for J >= {THRESHOLD + 0.05:.2f}: {r_hi:.4f} of {n_hi:,} pairs "
                 "(target >= 0.95)" + ("" if r_hi >= 0.95 else "  TARGET MISSED"))
    for k, (n, f, js) in by_kind.items():
        lines.append(f"  kind {k}: recall {f / n:.4f} of {n:,}, true J median "
                     f"{np.median(js):.3f}, p5 {np.percentile(js, 5):.3f}")

    ok = 0
    for i in dropped["id"].to_list():
        a, b = trace[i], trace[dup_of[i]]
        if reason[i] == "exact_duplicate":
            ok += normalize_text(a) == normalize_text(b)
        else:
            ok += jac(shingles(a), shingles(b)) >= THRESHOLD
    n_drop = dropped.height
    lines.append(f"precision: {ok / n_drop:.4f} of {n_drop:,} dropped rows have dup_of at true "
                 f"J >= {THRESHOLD} (or equal after normalisation) (target >= 0.99)"
                 + ("" if ok / n_drop >= 0.99 else "  TARGET MISSED"))
    with_dups = set(planted["orig_id"].to_list())
    distinct = [i for i in truth.filter(pl.col("kind") == "orig")["id"].to_list()
                if i not in with_dups]
    share = sum(i in kept for i in distinct) / len(distinct)
    lines.append(f"distinct originals (no planted duplicate) kept: {share:.4f} of "
                 f"{len(distinct):,} (target >= 0.99)" + ("" if share >= 0.99 else
                                                          "  TARGET MISSED"))
    return lines


def baseline(texts: list[str]) -> float:
    """datasketch's straightforward loop; rows/s."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=128)
    t = time.perf_counter()
    for i, text in enumerate(texts):
        w = normalize_text(text).split()
        sh = {" ".join(w[k:k + 5]).encode() for k in range(max(1, len(w) - 4))}
        m = MinHash(num_perm=128)
        m.update_batch(sh)
        if not lsh.query(m):
            lsh.insert(str(i), m)
    return len(texts) / (time.perf_counter() - t)


def library(texts: list[str], pair_texts: list[tuple[str, str]]) -> list[str]:
    """Signature speed and estimate agreement: rensa (curate's path) vs datasketch."""
    from datasketch import MinHash

    from curate.select import minhash as mh

    norm = [normalize_text(t) for t in texts]
    t = time.perf_counter()
    h, c = mh.shingle_hashes(norm, "word", 5)
    t_hash = time.perf_counter() - t
    t = time.perf_counter()
    mh.signatures(h, c, 128, 0x5EED)
    t_sig = time.perf_counter() - t
    t = time.perf_counter()
    for s in norm:
        w = s.split()
        m = MinHash(num_perm=128)
        m.update_batch({" ".join(w[k:k + 5]).encode() for k in range(max(1, len(w) - 4))})
    t_ds = time.perf_counter() - t
    n = len(norm)
    lines = [f"signatures, {n:,} rows of normalised text, word 5-grams, 128 permutations:",
             f"  rensa R-MinHash: {n / t_sig:,.0f} rows/s signatures alone, "
             f"{n / (t_hash + t_sig):,.0f} rows/s with curate's shingle hashing",
             f"  datasketch MinHash.update_batch (shingle strings built in Python): "
             f"{n / t_ds:,.0f} rows/s",
             f"  rensa / datasketch (shingles + signatures): {t_ds / (t_hash + t_sig):.0f}x"]
    a = [normalize_text(x) for x, _ in pair_texts]
    b = [normalize_text(y) for _, y in pair_texts]
    h, c = mh.shingle_hashes(a + b, "word", 5)
    sig = mh.signatures(h, c, 128, 0x5EED)
    k = len(a)
    est_r = (sig[:k] == sig[k:]).mean(axis=1)
    est_d, exact = [], []
    for x, y in zip(a, b, strict=True):
        sx, sy = shingles(x), shingles(y)
        exact.append(jac(sx, sy))
        mx, my = MinHash(num_perm=128), MinHash(num_perm=128)
        mx.update_batch({" ".join(s).encode() for s in sx})
        my.update_batch({" ".join(s).encode() for s in sy})
        est_d.append(mx.jaccard(my))
    exact = np.array(exact)
    theory = float(np.sqrt(np.mean(exact * (1 - exact) / 128)))
    p = mh.lsh_params(THRESHOLD, 128)
    bk = mh.band_keys(sig, p.bands, p.rows)
    rate = (bk[:k] == bk[k:]).mean(axis=1)  # share of a pair's bands that collide
    for lo, hi in ((0.75, 0.85), (0.85, 0.95)):
        m = (exact >= lo) & (exact < hi)
        if m.any():
            lines.append(f"  rensa bands of {p.rows} slots colliding, pairs at J in [{lo}, {hi}): "
                         f"{rate[m].mean():.3f} measured vs {np.mean(exact[m] ** p.rows):.3f} "
                         f"= mean J^{p.rows} ({m.sum()} pairs)")
    for name, est in (("rensa", est_r), ("datasketch", np.array(est_d))):
        err = est - exact
        lines.append(f"  estimate - exact Jaccard, {name}: mean {err.mean():+.4f}, RMSE "
                     f"{np.sqrt(np.mean(err ** 2)):.4f} on {k:,} planted pairs (true J median "
                     f"{np.median(exact):.3f}; ideal MinHash RMSE {theory:.4f})")
    return lines


def shingle_study(planted: list[tuple[str, str, str]]) -> list[str]:
    df = pl.read_parquet(REAL / "qwen25math_rm_maj.parquet")
    groups: dict[str, list] = {}
    for q, t, r, e in zip(df["question"].to_list(), df["trajectory"].to_list(),
                          df["response"].to_list(), df["extra_json"].to_list(), strict=True):
        groups.setdefault(q, []).append(((t or "") + "\n\n" + r, json.loads(e).get("pred")))
    lines = [f"shingle study, qwen25math_rm_maj.parquet: {len(groups)} questions x 8 solutions, "
             f"{len(groups) * 28:,} same-question pairs; merged = J >= {THRESHOLD}:"]
    for kind, n in (("word", 1), ("word", 3), ("word", 5), ("char", 5)):
        js, merged, merged_diff, identical = [], 0, 0, 0
        for sols in groups.values():
            sets = [shingles(t, kind, n) for t, _ in sols]
            for i, j in itertools.combinations(range(len(sols)), 2):
                if normalize_text(sols[i][0]) == normalize_text(sols[j][0]):
                    identical += 1
                    continue
                v = jac(sets[i], sets[j])
                js.append(v)
                if v >= THRESHOLD:
                    merged += 1
                    merged_diff += sols[i][1] != sols[j][1]
        js = np.array(js)
        kinds = {}
        for k in ("step_removed", "reworded"):
            kinds[k] = np.median([jac(shingles(x, kind, n), shingles(y, kind, n))
                                  for x, y, kk in planted if kk == k])
        lines.append(
            f"  {kind} {n}-grams: J p50 {np.percentile(js, 50):.3f}, p90 "
            f"{np.percentile(js, 90):.3f}, p99 {np.percentile(js, 99):.3f}, max {js.max():.3f}; "
            f"merged {merged:,} of {len(js):,} non-identical pairs ({merged / len(js):.1%}), "
            f"{merged_diff} of them with different final answers; planted median J: "
            f"step_removed {kinds['step_removed']:.3f}, reworded {kinds['reworded']:.3f}")
    lines.append(f"  ({identical} pairs are identical after normalisation: exact duplicates)")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--baseline-rows", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "_work")
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()

    folder = args.work / f"dedup-{args.rows}-s{args.seed}"
    data = folder / "data"
    if not (folder / "truth.parquet").exists():
        t = time.perf_counter()
        generate(folder, args.rows, args.seed)
        print(f"generated {args.rows:,} traces in {time.perf_counter() - t:.1f} s → {data}",
              file=sys.stderr)
    lines = [f"select bench (dedup), {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, "
             f"{os.cpu_count()} cpus, python {sys.version.split()[0]}, numpy {np.__version__}"]
    size = sum(p.stat().st_size for p in data.glob("part-*.parquet")) / 1e6
    lines.append(f"data: {args.rows:,} synthetic traces ({size:.0f} MB Parquet), 25% planted "
                 f"duplicates ({', '.join(KINDS)}), default options (--on trace --mode both, "
                 "word 5-grams, threshold 0.8, 128 permutations)")
    truth = pl.read_parquet(data.parent / "truth.parquet")
    texts = pl.concat([pl.read_parquet(p, columns=["id", "trajectory", "response"])
                       for p in sorted(data.glob("part-*.parquet"))])
    trace = dict(zip(texts["id"].to_list(),
                     [f"{t}\n\n{r}" for t, r in zip(texts["trajectory"].to_list(),
                                                    texts["response"].to_list(), strict=True)],
                     strict=True))
    subset = [trace[i] for i in texts["id"].to_list()[: args.baseline_rows]]
    del texts
    # The machine is shared: the baseline runs before and after curate, and the faster of the
    # two is used (the ratio errs against curate).
    ds_before = baseline(subset)
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        out = Path(tmp) / "out"
        s, rss = run_dedup(data, out)
        s1, rss1 = run_dedup(data, Path(tmp) / "out1", workers=1)
        ds_after = baseline(subset)
        lsh = s["lsh"]
        m = json.loads((out / "_manifest.json").read_text())
        tm = m["timings"]
        lines.append(
            f"dedup: {s['rows_in']:,} traces in {s['wall']:.1f} s = "
            f"{s['rows_in'] / s['wall']:,.0f} traces/s with {s['workers']} processes in pass 1 "
            f"(pass 1 {tm['pass1_sketch']:.1f} s, verify + cluster {tm['clusters']:.1f} s, "
            f"pass 2 write {tm['pass2_write']:.1f} s); peak RSS {rss['main']:,.0f} MiB main "
            f"process, {rss['total']:,.0f} MiB with its workers (sampled every 0.1 s)")
        curate_rps = s["rows_in"] / s["wall"]
        one_rps = s1["rows_in"] / s1["wall"]
        same = s1["rows_out"] == s["rows_out"] and s1["clusters"] == s["clusters"]
        lines.append(f"dedup --workers 1 (all in one process): {one_rps:,.0f} traces/s, peak RSS "
                     f"{rss1['main']:,.0f} MiB; same result: {same}")
        lines.append(
            f"  kept {s['rows_out']:,}, exact {s['exact_duplicates']:,}, near "
            f"{s['near_duplicates']:,}; LSH {lsh['bands']} bands x {lsh['rows']} rows of "
            f"{lsh['num_perm']}, P(collide) {lsh['collision_probability']}; candidate pairs "
            f"{s['candidate_pairs']:,}, verified {s['verified_pairs']:,}; clusters "
            f"{s['clusters']:,} {s['cluster_sizes']}")
        lines += evaluate(out, trace, truth)
    ds_rps = max(ds_before, ds_after)
    ratio = curate_rps / ds_rps
    lines.append(f"datasketch MinHash + MinHashLSH loop, first {len(subset):,} rows: "
                 f"{ds_before:,.0f} rows/s before curate's runs, {ds_after:,.0f} after; curate "
                 f"dedup (whole stage, {args.rows:,} rows) / the faster = {ratio:.1f}x (target "
                 ">= 10x)" + ("" if ratio >= 10 else "  TARGET MISSED")
                 + f"; with --workers 1: {one_rps / ds_rps:.1f}x")
    planted = truth.filter(pl.col("orig_id").is_not_null()).head(2000)
    pair_texts = [(trace[d], trace[o]) for d, o in zip(planted["id"].to_list(),
                                                       planted["orig_id"].to_list(),
                                                       strict=True)]
    pk = [(trace[d], trace[o], k) for d, o, k in zip(planted["id"].to_list(),
                                                     planted["orig_id"].to_list(),
                                                     planted["kind"].to_list(), strict=True)]
    lines += library(subset, [p for p, k in zip(pair_texts, planted["kind"].to_list(),
                                                strict=True) if k not in ("copy", "surface")])
    lines += shingle_study(pk)
    print("\n".join(lines))
    if args.record:
        with open(ROOT / "bench" / "RESULTS.md", "a") as f:
            f.write("\n## select bench (dedup)\n\n```\n" + "\n".join(lines) + "\n```\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
