"""Decontamination: drop every trace whose question (or text) overlaps a benchmark.

**Benchmarks** (``--against``, repeatable, comma-separated accepted): a bundled name
(``math500``, ``gsm8k``, ``aime24``, ``aime25``: files in ``curate/select/benchmarks/``, with
their licenses in the README there, so decontamination works offline) or any input ``curate
read`` accepts. A bundled name wins over a local folder of the same name (write ``./gsm8k`` for
the folder). Benchmark files are read raw (``curate.io.sources``), not through the trace reader:
a benchmark item is a question, and the reader would drop every row without a response. Only a
text column is needed: ``--bench-column``, else ``question``, else ``problem``; the item id is
the ``id`` column, else ``unique_id``, else the row number. Items with no text are skipped; a
benchmark with no usable text column, or no item with text, is an ``InputError``.

**Words.** ``normalize_text`` (NFKC, case folding, whitespace collapsed), every ``$`` removed
(a TeX math delimiter: ``$x$-axis`` and ``x-axis`` are the same words), split on spaces, then
ASCII punctuation and common typographic marks (quotes, dashes, ellipsis) stripped from the
*edges* of each word; a word that was only punctuation (``=``, ``-``) disappears. Inner
characters stay (``2+3``, ``janet's``, ``\\frac{1}{2``), so maths keeps its content while a
question quoted in other punctuation (``"… per day?"`` vs ``… per day.``), with its TeX
delimiters dropped (PRMBench does this) or written ``\\(…\\)`` instead of ``$…$`` still
matches.

**Matching.** A row is contaminated when its checked text

- shares at least ``--min-overlap`` (default 1) distinct word n-grams (``--ngram``, default 13,
  as s1 used) with one benchmark, or
- contains the whole of a *short* benchmark item (fewer than ``--ngram`` words but at least
  ``MIN_WHOLE_WORDS``): such an item has no n-gram at all, so it is matched as one n-gram of
  its own length (16% of MATH-500 is under 13 words, e.g. "Compute $\\dbinom{31}{28}$."), or
- has a question equal to a benchmark item after ``normalize_text`` (the relation ``text_key``
  hashes; compared as normalised strings, so each question is normalised once and no hash
  collision can occur).

The last two hold whatever ``--min-overlap`` says: the whole item is in the row. A row
*question* shorter than ``--ngram`` words can only be caught by the last two rules (it has no
n-gram); a fragment of a long benchmark item shorter than ``--ngram`` words is not caught.

**What is checked** (``--on``): ``question`` (default, as s1 did): the question's n-grams and its
exact match. A trace restating a clean question is not contamination, and the time grows with
the text scanned (3x on the bench's 300-word thinking parts, ~100x on 10k-token R1 traces);
``--on all`` is there for sets whose questions were rewritten but whose traces quote the
benchmark. ``trace``: thinking and response only (no exact match). ``all``: question, thinking
and response. Each field is tokenised apart: no n-gram spans the end of one field and the start
of the next.

**Order.** Each row is decided on its own text alone, so the result never depends on input
order, batching or the other rows (the filter/dedup ranking convention has nothing to rank
here). Only benchmark items are ordered, for ``contaminated_by`` (below).

**Data structure.** Each word is hashed once (Python's ``hash`` of the str: C speed, cached on
the object, stable within the process, which is all an index built in the same run needs; the
hashes are never stored); an n-gram's hash is a polynomial over its words' hashes mod 2^64,
computed for every window of a whole batch at once with numpy (``n`` multiply-adds over the
batch's word array). Benchmark n-grams form one sorted ``uint64`` array per window size; the
batch's windows are looked up with ``np.searchsorted``. Every hash hit is then **verified** word
by word against the benchmark item it points to, so a hash collision can cost time but never a
wrong drop (and every entry is kept, so a collision cannot hide a true match either). A bitmap
of the keys' top bits rules out most windows before the binary search. Measured by
bench/decontam_bench.py on 470k n-grams of real solutions: ~2.8M n-grams/s against ~1.1-1.4M/s
for xxh3_64 of each joined n-gram looked up in a Python ``set`` (about as fast as a sorted array
of the same hashes: the joining and hashing in Python dominate either way).

**What a dropped row records**: ``drop_reason`` ``contaminated``; ``drop_value`` =
``contaminated_by`` = ``BENCHMARK:ITEM_ID``: on an exact match the first such item, else the
first matching item in item order (benchmarks in ``--against`` order, items in file order);
``overlap_ngram``: ``exact match``, or the first shared n-gram with that item, in normalised
words; ``overlap_count``: distinct n-grams (a short item's whole text counts as one) the row
shares with that item's benchmark. ``input_row`` is null: the reader does not hand a stage the
input position of the rows it keeps (as in ``curate score``); the id identifies the row.

The per-benchmark counts of the summary count a row once for every benchmark it is
contaminated by, so they can add up to more than the rows dropped.
"""

