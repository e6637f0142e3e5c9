"""Find what an INPUT argument names and stream it as Arrow record batches.

Accepted: Parquet files, directories (searched recursively for Parquet / JSON / CSV files; a
curate stage folder contributes the parts its manifest lists, never ``_dropped/``), globs, JSON
Lines (``.jsonl``, ``.ndjson``, or ``.json`` holding one object per line), JSON list files, CSV
and TSV files (``.csv``, ``.tsv``), folders written by ``datasets.Dataset.save_to_disk``, and
hub dataset ids (``owner/name``, loaded with ``datasets`` in streaming mode). JSON Lines, JSON
and CSV/TSV files may be gzipped (``.gz``).

Memory is bounded by the batch size for everything except a JSON *list* file, which has to be
parsed whole (use JSON Lines for large inputs); a CSV reader also holds one block of the file
(16 MiB, more only while a single row is longer than that).

**JSON types.** A JSON input is read in two passes. The first only parses and infers: every
field's type is merged over the whole file (null + a value is the value, an integer + a float is
a float, objects merge their fields, lists their items), holding nothing but the inferred types
and the first batch of records (which the second pass reuses, so a file of one batch is parsed
once). The second pass converts batch by batch to that one schema, so every batch of a file has
the same Arrow schema, a field that is null (or absent) for the first thousands of records and
a string later is read as a string, and a field that appears late is null before it. A field
whose types really conflict (a string on one line, an object or a number on another) stops the
run naming the field (``meta.source``, ``messages[].content``) and both lines. Records of a JSON
*list* file are numbered ``record N`` (their position in the list, from 1) instead of lines.

**CSV types.** Every CSV/TSV column is read as text (``string``): a CSV has no types, the
canonical columns the presets read are all text, and inferring per block would type a column by
its first rows (a question column of numbers in one file, or an ``answer`` column that turns
from ``42`` to ``x = 3`` halfway, would stop the read). A column you need as a number arrives as
text, losslessly; cast it downstream, or convert the file to Parquet / JSON Lines. An unquoted
empty cell is null, a quoted one (``""``) the empty string; ``NA``, ``null`` and the like are
kept as text. ``.tsv`` is tab-delimited; both allow quoted values with newlines in them.
Errors name rows as a spreadsheet shows them (the header is row 1; a value with newlines in it
is one row).
"""

from __future__ import annotations

import glob
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import xxhash

from ..errors import InputError
from . import folder as F

PARQUET_EXT = (".parquet", ".pq")
JSON_EXT = (".jsonl", ".ndjson", ".json", ".jsonl.gz", ".json.gz", ".ndjson.gz")
CSV_EXT = (".csv", ".tsv", ".csv.gz", ".tsv.gz")
ACCEPTED = "Parquet, JSON or CSV file"
DEFAULT_BATCH_ROWS = 2048


@dataclass
class Source:
    """One readable thing: a file, a datasets folder or a hub dataset."""

    kind: str  # parquet | jsonl | json-list | csv | arrow | hub
    path: str
    files: list[str] = field(default_factory=list)  # arrow: the data files
    split: str | None = None
    config: str | None = None  # hub: the dataset's configuration (subset)
    revision: str | None = None  # hub: a branch, tag or commit

    @property
    def label(self) -> str:
        return self.path

    def total_rows(self) -> int | None:
        """Row count when it is known without reading the data (for the progress bar)."""
        if self.kind == "parquet":
            import pyarrow.parquet as pq

            try:
                return pq.ParquetFile(self.path).metadata.num_rows
            except (pa.ArrowException, OSError):
                return None  # reading it will say what is wrong, in one line
        return None

    def size_bytes(self) -> int:
        if self.kind == "hub":
            return 0
        files = self.files or [self.path]
        return sum(os.path.getsize(f) for f in files)


