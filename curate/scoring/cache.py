"""Results from a previous complete run, keyed by trace content: rerunning `curate score` on an
input that gained new traces scores only the new ones.

The key of a reused reward is (trace content hash, model identity, scorer settings): the
previous output is used only when its manifest's ``score_key`` equals this run's. The rewards
stay in an Arrow table (compact); only a dict from content hash to row number is held in Python.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from .. import schema as S
from ..errors import InputError
from ..io import folder as F
from .scorer import ScoreColumns, Scorer

HASHED = (S.QUESTION, S.TRAJECTORY, S.RESPONSE, S.TRAJECTORY_STEPS, S.RESPONSE_STEPS)


def trace_hashes(table: pa.Table) -> list[int]:
    cols = [table.column(c).to_pylist() if c in table.column_names else [None] * table.num_rows
            for c in HASHED]
    out = []
    for values in zip(*cols, strict=True):
        h = xxhash.xxh3_128()
        for v in values:
            h.update(json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass"))
            h.update(b"\x1f")
        out.append(h.intdigest())
    return out


class RewardCache:
    def __init__(self, table: pa.Table | None = None, index: dict[int, int] | None = None):
        self.table = table
        self.index = index or {}
        self.hits = 0

    @classmethod
    def load(cls, out: Path, score_key: dict, columns: tuple[str, ...]) -> RewardCache:
        if not F.is_curate_folder(out):
            return cls()
        try:
            doc = F.read_manifest(out)
        except InputError:
            return cls()
        if doc.get("curate", {}).get("stage") != "score" or doc.get("score_key") != score_key:
            return cls()
        if F.check_parts(out, doc) is not None:
            return cls()  # a damaged folder lends nothing
        tables, index = [], {}
        offset = 0
        for path in F.part_files(out, doc):
            t = pq.read_table(path)
            for i, h in enumerate(trace_hashes(t)):
                index.setdefault(h, offset + i)
            if any(c not in t.column_names for c in columns):
                return cls()
            tables.append(t.select(list(columns)))
            offset += t.num_rows
        if not tables:
            return cls()
        return cls(pa.concat_tables(tables).combine_chunks(), index)

    def __len__(self) -> int:
        return len(self.index)

    def score(self, table: pa.Table, scorer: Scorer, engine) -> ScoreColumns:
        """Columns for every row: rewards reused where the content was scored before, the rest
        scored; ``score`` recomputed from the rewards with this run's settings."""
        n = table.num_rows
        hashes = trace_hashes(table) if self.index else [0] * n
        hit = [i for i in range(n) if hashes[i] in self.index]
        if not hit:
            return scorer.score(table, engine)
        miss = [i for i in range(n) if hashes[i] not in self.index]
        parts = [self.table.take(pa.array([self.index[hashes[i]] for i in hit], pa.int64()))]
        drops: dict[int, tuple[str, str]] = {}
        if miss:
            sub = scorer.score(table.take(pa.array(miss, pa.int64())), engine)
            parts.append(pa.table({c: sub.columns[c] for c in scorer.reward_columns}))
            drops = {miss[k]: v for k, v in sub.drops.items()}
        merged = pa.concat_tables(parts)
        order = hit + miss  # the rows of `merged`, in table positions
        inverse = [0] * n
        for k, i in enumerate(order):
            inverse[i] = k
        merged = merged.take(pa.array(inverse, pa.int64()))
        columns = {c: merged.column(c).combine_chunks() for c in scorer.reward_columns}
        columns["score"] = scorer.selection(columns)
        self.hits += len(hit)
        return ScoreColumns(columns, drops)