from __future__ import annotations

import string
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import xxhash

from .. import schema as S
from ..dropped import rows_of
from ..errors import InputError
from ..io.sources import Source, iter_batches, resolve_inputs
from ..options import StageOptions, option
from ..read.traces import ReadOptions
from ..stage import Chunk, MapStage, StageContext
from .normalize import normalize_text

BUNDLED_DIR = Path(__file__).resolve().parent / "benchmarks"
BUNDLED = ("math500", "gsm8k", "aime24", "aime25")
DEFAULT_NGRAM = 13
ON_CHOICES = ("question", "trace", "all")
TEXT_COLUMNS = ("question", "problem")
ID_COLUMNS = ("id", "unique_id")
# A benchmark item of one word would flag every row holding that word; two words of a maths
# problem ("simplify \sqrt{242") are specific enough, and 7 MATH-500 items have only two.
MIN_WHOLE_WORDS = 2
# Stripped from word edges. NFKC already turned full-width forms into these ASCII ones.
EDGE_CHARS = string.punctuation + "\u201c\u201d\u2018\u2019\u201e\u00ab\u00bb\u2039\u203a" \
    "\u2013\u2014\u2015\u2026\u00bf\u00a1\u00b7\u2022"
CONTAMINATED = "contaminated"
EXTRA_DROP_FIELDS = [("contaminated_by", pa.string()), ("overlap_ngram", pa.string()),
                     ("overlap_count", pa.int32())]
DROP_SCHEMA = pa.schema([*S.DROPPED_SCHEMA, *EXTRA_DROP_FIELDS])
EXACT = "exact match"
# Words looked up at once: bounds the word list and its hash arrays (~100 bytes a word, so
# ~200 MB) when --on all meets a batch of 30k-token traces.
WORD_BUDGET = 1 << 21

_MULT = np.uint64(0x9E3779B97F4A7C15)  # odd: multiplication by it is a bijection mod 2^64


def words(text: str | None) -> list[str]:
    """The words n-grams are made of (see the module docstring)."""
    return split_words(normalize_text(text))


def split_words(norm: str) -> list[str]:
    """Words of a text already through ``normalize_text``."""
    # filter + a list comprehension: ~25% faster than one comprehension with a condition
    return list(filter(None, [t.strip(EDGE_CHARS) for t in norm.replace("$", "").split(" ")]))


def word_hashes(tokens: list[str]) -> np.ndarray:
    return np.fromiter(map(hash, tokens), np.int64, len(tokens)).view(np.uint64)


def window_hashes(wh: np.ndarray, k: int) -> np.ndarray:
    """Hash of every window of ``k`` consecutive word hashes (polynomial, wrapping uint64)."""
    m = len(wh) - k + 1
    if m <= 0:
        return np.empty(0, np.uint64)
    acc = wh[:m].copy()
    for j in range(1, k):
        acc *= _MULT
        acc += wh[j:j + m]
    return acc


# --- benchmarks ---------------------------------------------------------------------------------