def fingerprint(src: Source) -> dict:
    """Quick content fingerprint: size, mtime and an xxh3 of the first and last MiB of each file.

    Hashing whole inputs would double the I/O of a 100 GB read; head+tail+size catches
    replaced and appended files, which is what a resume needs to notice.
    """
    if src.kind == "hub":
        return {"path": src.path, "kind": "hub", "split": src.split, "config": src.config,
                "revision": src.revision}
    files = src.files or [src.path]
    h = xxhash.xxh3_64()
    size = 0
    mtime = 0
    for f in files:
        st = os.stat(f)
        size += st.st_size
        mtime = max(mtime, st.st_mtime_ns)
        with open(f, "rb") as fh:
            h.update(fh.read(1 << 20))
            if st.st_size > 2 << 20:
                fh.seek(-(1 << 20), os.SEEK_END)
                h.update(fh.read(1 << 20))
        h.update(str(st.st_size).encode())
    return {"path": src.path, "kind": src.kind, "bytes": size,
            "mtime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(mtime / 1e9)),
            "xxh3_head_tail": h.hexdigest()}


def count_rows(src: Source) -> int:
    """Rows of a source without mapping them (metadata for Parquet; a quick pass otherwise)."""
    if src.kind == "parquet":
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(src.path).metadata.num_rows
        except (pa.ArrowInvalid, OSError) as e:
            raise InputError(f"{src.path}: not a readable Parquet file ({e})") from None
    if src.kind == "jsonl":
        with open_binary(src.path) as f:
            return sum(1 for line in f if line.strip())
    if src.kind == "hub":
        raise InputError(f"{src.path}: --sample needs the row count, which a streamed hub "
                         "dataset does not give; use --limit")
    return sum(b.num_rows for b in iter_batches(src))



def resolve_inputs(inputs: list[str], split: str = "train", config: str | None = None,
                   revision: str | None = None) -> list[Source]:
    """Expand INPUT arguments into sources, in a stable order. Raises InputError."""
    if not inputs:
        raise InputError("no INPUT given: name a file, folder, glob or hub dataset id")
    sources: list[Source] = []
    for arg in inputs:
        sources.extend(_resolve_one(arg, split, config, revision))
    seen: set[str] = set()
    unique = []
    for s in sources:
        key = f"{s.kind}:{os.path.abspath(s.path) if s.kind != 'hub' else s.path}"
        if key not in seen:
            seen.add(key)
            unique.append(s)
    return unique


def _resolve_one(arg: str, split: str, config: str | None = None,
                 revision: str | None = None) -> list[Source]:
    p = Path(arg)
    if any(ch in arg for ch in "*?["):
        matches = sorted(glob.glob(arg, recursive=True))
        if not matches:
            raise InputError(f"{arg}: the glob matches no file")
        out = []
        for m in matches:
            if os.path.isfile(m) and _kind_of_file(m) is not None:
                out.append(_file_source(m))
            elif os.path.isdir(m):
                out.extend(_dir_sources(Path(m), split))
        if not out:
            raise InputError(f"{arg}: the glob matches no {ACCEPTED}")
        return out
    if p.is_file():
        if _kind_of_file(arg) is None:
            raise InputError(f"{arg}: not a {ACCEPTED} (expected .parquet, .jsonl, .ndjson, "
                             ".json, .csv or .tsv, the text ones optionally .gz)")
        return [_file_source(arg)]
    if p.is_dir():
        return _dir_sources(p, split)
    if _looks_like_hub_id(arg):
        return [Source("hub", arg, split=split, config=config, revision=revision)]
    if arg.lower() in ("true", "false", "yes", "no", "on", "off", "0", "1"):
        # `--dedupe-ids true`: a flag takes no value, so the word became an INPUT
        raise InputError(f"{arg}: no such file or folder (a flag such as --dedupe-ids takes no "
                         f"value: write the flag alone, and drop '{arg}')")
    raise InputError(f"{arg}: no such file or folder")


def _looks_like_hub_id(arg: str) -> bool:
    parts = arg.split("/")
    return (
        len(parts) == 2
        and all(parts)
        and not arg.startswith((".", "/", "~"))
        and not arg.lower().endswith(PARQUET_EXT + JSON_EXT + CSV_EXT)
    )


def _kind_of_file(path: str) -> str | None:
    low = path.lower()
    if low.endswith(PARQUET_EXT):
        return "parquet"
    if low.endswith((".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")):
        return "jsonl"
    if low.endswith((".json", ".json.gz")):
        return "json"  # decided on its first character: list or lines
    if low.endswith(CSV_EXT):
        return "csv"
    return None


