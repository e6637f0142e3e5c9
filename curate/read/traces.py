"""Reading traces: any accepted input → canonical, validated trace batches.

``iter_traces`` is what every stage reads its INPUT with (through ``StageContext.traces``).
Per-row faults (empty question or response, an unclosed thinking marker, a missing id) drop the
row, with a reason, into the batch's ``dropped`` table; faults of a file, column or option
raise ``InputError``.
"""

from __future__ import annotations

import os
import random
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from .. import schema as S
from ..dropped import dropped_rows
from ..errors import InputError
from ..io import presets
from ..io.idset import IdSet, hash_ids
from ..io.sources import Source, count_rows, iter_batches, resolve_inputs
from ..options import StageOptions, one_of, option
from ..steps import NON_SPACE, count_steps_array

ProgressFn = Callable[[int], None]


@dataclass
class ReadOptions(StageOptions):
    """How INPUT is read: the read stage's options, and what every other stage reads with."""

    preset: str = option("auto", help="Input shape: auto, canonical, s1k, s1k-1.1, "
                         "openthoughts, r1, tags, steps. auto detects it per file and says "
                         "which it used.")
    map: list[str] | None = option(help="Rename an input column to a canonical one: "
                                   "CANONICAL=COLUMN (repeatable), e.g. --map "
                                   "trajectory=thinking_trajectories; GLOB:CANONICAL=COLUMN for "
                                   "the files a glob matches (a folder of several shapes).",
                                   short="-m")
    explode: list[str] | None = option(help="A list column holding several traces per row "
                                       "(repeatable: lists taken in step): one row per element, "
                                       "with generation_index, before --map, e.g. --explode "
                                       "generations --map response=generations; GLOB:COLUMN for "
                                       "the files a glob matches.")
    think_tags: str | None = option(help="Thinking markers OPEN,CLOSE[,ANSWER_OPEN,"
                                    "ANSWER_CLOSE] for the tags/r1 presets, e.g. "
                                    "'<Thought>,</Thought>,<Output>,</Output>'.")
    split: str = option("train", help="Split of a hub dataset or saved DatasetDict.")
    hub_config: str | None = option(flag="--config", help="Configuration (subset) of a hub "
                                    "dataset, e.g. `default` or `all` (many pools need one).")
    revision: str | None = option(help="Revision of a hub dataset: a branch, tag or commit.")
    limit: int | None = option(help="Read only the first N input rows.")
    sample: int | None = option(help="Read a uniform random sample of N input rows (see "
                                "--seed).")
    seed: int = option(0, help="Seed for --sample.")
    dedupe_ids: bool = option(False, help="Keep the first row of each repeated id and drop "
                              "the rest (default: a repeated id is an error).")
    keep_dropped_rows: bool = option(False, help="Copy whole input rows into _dropped/, not "
                                     "only the id, reason and deciding value.")
    shard_size: str = option("256MB", help="Size cap of each part file.")
    batch_rows: int = option(2048, help="Rows per record batch (bounds memory).")

    def __post_init__(self):
        one_of("--preset", self.preset, presets.PRESETS)
        if self.limit is not None and self.limit < 1:
            raise InputError(f"--limit {self.limit}: must be at least 1")
        if self.sample is not None and self.sample < 1:
            raise InputError(f"--sample {self.sample}: must be at least 1")
        if self.limit is not None and self.sample is not None:
            raise InputError("--limit and --sample: choose one")
        if self.batch_rows < 1:
            raise InputError(f"--batch-rows {self.batch_rows}: must be at least 1")
        from ..io.writer import parse_size

        self.maps = presets.parse_map(self.map)
        self.explodes = presets.parse_explode(self.explode)
        self.tags = presets.Tags.parse(self.think_tags) if self.think_tags else None
        self.shard_bytes = parse_size(self.shard_size)

    def source_args(self) -> dict:
        """How INPUT arguments name what to read (``resolve_inputs``'s keywords)."""
        return {"split": self.split, "config": self.hub_config, "revision": self.revision}


@dataclass
class TraceBatch:
    """Canonical rows of one input batch, plus the rows it dropped (DROPPED_SCHEMA [+ input]).

    ``positions`` holds, for each canonical row, its row in the input file (a conversation gives
    several rows of one input row); ``input_rows`` is how many input rows the batch read.
    """

    source: Source
    table: pa.Table
    dropped: pa.Table | None
    input_rows: int
    positions: pa.Array

    @property
    def label(self) -> str:
        return self.source.label