@dataclass
class Benchmark:
    name: str
    origin: str  # "bundled" or the --against value
    column: str
    ids: list[str]
    texts: list[str]
    rows: int  # rows read, items without text included
    digest: str = ""  # xxh3-64 of the items' ids and texts: what the run decontaminated against

    def describe(self) -> dict:
        return {"origin": self.origin, "column": self.column, "items": len(self.ids),
                "rows": self.rows, "items_xxh3": self.digest}


def parse_against(values: list[str] | None) -> list[str]:
    """--against values: repeatable, each may be a comma-separated list (unless it is a path
    that exists as written). Order kept, repeats removed."""
    out: list[str] = []
    for v in values or []:
        parts = [v] if Path(v).exists() else v.split(",")
        for p in (p.strip() for p in parts):
            if p and p not in out:
                out.append(p)
    if not out:
        raise InputError(f"--against: name at least one benchmark (bundled: "
                         f"{', '.join(BUNDLED)}; or a file or folder of questions)")
    return out


def load_benchmarks(specs: list[str], column: str | None = None) -> list[Benchmark]:
    benches: list[Benchmark] = []
    for spec in specs:
        b = load_benchmark(spec, column)
        taken = {x.name for x in benches}
        base, n = b.name, 2
        while b.name in taken:
            b.name, n = f"{base}#{n}", n + 1
        benches.append(b)
    return benches


def load_benchmark(spec: str, column: str | None = None) -> Benchmark:
    """One --against value → its items. ``column`` applies to files, not to bundled names
    (theirs is ``question``)."""
    if spec in BUNDLED:
        sources = [Source("parquet", str(BUNDLED_DIR / f"{spec}.parquet"))]
        name, origin, column = spec, "bundled", "question"
    else:
        try:
            sources = resolve_inputs([spec])
        except InputError as e:
            raise InputError(f"--against '{spec}': not a bundled benchmark ({', '.join(BUNDLED)})"
                             f" and not a readable input ({e})") from None
        name, origin = _name_of(spec), spec
    ids: list[str] = []
    texts: list[str] = []
    rows = 0
    used = column
    for src in sources:
        try:
            for batch in iter_batches(src):
                col = _text_column(spec, src, batch.schema, column)
                used = col
                values = batch.column(col).to_pylist()
                id_col = next((c for c in ID_COLUMNS if c in batch.schema.names), None)
                given = batch.column(id_col).to_pylist() if id_col else [None] * len(values)
                for i, (item_id, text) in enumerate(zip(given, values, strict=True)):
                    if text is not None and text.strip():
                        ids.append(str(item_id) if item_id is not None else str(rows + i))
                        texts.append(text)
                rows += batch.num_rows
        except InputError as e:
            if str(e).startswith("--against"):
                raise
            if src.kind == "hub":  # most likely a mistyped bundled name with a slash
                raise InputError(f"--against '{spec}': not a bundled benchmark "
                                 f"({', '.join(BUNDLED)}) and not a readable hub dataset "
                                 f"({e})") from None
            raise InputError(f"--against '{spec}': {e}") from None
    if not texts:
        raise InputError(f"--against '{spec}': empty benchmark: no item has text in column "
                         f"'{used or TEXT_COLUMNS[0]}' ({rows} rows)")
    h = xxhash.xxh3_64()
    for i, t in zip(ids, texts, strict=True):
        h.update(f"{i}\x1f{t}\x1e".encode("utf-8", "surrogatepass"))
    return Benchmark(name, origin, used, ids, texts, rows, h.hexdigest())


def _name_of(spec: str) -> str:
    p = Path(spec.rstrip("/"))
    name = p.name
    for ext in (".gz", ".parquet", ".pq", ".jsonl", ".ndjson", ".json"):
        name = name.removesuffix(ext)
    return name or spec


