"""Find what an INPUT argument names and stream it as Arrow record batches.

Accepted: Parquet files, directories (searched recursively for Parquet / JSON files; a curate
stage folder contributes the parts its manifest lists, never ``_dropped/``), globs, JSON Lines
(``.jsonl``, ``.ndjson``, or ``.json`` holding one object per line), JSON list files, folders
written by ``datasets.Dataset.save_to_disk``, and hub dataset ids (``owner/name``, loaded with
``datasets`` in streaming mode).

Memory is bounded by the batch size for everything except a JSON *list* file, which has to be
parsed whole (use JSON Lines for large inputs).
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
DEFAULT_BATCH_ROWS = 2048


@dataclass
class Source:
    """One readable thing: a file, a datasets folder or a hub dataset."""

    kind: str  # parquet | jsonl | json-list | arrow | hub
    path: str
    files: list[str] = field(default_factory=list)  # arrow: the data files
    split: str | None = None

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
        return {"path": src.path, "kind": "hub", "split": src.split}
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



def resolve_inputs(inputs: list[str], split: str = "train") -> list[Source]:
    """Expand INPUT arguments into sources, in a stable order. Raises InputError."""
    if not inputs:
        raise InputError("no INPUT given: name a file, folder, glob or hub dataset id")
    sources: list[Source] = []
    for arg in inputs:
        sources.extend(_resolve_one(arg, split))
    seen: set[str] = set()
    unique = []
    for s in sources:
        key = f"{s.kind}:{os.path.abspath(s.path) if s.kind != 'hub' else s.path}"
        if key not in seen:
            seen.add(key)
            unique.append(s)
    return unique


def _resolve_one(arg: str, split: str) -> list[Source]:
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
            raise InputError(f"{arg}: the glob matches no Parquet or JSON file")
        return out
    if p.is_file():
        if _kind_of_file(arg) is None:
            raise InputError(
                f"{arg}: not a Parquet or JSON file (expected .parquet, .jsonl, .ndjson or .json)"
            )
        return [_file_source(arg)]
    if p.is_dir():
        return _dir_sources(p, split)
    if _looks_like_hub_id(arg):
        return [Source("hub", arg, split=split)]
    raise InputError(f"{arg}: no such file or folder")


def _looks_like_hub_id(arg: str) -> bool:
    parts = arg.split("/")
    return (
        len(parts) == 2
        and all(parts)
        and not arg.startswith((".", "/", "~"))
        and not any(arg.endswith(e) for e in PARQUET_EXT + JSON_EXT)
    )


def _kind_of_file(path: str) -> str | None:
    low = path.lower()
    if low.endswith(PARQUET_EXT):
        return "parquet"
    if low.endswith((".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")):
        return "jsonl"
    if low.endswith((".json", ".json.gz")):
        return "json"  # decided on its first character: list or lines
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
        raise InputError(f"{d}: folder holds no Parquet or JSON file")
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


def _validate_batch(batch: pa.RecordBatch, path: str, start: int) -> None:
    """Full validation (UTF-8 of every string included, ~7 GB/s): damaged pages can decode
    without an error and would otherwise fail later, far from their file."""
    try:
        batch.validate(full=True)
    except pa.ArrowInvalid:
        for name, col in zip(batch.schema.names, batch.columns, strict=True):
            try:
                col.validate(full=True)
            except pa.ArrowInvalid as e:
                m = re.search(r"string index (\d+)", str(e))
                where = f"row {start + int(m.group(1))}" if m else \
                    f"rows {start}-{start + batch.num_rows - 1}"
                raise InputError(f"{path}: {where}: column '{name}': corrupt Parquet data "
                                 f"({_short(e)})") from None
        raise


def _short(e: Exception) -> str:
    return str(e).splitlines()[0][:200] if str(e) else type(e).__name__


class _JsonSchema:
    """The Arrow schema of a JSON input, fixed by its first batch (so all parts agree)."""

    def __init__(self, path: str):
        self.path = path
        self.schema: pa.Schema | None = None

    def table(self, rows: list[dict], first_line: int) -> pa.Table:
        for i, r in enumerate(rows):
            if not isinstance(r, dict):
                raise InputError(f"{self.path}: line {first_line + i}: expected a JSON object, "
                                 f"got {type(r).__name__}")
        try:
            if self.schema is None:
                # Columns from every record of the batch, in order of first appearance
                # (from_pylist would take the first record's keys and drop the others').
                keys = list(dict.fromkeys(k for r in rows for k in r))
                t = pa.Table.from_pydict({k: [r.get(k) for r in rows] for k in keys})
                self.schema = t.schema
                return t
            new_keys = {k for r in rows for k in r} - set(self.schema.names)
            if new_keys:
                line = first_line + next(i for i, r in enumerate(rows) if new_keys & r.keys())
                raise InputError(
                    f"{self.path}: line {line}: field(s) {sorted(new_keys)} first appear after "
                    f"the schema was fixed from the first batch; give every record the same "
                    f"fields (null where absent)")
            return pa.Table.from_pylist(rows, schema=self.schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as e:
            span = f"line {first_line}" if len(rows) == 1 else \
                f"lines {first_line}-{first_line + len(rows) - 1}"
            raise InputError(f"{self.path}: {span}: fields change type between records "
                             f"({_short(e)})") from None


def _jsonl_batches(path: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
    schema = _JsonSchema(path)
    rows: list[dict] = []
    first = 1
    n_records = 0
    with open_binary(path) as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(f"{path}: line {lineno}: not valid UTF-8 "
                                 f"(byte {e.start}: {raw[e.start:e.start + 1]!r})") from None
            if not text.strip():
                continue
            try:
                rows.append(json.loads(text))
            except json.JSONDecodeError as e:
                raise InputError(f"{path}: line {lineno}: not valid JSON ({e.msg}, "
                                 f"column {e.colno})") from None
            if len(rows) >= batch_rows:
                yield from schema.table(rows, first).to_batches()
                n_records += len(rows)
                rows, first = [], lineno + 1
    if rows:
        yield from schema.table(rows, first).to_batches()
        n_records += len(rows)
    if n_records == 0:
        raise InputError(f"{path}: file is empty (no JSON records)")


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
    schema = _JsonSchema(path)
    for start in range(0, len(records), batch_rows):
        # "line" here is the record's position in the list, counted from 1.
        yield from schema.table(records[start : start + batch_rows], start + 1).to_batches()


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
        ds = datasets.load_dataset(src.path, split=src.split, streaming=True)
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
