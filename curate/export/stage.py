"""``curate export``: the kept traces → ranked SFT shards, a dataset card and a manifest.

Output folder (nothing else in it)::

    OUT/data/train-00000-of-00004.parquet …   the hub's shard names; test-* with --split-test
    OUT/README.md                              the card (YAML header: configs, features)
    OUT/manifest.json                          inputs, settings, counts, the rows left out

or, with ``-o -``, JSON Lines on stdout (one record a line, nothing else), in rank order.

Ranking convention (shared with ``curate filter`` and ``curate dedup``): rows are ranked by
``score`` descending, null (and NaN) scores last; ties, and every row when there is no ``score``
column, are broken by ``id`` ascending (a plain string compare), so the order never depends on
the input's row order or on how it was cut into batches. ``--order-by COL`` ranks by another
column (``--ascending`` flips its direction; nulls stay last and ties still go by id). ``rank``
is 1-based and global: the test split's rows keep the rank they have among all rows.

Every row of INPUT is exported (selection happened upstream), except rows that hold the chosen
think style's markers (``contains_think_marker``, see ``formats``) and rows the reader itself
drops when INPUT is not a curate folder. Those rows cannot go to a ``dropped/`` folder (the
output holds only the shards, the card and the manifest), so the manifest lists them:
counts per reason and the first ``MAX_DROPPED_LISTED`` ids with the field and marker found.

Memory. Ranking needs every row's key before the first row can be written. Pass 1 reads INPUT
once: it checks the markers and keeps, per row, the rank key (order value, id, ordinal: about
40 bytes plus the id), its size and its split; the rows themselves (id, the three texts as they
are, the metadata columns) go to a row store that holds them in memory up to ``--buffer``
(default 1 GiB) and past it moves them to an lz4 Arrow IPC spill file inside the output's
temporary folder (a temporary folder for ``-o -``). Pass 2 writes in rank order: from memory by
gathering rank-ordered pieces of 16 MiB, or, when spilled, by routing the spilled rows into
rank windows of half the buffer (one sequential read of the spill) and sorting each window in
memory. The records are built on those pieces, just before a background thread encodes them.
Peak memory is therefore about the buffer plus the keys (O(rows), ~50 bytes each), never all
row texts at once unless they fit in the buffer; temporary disk is at most about twice the
rows' lz4-compressed size. (200k traces of 3 KB: 1.2 GB peak RSS with the default buffer, 0.7
GB with ``--buffer 128MiB``; see bench/export_bench.py.)

Split. ``--split-test F`` puts a row in the test split when the xxh3-64 hash of its split key,
read as a fraction of 2**64, is below F. The key is the normalised question (``text_key``) by
default, so that samples of one problem never straddle the splits (a test set that shares
problems with training measures memorisation), or the id (``--split-key id``). Either way a
row's side depends on that row alone: never on the row order or on the other rows. The test
rows are thus a uniform draw across ranks, about F of the rows (not exactly: a small set can
get an empty test split, which the summary says).

Shards. ``--shards N`` cuts the train split into N shards of equal row counts (at most one row
apart; no more shards than rows); the test split gets shards of the train shards' average size.
``--shard-size`` (default 500MB, as ``push_to_hub``) cuts by the records' uncompressed text size,
like the hub's own ``max_shard_size``: the files are smaller once compressed (zstd).
"""

from __future__ import annotations

import io
import math
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

from .. import schema as S
from ..errors import InputError
from ..ingest import ReadOptions, ReadStats, fingerprint, iter_traces
from ..io.background import Background
from ..io.sources import Source, resolve_inputs
from ..io.writer import StageOutput, schema_doc
from ..select.normalize import text_key
from . import card
from . import formats as F

ProgressFn = Callable[[int], None]

DEFAULT_SHARD_BYTES = 500 * 1000**2  # the hub's push_to_hub default, "500MB"
DEFAULT_BUFFER_BYTES = 1024**3
CHUNK_BYTES = 16 * 1024**2  # rank-ordered pieces handed to the writer
BLOCK_BYTES = 64 * 1024**2  # read batches are joined into blocks of this size in memory
ROW_GROUP_ROWS = 1000
ROW_OVERHEAD = 64  # bytes a row costs beyond its texts (markers, offsets, id)
MAX_DROPPED_LISTED = 1000
SPLIT_SEED = 0x5EED_5917
SPLIT_KEYS = ("question", "id")
TRL_DEFAULT_MAX_LENGTH = 1024  # SFTConfig.max_length: TRL truncates longer examples silently
SHARD_NAME = "{split}-{i:05d}-of-{n:05d}.parquet"