def _text_column(spec: str, src: Source, schema: pa.Schema, column: str | None) -> str:
    names = schema.names
    if column is not None:
        if column not in names:
            raise InputError(f"--against '{spec}': {src.label} has no column '{column}' "
                             f"(--bench-column); columns: {', '.join(names)}")
        col = column
    else:
        col = next((c for c in TEXT_COLUMNS if c in names), None)
        if col is None:
            raise InputError(f"--against '{spec}': {src.label} has no text column "
                             f"({' or '.join(TEXT_COLUMNS)}); columns: {', '.join(names)}; "
                             "name one with --bench-column")
    t = schema.field(col).type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)
            or pa.types.is_null(t) or str(t) == "string_view"):
        raise InputError(f"--against '{spec}': {src.label}: column '{col}' holds {t}, not text")
    return col


# --- the index ----------------------------------------------------------------------------------


@dataclass
class _Table:
    """Benchmark windows of one size, sorted by (hash, benchmark, item, position): every
    window is kept, duplicates included, so two different n-grams whose hashes collide are
    both found (each hit is verified against the words)."""

    keys: np.ndarray
    bench: np.ndarray
    item: np.ndarray
    pos: np.ndarray


@dataclass
class Match:
    by: int  # global item index
    ngram: str
    count: int
    benches: list[int]


