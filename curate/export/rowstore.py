"""Export's row store: record tables in input order, in memory up to a budget, then spilled to
an lz4 Arrow IPC file; given back in any order (rank order) in bounded memory.

Pass 2 writes in rank order: from memory by gathering rank-ordered pieces of ``CHUNK_BYTES``,
or, when spilled, by routing the spilled rows into rank windows of half the buffer (one
sequential read of the spill) and sorting each window in memory. Peak memory is therefore
about the buffer plus the rank keys, never all row texts at once unless they fit in the
buffer; temporary disk is at most about twice the rows' lz4-compressed size.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..io.writer import conform

CHUNK_BYTES = 16 * 1024**2  # rank-ordered pieces handed to the writer
BLOCK_BYTES = 64 * 1024**2  # read batches are joined into blocks of this size in memory


class RowStore:
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
        for a, b in cuts(row_bytes[perm], chunk_bytes):
            ords = perm[a:b]
            yield a, gather(ords, starts, lambda e: self.tables[e], schema)

    def _from_spill(self, perm, row_bytes, schema, chunk_bytes):
        self._close_writer()
        windows = cuts(row_bytes[perm], max(1, self.budget // 2))
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
                    part = conform(batch.take(pa.array(np.flatnonzero(ws == w))), schema)
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
            for c0, c1 in cuts(row_bytes[ords], chunk_bytes):
                yield a + c0, table.slice(c0, c1 - c0)
            del table
            # Hand the window's memory back to the system before the next one is read: the
            # allocator would otherwise keep it and the process would grow window by window.
            pa.default_memory_pool().release_unused()


def cuts(sizes: np.ndarray, limit: int) -> list[tuple[int, int]]:
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


def gather(ords: np.ndarray, starts: np.ndarray, table_of: Callable[[int], pa.Table],
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
        pieces.append(conform(table_of(e).take(pa.array(local)), schema))
    table = pa.concat_tables(pieces)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return table.take(pa.array(inverse))