@dataclass
class ReadStats:
    rows_in: int = 0
    rows_out: int = 0
    drops: Counter = field(default_factory=Counter)
    mappings: dict[str, dict] = field(default_factory=dict)
    source_steps_rows: int = 0
    trajectory_rows: int = 0
    steps_per_trace: list[int] = field(default_factory=list)  # sampled, for the summary
    text_bytes: int = 0


def derive_ids(table: pa.Table) -> pa.Array:
    """Stable content ids: 'h' + xxh3-128 of question, thinking and response."""
    q = table.column(S.QUESTION).to_pylist()
    t = table.column(S.TRAJECTORY).to_pylist()
    r = table.column(S.RESPONSE).to_pylist()
    out = []
    for a, b, c in zip(q, t, r, strict=True):
        h = xxhash.xxh3_128()
        for part in (a, b, c):
            h.update((part or "").encode("utf-8", "surrogatepass"))
            h.update(b"\x1f")
        out.append("h" + h.hexdigest()[:24])
    return pa.array(out, pa.string())


def _blank(arr: pa.ChunkedArray | pa.Array) -> pa.Array:
    """True where a text is null or only whitespace."""
    filled = pc.fill_null(arr, "")
    return pc.invert(pc.match_substring_regex(filled, NON_SPACE))


# A visible character: not whitespace, not a separator, not a control or format character (a
# question of zero-width spaces is empty to a reader and to a model's tokenizer alike).
VISIBLE = r"[^\s\p{Z}\p{Cc}\p{Cf}]"
# C0 control characters other than tab, newline and carriage return (CRLF line ends are common
# in real dumps): NUL and the like are corruption, and tokenizers treat them unpredictably.
CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f]"
CONTROL_CHECKED = (S.QUESTION, S.TRAJECTORY, S.RESPONSE)


def _invisible(arr: pa.ChunkedArray | pa.Array) -> pa.Array:
    """True where a text is null or has no visible character."""
    return pc.invert(pc.match_substring_regex(pc.fill_null(arr, ""), VISIBLE))


def _control_character(table: pa.Table) -> list[str | None]:
    """For each row, 'column: U+XXXX at offset' of the first control character, or None."""
    out: list[str | None] = [None] * table.num_rows
    for col in CONTROL_CHECKED:
        if col not in table.column_names:
            continue
        arr = pc.fill_null(table.column(col), "")
        hit = pc.match_substring_regex(arr, CONTROL)
        if not pc.any(hit).as_py():
            continue
        for i in pc.indices_nonzero(hit).to_pylist():
            if out[i] is None:
                text = arr[i].as_py()
                pos = next(k for k, ch in enumerate(text) if re.match(CONTROL, ch))
                out[i] = f"{col}: U+{ord(text[pos]):04X} at {pos}"
    return out


class _IdRegistry:
    """Ids seen so far (``IdSet``: 16 bytes a row) and the files their positions point into."""

    def __init__(self):
        self.ids = IdSet()
        self.files: list[str] = []

    def check_batch(self, label: str, ids: list, rows: list[int], active: list[bool]) -> list:
        """For each row, where its id was first seen ('FILE row N') if it repeats, else None."""
        if not self.files or self.files[-1] != label:
            self.files.append(label)
        f = len(self.files) - 1
        pos = np.asarray([(f << 40) | r for r in rows], dtype=np.int64)
        hashes = hash_ids([i if a else "" for i, a in zip(ids, active, strict=True)])
        first = self.ids.add_batch(hashes, pos, np.asarray(active, dtype=bool))
        return [None if p < 0 else f"{self.files[p >> 40]} row {p & ((1 << 40) - 1)}"
                for p in first.tolist()]