@dataclass
class ExportOptions:
    format: str = "messages"
    think_style: str = "r1"
    system: str | None = None
    order_by: str | None = None
    ascending: bool = False
    strip_meta: bool = False
    shards: int | None = None
    shard_size: int | None = None
    split_test: float = 0.0
    split_key: str = "question"
    tokenizer: str | None = None
    max_seq_len: int | None = None
    buffer_bytes: int = DEFAULT_BUFFER_BYTES
    batch_rows: int = 2048

    def __post_init__(self):
        if self.format not in F.FORMATS:
            raise InputError(f"--format '{self.format}': expected one of {', '.join(F.FORMATS)}")
        if self.think_style not in F.THINK_STYLES:
            raise InputError(f"--think-style '{self.think_style}': expected one of "
                             f"{', '.join(F.THINK_STYLES)}")
        if self.shards is not None and self.shards < 1:
            raise InputError(f"--shards {self.shards}: must be at least 1")
        if self.shards is not None and self.shard_size is not None:
            raise InputError("--shards and --shard-size: choose one")
        if not (0 <= self.split_test < 1):  # also refuses NaN
            raise InputError(f"--split-test {self.split_test}: must be in [0, 1) "
                             "(the share of rows that go to the test split)")
        if self.split_key not in SPLIT_KEYS:
            raise InputError(f"--split-key '{self.split_key}': expected one of "
                             f"{', '.join(SPLIT_KEYS)}")
        if self.max_seq_len is not None:
            if self.max_seq_len < 1:
                raise InputError(f"--max-seq-len {self.max_seq_len}: must be at least 1")
            if self.tokenizer is None:
                raise InputError("--max-seq-len needs --tokenizer (tokens are counted with the "
                                 "student's tokenizer and chat template)")
        if self.system is not None:
            found = [m for m in F.MARKERS[self.think_style] if m in self.system]
            if found:
                raise InputError(f"--system: holds the {self.think_style} think marker "
                                 f"'{found[0]}'")
        if self.buffer_bytes < 1:
            raise InputError(f"--buffer {self.buffer_bytes}: must be positive")
        if self.batch_rows < 1:
            raise InputError(f"--batch-rows {self.batch_rows}: must be at least 1")

    def config(self) -> dict:
        return asdict(self)


# --- the row store ----------------------------------------------------------------------------

