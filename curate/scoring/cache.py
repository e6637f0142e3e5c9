"""Rewards from a previous complete run, keyed by trace content: rerunning `curate score` on an
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
from ..io.sources import MANIFEST
from .result import Scored

REWARD_COLUMNS = ("step_rewards", "response_step_rewards", "trajectory_reward", "n_tokens",
                  "too_long", "windows")
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
    def load(cls, out: Path, score_key: dict) -> RewardCache:
        manifest = out / MANIFEST
        if not manifest.is_file():
            return cls()
        try:
            doc = json.loads(manifest.read_text())
        except ValueError:
            return cls()
        if doc.get("curate", {}).get("stage") != "score" or doc.get("score_key") != score_key:
            return cls()
        tables, index = [], {}
        offset = 0
        for part in doc.get("parts", []):
            t = pq.read_table(out / part["file"])
            for i, h in enumerate(trace_hashes(t)):
                index.setdefault(h, offset + i)
            tables.append(t.select(list(REWARD_COLUMNS)))
            offset += t.num_rows
        if not tables:
            return cls()
        return cls(pa.concat_tables(tables).combine_chunks(), index)

    def __len__(self) -> int:
        return len(self.index)

    def score(self, table: pa.Table, scorer, engine) -> Scored:
        """Rewards for every row: reused where the content was scored before, else scored."""
        n = table.num_rows
        hashes = trace_hashes(table) if self.index else [0] * n
        hit = [i for i in range(n) if hashes[i] in self.index]
        miss = [i for i in range(n) if hashes[i] not in self.index]
        if not hit:
            return scorer.score(table, engine)
        out = Scored.empty(n)
        cached = self.table.take(pa.array([self.index[hashes[i]] for i in hit], pa.int64()))
        cols = {c: cached.column(c).to_pylist() for c in REWARD_COLUMNS}
        for k, i in enumerate(hit):
            out.step_rewards[i] = cols["step_rewards"][k]
            out.response_step_rewards[i] = cols["response_step_rewards"][k]
            out.trajectory_reward[i] = cols["trajectory_reward"][k]
            out.n_tokens[i] = cols["n_tokens"][k]
            out.too_long[i] = cols["too_long"][k]
            out.windows[i] = cols["windows"][k]
        self.hits += len(hit)
        if miss:
            sub = scorer.score(table.take(pa.array(miss, pa.int64())), engine)
            for k, i in enumerate(miss):
                out.step_rewards[i] = sub.step_rewards[k]
                out.response_step_rewards[i] = sub.response_step_rewards[k]
                out.trajectory_reward[i] = sub.trajectory_reward[k]
                out.n_tokens[i] = sub.n_tokens[k]
                out.too_long[i] = sub.too_long[k]
                out.windows[i] = sub.windows[k]
                if k in sub.drops:
                    out.drops[i] = sub.drops[k]
        return out