def _file_source(path: str) -> Source:
    kind = _kind_of_file(path)
    if kind == "json":
        kind = "json-list" if _first_char(path) == "[" else "jsonl"
    return Source(kind, path)


def _first_char(path: str) -> str:
    with open_binary(path) as f:
        while True:
            chunk = f.read(4096)
            if not chunk:
                return ""
            stripped = chunk.lstrip(b" \t\r\n\xef\xbb\xbf")
            if stripped:
                return chr(stripped[0])


def open_binary(path: str):
    if path.lower().endswith(".gz"):
        import gzip

        return gzip.open(path, "rb")
    return open(path, "rb")


def _dir_sources(d: Path, split: str) -> list[Source]:
    if F.is_curate_folder(d):
        # The parts the manifest lists, each checked against its row count (the Parquet footer:
        # cheap), so a deleted or truncated part stops the read instead of shrinking it.
        doc = F.read_manifest(d)
        F.verify(d)
        return [Source("parquet", str(p)) for p in F.part_files(d, doc)]
    if (d / "state.json").is_file():
        return [_arrow_source(d)]
    if (d / "dataset_dict.json").is_file():
        sub = d / split
        if not (sub / "state.json").is_file():
            splits = json.loads((d / "dataset_dict.json").read_text()).get("splits", [])
            raise InputError(f"{d}: saved DatasetDict has no split '{split}' (has: {splits}); "
                             "choose one with --split")
        return [_arrow_source(sub)]
    files = []
    for root, dirs, names in os.walk(d):
        # Hidden folders hold caches and temp files, and `_` marks metadata (a curate folder's
        # _dropped/, Spark's _SUCCESS): neither is data.
        dirs[:] = sorted(x for x in dirs if not x.startswith((".", "_")) and
                         not (x == "dropped" and F.is_curate_folder(root)))
        for name in sorted(names):
            full = os.path.join(root, name)
            if not name.startswith((".", "_")) and _kind_of_file(full) is not None:
                files.append(full)
        if F.is_curate_folder(root) and root != str(d):
            raise InputError(f"{d}: holds a curate output folder ({root}); name it directly")
    if not files:
        raise InputError(f"{d}: folder holds no {ACCEPTED}")
    return [_file_source(f) for f in files]


def _arrow_source(d: Path) -> Source:
    state = json.loads((d / "state.json").read_text())
    files = [str(d / f["filename"]) for f in state.get("_data_files", [])]
    if not files:
        raise InputError(f"{d}: datasets folder lists no data files in state.json")
    if state.get("_indices_data_files"):
        raise InputError(f"{d}: datasets folder has an indices mapping; re-save it after "
                         "`ds.flatten_indices()`")
    return Source("arrow", str(d), files=files)


# --- streaming ----------------------------------------------------------------------------------