class _RowStore:
    """Record tables in input order: in memory up to a budget, then in an lz4 IPC spill file.

    ``rank_order`` yields the rows again in any order given as ordinals (see the module text
    for the memory bound).
    """

    def __init__(self, folder: Path, budget: int):
        self.folder = folder
        self.budget = budget
        self.rows = 0
        self.held = 0
        self.tables: list[pa.Table] = []  # in memory, in ordinal order
        self.starts: list[int] = []
        self._pending: list[pa.Table] = []  # batches not yet joined into a block
        self._pending_bytes = 0
        self._pending_start = 0
        self.spilled = False
        self._writer = None
        self._schema: pa.Schema | None = None
        self._files: list[Path] = []
        self._batches: list[tuple[int, int, int, int]] = []  # (file, batch, start, rows)
        self._counts: list[int] = []  # batches per file

    def add(self, table: pa.Table, nbytes: int) -> None:
        if table.num_rows == 0:
            return
        if not self.spilled and self.held + nbytes > self.budget:
            self._start_spill()
        if self.spilled:
            self._spill(table, self.rows)
        else:
            if self._pending and not table.schema.equals(self._pending[0].schema):
                self._seal()
            if not self._pending:
                self._pending_start = self.rows
            self._pending.append(table)
            self._pending_bytes += nbytes
            self.held += nbytes
            if self._pending_bytes >= BLOCK_BYTES:
                self._seal()
        self.rows += table.num_rows

    def _seal(self) -> None:
        """Join the pending batches into one block: gathering a piece then costs one take per
        block it touches instead of one per read batch (thousands of small takes)."""
        if self._pending:
            self.tables.append(pa.concat_tables(self._pending).combine_chunks())
            self.starts.append(self._pending_start)
            self._pending, self._pending_bytes = [], 0

    def _start_spill(self) -> None:
        self._seal()
        self.spilled = True
        self.folder.mkdir(parents=True, exist_ok=True)
        for start, table in zip(self.starts, self.tables, strict=True):
            self._spill(table, start)
        self.tables, self.starts, self.held = [], [], 0

    def _spill(self, table: pa.Table, start: int) -> None:
        if self._writer is None or not table.schema.equals(self._schema):
            self._close_writer()
            path = self.folder / f"spill-{len(self._files):05d}.arrow"
            self._writer = pa.ipc.new_file(str(path), table.schema,
                                           options=pa.ipc.IpcWriteOptions(compression="lz4"))
            self._schema = table.schema
            self._files.append(path)
            self._counts.append(0)
        f = len(self._files) - 1
        for batch in table.combine_chunks().to_batches():
            self._writer.write_batch(batch)
            self._batches.append((f, self._counts[f], start, batch.num_rows))
            self._counts[f] += 1
            start += batch.num_rows

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def close(self) -> None:
        self._close_writer()
        self.tables, self._pending = [], []
        shutil.rmtree(self.folder, ignore_errors=True)

    def rank_order(self, perm: np.ndarray, row_bytes: np.ndarray, schema: pa.Schema,
                   chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[int, pa.Table]]:
        """(rank offset, table) pieces holding the rows ``perm`` names, in that order, each
        conformed to ``schema``."""
        if self.spilled:
            yield from self._from_spill(perm, row_bytes, schema, chunk_bytes)
            return
        self._seal()
        starts = np.asarray(self.starts, dtype=np.int64)
        for a, b in _cuts(row_bytes[perm], chunk_bytes):
            ords = perm[a:b]
            yield a, _gather(ords, starts, lambda e: self.tables[e], schema)

    def _from_spill(self, perm, row_bytes, schema, chunk_bytes):
        self._close_writer()
        windows = _cuts(row_bytes[perm], max(1, self.budget // 2))
        win_of = np.empty(len(perm), dtype=np.int32)
        for w, (a, b) in enumerate(windows):
            win_of[perm[a:b]] = w
        # Route every spilled row to its window's file: one sequential read of the spill.
        opts = pa.ipc.IpcWriteOptions(compression="lz4")
        paths = [self.folder / f"window-{w:05d}.arrow" for w in range(len(windows))]
        writers: dict[int, pa.ipc.RecordBatchFileWriter] = {}
        readers = [pa.ipc.open_file(pa.OSFile(str(p))) for p in self._files]
        try:
            for f, i, start, n in self._batches:
                batch = pa.Table.from_batches([readers[f].get_batch(i)])
                ws = win_of[start:start + n]
                for w in np.unique(ws).tolist():
                    part = _conform(batch.take(pa.array(np.flatnonzero(ws == w))), schema)
                    if w not in writers:
                        writers[w] = pa.ipc.new_file(str(paths[w]), schema, options=opts)
                    writers[w].write_table(part)
        finally:
            for w in writers.values():
                w.close()
            readers.clear()
        for p in self._files:
            p.unlink()
        self._files = []
        for w, (a, b) in enumerate(windows):
            ords = perm[a:b]
            with pa.OSFile(str(paths[w])) as fh:
                table = pa.ipc.open_file(fh).read_all()
            paths[w].unlink()
            # The window's rows are in ordinal order: put them in rank order.
            table = table.take(pa.array(np.searchsorted(np.sort(ords), ords)))
            for c0, c1 in _cuts(row_bytes[ords], chunk_bytes):
                yield a + c0, table.slice(c0, c1 - c0)
            del table
            # Hand the window's memory back to the system before the next one is read: the
            # allocator would otherwise keep it and the process would grow window by window.
            pa.default_memory_pool().release_unused()


def _cuts(sizes: np.ndarray, limit: int) -> list[tuple[int, int]]:
    """Consecutive [a, b) ranges whose sizes add up to at most ``limit`` (at least one row)."""
    out = []
    n = len(sizes)
    cum = np.cumsum(sizes, dtype=np.int64)
    a = 0
    while a < n:
        base = cum[a - 1] if a else 0
        b = int(np.searchsorted(cum, base + limit, side="right"))
        b = max(b, a + 1)
        out.append((a, b))
        a = b
    return out


def _gather(ords: np.ndarray, starts: np.ndarray, table_of: Callable[[int], pa.Table],
            schema: pa.Schema) -> pa.Table:
    """The rows at ordinals ``ords``, in that order, from tables starting at ``starts``: one
    take per table touched, then one to put the rows in order. (A single take over a chunked
    table of all blocks looks simpler but makes Arrow join the chunks: a copy of everything.)"""
    order = np.argsort(ords, kind="stable")
    sorted_ords = ords[order]
    entry = np.searchsorted(starts, sorted_ords, side="right") - 1
    pieces = []
    bounds = np.flatnonzero(np.diff(entry)) + 1
    for seg in np.split(np.arange(len(sorted_ords)), bounds):
        if len(seg) == 0:
            continue
        e = int(entry[seg[0]])
        local = sorted_ords[seg] - starts[e]
        pieces.append(_conform(table_of(e).take(pa.array(local)), schema))
    table = pa.concat_tables(pieces)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return table.take(pa.array(inverse))


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns (missing ones null), cast to its types."""
    cols = []
    for f in schema:
        if f.name in table.column_names:
            col = table.column(f.name)
            cols.append(col if col.type == f.type else pc.cast(col, f.type))
        else:
            cols.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(cols, schema=schema)


# --- pass 1: read, check, build records, collect keys -------------------------------------------

@dataclass
class _Collected:
    stats: ReadStats = field(default_factory=ReadStats)
    traces: int = 0
    exported: int = 0
    order_col: str | None = None
    order_kind: str = "id"
    keys: list[pl.DataFrame] = field(default_factory=list)
    row_bytes: list[np.ndarray] = field(default_factory=list)
    test: list[np.ndarray] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)
    tokens: list[np.ndarray] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)
    dropped_rows: list[dict] = field(default_factory=list)
    sources: Counter = field(default_factory=Counter)
    no_thinking: int = 0
    text_bytes: int = 0
    meta_schema: pa.Schema | None = None
    renamed: dict[str, str] = field(default_factory=dict)
    has_score: bool = False

    def note_drops(self, ids, reason_values: list[tuple[str, str]], label: str, rows) -> None:
        for i, (reason, value) in enumerate(reason_values):
            self.dropped[reason] += 1
            if len(self.dropped_rows) < MAX_DROPPED_LISTED:
                self.dropped_rows.append({"id": ids[i], "reason": reason, "value": value,
                                          "input_file": label,
                                          "input_row": rows[i] if rows is not None else None})


def _order_values(table: pa.Table, col: str | None, label: str) -> pa.Array:
    n = table.num_rows
    if col is None:
        return pa.nulls(n, pa.float64())
    if col not in table.column_names:
        return pa.nulls(n, pa.float64())
    arr = table.column(col).combine_chunks() if n else pa.array([], table.schema.field(col).type)
    t = arr.type
    if _numeric(t):
        arr = pc.cast(arr, pa.float64())
        return pc.if_else(pc.fill_null(pc.is_nan(arr), False), pa.scalar(None, pa.float64()),
                          arr)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return pc.cast(arr, pa.string())
    if pa.types.is_temporal(t):  # dates and times order as their integer encoding
        width = pa.int32() if t.bit_width == 32 else pa.int64()
        return pc.cast(arr.view(width), pa.float64())
    raise InputError(f"--order-by {col}: column {col} of {label} is {t}; expected a number, "
                     "a boolean, a string or a date")


def _numeric(t: pa.DataType) -> bool:
    return (pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_floating(t)
            or pa.types.is_decimal(t) or pa.types.is_null(t))


def _split_test(table: pa.Table, opts: ExportOptions) -> np.ndarray:
    n = table.num_rows
    if opts.split_test <= 0:
        return np.zeros(n, dtype=bool)
    threshold = int(opts.split_test * 2**64)
    if opts.split_key == "id":
        keys = table.column(S.ID).to_pylist()
    else:
        questions = table.column(S.QUESTION).to_pylist()
        cache = {q: text_key(q) for q in set(questions)}  # samples of a question share it
        keys = [cache[q] for q in questions]
    return np.array([xxhash.xxh3_64_intdigest(k.encode("utf-8", "surrogatepass"),
                                              seed=SPLIT_SEED) < threshold for k in keys],
                    dtype=bool)


# Column names that trainers read as data: a metadata column called "prompt" beside `messages`
# would turn the set into a prompt-completion one for TRL, "input_ids" would make TRL skip its
# tokenisation. Metadata columns with these names (or the record's own) get an input_ prefix.
RESERVED = frozenset({"messages", "conversations", "system", "prompt", "completion", "text",
                      "tools", "chat_template_kwargs", "input_ids", "attention_mask", "labels",
                      "assistant_masks", "completion_mask", "images", "chosen", "rejected",
                      "label", "rank"})


def _metadata(table: pa.Table, record_cols: tuple[str, ...], run: _Collected) -> pa.Table:
    """The columns kept beside the record: all but the record's texts and id (renamed with an
    ``input_`` prefix where a trainer or the output itself uses the name)."""
    taken = {*record_cols, S.ID, *RESERVED}
    cols, names = [], []
    for name in table.column_names:
        if name in F.CONSUMED or name == S.ID:
            continue
        out = name
        if name in taken:
            out = f"input_{name}"
            run.renamed[name] = out
        cols.append(table.column(name))
        names.append(out)
    return pa.Table.from_arrays(cols, names=names) if cols else pa.table({})


def _input_rows(batch, file_row: int) -> list[int] | None:
    t = batch.table
    if batch.dropped is None and t.num_rows == batch.input_rows \
            and "turn_index" not in t.column_names:
        return list(range(file_row, file_row + t.num_rows))
    return None


def _pass1(inputs: list[str], sources: list[Source], opts: ExportOptions, store: _RowStore,
           tokenizer, progress: ProgressFn | None) -> _Collected:
    run = _Collected()
    record_cols = F.record_columns(opts.format, opts.system)
    first = True
    ordinal = 0
    file_rows: Counter = Counter()
    meta_schemas: list[pa.Schema] = []
    for batch in iter_traces(inputs, ReadOptions(batch_rows=opts.batch_rows), run.stats,
                             progress, sources=sources):
        label = batch.source.label
        rows = _input_rows(batch, file_rows[label])
        file_rows[label] += batch.input_rows
        table = batch.table
        if first:
            first = False
            _choose_order(table, opts, run, label)
        if batch.dropped is not None:
            d = batch.dropped
            run.note_drops(d.column(S.ID).to_pylist(),
                           list(zip(d.column(S.DROP_REASON).to_pylist(),
                                    [v or "" for v in d.column(S.DROP_VALUE).to_pylist()],
                                    strict=True)),
                           label, d.column(S.DROP_ROW).to_pylist())
        run.traces += table.num_rows
        bad, values = F.marker_faults(table, opts.think_style)
        if bad.any():
            idx = np.flatnonzero(bad)
            run.note_drops(table.column(S.ID).take(pa.array(idx)).to_pylist(),
                           [(F.MARKER_REASON, v) for v in values], label,
                           [rows[i] for i in idx.tolist()] if rows is not None else None)
            table = table.filter(pa.array(~bad))
        n = table.num_rows
        if n == 0:
            continue
        meta = pa.table({}) if opts.strip_meta else _metadata(table, record_cols, run)
        if meta.num_columns and (not meta_schemas or not meta.schema.equals(meta_schemas[-1])):
            meta_schemas.append(meta.schema)
        # The texts are stored as they are and formatted in rank order at write time: taking
        # rows of plain string columns is cheaper than of list<struct> records.
        stored = pa.table({S.ID: table.column(S.ID),
                           **{c: F.text_column(table, c) for c in F.CHECKED},
                           **{c: meta.column(c) for c in meta.column_names}}).combine_chunks()
        texts = F.text_bytes(table)
        extra = ROW_OVERHEAD + (len(opts.system.encode()) if opts.system else 0)
        sizes = texts + extra + (meta.nbytes // n if meta.num_columns else 0)
        store.add(stored, int(stored.nbytes))

        order = _order_values(table, run.order_col, label)
        run.keys.append(pl.from_arrow(pa.table({
            "o": order, "id": pc.cast(table.column(S.ID), pa.string()),
            "ord": pa.array(np.arange(ordinal, ordinal + n, dtype=np.int64))}),
            rechunk=False))
        run.row_bytes.append(sizes.astype(np.int64))
        run.test.append(_split_test(table, opts))
        if "score" in table.column_names and _numeric(table.schema.field("score").type):
            run.has_score = True
            run.scores.append(pc.cast(table.column("score"), pa.float64()).to_numpy(
                zero_copy_only=False).astype(np.float64))
        else:
            run.scores.append(np.full(n, np.nan))
        if S.SOURCE in table.column_names:
            run.sources.update({k: v for k, v in Counter(
                table.column(S.SOURCE).to_pylist()).items() if k is not None})
        traj = table.column(S.TRAJECTORY) if S.TRAJECTORY in table.column_names \
            else pa.nulls(n, pa.string())
        run.no_thinking += n - int(pc.sum(pc.cast(F.has_thinking(
            pc.cast(traj, pa.string())), pa.int64())).as_py() or 0)
        run.text_bytes += int(texts.sum())
        if tokenizer is not None:
            run.tokens.append(_count_tokens(tokenizer, table, opts))
        run.exported += n
        ordinal += n
    if meta_schemas:
        try:
            run.meta_schema = pa.unify_schemas(meta_schemas, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise InputError(f"{', '.join(inputs)}: a metadata column has types that cannot be "
                             f"combined across files ({e}); pass --strip-meta") from None
    return run


def _choose_order(table: pa.Table, opts: ExportOptions, run: _Collected, label: str) -> None:
    if opts.order_by is not None:
        if opts.order_by not in table.column_names:
            raise InputError(f"--order-by {opts.order_by}: no such column in {label} (columns: "
                             f"{', '.join(table.column_names)})")
        run.order_col = opts.order_by
    elif "score" in table.column_names:
        run.order_col = "score"
    if run.order_col is not None:
        _order_values(table.slice(0, 0), run.order_col, label)  # refuses lists, structs
        direction = "ascending" if opts.ascending else "descending"
        run.order_kind = f"{run.order_col} {direction} (nulls last), then id ascending"
    else:
        run.order_kind = "id ascending (no score column)"


# --- tokens under the student's chat template ---------------------------------------------------

def load_tokenizer(path: str, option: str = "--tokenizer", extra: str = "hf"):
    """A tokenizer with a chat template (what SFT trainers render conversations with), or one
    InputError line naming ``option``. Shared by export's length check and validate."""
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise InputError(f"{option} {path}: needs transformers (pip install "
                         f"'curate-prm[{extra}]')") from None
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except Exception as e:  # noqa: BLE001 - OSError, ValueError, hub errors … all mean "cannot"
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"{option} {path}: cannot load a tokenizer ({first})") from None
    if not getattr(tok, "chat_template", None):
        raise InputError(f"{option} {path}: has no chat template, so SFT trainers cannot "
                         "render the conversations with it; use the student's instruct "
                         "tokenizer")
    return tok


