"""``curate dedup``: drop exact and near-duplicate traces, keeping the best-ranked of each cluster.

Text compared (``--on``)
    ``question``, ``response`` or ``trace`` (= trajectory + "\\n\\n" + response, the default),
    always through ``normalize_text`` (NFKC, casefold, whitespace collapsed; numbers left as
    they are: maths problems that differ only in their numbers are different problems).

Ranking convention (shared with ``curate filter``)
    Rows are ranked by ``score`` descending, null (and NaN) scores last; ties, and every row
    when INPUT has no ``score`` column, are broken by ``id`` ascending (a string compare). The
    best-ranked row of a cluster is the one kept, so the result never depends on input order
    or chunking.

Exact pass (``--mode exact|both``)
    Rows whose normalised texts are equal (xxh3-64 of the normalised text: ``text_key``) form a
    group; the best-ranked is kept, the others go to _dropped/ as ``exact_duplicate``.

Near pass (``--mode near|both``; in ``both`` it runs on the survivors of the exact pass)
    MinHash LSH (``curate.select.minhash``: shingles, signatures, bands × rows) proposes
    candidate pairs; every candidate is verified by the exact Jaccard of its shingle sets, so
    no pair below ``--threshold`` ever links two rows. Verified pairs are merged into
    connected components (union-find). Components are transitive — A~B and B~C puts A and C
    together even when A and C are far apart — so a component is not dropped wholesale: its
    best-ranked row is kept, every member whose own exact Jaccard with that row is ≥ the
    threshold is dropped as ``near_duplicate`` of it, and the members left over are clustered
    again the same way, greedily in rank order, until none is left. Hence every near-dropped
    row's ``dup_of`` is a kept row, and ``dup_jaccard`` (its Jaccard with that row) is ≥ the
    threshold.

Dropped rows
    _dropped/ carries ``id, drop_reason, drop_value, input_file, input_row`` plus ``dup_of`` (the
    kept row's id), ``dup_cluster`` (the cluster's id: its kept row's id) and ``dup_jaccard``.
    ``drop_value`` is ``exact`` or the Jaccard (rounded down to 4 decimals, so it never shows
    a value above the true one). In ``both`` mode a row that is an exact copy of a row later
    dropped as a near duplicate points at the kept row too, as ``near_duplicate``, with that
    row's Jaccard (its shingles are the same). ``input_row`` is known where the read kept every
    row of a batch, else null.

Default shingles: word 5-grams at Jaccard 0.8, chosen by the shingle study of
bench/select_bench.py (bench/RESULTS.md) on qwen25math_rm_maj: 100 questions × 8 sampled
solutions, 2,664 same-question pairs that are not identical. At 0.8, word 1-grams would merge
29.9% of them, char 5-grams 26.1%, word 3-grams 12.6%, word 5-grams 8.7%: bags of words and
short character runs make different solutions of one problem look alike (same vocabulary, same
numbers), longer word n-grams count only shared phrasing. The pairs word 5-grams still merge
differ by a few words (one inserted word, a synonym) and all share their final answer: they are
resamples, near duplicates by any reading. Planted copies stay easy to find with them (median
Jaccard 0.87 for a trace with one step removed, 0.89 for one reworded sentence; recall ≥ 0.99
for pairs at Jaccard ≥ 0.85). Char 5-grams would also cost ~5× the shingles per row.

Passes and memory. INPUT is read twice. Pass 1 (normalising and hashing run in ``--workers``
spawned processes on large inputs) keeps, per row, the id, score, rank and exact key in memory
(~70 bytes plus the id) and spills the LSH bucket keys (8 bytes per band) and the 32-bit
shingle hashes (4 bytes per shingle, ~1.6 KB for a 400-word trace) to files in the output's
temporary folder once they pass 64 MiB (read back memory-mapped; deleted before the commit).
Verification builds the shingle sets of candidate rows only, from those hashes. Pass 2 writes
kept rows to OUT and the others to _dropped/. For 10M traces of ~400 words: ~1 GB of memory and
~17 GB of temporary disk.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from .. import schema as S
from ..dropped import rows_of
from ..errors import InputError
from ..options import StageOptions, option
from ..read.traces import ReadOptions
from ..stage import Stage, StageContext
from . import minhash as mh
from .normalize import normalize_text

ON = {"question": (S.QUESTION,), "response": (S.RESPONSE,),
      "trace": (S.TRAJECTORY, S.RESPONSE)}
MODES = ("exact", "near", "both")
MAX_PERM = 1024
SEED = 0x5EED  # MinHash seed: fixed, so a rerun gives the same candidates
KEPT, EXACT, NEAR = 0, 1, 2
REASONS = {EXACT: "exact_duplicate", NEAR: "near_duplicate"}
SIZE_BINS = (("2", 2, 2), ("3-4", 3, 4), ("5-8", 5, 8), ("9+", 9, None))
SPILL_BYTES = 64 * 1024**2
POOL_AFTER_ROWS = 16384  # smaller inputs are sketched in this process

ProgressFn = Callable[[int], None]


@dataclass
class DedupOptions(StageOptions):
    on: str = option("trace", help="Text to compare: question, response, or trace (trajectory "
                     "+ response).")
    mode: str = option("both", help="exact, near, or both (exact first, then near on what is "
                       "left).")
    shingle: str = option("word", help="Near-duplicate shingles: word or char n-grams.")
    ngram: int = option(5, help="Shingle length n (words or characters).")
    threshold: float = option(0.8, help="Jaccard similarity at or above which two texts are "
                              "near duplicates, in (0, 1].")
    num_perm: int = option(128, help="MinHash permutations (signature length); bands × rows "
                           "are chosen from it.")
    batch_rows: int = option(2048, help="Rows per record batch (bounds memory).")
    workers: int = option(0, help="Processes that normalise and hash on large inputs; 0 = one "
                          "per CPU, at most 8.")

    def __post_init__(self):
        if self.on not in ON:
            raise InputError(f"--on '{self.on}': expected one of {', '.join(ON)}")
        if self.mode not in MODES:
            raise InputError(f"--mode '{self.mode}': expected one of {', '.join(MODES)}")
        if self.shingle not in mh.SHINGLES:
            raise InputError(f"--shingle '{self.shingle}': expected one of "
                             f"{', '.join(mh.SHINGLES)}")
        if self.ngram < 1:
            raise InputError(f"--ngram {self.ngram}: must be at least 1")
        if not 0.0 < self.threshold <= 1.0:  # also refuses NaN
            raise InputError(f"--threshold {self.threshold}: must be in (0, 1] (a Jaccard "
                             "similarity)")
        if not 1 <= self.num_perm <= MAX_PERM:
            raise InputError(f"--num-perm {self.num_perm}: must be between 1 and {MAX_PERM}")
        if self.batch_rows < 1:
            raise InputError(f"--batch-rows {self.batch_rows}: must be at least 1")
        if self.workers < 0:
            raise InputError(f"--workers {self.workers}: must be 0 (one per CPU) or more")
        if self.near and self.lsh() is None:
            raise InputError(f"--num-perm {self.num_perm}: too few permutations to find pairs at "
                             f"Jaccard {mh.upper_similarity(self.threshold):.3g} with "
                             f"probability {mh.TARGET} for --threshold {self.threshold}; "
                             "raise --num-perm")

    @property
    def exact(self) -> bool:
        return self.mode in ("exact", "both")

    @property
    def near(self) -> bool:
        return self.mode in ("near", "both")

    def lsh(self) -> mh.LshParams | None:
        return mh.lsh_params(self.threshold, self.num_perm)


# --- helpers ----------------------------------------------------------------------------------

def rank_rows(ids: pa.Array, scores: np.ndarray) -> np.ndarray:
    """rank[i] = position of row i under the ranking convention (0 = best): score descending,
    missing (null, NaN, ±inf) last, then id ascending."""
    import polars as pl

    n = len(scores)
    df = pl.DataFrame({"id": pl.Series("id", ids).cast(pl.String),
                       "score": pl.Series("score", np.where(np.isfinite(scores), scores,
                                                            np.nan)).fill_nan(None)})
    order = (df.with_row_index("i")
             .sort(["score", "id"], descending=[True, False], nulls_last=True)["i"]
             .to_numpy())
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n, dtype=np.int64)
    return rank


def texts_of(table: pa.Table, on: str, where: str) -> list[str]:
    """The text ``--on`` names, per row (nulls as empty text)."""
    for col in ON[on]:
        if col not in table.column_names:
            raise InputError(f"{where}: --on {on} needs column '{col}', which INPUT lacks")
    if on == "trace":
        traj = pc.fill_null(table.column(S.TRAJECTORY), "")
        resp = pc.fill_null(table.column(S.RESPONSE), "")
        return pc.binary_join_element_wise(traj, resp, "\n\n").to_pylist()
    return pc.fill_null(table.column(ON[on][0]), "").to_pylist()


def exact_key(normalized: str) -> int:
    """``text_key`` as an integer, from text already normalised (``text_key`` itself would
    normalise a second time, ~30% more pass-1 time). A test pins the two together."""
    return xxhash.xxh3_64_intdigest(normalized.encode("utf-8", "surrogatepass"))


def _scores(table: pa.Table, where: str) -> np.ndarray:
    if "score" not in table.column_names:
        return np.full(table.num_rows, np.nan)
    col = table.column("score")
    if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)
            or pa.types.is_boolean(col.type) or pa.types.is_null(col.type)):
        raise InputError(f"{where}: column 'score' is {col.type}, expected numbers (the "
                         "ranking uses it)")
    values = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
    values[~np.isfinite(values)] = np.nan  # ±inf is no score either: ranked last, with NaN
    return values


class _Spill:
    """Rows appended block by block, in memory until SPILL_BYTES, then to a raw file under
    ``folder``; ``finish`` gives one array (a read-only memmap once spilled)."""

    def __init__(self, folder: Path, name: str, dtype, width: int | None = None):
        self.path = folder / f"{name}.bin"
        self.folder = folder
        self.dtype = np.dtype(dtype)
        self.width = width
        self.blocks: list[np.ndarray] = []
        self.bytes = 0
        self.rows = 0
        self.file = None

    def append(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=self.dtype)
        self.rows += len(block)
        if self.file is None:
            self.blocks.append(block)
            self.bytes += block.nbytes
            if self.bytes > SPILL_BYTES:
                self.folder.mkdir(parents=True, exist_ok=True)
                self.file = open(self.path, "wb")  # noqa: SIM115 - closed in finish
                for b in self.blocks:
                    b.tofile(self.file)
                self.blocks = []
        else:
            block.tofile(self.file)

    def finish(self) -> np.ndarray:
        shape = (self.rows,) if self.width is None else (self.rows, self.width)
        if self.file is None:
            if not self.blocks:
                return np.zeros(shape, dtype=self.dtype)
            return np.concatenate(self.blocks).reshape(shape)
        self.file.close()
        return np.memmap(self.path, dtype=self.dtype, mode="r", shape=shape)


@dataclass
class _Pass1:
    n: int
    ids: pa.Array
    rank: np.ndarray
    keys: np.ndarray | None       # exact keys (uint64)
    counts: np.ndarray            # shingle hashes per row (repeats included; 0: no shingle)
    hashes: np.ndarray | None     # every row's shingle hashes, 32-bit, flat
    bands: np.ndarray | None      # [n, bands] uint64 bucket keys
    stats: object  # the read stats of pass 1
    workers: int = 1              # processes that sketched


def sketch(texts: list[str], exact: bool, shingle: str, ngram: int,
           lsh: mh.LshParams | None) -> tuple:
    """Pass 1's work on one batch of texts (runs in a worker process on large inputs):
    exact keys, LSH bucket keys, shingle counts and 32-bit shingle hashes."""
    norm = [normalize_text(t) for t in texts]
    keys = np.fromiter((exact_key(t) for t in norm), dtype=np.uint64, count=len(norm)) \
        if exact else None
    if lsh is None:
        return keys, None, None, None
    hashes, counts = mh.shingle_hashes(norm, shingle, ngram)
    sig = mh.signatures(hashes, counts, lsh.num_perm, SEED)
    return (keys, mh.band_keys(sig, lsh.bands, lsh.rows), counts,
            (hashes >> np.uint64(32)).astype(np.uint32))


class _Sketcher:
    """Runs ``sketch`` in order over batches: in this process for a small input, in a pool of
    ``workers`` spawned processes once more than POOL_AFTER_ROWS rows have come (normalising
    and hashing are ~90% of pass 1 and parallelise per batch; spawning costs ~1 s). Spawn, not
    fork: rensa's and polars' thread pools do not survive a fork. If the pool breaks (a script
    without an ``if __name__ == "__main__"`` guard cannot spawn), the rest runs in-process."""

    def __init__(self, opts: DedupOptions, lsh: mh.LshParams | None):
        self.args = (opts.exact, opts.shingle, opts.ngram, lsh)
        self.workers = opts.workers or min(os.cpu_count() or 1, 8)
        self.rows = 0
        self.used = 1  # processes that sketched (reported in the summary)
        self.pool = None
        self.pending: deque = deque()  # (future, texts, extra), in input order

    def submit(self, texts: list[str], extra) -> list:
        """Queue one batch; returns the (result, extra) pairs that are finished, in order."""
        self.rows += len(texts)
        if self.pool is None and self.workers > 1 and self.rows > POOL_AFTER_ROWS:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self.pool = ProcessPoolExecutor(self.workers,
                                            mp_context=multiprocessing.get_context("spawn"))
            self.used = self.workers
        if self.pool is None:
            return [(sketch(texts, *self.args), extra)]
        try:
            self.pending.append((self.pool.submit(sketch, texts, *self.args), texts, extra))
        except BrokenProcessPool:
            self.pending.append((None, texts, extra))
        done = []
        while len(self.pending) > 2 * self.workers or (
                self.pending and self.pending[0][0] is not None and self.pending[0][0].done()):
            done.append(self._next())
        return done

    def _next(self) -> tuple:
        fut, texts, extra = self.pending.popleft()
        if fut is not None:
            try:
                return fut.result(), extra
            except BrokenProcessPool:
                self.close()
                self.workers = self.used = 1
        return sketch(texts, *self.args), extra

    def drain(self) -> list:
        return [self._next() for _ in range(len(self.pending))]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
            self.pool = None


def _pass1(ctx: StageContext, opts: DedupOptions, lsh, spill: Path) -> _Pass1:
    stats = ctx.read_stats
    ids, scores, keys, counts = [], [], [], []
    band_store = _Spill(spill, "bands", np.uint64, lsh.bands) if lsh else None
    hash_store = _Spill(spill, "hashes", np.uint32) if lsh else None
    sketcher = _Sketcher(opts, lsh)

    def take(done):
        for (k, bands, c, h), _m in done:
            if k is not None:
                keys.append(k)
            if lsh:
                band_store.append(bands)
                hash_store.append(h)
                counts.append(c)

    try:
        for batch in ctx.traces(ReadOptions(batch_rows=opts.batch_rows)):
            table = batch.table
            if table.num_rows == 0:
                continue
            where = batch.source.label
            texts = texts_of(table, opts.on, where)
            ids.append(pc.cast(table.column(S.ID), pa.large_string()).combine_chunks())
            scores.append(_scores(table, where))
            take(sketcher.submit(texts, table.num_rows))
        take(sketcher.drain())
    finally:
        sketcher.close()
    n = sum(len(a) for a in ids)
    if n == 0:
        raise InputError(f"{', '.join(ctx.inputs)}: no rows to deduplicate (dropped while "
                         f"reading: {dict(stats.drops) or 'none'}); nothing written")
    all_ids = pa.concat_arrays(ids)
    return _Pass1(
        n=n, ids=all_ids, rank=rank_rows(all_ids, np.concatenate(scores)),
        keys=np.concatenate(keys) if keys else None,
        counts=np.concatenate(counts) if counts else np.zeros(n, dtype=np.int64),
        hashes=hash_store.finish() if hash_store else None,
        bands=band_store.finish() if band_store else None, stats=stats,
        workers=sketcher.used)


@dataclass
class _Decisions:
    status: np.ndarray     # KEPT / EXACT / NEAR per row
    dup_of: np.ndarray     # kept row's index (−1 for kept rows)
    jaccard: np.ndarray    # with the kept row (1.0 for exact copies)
    candidate_pairs: int = 0
    verified_pairs: int = 0


def _exact(p1: _Pass1, d: _Decisions) -> None:
    order = np.lexsort((p1.rank, p1.keys))  # by key, best-ranked first inside each group
    ks = p1.keys[order]
    start = np.ones(p1.n, dtype=bool)
    start[1:] = ks[1:] != ks[:-1]
    first = order[np.flatnonzero(start)[np.cumsum(start) - 1]]
    dropped = order[~start]
    d.status[dropped] = EXACT
    d.dup_of[dropped] = first[~start]
    d.jaccard[dropped] = 1.0


def _near(opts: DedupOptions, lsh: mh.LshParams, p1: _Pass1, d: _Decisions,
          spill: Path) -> None:
    alive = np.flatnonzero((d.status == KEPT) & (p1.counts > 0))
    alive = alive[np.argsort(p1.rank[alive], kind="stable")]  # local index = rank order
    if len(alive) < 2:
        return
    codes = []
    for j in range(lsh.bands):
        codes.append(mh.bucket_pairs(np.asarray(p1.bands[alive, j])))
    codes = mh.sorted_unique(np.concatenate(codes))
    d.candidate_pairs = len(codes)
    if not len(codes):
        return
    a = (codes >> mh._S32).astype(np.int64)
    b = (codes & np.uint64(0xFFFFFFFF)).astype(np.int64)
    nodes = mh.sorted_unique(np.concatenate([a, b]))  # local indices, i.e. rank order
    values, offsets = _candidate_sets(p1, alive[nodes], spill)  # set k = node k's
    a, b = np.searchsorted(nodes, a), np.searchsorted(nodes, b)
    jac = mh.pair_jaccard(values, offsets, a, b)
    edge = jac >= opts.threshold
    d.verified_pairs = int(edge.sum())
    label = mh.components(len(nodes), a[edge], b[edge])
    sizes = np.bincount(label, minlength=len(nodes))
    remaining = np.flatnonzero(sizes[label] >= 2)  # node ids, ascending = rank order
    while len(remaining):
        lab = label[remaining]
        order = np.lexsort((remaining, lab))
        rem, lab = remaining[order], lab[order]
        start = np.ones(len(rem), dtype=bool)
        start[1:] = lab[1:] != lab[:-1]
        rep = rem[np.flatnonzero(start)[np.cumsum(start) - 1]]
        others, reps = rem[~start], rep[~start]
        j = mh.pair_jaccard(values, offsets, reps, others)
        close = j >= opts.threshold
        rows = alive[nodes[others[close]]]
        d.status[rows] = NEAR
        d.dup_of[rows] = alive[nodes[reps[close]]]
        d.jaccard[rows] = j[close]
        left = others[~close]  # not close to their representative: cluster them again
        counts = np.bincount(label[left], minlength=len(nodes))
        remaining = left[counts[label[left]] >= 2]


def _candidate_sets(p1: _Pass1, rows: np.ndarray, spill: Path,
                    block: int = 1 << 22) -> tuple[np.ndarray, np.ndarray]:
    """The shingle sets (sorted unique 32-bit hashes) of the given rows, in that order, from
    pass 1's hashes: flat values and offsets. Built in blocks of ~``block`` hashes, so memory
    stays bounded however many rows are candidates."""
    starts = np.zeros(p1.n + 1, dtype=np.int64)
    np.cumsum(p1.counts, out=starts[1:])
    lens = p1.counts[rows]
    values = _Spill(spill, "sets", np.uint32)
    sizes = []
    cost = np.cumsum(lens)
    lo = 0
    while lo < len(rows):
        hi = max(lo + 1, int(np.searchsorted(cost, (cost[lo - 1] if lo else 0) + block,
                                             side="right")))
        r, ln = rows[lo:hi], lens[lo:hi]
        first = np.zeros(len(r), dtype=np.int64)
        np.cumsum(ln[:-1], out=first[1:])
        idx = np.arange(int(ln.sum()), dtype=np.int64) - np.repeat(first - starts[r], ln)
        own = np.repeat(np.arange(len(r), dtype=np.uint64), ln)
        keys = mh.sorted_unique((own << mh._S32) | np.asarray(p1.hashes[idx]).astype(np.uint64))
        values.append((keys & np.uint64(0xFFFFFFFF)).astype(np.uint32))
        sizes.append(np.bincount((keys >> mh._S32).astype(np.int64), minlength=len(r)))
        lo = hi
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    if sizes:
        np.cumsum(np.concatenate(sizes), out=offsets[1:])
    return values.finish(), offsets


def _resolve_chains(d: _Decisions) -> None:
    """In ``both`` mode, exact copies of a row that the near pass dropped point at its kept
    row (as near duplicates, with its Jaccard: their shingles are the same)."""
    idx = np.flatnonzero(d.status == EXACT)
    target = d.dup_of[idx]
    moved = d.status[target] == NEAR
    idx, target = idx[moved], target[moved]
    d.status[idx] = NEAR
    d.jaccard[idx] = d.jaccard[target]
    d.dup_of[idx] = d.dup_of[target]


def _cluster_sizes(d: _Decisions) -> tuple[int, dict]:
    dropped = d.dup_of[d.status != KEPT]
    if not len(dropped):
        return 0, {name: 0 for name, _, _ in SIZE_BINS}
    per = np.bincount(dropped)
    size = per[per > 0] + 1
    hist = {}
    for name, lo, hi in SIZE_BINS:
        hist[name] = int(((size >= lo) & ((size <= hi) if hi else True)).sum())
    return len(size), hist


def _drop_value(status: int, jac: float) -> str:
    if status == EXACT:
        return "exact"
    return f"{math.floor(jac * 10000) / 10000:.4f}"


def _write(ctx: StageContext, opts: DedupOptions, p1: _Pass1, d: _Decisions) -> None:
    """Pass 2: kept rows to OUT, dropped rows (with dup_of / dup_cluster) to _dropped/."""
    base = 0
    for batch in ctx.traces(ReadOptions(batch_rows=opts.batch_rows), record=False):
        table = batch.table
        m = table.num_rows
        status = d.status[base: base + m]
        keep = status == KEPT
        if keep.any():
            ctx.write(table.filter(pa.array(keep)))
        gone = np.flatnonzero(~keep)
        if len(gone):
            target_ids = pc.cast(p1.ids.take(pa.array(d.dup_of[base + gone])), pa.string())
            st = status[gone].tolist()
            jac = d.jaccard[base + gone]
            ctx.drop(rows_of(table, gone, [REASONS[s] for s in st],
                             [_drop_value(s, j) for s, j in zip(st, jac.tolist(), strict=True)],
                             batch.label, batch.positions, dup_of=target_ids,
                             dup_cluster=target_ids, dup_jaccard=pa.array(jac, pa.float64())))
        base += m


# --- the stage ------------------------------------------------------------------------------

class DedupStage(Stage):
    name = "dedup"
    progress = "deduplicating (2 passes)"
    Options = DedupOptions
    help = 'Remove exact and near-duplicate traces, keeping the best-scored of each cluster.'
    doc = """Remove exact duplicates (same text after Unicode NFKC, case folding and whitespace collapse; numbers untouched) and near duplicates (MinHash LSH candidates, each verified by its exact Jaccard on word or character n-gram shingles). From each cluster the best-ranked trace is kept: highest `score` first (null scores last), ties and unscored inputs by smallest `id`. Dropped rows go to _dropped/ with `dup_of` (the kept row's id), `dup_cluster` and `dup_jaccard`; every near-dropped row's Jaccard with its kept row is at least --threshold.

[bold]Examples[/bold]

  curate dedup out/scored -o out/dedup                        # exact, then near at Jaccard 0.8
  curate dedup out/scored -o out/dedup --on question --mode exact   # one trace per question
  curate dedup out/scored -o out/dedup --threshold 0.7 --shingle char --ngram 5

The summary gives the LSH bands × rows chosen (a pair at Jaccard threshold + 0.05 is found with probability ≥ 0.98), candidate and verified pairs, and cluster sizes. INPUT is read twice; on large inputs normalising and hashing run in --workers processes."""  # noqa: E501

    def whole_input(self, opts) -> bool:
        return True

    def passes(self, opts, dry_run: bool = False) -> int:
        return 2  # sketched, then written

    def run(self, ctx: StageContext, opts: DedupOptions) -> dict:
        t0 = time.time()
        lsh = opts.lsh() if opts.near else None
        spill = ctx.scratch / "dedup-spill"
        timings = ctx.timings
        p1 = _pass1(ctx, opts, lsh, spill)
        timings["pass1_sketch"] = time.time() - t0
        d = _Decisions(np.zeros(p1.n, dtype=np.int8), np.full(p1.n, -1, dtype=np.int64),
                       np.zeros(p1.n, dtype=np.float64))
        t = time.time()
        if opts.exact:
            _exact(p1, d)
        if lsh:
            _near(opts, lsh, p1, d, spill)
            if opts.exact:
                _resolve_chains(d)
        timings["clusters"] = time.time() - t
        p1.bands = p1.hashes = None  # release the memmaps before their files go
        t = time.time()
        _write(ctx, opts, p1, d)
        timings["pass2_write"] = time.time() - t
        shutil.rmtree(spill, ignore_errors=True)
        elapsed = max(time.time() - t0, 1e-9)
        n_exact = int((d.status == EXACT).sum())
        n_near = int((d.status == NEAR).sum())
        n_clusters, hist = _cluster_sizes(d)
        ctx.manifest["seed"] = SEED
        return {
            "rows_in": p1.n, "rows_out": int((d.status == KEPT).sum()),
            "input_rows_read": p1.stats.rows_in,
            "exact_duplicates": n_exact, "near_duplicates": n_near,
            "dropped": dict(ctx.dropped),
            "on": opts.on, "mode": opts.mode,
            "shingle": f"{opts.shingle} {opts.ngram}-grams" if lsh else None,
            "threshold": opts.threshold if lsh else None,
            "lsh": _lsh_doc(lsh),
            "workers": p1.workers,
            "candidate_pairs": d.candidate_pairs, "verified_pairs": d.verified_pairs,
            "clusters": n_clusters, "cluster_sizes": hist,
            "rows_per_s": round(p1.n / elapsed, 1),
        }



def _lsh_doc(lsh: mh.LshParams | None) -> dict | None:
    if lsh is None:
        return None
    return {"bands": lsh.bands, "rows": lsh.rows, "num_perm": lsh.num_perm,
            "collision_probability": {f"{lsh.threshold:g}": round(lsh.p_threshold, 4),
                                      f"{lsh.s_hi:.4g}": round(lsh.p_hi, 4)}}