def iter_traces(inputs: list[str], opts: ReadOptions, stats: ReadStats | None = None,
                progress: ProgressFn | None = None,
                sources: list[Source] | None = None) -> Iterator[TraceBatch]:
    """Canonical, validated trace batches from INPUT arguments (or sources already resolved
    from them), in input order."""
    stats = stats if stats is not None else ReadStats()
    if sources is None:
        sources = resolve_inputs(inputs, **opts.source_args())
    chosen = _sample_positions(sources, opts) if opts.sample else None
    ids = _IdRegistry()
    remaining = opts.limit
    global_row = 0
    for src in sources:
        mapping = None
        file_row = 0
        maps = dict(presets.for_file(opts.maps, src.label))
        explodes = [c for (c,) in presets.for_file(opts.explodes, src.label)]
        for raw in iter_batches(src, opts.batch_rows):
            n_raw = raw.num_rows
            exploded: list = []
            if remaining is not None:
                if remaining <= 0:
                    break
                raw = raw.slice(0, remaining)
            if chosen is not None:
                keep = [i for i in range(raw.num_rows) if global_row + i in chosen]
                global_row += raw.num_rows
                take = pa.array(keep, pa.int64())
                positions = pa.array([file_row + i for i in keep], pa.int64())
                file_row += n_raw
                raw = raw.take(take)
                if raw.num_rows == 0:
                    continue
            else:
                positions = pa.array(range(file_row, file_row + raw.num_rows), pa.int64())
                file_row += n_raw
            rows_read = raw.num_rows
            if explodes:
                raw, index, exploded = _explode(raw, positions, explodes, src.label)
                positions = positions.take(index)
            raw = presets.apply_user_map(raw, maps, src.label)
            first = mapping is None
            if first:
                mapping = presets.choose(raw, opts.preset, opts.tags, src.label)
                stats.mappings[src.label] = mapping.describe()
            mapped = presets.apply(raw, mapping, src.label)
            if first:
                _check_mapping(mapped, mapping, maps, src.label)
            batch = _validate(src, raw, positions, mapped, opts, ids, stats)
            if exploded:
                stats.drops.update(d[S.DROP_REASON] for d in exploded[1].to_pylist())
                batch.dropped = exploded[1] if batch.dropped is None else pa.concat_tables(
                    [batch.dropped, exploded[1]], promote_options="permissive")
            stats.rows_in += rows_read
            if remaining is not None:
                remaining -= rows_read
            if progress:
                progress(rows_read)
            yield batch
        if remaining is not None and remaining <= 0:
            break


def _explode(raw, positions: pa.Array, cols: list[str], label: str):
    """--explode: one row per list element; (rows, index into the batch, drop records)."""
    table, index, drops = presets.explode(raw, cols, label)
    dropped = None
    if drops:
        rows = [i for i, _, _ in drops]
        ids = raw.column(S.ID).take(pa.array(rows)) if S.ID in raw.schema.names else \
            [None] * len(rows)
        dropped = dropped_rows(ids, [r for _, r, _ in drops], [v for _, _, v in drops], label,
                               positions.take(pa.array(rows, pa.int64())))
    return table, index, [drops, dropped] if drops else []


def _check_mapping(mapped: presets.Mapped, mapping: presets.Mapping, maps: dict[str, str],
                   label: str) -> None:
    """A mapping that gives every row of a file's first batch an empty response has named the
    wrong column (a --map hint followed on a shape it does not fit): stop, never write rows
    that lost their text."""
    table = mapped.table
    if table.num_rows and S.RESPONSE in table.column_names and pc.all(
            _blank(table.column(S.RESPONSE))).as_py():
        col = maps.get(S.RESPONSE) or mapping.renames.get(S.RESPONSE) or mapping.text_col or \
            mapping.conversation_col
        how = f"--map response={col}" if S.RESPONSE in maps else \
            f"preset {mapping.preset}, response from '{col}'"
        raise InputError(f"{label}: every response is empty after mapping ({how}): '{col}' "
                         "does not hold the traces; map the one that does (--map response=COL, "
                         "or --explode COL for a list of traces per row)")


def _sample_positions(sources: list[Source], opts: ReadOptions) -> set[int]:
    total = sum(count_rows(s) for s in sources)
    rng = random.Random(opts.seed)
    return set(rng.sample(range(total), min(opts.sample, total)))