def _count_tokens(tok, table: pa.Table, opts: ExportOptions) -> np.ndarray:
    convs = F.chat_messages(table, opts.think_style, opts.system)
    texts = tok.apply_chat_template(convs, tokenize=False)
    ids = tok(texts, add_special_tokens=False)["input_ids"]
    return np.array([len(x) for x in ids], dtype=np.int64)


# --- plan: ranks, splits, shards ----------------------------------------------------------------

def _rank(run: _Collected, opts: ExportOptions) -> np.ndarray:
    """Ordinals in rank order."""
    keys = pl.concat(run.keys, how="vertical_relaxed") if run.keys else pl.DataFrame()
    if run.order_col is None:
        keys = keys.sort(["id", "ord"])
    else:
        keys = keys.sort(["o", "id", "ord"], descending=[not opts.ascending, False, False],
                         nulls_last=True)
    return keys["ord"].to_numpy().astype(np.int64)


def shard_counts(sizes: np.ndarray, shards: int | None, shard_bytes: int) -> list[int]:
    """Rows per shard for a split whose rows (in rank order) have these sizes."""
    n = len(sizes)
    if n == 0:
        return []
    if shards is not None:
        k = min(shards, n)
        base, extra = divmod(n, k)
        return [base + (1 if i < extra else 0) for i in range(k)]
    total = int(sizes.sum())
    k = min(n, max(1, math.ceil(total / shard_bytes)))
    cum = np.cumsum(sizes, dtype=np.int64)
    # Cut where the running size passes each k-th of the total; every shard keeps >= 1 row.
    bounds = [0]
    for i in range(1, k):
        b = int(np.searchsorted(cum, total * i / k, side="left")) + 1
        bounds.append(min(max(b, bounds[-1] + 1), n - (k - i)))
    bounds.append(n)
    return [bounds[i + 1] - bounds[i] for i in range(k)]


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """Parquet leaf columns worth dictionary-encoding: all but the message texts and the id.
    Trying a dictionary on long unique texts costs ~15% of the write before Parquet falls back
    to plain encoding, for nothing."""
    out = []

    def walk(path: str, t: pa.DataType) -> None:
        if pa.types.is_list(t) or pa.types.is_large_list(t):
            walk(f"{path}.list.element", t.value_type)
        elif pa.types.is_struct(t):
            for f in t:
                walk(f"{path}.{f.name}", f.type)
        elif path != S.ID and not path.endswith((".content", ".value")):
            out.append(path)

    for f in schema:
        walk(f.name, f.type)
    return out