class BenchmarkIndex:
    """Every benchmark n-gram (and short item) of the benchmarks, ready for batch lookups."""

    def __init__(self, benches: list[Benchmark], n: int = DEFAULT_NGRAM):
        if n < 1:
            raise InputError(f"--ngram {n}: must be at least 1")
        self.n = n
        self.benches = benches
        self.item_bench: list[int] = []
        self.item_id: list[str] = []
        self.item_words: list[list[str]] = []
        # normalised text → {bench: first item}. Keyed by the text itself rather than its
        # text_key: the same relation (text_key hashes exactly this string), without a second
        # normalisation of every row's question or any chance of a collision.
        self.exact: dict[str, dict[int, int]] = {}
        self.short_items = Counter()  # bench → items matched whole
        self.exact_only = Counter()  # bench → items too short for any n-gram rule
        parts: dict[int, list[tuple]] = {}
        g = 0
        for b, bench in enumerate(benches):
            for item_id, text in zip(bench.ids, bench.texts, strict=True):
                norm = normalize_text(text)
                toks = split_words(norm)
                self.item_bench.append(b)
                self.item_id.append(item_id)
                self.item_words.append(toks)
                self.exact.setdefault(norm, {}).setdefault(b, g)
                k = len(toks)
                if k >= n:
                    wh = window_hashes(word_hashes(toks), n)
                    parts.setdefault(n, []).append((wh, b, g, np.arange(len(wh))))
                elif k >= MIN_WHOLE_WORDS:
                    self.short_items[b] += 1
                    wh = window_hashes(word_hashes(toks), k)
                    parts.setdefault(k, []).append((wh, b, g, np.zeros(1, np.int64)))
                else:
                    self.exact_only[b] += 1
                g += 1
        self.tables = {k: self._table(v) for k, v in sorted(parts.items())}
        # A bitmap of the keys' top bits (all sizes together: their hashes differ anyway), ~16
        # bits per key: one gather rules out ~95% of a batch's windows before the binary search,
        # which is what the lookup spends its time on otherwise.
        n_keys = sum(len(t.keys) for t in self.tables.values())
        bits = min(26, max(16, (16 * max(n_keys, 1) - 1).bit_length()))
        self._shift = np.uint64(64 - bits)
        self._bitmap = np.zeros(1 << bits, bool)
        for t in self.tables.values():
            self._bitmap[t.keys >> self._shift] = True

    @staticmethod
    def _table(parts: list[tuple]) -> _Table:
        keys = np.concatenate([p[0] for p in parts])
        bench = np.concatenate([np.full(len(p[0]), p[1], np.int32) for p in parts])
        item = np.concatenate([np.full(len(p[0]), p[2], np.int32) for p in parts])
        pos = np.concatenate([p[3] for p in parts]).astype(np.int32)
        order = np.lexsort((pos, item, bench, keys))  # the last key is the primary one
        return _Table(keys[order], bench[order], item[order], pos[order])

    @property
    def ngrams(self) -> int:
        """Distinct benchmark n-grams (and short items), over all window sizes."""
        return sum(len(np.unique(t.keys)) for t in self.tables.values())

    def label(self, g: int) -> str:
        return f"{self.benches[self.item_bench[g]].name}:{self.item_id[g]}"

    # -- lookups ---------------------------------------------------------------------------
    def match(self, fields: list[list[str | None]], exact: bool = True,
              min_overlap: int = 1) -> list[Match | None]:
        """One entry per row: None when clean. ``fields``: the checked texts, one list per field,
        all of the same length; with ``exact``, the first field (the question) is also looked up
        whole."""
        n_rows = len(fields[0]) if fields else 0
        flat: list[str] = []
        seg_row: list[int] = []
        seg_len: list[int] = []
        offset = 0  # words of the batch already looked up (hit positions are batch-wide)
        # per row: bench → {"keys": set, "hits": [(item, position, k, text)], "exact": item,
        # "whole": bool}
        found: dict[int, dict[int, dict]] = {}
        for f, texts in enumerate(fields):
            for r, text in enumerate(texts):
                if not text:
                    continue
                norm = normalize_text(text)
                if exact and f == 0:
                    for b, g in self.exact.get(norm, {}).items():
                        found.setdefault(r, {}).setdefault(b, _acc())["exact"] = g
                toks = split_words(norm)
                if len(toks) >= MIN_WHOLE_WORDS:  # no window rule can match fewer words
                    flat.extend(toks)
                    seg_row.append(r)
                    seg_len.append(len(toks))
                if len(flat) >= WORD_BUDGET:
                    self._windows(flat, np.asarray(seg_row), np.asarray(seg_len), found, offset)
                    offset += len(flat)
                    flat, seg_row, seg_len = [], [], []
        if flat:
            self._windows(flat, np.asarray(seg_row), np.asarray(seg_len), found, offset)
        out: list[Match | None] = [None] * n_rows
        for r, per_bench in found.items():
            out[r] = self._decide(per_bench, min_overlap)
        return out

    def _windows(self, flat: list[str], seg_row: np.ndarray, seg_len: np.ndarray,
                 found: dict, offset: int = 0) -> None:
        wh = word_hashes(flat)
        ends = np.repeat(np.cumsum(seg_len), seg_len)  # end (exclusive) of each word's segment
        rows = np.repeat(seg_row, seg_len)
        windows, size = wh, 1
        for k, tab in self.tables.items():  # ascending sizes: each grows from the last
            while size < k and len(windows) > 1:
                # the same polynomial as window_hashes, one word longer per step
                windows = windows[:-1] * _MULT + wh[size:]
                size += 1
            if size < k:
                break
            cand = np.flatnonzero(self._bitmap[windows >> self._shift])
            cand = cand[cand + k <= ends[cand]]  # windows inside one field of one row
            if not len(cand):
                continue
            idx = np.searchsorted(tab.keys, windows[cand])
            np.minimum(idx, len(tab.keys) - 1, out=idx)
            hit = tab.keys[idx] == windows[cand]
            for i, j in zip(cand[hit].tolist(), idx[hit].tolist(), strict=True):
                key = tab.keys[j]
                row = found.setdefault(int(rows[i]), {})
                done = -1  # a benchmark already matched by this window
                while j < len(tab.keys) and tab.keys[j] == key:
                    b, g, p = int(tab.bench[j]), int(tab.item[j]), int(tab.pos[j])
                    # Verified word by word: a hash collision must never drop a row. Entries
                    # are in item order, so the first verified one per benchmark is its first
                    # item holding this n-gram.
                    if b != done and self.item_words[g][p:p + k] == flat[i:i + k]:
                        acc = row.setdefault(b, _acc())
                        acc["keys"].add((k, int(key)))
                        acc["hits"].append((g, offset + i, k, " ".join(flat[i:i + k])))
                        acc["whole"] = acc["whole"] or k < self.n
                        done = b
                    j += 1

    def _decide(self, per_bench: dict[int, dict], min_overlap: int) -> Match | None:
        qualified = [b for b, a in per_bench.items()
                     if a["exact"] is not None or a["whole"] or len(a["keys"]) >= min_overlap]
        if not qualified:
            return None
        exact = [per_bench[b]["exact"] for b in qualified if per_bench[b]["exact"] is not None]
        if exact:
            g = min(exact)
            ngram = EXACT
        else:
            g, _, _, ngram = min(h for b in qualified for h in per_bench[b]["hits"])
        count = len(per_bench[self.item_bench[g]]["keys"])
        return Match(g, ngram, count, sorted(qualified))


