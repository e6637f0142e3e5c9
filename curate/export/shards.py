"""Export's output files: hub-named Parquet shards cut at planned row counts, and the sink that
encodes them (or JSON Lines for ``-o -``) in a background thread.

Shards. ``--shards N`` cuts the train split into N shards of equal row counts (at most one row
apart; no more shards than rows); the test split gets shards of the train shards' average size.
``--shard-size`` (default 500MB, as ``push_to_hub``) cuts by the records' uncompressed text size,
like the hub's own ``max_shard_size``: the files are smaller once compressed (zstd).
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from .. import schema as S
from ..io.background import Background

ROW_GROUP_ROWS = 1000
SHARD_NAME = "{split}-{i:05d}-of-{n:05d}.parquet"


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


def dictionary_columns(schema: pa.Schema) -> list[str]:
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


class ShardWriter:
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
        self.dictionary = dictionary_columns(schema)

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


class Sink:
    """Encodes and writes output pieces in a background thread (Parquet's zstd encoding and
    the JSON serialisation release the GIL for much of their work), so that the next piece is
    gathered and formatted meanwhile; see ``Background`` for the bounded queue and errors."""

    def __init__(self, writers: list[ShardWriter], stream):
        self.writers = writers
        self.stream = stream
        self.background = Background(lambda item: self._write(*item), "curate-export-writer")

    def put(self, table: pa.Table, test: np.ndarray) -> None:
        self.background.put((table, test))

    def _write(self, table: pa.Table, test: np.ndarray) -> None:
        if self.stream is not None:
            buf = io.BytesIO()
            pl.from_arrow(table).write_ndjson(buf)
            write_all(self.stream, buf.getbuffer())
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


def write_all(stream, data) -> None:
    """Write every byte of ``data`` to ``stream``, or raise. A stream with a file descriptor is
    written with ``os.write`` in a loop: when the reader of a pipe goes away in the middle of a
    large write, Python's buffered stdout was seen to return normally after a short write,
    losing the rest without an error; ``os.write`` reports the short write, and the next call
    raises BrokenPipeError."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        stream.write(data)
        return
    stream.flush()
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