class _ShardWriter:
    """One split's shards, cut at planned row counts."""

    def __init__(self, folder: Path, split: str, counts: list[int], schema: pa.Schema):
        self.folder = folder
        self.split = split
        self.counts = counts
        self.schema = schema
        self.index = 0
        self.left = counts[0] if counts else 0
        self.writer: pq.ParquetWriter | None = None
        self.files: list[dict] = []
        self.dictionary = _dictionary_columns(schema)

    def _name(self, i: int) -> str:
        return SHARD_NAME.format(split=self.split, i=i, n=len(self.counts))

    def write(self, table: pa.Table) -> None:
        while table.num_rows:
            if self.writer is None:
                self.folder.mkdir(parents=True, exist_ok=True)
                self.writer = pq.ParquetWriter(self.folder / self._name(self.index),
                                               self.schema, compression="zstd",
                                               use_dictionary=self.dictionary)
            take = min(self.left, table.num_rows)
            self.writer.write_table(table.slice(0, take), row_group_size=ROW_GROUP_ROWS)
            table = table.slice(take)
            self.left -= take
            if self.left == 0:
                self._close()

    def _close(self) -> None:
        self.writer.close()
        self.writer = None
        path = self.folder / self._name(self.index)
        self.files.append({"file": f"data/{path.name}", "split": self.split,
                           "rows": self.counts[self.index], "bytes": path.stat().st_size})
        self.index += 1
        self.left = self.counts[self.index] if self.index < len(self.counts) else 0

    def close(self) -> list[dict]:
        if self.writer is not None:  # only when fewer rows came than planned: a bug
            raise RuntimeError(f"{self.split} shard {self.index}: {self.left} planned rows "
                               "never came")
        return self.files

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class _Sink:
    """Encodes and writes output pieces in a background thread (Parquet's zstd encoding and
    the JSON serialisation release the GIL for much of their work), so that the next piece is
    gathered and formatted meanwhile; see ``Background`` for the bounded queue and errors."""

    def __init__(self, writers: list[_ShardWriter], stream):
        self.writers = writers
        self.stream = stream
        self.background = Background(lambda item: self._write(*item), "curate-export-writer")

    def put(self, table: pa.Table, test: np.ndarray) -> None:
        self.background.put((table, test))

    def _write(self, table: pa.Table, test: np.ndarray) -> None:
        if self.stream is not None:
            buf = io.BytesIO()
            pl.from_arrow(table).write_ndjson(buf)
            self.stream.write(buf.getvalue())
            return
        if test.any():
            self.writers[1].write(table.filter(pa.array(test)))
            table = table.filter(pa.array(~test))
        self.writers[0].write(table)

    def close(self) -> None:
        self.background.close()
        if self.stream is not None:
            self.stream.flush()

    def abort(self) -> None:
        self.background.stop()