def _acc() -> dict:
    return {"keys": set(), "hits": [], "exact": None, "whole": False}


# --- the stage ----------------------------------------------------------------------------------


@dataclass
class DecontamOptions(StageOptions):
    against: list[str] | None = option(help="Benchmark to decontaminate against (repeatable, "
                                       "or comma-separated): math500, gsm8k, aime24, aime25 "
                                       "(bundled), or a file/folder of questions.")
    bench_column: str | None = option(help="Text column of benchmark files (default: question, "
                                      "else problem).")
    ngram: int = option(DEFAULT_NGRAM, help="Words per n-gram.")
    on: str = option("question", help="What to check: question, trace (thinking + response) "
                     "or all.")
    min_overlap: int = option(1, help="Distinct n-grams a row must share with one benchmark to "
                              "be contaminated (a whole benchmark item or an exact question "
                              "match always is).")
    batch_rows: int = option(2048, help="Rows per batch (bounds memory).")

    def __post_init__(self):
        if self.ngram < 1:
            raise InputError(f"--ngram {self.ngram}: must be at least 1")
        if self.min_overlap < 1:
            raise InputError(f"--min-overlap {self.min_overlap}: must be at least 1")
        if self.on not in ON_CHOICES:
            raise InputError(f"--on '{self.on}': expected one of {', '.join(ON_CHOICES)}")
        if self.batch_rows < 1:
            raise InputError(f"--batch-rows {self.batch_rows}: must be at least 1")
        if self.bench_column is not None and not self.bench_column.strip():
            raise InputError("--bench-column: give a column name")
        self.against = parse_against(self.against)


def checked_fields(on: str) -> tuple[list[str], bool]:
    """Columns whose n-grams are checked, and whether the first (the question) is also
    looked up whole."""
    return {"question": ([S.QUESTION], True),
            "trace": ([S.TRAJECTORY, S.RESPONSE], False),
            "all": ([S.QUESTION, S.TRAJECTORY, S.RESPONSE], True)}[on]


def match_table(index: BenchmarkIndex, table: pa.Table, opts: DecontamOptions
                ) -> list[Match | None]:
    cols, exact = checked_fields(opts.on)
    # the canonical columns are always there (the reader fills a missing thinking with "")
    fields = [table.column(c).to_pylist() for c in cols]
    return index.match(fields, exact, opts.min_overlap)


def _dropped(batch, matches: list[Match | None], index: BenchmarkIndex) -> pa.Table:
    rows = [i for i, m in enumerate(matches) if m is not None]
    by = [index.label(matches[i].by) for i in rows]
    return rows_of(batch.table, rows, CONTAMINATED, by, batch.label, batch.positions,
                   contaminated_by=pa.array(by, pa.string()),
                   overlap_ngram=pa.array([matches[i].ngram for i in rows], pa.string()),
                   overlap_count=pa.array([matches[i].count for i in rows], pa.int32()))


@dataclass
class _Index:
    benches: list[Benchmark]
    index: BenchmarkIndex


