"""The one builder of dropped rows: the records every stage writes to ``_dropped/``.

A dropped row is ``id, drop_reason, drop_value, input_file, input_row`` (``schema.DROPPED_SCHEMA``)
plus any columns a stage adds (dedup's ``dup_of``, decontam's ``contaminated_by``, the input row
itself with ``--keep-dropped-rows``). Parts of one folder that carry different extra columns are
given one schema when the folder is committed, so a stage never pads columns by hand.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from . import schema as S


def dropped_rows(ids, reasons: str | Sequence[str], values: Sequence[str | None],
                 input_file: str | Sequence[str | None] | None,
                 input_row: Sequence[int | None] | pa.Array | np.ndarray | None = None,
                 **extra: pa.Array | Sequence) -> pa.Table:
    """A _dropped/ table. ``reasons`` and ``input_file`` may be one value for every row;
    ``input_row`` None means unknown; ``extra`` are more columns, in the order given."""
    n = len(values)
    ids = ids if isinstance(ids, (pa.Array, pa.ChunkedArray)) else pa.array(ids, pa.string())
    reasons = [reasons] * n if isinstance(reasons, str) else reasons
    files = [input_file] * n if input_file is None or isinstance(input_file, str) else input_file
    if input_row is None:
        rows = pa.nulls(n, pa.int64())
    elif isinstance(input_row, (pa.Array, pa.ChunkedArray)):
        rows = input_row.cast(pa.int64())
    else:
        rows = pa.array(input_row, pa.int64())
    cols = [ids.cast(pa.string()), pa.array(reasons, pa.string()),
            pa.array(values, pa.string()), pa.array(files, pa.string()), rows]
    table = pa.Table.from_arrays(cols, schema=S.DROPPED_SCHEMA)
    for name, arr in extra.items():
        table = table.append_column(name, arr if isinstance(arr, (pa.Array, pa.ChunkedArray))
                                    else pa.array(arr))
    return table


def rows_of(table: pa.Table, where, reason: str | Sequence[str], values: Sequence[str | None],
            label: str | None, positions: pa.Array | None = None,
            **extra) -> pa.Table:
    """The dropped records of the rows of ``table`` selected by ``where`` (a boolean mask or
    indices), whose input rows are ``positions`` (one per row of ``table``, or None)."""
    idx = np.flatnonzero(where) if _is_mask(where, table.num_rows) else np.asarray(where)
    take = pa.array(idx, pa.int64())
    ids = table.column(S.ID).take(take)
    rows = positions.take(take) if positions is not None else None
    return dropped_rows(ids, reason, values, label, rows, **extra)


def _is_mask(where, n: int) -> bool:
    a = np.asarray(where)
    return a.dtype == bool and len(a) == n