# --- the stage ----------------------------------------------------------------------------------

def _schemas(opts: ExportOptions, run: _Collected) -> tuple[pa.Schema, pa.Schema]:
    """(the output's schema: record columns, id, rank, metadata unified over all batches;
    the row store's: id, the three texts, the same metadata)."""
    probe = F.build_records(pa.table({S.QUESTION: pa.array([""]), S.RESPONSE: pa.array([""])}),
                            opts.format, opts.think_style, opts.system)
    meta = list(run.meta_schema) if run.meta_schema is not None else []
    out = pa.schema([*(pa.field(k, v.type) for k, v in probe.items()),
                     pa.field(S.ID, pa.string()), pa.field("rank", pa.int64()), *meta])
    stored = pa.schema([pa.field(S.ID, pa.string()),
                        *(pa.field(c, pa.string()) for c in F.CHECKED), *meta])
    return out, stored


def _output_piece(piece: pa.Table, offset: int, opts: ExportOptions,
                  schema: pa.Schema) -> pa.Table:
    """Stored rows (in rank order, ranks offset+1 …) → output rows: records, id, rank, meta."""
    records = F.build_records(piece, opts.format, opts.think_style, opts.system)
    n = piece.num_rows
    cols = {**records, S.ID: piece.column(S.ID),
            "rank": pa.array(np.arange(offset + 1, offset + n + 1, dtype=np.int64))}
    return pa.Table.from_arrays(
        [cols[f.name] if f.name in cols else piece.column(f.name) for f in schema],
        schema=schema)