def iter_batches(src: Source, batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """Record batches of one source. Raises InputError for a broken file."""
    if src.kind == "parquet":
        yield from _parquet_batches(src.path, batch_rows)
    elif src.kind == "jsonl":
        yield from _jsonl_batches(src.path, batch_rows)
    elif src.kind == "json-list":
        yield from _json_list_batches(src.path, batch_rows)
    elif src.kind == "csv":
        yield from _csv_batches(src.path, batch_rows)
    elif src.kind == "arrow":
        yield from _arrow_batches(src, batch_rows)
    elif src.kind == "hub":
        yield from _hub_batches(src, batch_rows)
    else:  # pragma: no cover - resolve_inputs makes only the kinds above
        raise AssertionError(src.kind)


def _parquet_batches(path: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
    import pyarrow.parquet as pq

    if os.path.getsize(path) == 0:
        raise InputError(f"{path}: file is empty")
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"{path}: not a readable Parquet file ({_short(e)})") from None
    if pf.metadata.num_rows == 0:
        raise InputError(f"{path}: Parquet file has no rows")
    start = 0
    try:
        for batch in pf.iter_batches(batch_size=batch_rows):
            _validate_batch(batch, path, start)
            start += batch.num_rows
            yield batch
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as e:
        raise InputError(f"{path}: corrupt Parquet data ({_short(e)})") from None


def _invalid_column(batch: pa.RecordBatch) -> tuple[str, int | None, Exception] | None:
    """Full validation (UTF-8 of every string included, ~7 GB/s): the first column that fails,
    the row within the batch when Arrow names it, and the error; None when the batch is valid."""
    try:
        batch.validate(full=True)
        return None
    except pa.ArrowInvalid:
        for name, col in zip(batch.schema.names, batch.columns, strict=True):
            try:
                col.validate(full=True)
            except pa.ArrowInvalid as e:
                m = re.search(r"string index (\d+)", str(e))
                return name, int(m.group(1)) if m else None, e
        raise


def _validate_batch(batch: pa.RecordBatch, path: str, start: int) -> None:
    """Damaged pages can decode without an error and would otherwise fail later, far from
    their file: validated here, naming the file, row and column."""
    bad = _invalid_column(batch)
    if bad is not None:
        name, row, e = bad
        where = f"row {start + row}" if row is not None else \
            f"rows {start}-{start + batch.num_rows - 1}"
        raise InputError(f"{path}: {where}: column '{name}': corrupt Parquet data "
                         f"({_short(e)})") from None


def _short(e: Exception) -> str:
    return str(e).splitlines()[0][:200] if str(e) else type(e).__name__


# --- JSON: one schema per file, inferred over all of it ----------------------------------------

_KIND_OF = {str: "string", int: "integer", float: "number", bool: "boolean", list: "list",
            dict: "object"}
_A = {"string": "a string", "integer": "an integer", "number": "a number",
      "boolean": "a boolean", "list": "a list", "object": "an object"}
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


class _Type:
    """The inferred type of one JSON field: its kind, where it was first seen with that kind,
    and for a list its items' type, for an object its fields' types (in order of appearance)."""

    __slots__ = ("fields", "item", "kind", "line")

    def __init__(self, kind: str, line: int):
        self.kind = kind  # null | string | integer | number | boolean | list | object
        self.line = line
        self.item: _Type | None = None
        self.fields: dict[str, _Type] = {}

    def arrow(self) -> pa.DataType:
        k = self.kind
        if k == "list":
            return pa.list_(self.item.arrow() if self.item is not None else pa.null())
        if k == "object":
            return pa.struct([pa.field(n, t.arrow()) for n, t in self.fields.items()])
        return {"null": pa.null(), "string": pa.string(), "integer": pa.int64(),
                "number": pa.float64(), "boolean": pa.bool_()}[k]


class _JsonInference:
    """The Arrow schema of a JSON input, merged over every record of it (see the module
    docstring); holds only the inferred types. ``unit`` is what a position is called in
    messages: ``line`` (JSON Lines) or ``record`` (a JSON list)."""

    def __init__(self, path: str, unit: str = "line"):
        self.path = path
        self.unit = unit
        self.columns: dict[str, _Type] = {}

    def add(self, record, at: int) -> None:
        if type(record) is not dict:
            raise InputError(f"{self.path}: {self.unit} {at}: expected a JSON object, "
                             f"got {type(record).__name__}")
        cols = self.columns
        for name, value in record.items():
            t = cols.get(name)
            if t is not None and t.kind == "string" and type(value) is str:
                continue  # the common case, without a call
            cols[name] = self._merge(t, value, at, name)

    def _merge(self, t: _Type | None, value, at: int, name: str) -> _Type:
        if value is None:
            return t if t is not None else _Type("null", at)
        kind = _KIND_OF[type(value)]
        if kind == "integer" and not _INT64_MIN <= value <= _INT64_MAX:
            raise InputError(f"{self.path}: {self.unit} {at}: field '{name}': integer "
                             f"{_preview(value)} does not fit in 64 bits")
        if t is None or t.kind == "null":
            t = _Type(kind, at)
        elif t.kind != kind:
            if {t.kind, kind} == {"integer", "number"}:
                t.kind = "number"  # an integer and a float: a float (as pyarrow and datasets)
                return t
            raise self._conflict(t, kind, value, at, name)
        if kind == "list":
            item = t.item
            for v in value:
                item = self._merge(item, v, at, name + "[]")
            t.item = item
        elif kind == "object":
            fields = t.fields
            for k, v in value.items():
                fields[k] = self._merge(fields.get(k), v, at, f"{name}.{k}")
        return t

    def _conflict(self, t: _Type, kind: str, value, at: int, name: str) -> InputError:
        u = self.unit
        where = (f"{_A[t.kind]} and {_A[kind]} on {u} {at}" if t.line == at else
                 f"{_A[t.kind]} on {u} {t.line} and {_A[kind]} on {u} {at}")
        return InputError(f"{self.path}: field '{name}' is {where} ({_preview(value)}); a field "
                          "cannot change type between records (make them agree, or convert "
                          "the field to text)")

    def schema(self) -> pa.Schema:
        return pa.schema([pa.field(n, t.arrow()) for n, t in self.columns.items()])


def _preview(value, width: int = 60) -> str:
    text = repr(value) if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def _json_table(path: str, rows: list, first: int, schema: pa.Schema,
                unit: str) -> Iterator[pa.RecordBatch]:
    """``rows`` (first at ``first``) as batches of ``schema``, the one inferred for the file."""
    try:
        table = pa.Table.from_pylist(rows, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError) as e:
        span = f"{unit} {first}" if len(rows) == 1 else f"{unit}s {first}-{first + len(rows) - 1}"
        raise InputError(f"{path}: {span}: records do not fit the types inferred from the file "
                         f"({_short(e)})") from None
    yield from table.to_batches()


def _jsonl_records(path: str, after: int = 0) -> Iterator[tuple[int, object]]:
    """(line number, parsed value) of every non-blank line after line ``after``."""
    f = open_binary(path)
    try:
        for lineno, raw in enumerate(f, start=1):
            if lineno <= after:
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(f"{path}: line {lineno}: not valid UTF-8 "
                                 f"(byte {e.start}: {raw[e.start:e.start + 1]!r})") from None
            if not text.strip():
                continue
            try:
                yield lineno, json.loads(text)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}: line {lineno}: not valid JSON ({e.msg}, "
                                 f"column {e.colno})") from None
    except (EOFError, OSError) as e:  # a truncated or corrupt .gz
        raise InputError(f"{path}: cannot read the file ({_short(e)})") from None
    finally:
        f.close()