def _validate(src, raw: pa.RecordBatch, positions: pa.Array, mapped: presets.Mapped,
              opts: ReadOptions, ids: _IdRegistry, stats: ReadStats) -> TraceBatch:
    table = mapped.table
    row_pos = positions.take(mapped.row_index)
    reasons: list[str | None] = [None] * table.num_rows
    values: list[str] = [""] * table.num_rows

    for col, reason in ((S.QUESTION, "empty_question"), (S.RESPONSE, "empty_response")):
        bad = _invisible(table.column(col))
        if pc.any(bad).as_py():
            blank = _blank(table.column(col))
            for i in pc.indices_nonzero(bad).to_pylist():
                if reasons[i] is None:
                    reasons[i] = reason
                    values[i] = "null" if table.column(col)[i].as_py() is None else (
                        "blank" if blank[i].as_py() else "no visible character")
    for i, where in enumerate(_control_character(table)):
        if where is not None and reasons[i] is None:
            reasons[i], values[i] = "control_character", where

    if S.ID in table.column_names:
        id_arr = table.column(S.ID).combine_chunks()
        missing = _blank(id_arr)
        derived = False
    else:
        id_arr = derive_ids(table)
        missing = None
        derived = True
    id_list = id_arr.to_pylist()
    if missing is not None:
        for i in pc.indices_nonzero(missing).to_pylist():
            if reasons[i] is None:
                reasons[i], values[i] = "missing_id", "null" if id_list[i] is None else "blank"
    row_list = row_pos.to_pylist()
    firsts = ids.check_batch(src.label, id_list, row_list, [r is None for r in reasons])
    for i, id_ in enumerate(id_list):
        first = firsts[i]
        if first is not None:
            where = f"{src.label} row {row_list[i]}"
            if derived:
                # Derived ids repeat only for identical traces: keep the first, record the rest.
                reasons[i], values[i] = "duplicate_content", f"same as {first}"
            elif not opts.dedupe_ids:
                raise InputError(f"{where}: duplicate id '{id_}', first seen at {first}; "
                                 "pass --dedupe-ids to keep the first and drop the rest")
            else:
                reasons[i], values[i] = "duplicate_id", f"{id_} (first at {first})"

    if derived:
        table = table.add_column(0, S.ID, id_arr)
    if S.SOURCE in table.column_names:
        src_col = pc.fill_null(table.column(S.SOURCE), os.path.basename(src.label))
        table = table.set_column(table.column_names.index(S.SOURCE), S.SOURCE, src_col)

    keep_mask = pa.array([r is None for r in reasons], pa.bool_())
    kept = table.filter(keep_mask)
    drop_idx = [i for i, r in enumerate(reasons) if r is not None]
    drop_rows = [row_pos[i].as_py() for i in drop_idx]
    d_ids = [id_list[i] for i in drop_idx]
    d_reasons = [reasons[i] for i in drop_idx]
    d_values = [values[i] for i in drop_idx]
    # Rows the preset itself could not map (no id yet: the id column of the input, if any).
    raw_ids = raw.column(S.ID).to_pylist() if S.ID in raw.schema.names else None
    for i, reason, value in mapped.drops:
        drop_rows.append(positions[i].as_py())
        d_ids.append(raw_ids[i] if raw_ids else None)
        d_reasons.append(reason)
        d_values.append(value)
    dropped = None
    if d_reasons:
        stats.drops.update(d_reasons)
        dropped = dropped_rows(d_ids, d_reasons, d_values, src.label, drop_rows)
        if opts.keep_dropped_rows:
            dropped = _with_input_rows(dropped, raw, positions, drop_rows)
    _update_stats(stats, kept)
    return TraceBatch(src, kept, dropped, raw.num_rows, row_pos.filter(keep_mask))


def _with_input_rows(dropped: pa.Table, raw: pa.RecordBatch, positions: pa.Array,
                     drop_rows: list[int]) -> pa.Table:
    """The dropped rows' input columns, as they were, beside the drop record."""
    where = {p: i for i, p in enumerate(positions.to_pylist())}
    rows = raw.take(pa.array([where[p] for p in drop_rows], pa.int64()))
    out = dropped
    for name in rows.schema.names:
        col = name if name not in out.column_names else f"input.{name}"
        out = out.append_column(col, rows.column(name))
    return out


def _update_stats(stats: ReadStats, kept: pa.Table) -> None:
    stats.rows_out += kept.num_rows
    if kept.num_rows == 0:
        return
    traj = kept.column(S.TRAJECTORY).combine_chunks()
    resp = kept.column(S.RESPONSE).combine_chunks()
    n_t = count_steps_array(traj)
    n_r = count_steps_array(resp)
    any_given = pa.array([False] * kept.num_rows)
    for col, counts in ((S.TRAJECTORY_STEPS, "t"), (S.RESPONSE_STEPS, "r")):
        if col in kept.column_names:
            given = kept.column(col).combine_chunks()
            lens = pc.list_value_length(given)
            has = pc.is_valid(given)
            any_given = pc.or_(any_given, has)
            if counts == "t":
                n_t = pc.if_else(has, pc.cast(lens, pa.int32()), n_t)
            else:
                n_r = pc.if_else(has, pc.cast(lens, pa.int32()), n_r)
    stats.source_steps_rows += pc.sum(pc.cast(any_given, pa.int64())).as_py() or 0
    total = pc.add(n_t, n_r).to_pylist()
    if len(stats.steps_per_trace) < 200_000:
        stats.steps_per_trace.extend(total)
    stats.trajectory_rows += pc.sum(pc.cast(pc.greater(n_t, 0), pa.int64())).as_py() or 0
    # bytes, not characters: binary_length reads the offsets, utf8_length scans the text
    stats.text_bytes += (pc.sum(pc.binary_length(traj)).as_py() or 0) + \
        (pc.sum(pc.binary_length(resp)).as_py() or 0)