def _token_summary(run: _Collected, opts: ExportOptions) -> dict | None:
    if opts.tokenizer is None:
        return None
    lens = np.concatenate(run.tokens) if run.tokens else np.zeros(0, dtype=np.int64)
    limit = opts.max_seq_len or TRL_DEFAULT_MAX_LENGTH
    s = np.sort(lens)

    def q(p):
        return int(s[min(len(s) - 1, int(p * len(s)))]) if len(s) else 0

    return {"tokenizer": opts.tokenizer, "max_seq_len": limit,
            "limit_is_trl_default": opts.max_seq_len is None,
            "median": q(0.5), "p90": q(0.9), "max": int(s[-1]) if len(s) else 0,
            "over": int((lens > limit).sum())}


def _rows(n: int) -> str:
    return f"{n:,} row" + ("" if n == 1 else "s")


def _notes(run: _Collected, opts: ExportOptions, splits: dict, tokens: dict | None,
           shards_asked: int | None) -> list[str]:
    notes = []
    if run.dropped.get(F.MARKER_REASON):
        notes.append(f"{_rows(run.dropped[F.MARKER_REASON])} already hold {opts.think_style} "
                     "think markers in their text: left out (ids in manifest.json "
                     "'dropped_rows')")
    if run.no_thinking:
        notes.append(f"{_rows(run.no_thinking)} without thinking: exported without a thinking "
                     "block")
    if run.renamed:
        notes.append("metadata columns renamed (trainers read these names as data): "
                     + ", ".join(f"{a} → {b}" for a, b in run.renamed.items()))
    if opts.split_test and not splits.get("test", {}).get("rows"):
        notes.append(f"--split-test {opts.split_test}: no row fell into the test split "
                     f"({run.exported} rows); no test shards written")
    if opts.split_test and not splits["train"]["rows"]:
        notes.append(f"--split-test {opts.split_test}: every row fell into the test split; no "
                     "train shards written")
    elif shards_asked is not None and splits["train"]["shards"] < shards_asked:
        notes.append(f"--shards {shards_asked}: only {splits['train']['shards']} train rows, "
                     "one shard each")
    if tokens and tokens["over"]:
        who = ("TRL's default max_length (1024) will silently truncate"
               if tokens["limit_is_trl_default"] else "training would truncate")
        notes.append(f"WARNING: {tokens['over']:,} of {run.exported:,} examples are longer "
                     f"than {tokens['max_seq_len']:,} tokens under {tokens['tokenizer']}'s chat "
                     f"template; {who} them (set max_length in SFTConfig, or filter with "
                     "curate filter --max-tokens)")
    return notes


def export_stage(inputs: list[str], out: str, opts: ExportOptions, *, overwrite: bool = False,
                 progress: ProgressFn | None = None, command: str | None = None,
                 stream=None) -> dict:
    """Run ``curate export``; returns the summary (also written into the manifest).

    ``out == "-"`` writes JSON Lines to ``stream`` (default: stdout's binary buffer) instead of
    a folder.
    """
    t0 = time.time()
    to_stdout = out == "-"
    if to_stdout:
        for name, value in (("--split-test", opts.split_test or None), ("--shards", opts.shards),
                            ("--shard-size", opts.shard_size)):
            if value is not None:
                raise InputError(f"{name}: shards and splits need a folder; -o - writes one "
                                 "JSON Lines stream")
    sources = resolve_inputs(inputs)  # before anything is created: a bad INPUT fails fast
    tokenizer = load_tokenizer(opts.tokenizer) if opts.tokenizer else None
    if to_stdout:
        scratch = Path(tempfile.mkdtemp(prefix="curate-export-"))
        try:
            return _run(inputs, sources, opts, None, scratch, tokenizer, progress, command,
                        stream or sys.stdout.buffer, t0)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    with StageOutput(out, "export", overwrite=overwrite) as dest:
        summary = _run(inputs, sources, opts, dest, dest.tmp / ".spill", tokenizer, progress,
                       command, None, t0)
    summary["output"] = str(out)
    return summary


