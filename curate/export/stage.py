"""``curate export``: the kept traces → ranked SFT shards, a dataset card and a manifest.

Output folder::

    OUT/data/train-00000-of-00004.parquet …   the hub's shard names; test-* with --split-test
    OUT/_README.md                             the dataset card (README.md with --hub-card)
    OUT/_dropped/                              every row left out, with its reason
    OUT/_manifest.json                         inputs, settings, counts, splits, the chain

or, with ``-o -``, JSON Lines on stdout (one record a line, nothing else), in rank order.

The card is ``_README.md`` by default so that pandas and pyarrow read OUT as it is (they take
every file that does not start with ``_`` or ``.`` for data); ``--hub-card`` names it
``README.md`` for ``huggingface-cli upload``, where those readers then need ``OUT/data``.
``datasets.load_dataset(OUT)`` reads the splits either way (from the shard names).

Ranking convention (shared with ``curate filter`` and ``curate dedup``): rows are ranked by
``score`` descending, missing scores (null, NaN, ±inf) last; ties, and every row when there is
no ``score`` column, are broken by ``id`` ascending (a plain string compare), so the order never
depends on the input's row order or on how it was cut into batches. ``--order-by COL`` ranks by
another column (``--ascending`` flips its direction; missing values stay last and ties still go
by id). ``rank`` is 1-based and global: the test split's rows keep the rank they have among all
rows.

Every row of INPUT is exported (selection happened upstream), except rows that hold the chosen
think style's markers (``contains_think_marker``, see ``formats``) and rows the reader itself
drops when INPUT is not a curate folder; both go to ``_dropped/``, every one of them.

Memory. Ranking needs every row's key before the first row can be written. Pass 1 reads INPUT
once: it checks the markers and keeps, per row, the rank key (order value, id, ordinal: about
40 bytes plus the id), its size and its split; the rows themselves (id, the three texts as they
are, the metadata columns) go to a row store (``rowstore``) that holds them in memory up to
``--buffer`` (default 1 GiB) and past it spills them to disk. Pass 2 writes in rank order
(``shards``); the records are built on rank-ordered pieces, just before a background thread
encodes them. (200k traces of 3 KB: 1.2 GB peak RSS with the default buffer, 0.7 GB with
``--buffer 128MiB``; see bench/export_bench.py.)

Split. ``--split-test F`` puts a row in the test split when the xxh3-64 hash of its split key,
read as a fraction of 2**64, is below F. The key is the normalised question (``text_key``) by
default, so that samples of one problem never straddle the splits (a test set that shares
problems with training measures memorisation), or the id (``--split-key id``). Either way a
row's side depends on that row alone: never on the row order or on the other rows. The test
rows are thus a uniform draw across ranks, about F of the rows (not exactly: a small set can
get an empty test split, which the summary says).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from .. import schema as S
from ..dropped import rows_of
from ..errors import InputError
from ..io.sources import fingerprint
from ..io.writer import parse_size
from ..options import StageOptions, one_of, option
from ..read.traces import ReadOptions, ReadStats
from ..select.normalize import text_key
from ..stage import Stage, StageContext
from . import card
from . import formats as F
from .rowstore import RowStore
from .shards import ShardWriter, Sink, shard_counts

DEFAULT_SHARD_BYTES = 500 * 1000**2  # the hub's push_to_hub default, "500MB"
ROW_OVERHEAD = 64  # bytes a row costs beyond its texts (markers, offsets, id)
SPLIT_SEED = 0x5EED_5917
SPLIT_KEYS = ("question", "id")
TRL_DEFAULT_MAX_LENGTH = 1024  # SFTConfig.max_length: TRL truncates longer examples silently
CARD = "_README.md"
HUB_CARD = "README.md"


@dataclass
class ExportOptions(StageOptions):
    format: str = option("messages", help="Record format: messages (TRL conversational), "
                         "sharegpt (LLaMA-Factory), prompt-completion (TRL, conversational).")
    think_style: str = option("r1", help="Markers around the thinking: r1, openthoughts, s1, "
                              "none (thinking dropped).")
    system: str | None = option(help="A system prompt added to every record.")
    order_by: str | None = option(help="Rank by this column instead of score (descending; "
                                  "missing values last; ties by id).")
    ascending: bool = option(False, help="Rank the --order-by / score column ascending.")
    strip_meta: bool = option(False, help="Keep only the record, id and rank (drop score and "
                              "other metadata columns).")
    shards: int | None = option(help="Number of train shards (equal row counts).")
    shard_size: str | None = option(help="Shard size by uncompressed text, e.g. 500MB (the "
                                    "default, like push_to_hub).")
    split_test: float = option(0.0, help="Share of rows (0 <= F < 1) for a test split, chosen "
                               "by a hash of --split-key.")
    split_key: str = option("question", help="What the test split hashes: question (samples "
                            "of one problem stay together) or id.")
    tokenizer: str | None = option(help="The student's tokenizer: count tokens under its chat "
                                   "template and report the examples longer than "
                                   "--max-seq-len.")
    max_seq_len: int | None = option(help="Token limit for the --tokenizer check (default: "
                                     "TRL's max_length, 1024).")
    buffer: str = option("1GiB", help="Rows held in memory while ranking; past it they are "
                         "spilled to disk.")
    hub_card: bool = option(False, help="Name the dataset card README.md, as the hub wants it "
                            "for `huggingface-cli upload` (pandas and pyarrow then read "
                            "OUT/data instead of OUT); default _README.md.")
    buffer_bytes: int | None = None  # Python callers: the buffer in bytes (overrides buffer)
    batch_rows: int = 2048

    def __post_init__(self):
        one_of("--format", self.format, F.FORMATS)
        one_of("--think-style", self.think_style, F.THINK_STYLES)
        if self.shards is not None and self.shards < 1:
            raise InputError(f"--shards {self.shards}: must be at least 1")
        if self.shards is not None and self.shard_size is not None:
            raise InputError("--shards and --shard-size: choose one")
        if not (0 <= self.split_test < 1):  # also refuses NaN
            raise InputError(f"--split-test {self.split_test}: must be in [0, 1) "
                             "(the share of rows that go to the test split)")
        one_of("--split-key", self.split_key, SPLIT_KEYS)
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
        # Python callers may give sizes in bytes; the command line and configs give text.
        self.shard_bytes_text = self.shard_size if isinstance(self.shard_size, int) else (
            parse_size(self.shard_size) if self.shard_size is not None else None)
        if self.buffer_bytes is None:
            self.buffer_bytes = parse_size(self.buffer, "--buffer")
        if self.buffer_bytes < 1:
            raise InputError(f"--buffer {self.buffer_bytes}: must be positive")
        if self.batch_rows < 1:
            raise InputError(f"--batch-rows {self.batch_rows}: must be at least 1")


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
    sources: Counter = field(default_factory=Counter)
    no_thinking: int = 0
    text_bytes: int = 0
    meta_schema: pa.Schema | None = None
    renamed: dict[str, str] = field(default_factory=dict)
    has_score: bool = False
    has_context: bool = False  # some row is a turn of a longer conversation
    has_tools: bool = False  # some row carries tool definitions
    context_system: bool = False  # some row's context has a system prompt (sharegpt's column)


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
        # NaN and ±inf are no value: ranked last, like nulls
        return pc.if_else(pc.invert(pc.fill_null(pc.is_finite(arr), True)),
                          pa.scalar(None, pa.float64()), arr)
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


def _pass1(ctx: StageContext, opts: ExportOptions, store: RowStore, tokenizer) -> _Collected:
    run = _Collected(stats=ctx.read_stats)
    record_cols = F.record_columns(opts.format, True, True)  # every name a record may use
    first = True
    ordinal = 0
    meta_schemas: list[pa.Schema] = []
    for batch in ctx.traces(ReadOptions(batch_rows=opts.batch_rows)):
        label = batch.label
        table = batch.table
        if first:
            first = False
            _choose_order(table, opts, run, label)
        run.traces += table.num_rows
        bad, values = F.marker_faults(table, opts.think_style)
        if bad.any():
            ctx.drop(rows_of(table, bad, F.MARKER_REASON, values, label, batch.positions))
            table = table.filter(pa.array(~bad))
        n = table.num_rows
        if n == 0:
            continue
        meta = pa.table({}) if opts.strip_meta else _metadata(table, record_cols, run)
        if meta.num_columns and (not meta_schemas or not meta.schema.equals(meta_schemas[-1])):
            meta_schemas.append(meta.schema)
        # The texts are stored as they are and formatted in rank order at write time: taking
        # rows of plain string columns is cheaper than of list<struct> records.
        conversation = {}
        if F.has_context(table):
            run.has_context = True
            context = pc.cast(table.column(S.CONTEXT), S.CONTEXT_TYPE)
            conversation[S.CONTEXT] = context
            run.context_system = run.context_system or any(
                m["role"] == "system" for c in context.to_pylist() for m in c or [])
        if S.TOOLS in table.column_names and table.column(S.TOOLS).null_count < n:
            run.has_tools = True
            conversation[S.TOOLS] = F.tools_text(table)
        stored = pa.table({S.ID: table.column(S.ID),
                           **{c: F.text_column(table, c) for c in F.CHECKED}, **conversation,
                           **{c: meta.column(c) for c in meta.column_names}}).combine_chunks()
        texts = F.text_bytes(table) + _conversation_bytes(conversation, n)
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
            raise InputError(f"{', '.join(ctx.inputs)}: a metadata column has types that cannot be "
                             f"combined across files ({e}); pass --strip-meta") from None
    return run


def _conversation_bytes(conversation: dict[str, pa.Array], n: int) -> np.ndarray:
    """Per row, the bytes its context and tools add to a record (for shard sizes)."""
    total = np.zeros(n, dtype=np.int64)
    if S.CONTEXT in conversation:
        for i, c in enumerate(conversation[S.CONTEXT].to_pylist()):
            total[i] += sum(len((m["content"] or "").encode()) for m in c or [])
    if S.TOOLS in conversation:
        total += pc.fill_null(pc.binary_length(conversation[S.TOOLS]), 0).to_numpy(
            zero_copy_only=False).astype(np.int64)
    return total


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
    local = Path(path).expanduser()
    if not local.exists() and (path.startswith((".", "/", "~")) or path.count("/") != 1):
        # not a folder, and not shaped like a hub id (owner/name): say so, instead of the hub
        # client's "Repo id must use alphanumeric chars"
        raise InputError(f"{option} {path}: no such folder (give a local model folder or a hub "
                         "id owner/name)")
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


# --- the stage ----------------------------------------------------------------------------------

def _schemas(opts: ExportOptions, run: _Collected) -> tuple[pa.Schema, pa.Schema]:
    """(the output's schema: record columns, id, rank, metadata unified over all batches;
    the row store's: id, the three texts, the same metadata)."""
    probe = F.build_records(pa.table({S.QUESTION: pa.array([""]), S.RESPONSE: pa.array([""])}),
                            opts.format, opts.think_style, opts.system, **_shape(run))
    meta = list(run.meta_schema) if run.meta_schema is not None else []
    out = pa.schema([*(pa.field(k, v.type) for k, v in probe.items()),
                     pa.field(S.ID, pa.string()), pa.field("rank", pa.int64()), *meta])
    conversation = ([pa.field(S.CONTEXT, S.CONTEXT_TYPE)] if run.has_context else []) + \
        ([pa.field(S.TOOLS, pa.string())] if run.has_tools else [])
    stored = pa.schema([pa.field(S.ID, pa.string()),
                        *(pa.field(c, pa.string()) for c in F.CHECKED), *conversation, *meta])
    return out, stored


def _shape(run: _Collected) -> dict:
    """What every record of this export has beside the conversation (build_records' flags)."""
    return {"sharegpt_system": run.context_system, "tools": run.has_tools}


def _output_piece(piece: pa.Table, offset: int, opts: ExportOptions, schema: pa.Schema,
                  run: _Collected) -> pa.Table:
    """Stored rows (in rank order, ranks offset+1 …) → output rows: records, id, rank, meta."""
    records = F.build_records(piece, opts.format, opts.think_style, opts.system, **_shape(run))
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


def _notes(run: _Collected, ctx: StageContext, opts: ExportOptions, splits: dict,
           tokens: dict | None, shards_asked: int | None) -> list[str]:
    notes = []
    if ctx.dropped.get(F.MARKER_REASON):
        n = ctx.dropped[F.MARKER_REASON]
        notes.append(f"{_rows(n)} already {'holds' if n == 1 else 'hold'} {opts.think_style} "
                     "think markers in their text: left out (in _dropped/)")
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


class ExportStage(Stage):
    name = "export"
    progress = "exporting"
    Options = ExportOptions
    writes = "sft"
    help = "Write ranked SFT shards (messages / ShareGPT / prompt-completion) and a card."
    doc = """Write the kept traces as SFT records, ranked best first, into hub-style shards a trainer reads with no glue: OUT/data/train-00000-of-0000N.parquet (+ test-* with --split-test), OUT/_README.md (a dataset card whose YAML header `datasets` understands: configs, features; README.md with --hub-card), OUT/_dropped/ and OUT/_manifest.json. load_dataset("parquet", data_dir=OUT), load_dataset(OUT), pandas and pyarrow read it as it is.

Every row of INPUT is exported (select with filter / dedup / decontam first), except rows whose text already holds the chosen think markers: they go to _dropped/ (reason contains_think_marker).

Ranking: score descending, missing scores last, ties by id ascending (or --order-by COL); a `rank` column (1-based, over all splits) and the score columns are kept as metadata unless --strip-meta.

[bold]Examples[/bold]

  curate export out/kept -o out/sft                                   # TRL messages, <think> blocks
  curate export out/kept -o out/sft --format sharegpt --think-style openthoughts
  curate export out/kept -o out/sft --format prompt-completion --system "Reason step by step."
  curate export out/kept -o out/sft --shards 8 --split-test 0.02
  curate export out/kept -o out/sft --tokenizer Qwen/Qwen2.5-1.5B-Instruct --max-seq-len 16384
  curate export out/kept -o - | my_sft_job                             # JSON Lines on stdout"""  # noqa: E501

    def whole_input(self, opts) -> bool:
        return True  # ranking needs every row's key first

    def passes(self, opts, dry_run: bool = False) -> int:
        return 2  # the read, then the rank-ordered write

    def check(self, opts: ExportOptions, out: str | None) -> None:
        if out == "-":
            for name, value in (("--split-test", opts.split_test or None),
                                ("--shards", opts.shards), ("--shard-size", opts.shard_size),
                                ("--hub-card", opts.hub_card or None)):
                if value is not None:
                    raise InputError(f"{name}: shards, splits and the card need a folder; -o - "
                                     "writes one JSON Lines stream")

    def run(self, ctx: StageContext, opts: ExportOptions) -> dict:
        tokenizer = load_tokenizer(opts.tokenizer) if opts.tokenizer else None
        return _run(ctx, opts, tokenizer, ctx.stdout)


def _run(ctx: StageContext, opts: ExportOptions, tokenizer, stream) -> dict:
    t0 = time.time()
    store = RowStore(ctx.scratch / "rows", opts.buffer_bytes)
    writers: list[ShardWriter] = []
    sink = None
    try:
        run = _pass1(ctx, opts, store, tokenizer)
        if run.exported == 0:
            raise InputError(f"{', '.join(ctx.inputs)}: no row to export ({run.traces} traces; "
                             f"left out: {dict(ctx.dropped) or 'none'}); nothing written")
        t_read = time.time() - t0
        perm = _rank(run, opts)
        row_bytes = np.concatenate(run.row_bytes)
        test = np.concatenate(run.test)
        schema, stored_schema = _schemas(opts, run)
        is_test = test[perm]
        splits = {"train": {"rows": int((~is_test).sum())}, "test": {"rows": int(is_test.sum())}}
        if stream is None:
            data = ctx.dest.data_dir
            shard_bytes = opts.shard_bytes_text or DEFAULT_SHARD_BYTES
            train_sizes = row_bytes[perm[~is_test]]
            test_sizes = row_bytes[perm[is_test]]
            train_counts = shard_counts(train_sizes, opts.shards, shard_bytes)
            test_shards = None
            if opts.shards is not None:  # test shards of the train shards' average size
                test_shards = opts.shards if not train_counts else min(opts.shards, max(
                    1, math.ceil(int(test_sizes.sum()) * len(train_counts)
                                 / max(1, int(train_sizes.sum())))))
            test_counts = shard_counts(test_sizes, test_shards, shard_bytes)
            writers = [ShardWriter(data, "train", train_counts, schema),
                       ShardWriter(data, "test", test_counts, schema)]
            for name, counts, mask in (("train", train_counts, ~is_test),
                                       ("test", test_counts, is_test)):
                splits[name].update(shards=len(counts),
                                    text_bytes=int(row_bytes[perm[mask]].sum()))
        sink = Sink(writers, stream)
        for offset, piece in store.rank_order(perm, row_bytes, stored_schema):
            n = piece.num_rows
            sink.put(_output_piece(piece, offset, opts, schema, run), is_test[offset:offset + n])
            ctx.advance(n)
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
    dropped = dict(ctx.dropped)
    counts = {"rows_in": run.stats.rows_in, "traces": run.traces, "rows_out": run.exported,
              "dropped": dropped, "rows_without_thinking": run.no_thinking}
    if stream is None:
        chain = card.manifest_chain(ctx.inputs)
        fingerprints = [fingerprint(s) for s in ctx.sources]
        meta_cols = [f.name for f in run.meta_schema] if run.meta_schema is not None else []
        out = Path(ctx.out)
        readme = card.render(
            name=out.name, path=str(out), schema=schema, splits=splits,
            fmt=opts.format, style=opts.think_style, system=opts.system,
            ranking=run.order_kind, counts=counts, score=score, sources=run.sources,
            inputs=fingerprints, chain=chain, meta_columns=meta_cols, tokens=tokens,
            split_test=opts.split_test, split_key=opts.split_key)
        (ctx.dest.tmp / (HUB_CARD if opts.hub_card else CARD)).write_text(readme,
                                                                          encoding="utf-8")
        ctx.manifest.update({
            "ranking": run.order_kind, "splits": splits,
            "selection": [{k: st[k] for k in ("folder", "stage", "command", "config", "counts")}
                          for st in chain]})
        ctx.timings["read_seconds"] = t_read
    elapsed = max(time.time() - t0, 1e-9)
    return {
        "rows_in": run.stats.rows_in,
        "traces": run.traces,
        "rows_out": run.exported,
        "dropped": dropped,
        "splits": {k: v["rows"] for k, v in splits.items() if k == "train" or v["rows"]},
        "shards": {k: v.get("shards", 0) for k, v in splits.items() if v.get("shards")},
        "format": opts.format,
        "think_style": opts.think_style,
        "ranking": run.order_kind,
        "rows_without_thinking": run.no_thinking,
        "score": {k: score[k] for k in ("min", "median", "max")} if score else None,
        "tokens": tokens,
        "notes": _notes(run, ctx, opts, splits, tokens, opts.shards if stream is None else None),
        "text_bytes": run.text_bytes,
        "read_seconds": round(t_read, 3),
        "rows_per_s": round(run.stats.rows_in / elapsed, 1),
        "text_mb_per_s": round(run.text_bytes / 1e6 / elapsed, 2),
        "output": "-" if stream is not None else None,
    }