def _jsonl_batches(path: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
    # Pass 1: parse and infer, keeping only the types and the first batch of records.
    inference = _JsonInference(path, "line")
    head: list = []
    head_first = head_last = 0
    n_records = 0
    for lineno, record in _jsonl_records(path):
        inference.add(record, lineno)
        if n_records < batch_rows:
            head.append(record)
            head_first = head_first or lineno
            head_last = lineno
        n_records += 1
    if n_records == 0:
        raise InputError(f"{path}: file is empty (no JSON records)")
    schema = inference.schema()
    # Pass 2: the same records, converted batch by batch to the schema of the whole file.
    yield from _json_table(path, head, head_first, schema, "line")
    if n_records == len(head):
        return
    del head
    rows: list = []
    first = 0
    for lineno, record in _jsonl_records(path, after=head_last):
        rows.append(record)
        first = first or lineno
        if len(rows) >= batch_rows:
            yield from _json_table(path, rows, first, schema, "line")
            rows, first = [], 0
    if rows:
        yield from _json_table(path, rows, first, schema, "line")


def _json_list_batches(path: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
    with open_binary(path) as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise InputError(f"{path}: line {line}: not valid UTF-8") from None
    try:
        records = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(records, list):
        raise InputError(f"{path}: expected a JSON list of records or JSON Lines")
    if not records:
        raise InputError(f"{path}: file is empty (the JSON list has no records)")
    # A record's position in the list, counted from 1, stands in for a line number.
    inference = _JsonInference(path, "record")
    for i, record in enumerate(records, start=1):
        inference.add(record, i)
    schema = inference.schema()
    for start in range(0, len(records), batch_rows):
        yield from _json_table(path, records[start : start + batch_rows], start + 1, schema,
                               "record")


# --- CSV / TSV ---------------------------------------------------------------------------------

CSV_BLOCK_BYTES = 16 << 20  # a block must hold a whole row: grown (x4) when one does not fit
CSV_BLOCK_MAX = 256 << 20


class _TailReader:
    """A binary file for pyarrow that remembers its last bytes (to tell a quote left open at
    the end of the file from a value with newlines in it)."""

    def __init__(self, f):
        self.f = f
        self.tail = b""

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        if data:
            self.tail = (self.tail + data[-64:])[-64:]
        return data

    def __getattr__(self, name):
        return getattr(self.f, name)


def _csv_open(path: str, handle, block: int, names: list[str] | None):
    import pyarrow.csv as pcsv

    tsv = path.lower().endswith((".tsv", ".tsv.gz"))
    return pcsv.open_csv(
        handle,
        # Serial reading: pyarrow then numbers the row of a parse error (and reads no further
        # ahead than the block it converts).
        read_options=pcsv.ReadOptions(block_size=block, use_threads=False),
        parse_options=pcsv.ParseOptions(delimiter="\t" if tsv else ",",
                                        newlines_in_values=True),
        convert_options=pcsv.ConvertOptions(
            column_types={n: pa.string() for n in names or ()},
            # UTF-8 is checked per batch instead (_csv_check_utf8), which can name the row.
            check_utf8=False,
            strings_can_be_null=True, null_values=[""], quoted_strings_can_be_null=False),
    )


class _Straddle(Exception):
    """A row longer than the block: read again with a bigger one."""


def _csv_error(path: str, e: BaseException, rows_before: int) -> Exception:
    msg = str(e)
    if "straddl" in msg:
        return _Straddle()
    if "Empty CSV file" in msg:
        return InputError(f"{path}: file is empty")
    m = re.search(r"Row #(\d+): Expected (\d+) columns, got (\d+)", msg)
    if m:
        return InputError(f"{path}: row {m.group(1)}: expected {m.group(2)} values, got "
                          f"{m.group(3)} (a ragged row, or a quoted value that is not closed)")
    if isinstance(e, (EOFError, OSError)):
        return InputError(f"{path}: cannot read the file ({_short(e)})")
    where = f"after row {rows_before + 1}: " if rows_before else ""
    return InputError(f"{path}: {where}not a readable CSV file ({_short(e)})")


def _csv_check_utf8(batch: pa.RecordBatch, path: str, index: int) -> None:
    """Full validation of the batch (UTF-8 included), whose first row is data row ``index``
    (counted from 0; a spreadsheet shows it as row ``index + 2``)."""
    try:
        bad = _invalid_column(batch)
    except pa.ArrowInvalid as e:
        raise InputError(f"{path}: not a readable CSV file ({_short(e)})") from None
    if bad is not None:
        name, row, _ = bad
        where = f"row {index + row + 2}" if row is not None else \
            f"rows {index + 2}-{index + batch.num_rows + 1}"
        raise InputError(f"{path}: {where}: column '{name}': not valid UTF-8") from None


def _csv_batches(path: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Record batches of ``batch_rows`` rows, every column text (see the module docstring)."""
    block = CSV_BLOCK_BYTES
    done = [0]  # rows handed on so far, kept across a restart with a bigger block
    while True:
        try:
            yield from _csv_pass(path, batch_rows, block, done)
            return
        except _Straddle:
            if block >= CSV_BLOCK_MAX:
                raise InputError(f"{path}: after row {done[0] + 1}: a row longer than "
                                 f"{CSV_BLOCK_MAX >> 20} MiB, or a quoted value that is never "
                                 "closed") from None
            block *= 4


def _csv_pass(path: str, batch_rows: int, block: int, done: list[int]
              ) -> Iterator[pa.RecordBatch]:
    skip = done[0]  # rows an earlier pass (with a smaller block) already handed on
    seen = 0  # data rows read from the file in this pass
    with open_binary(path) as raw:
        handle = _TailReader(raw)
        try:
            names = _csv_open(path, handle, block, None).schema.names
        except (pa.ArrowInvalid, EOFError, OSError) as e:
            raise _csv_error(path, e, 0) from None
        dup = next((n for i, n in enumerate(names) if n in names[:i]), None)
        if dup is not None:
            raise InputError(f"{path}: the header names column '{dup}' twice")
    with open_binary(path) as raw:
        handle = _TailReader(raw)
        try:
            reader = _csv_open(path, handle, block, names)
        except (pa.ArrowInvalid, EOFError, OSError) as e:
            raise _csv_error(path, e, 0) from None
        pending: list[pa.RecordBatch] = []
        n_pending = 0
        last_value = None
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except (pa.ArrowInvalid, EOFError, OSError) as e:
                raise _csv_error(path, e, seen) from None
            if batch.num_rows == 0:
                continue
            _csv_check_utf8(batch, path, seen)
            seen += batch.num_rows
            last_value = batch.column(batch.num_columns - 1)[batch.num_rows - 1].as_py()
            if skip:
                cut = min(skip, batch.num_rows)
                skip -= cut
                batch = batch.slice(cut)
                if batch.num_rows == 0:
                    continue
            pending.append(batch)
            n_pending += batch.num_rows
            while n_pending >= batch_rows:
                table = pa.Table.from_batches(pending)
                pending = table.slice(batch_rows).to_batches()
                n_pending -= batch_rows
                done[0] += batch_rows
                yield from table.slice(0, batch_rows).combine_chunks().to_batches()
        if seen == 0:
            raise InputError(f"{path}: CSV file has no rows (only a header)")
        # A quote opened in the last value and never closed swallows the rest of the file
        # without an error from pyarrow; a closed one leaves the file ending with the quote.
        if isinstance(last_value, str) and "\n" in last_value:
            end = handle.tail.rstrip(b"\r\n\t ")
            if end and not end.endswith(b'"'):
                raise InputError(f"{path}: row {seen + 1}: a quoted value is never closed (it "
                                 "runs to the end of the file)")
        if pending:
            done[0] += n_pending
            yield from pa.Table.from_batches(pending).combine_chunks().to_batches()


def _arrow_batches(src: Source, batch_rows: int) -> Iterator[pa.RecordBatch]:
    for f in src.files:
        try:
            with pa.memory_map(f) as mm:
                reader = pa.ipc.open_stream(mm)
                for batch in reader:
                    _validate_batch(batch, f, 0)
                    for start in range(0, batch.num_rows, batch_rows):
                        yield batch.slice(start, batch_rows)
        except (pa.ArrowInvalid, OSError) as e:
            raise InputError(f"{f}: not a readable Arrow file ({_short(e)})") from None


def hub_reachable() -> bool:
    """A DNS lookup of the hub's host: without it, huggingface_hub retries for ~30 s."""
    import socket
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False


def _hub_batches(src: Source, batch_rows: int) -> Iterator[pa.RecordBatch]:
    if os.environ.get("HF_HUB_OFFLINE") != "1" and not hub_reachable():
        # Offline mode still finds a dataset in the local cache, and fails at once otherwise.
        os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import datasets
        from huggingface_hub.utils import logging as hub_logging
    except ImportError:  # pragma: no cover - a core dependency
        raise InputError("reading a hub dataset needs the `datasets` package") from None
    datasets.logging.set_verbosity_error()
    hub_logging.set_verbosity_error()
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        # Both libraries read the variable once, at import; set their flags too in case they
        # were imported before we knew the hub is unreachable.
        import huggingface_hub.constants as hub_constants

        hub_constants.HF_HUB_OFFLINE = True
        datasets.config.HF_HUB_OFFLINE = True
    try:
        ds = datasets.load_dataset(src.path, src.config, split=src.split, revision=src.revision,
                                   streaming=True)
        iterator = iter(ds.iter(batch_size=batch_rows))
        first = next(iterator, None)
    except Exception as e:  # datasets raises many types (connection, not found, config)
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or "connect" in str(e).lower()
        hint = " (no network: the hub cannot be reached from here)" if offline else ""
        raise InputError(f"{src.path}: cannot load hub dataset{hint}: {_short(e)}") from None
    if first is None:
        raise InputError(f"{src.path}: hub dataset split '{src.split}' has no rows")
    yield from pa.Table.from_pydict(first).to_batches()
    for batch in iterator:
        yield from pa.Table.from_pydict(batch).to_batches()