def _run(inputs, sources, opts: ExportOptions, dest: StageOutput | None, scratch: Path,
         tokenizer, progress, command, stream, t0) -> dict:
    store = _RowStore(scratch, opts.buffer_bytes)
    writers: list[_ShardWriter] = []
    sink = None
    try:
        run = _pass1(inputs, sources, opts, store, tokenizer, progress)
        if run.exported == 0:
            raise InputError(f"{', '.join(inputs)}: no row to export ({run.traces} traces; "
                             f"left out: {dict(run.dropped) or 'none'}); nothing written")
        t_read = time.time() - t0
        perm = _rank(run, opts)
        row_bytes = np.concatenate(run.row_bytes)
        test = np.concatenate(run.test)
        schema, stored_schema = _schemas(opts, run)
        is_test = test[perm]
        splits = {"train": {"rows": int((~is_test).sum())}, "test": {"rows": int(is_test.sum())}}
        if stream is None:
            data = dest.tmp / "data"
            shard_bytes = opts.shard_size or DEFAULT_SHARD_BYTES
            train_sizes = row_bytes[perm[~is_test]]
            test_sizes = row_bytes[perm[is_test]]
            train_counts = shard_counts(train_sizes, opts.shards, shard_bytes)
            test_shards = None
            if opts.shards is not None:  # test shards of the train shards' average size
                test_shards = opts.shards if not train_counts else min(opts.shards, max(
                    1, math.ceil(int(test_sizes.sum()) * len(train_counts)
                                 / max(1, int(train_sizes.sum())))))
            test_counts = shard_counts(test_sizes, test_shards, shard_bytes)
            writers = [_ShardWriter(data, "train", train_counts, schema),
                       _ShardWriter(data, "test", test_counts, schema)]
            for name, counts, mask in (("train", train_counts, ~is_test),
                                       ("test", test_counts, is_test)):
                splits[name].update(shards=len(counts),
                                    text_bytes=int(row_bytes[perm[mask]].sum()))
        sink = _Sink(writers, stream)
        for offset, piece in store.rank_order(perm, row_bytes, stored_schema):
            n = piece.num_rows
            sink.put(_output_piece(piece, offset, opts, schema), is_test[offset:offset + n])
            if progress:
                progress(n)
        sink.close()
        files = [f for w in writers for f in w.close()]
        for s in ("train", "test"):
            if s in splits and "shards" in splits[s]:
                splits[s]["file_bytes"] = sum(f["bytes"] for f in files if f["split"] == s)
    except BaseException:
        if sink is not None:
            sink.abort()
        for w in writers:
            w.abort()
        raise
    finally:
        store.close()

    tokens = _token_summary(run, opts)
    scores = np.concatenate(run.scores)
    score = card.score_stats(scores) if run.has_score else None
    counts = {"rows_in": run.stats.rows_in, "traces": run.traces, "rows_out": run.exported,
              "dropped": dict(run.dropped), "rows_without_thinking": run.no_thinking}
    chain, fingerprints = [], []
    if stream is None:
        chain = card.manifest_chain(inputs)
        fingerprints = [fingerprint(s) for s in sources]
        meta_cols = [f.name for f in run.meta_schema] if run.meta_schema is not None else []
        readme = card.render(
            name=Path(dest.out).name, path=str(dest.out), schema=schema, splits=splits,
            fmt=opts.format, style=opts.think_style, system=opts.system,
            ranking=run.order_kind, counts=counts, score=score, sources=run.sources,
            inputs=fingerprints, chain=chain, meta_columns=meta_cols, tokens=tokens,
            split_test=opts.split_test, split_key=opts.split_key)
        (dest.tmp / "README.md").write_text(readme, encoding="utf-8")
    elapsed = time.time() - t0
    summary = {
        "rows_in": run.stats.rows_in,
        "traces": run.traces,
        "rows_out": run.exported,
        "dropped": dict(run.dropped),
        "splits": {k: v["rows"] for k, v in splits.items() if k == "train" or v["rows"]},
        "shards": {k: v.get("shards", 0) for k, v in splits.items() if v.get("shards")},
        "format": opts.format,
        "think_style": opts.think_style,
        "ranking": run.order_kind,
        "rows_without_thinking": run.no_thinking,
        "score": {k: score[k] for k in ("min", "median", "max")} if score else None,
        "tokens": tokens,
        "notes": _notes(run, opts, splits, tokens, opts.shards if stream is None else None),
        "text_bytes": run.text_bytes,
        "seconds": round(elapsed, 3),
        "read_seconds": round(t_read, 3),
        "rows_per_s": round(run.stats.rows_in / elapsed, 1) if elapsed > 0 else None,
        "text_mb_per_s": round(run.text_bytes / 1e6 / elapsed, 2) if elapsed > 0 else None,
        "output": "-" if stream is not None else None,
    }
    if stream is not None:
        return summary
    dest._commit_folder({
        "command": command,
        "inputs": fingerprints,
        "config": opts.config(),
        "counts": counts,
        "dropped_rows": run.dropped_rows,
        "dropped_rows_truncated": sum(run.dropped.values()) > len(run.dropped_rows),
        "ranking": run.order_kind,
        "splits": splits,
        "selection": [{k: st[k] for k in ("folder", "stage", "command", "config", "counts")}
                      for st in chain],
        "timings": {"seconds": round(elapsed, 3), "read_seconds": round(t_read, 3)},
        "schema": schema_doc(schema),
        "summary": summary,
    }, files, [])
    return summary