class DecontamStage(MapStage):
    name = "decontam"
    progress = "decontaminating"
    Options = DecontamOptions
    help = 'Drop traces that overlap a benchmark (n-gram and exact match).'
    doc = """Drop every trace whose question overlaps a benchmark: it shares a 13-word n-gram with a benchmark item (after case, Unicode and whitespace normalisation, punctuation stripped from word edges), contains the whole of a benchmark item shorter than 13 words, or equals one exactly. Kept rows go to OUT unchanged; contaminated rows go to _dropped/ with drop_reason contaminated, contaminated_by (BENCHMARK:ITEM_ID), overlap_ngram and overlap_count.

--against takes a bundled benchmark, usable offline: [bold]math500[/bold], [bold]gsm8k[/bold] (test), [bold]aime24[/bold], [bold]aime25[/bold]; or any file, folder or dataset `curate read` accepts, of which only a text column is read (--bench-column; default question, else problem).

[bold]Examples[/bold]

  curate decontam out/scored -o out/clean --against math500,gsm8k,aime24,aime25
  curate decontam out/scored -o out/clean --against ../shared/data/real/ref_math500.parquet
  curate decontam out/scored -o out/clean --against my_eval.jsonl --bench-column prompt
  curate decontam out/scored -o out/clean --against math500 --on all --min-overlap 3

--on question (the default, as s1 did) checks the question only; trace checks thinking and response; all checks the three."""  # noqa: E501

    def read_options(self, opts: DecontamOptions) -> ReadOptions:
        return ReadOptions(batch_rows=opts.batch_rows)

    def open(self, ctx: StageContext, opts: DecontamOptions) -> _Index:
        t0 = time.time()
        benches = load_benchmarks(opts.against, opts.bench_column)
        index = BenchmarkIndex(benches, opts.ngram)
        ctx.timings["index_seconds"] = time.time() - t0
        ctx.manifest["benchmarks"] = {b.name: b.describe() for b in benches}
        return _Index(benches, index)

    def process(self, batch, opts: DecontamOptions, state: _Index) -> Chunk:
        table = batch.table
        if not table.num_rows:
            return Chunk(table)
        matches = match_table(state.index, table, opts)
        kept = table.filter(pa.array([m is None for m in matches], pa.bool_()))
        stats: Counter = Counter()
        for m in matches:
            if m is not None:
                stats.update(f"bench:{state.benches[b].name}" for b in m.benches)
        dropped = _dropped(batch, matches, state.index) if kept.num_rows < table.num_rows \
            else None
        return Chunk(kept, dropped, dict(stats))

    def summary(self, ctx: StageContext, opts: DecontamOptions, state: _Index,
                totals: Counter) -> dict:
        stats = ctx.read_stats
        if stats.rows_out == 0:
            raise InputError(f"{', '.join(ctx.inputs)}: no row survived reading "
                             f"(dropped: {dict(ctx.dropped) or 'none'}); nothing written")
        benches, index = state.benches, state.index
        drops = ctx.dropped
        elapsed = max(time.time() - ctx.started, 1e-9)
        return {
            # rows_in counts input rows; a conversation can give several traces
            "rows_in": stats.rows_in, "traces_read": stats.rows_out,
            "rows_out": ctx.rows_written, "dropped": dict(drops),
            "contaminated": drops[CONTAMINATED],
            "contaminated_share": round(drops[CONTAMINATED] / stats.rows_out, 6),
            "contaminated_per_benchmark": {b.name: totals[f"bench:{b.name}"]
                                           for b in benches},
            "benchmark_items": {b.name: len(b.ids) for b in benches},
            "ngram": opts.ngram, "on": opts.on, "min_overlap": opts.min_overlap,
            "benchmark_ngrams": index.ngrams,
            "short_items_matched_whole": {b.name: index.short_items[i]
                                          for i, b in enumerate(benches)},
            "items_exact_only": {b.name: index.exact_only[i] for i, b in enumerate(benches)},
            "index_seconds": round(ctx.timings.get("index_seconds", 0.0), 3),
            "rows_per_s": round(stats.rows_in / elapsed, 1),
        }
