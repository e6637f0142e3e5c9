"""Rewards of a reward model for a batch of rows (``Scored``), and the columns they become.

``RewardModelScorer`` is the shared part of the scorers that run a reward model (step and
sequence PRMs): ``rewards(table, engine)`` gives per-row rewards, ``score`` turns them into
``ScoreColumns`` with the selection score of ``aggregate`` (Eq. 11), computed from the stored
float32 values so that ``--rescore`` with the same settings gives it back exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from .aggregate import selection_score
from .scorer import ScoreColumns, Scorer

SCORE_COLUMNS = ("step_rewards", "response_step_rewards", "trajectory_reward", "score",
                 "n_tokens", "too_long", "windows", "scorer")
REWARD_COLUMNS = ("step_rewards", "response_step_rewards", "trajectory_reward", "n_tokens",
                  "too_long", "windows")


@dataclass
class Scored:
    step_rewards: list
    response_step_rewards: list
    trajectory_reward: list
    n_tokens: list
    too_long: list
    drops: dict  # row index -> (reason, value)
    windows: list  # forward passes the step rewards took (> 1: a windowed long trace)

    @classmethod
    def empty(cls, n: int) -> Scored:
        return cls([None] * n, [None] * n, [None] * n, [0] * n, [False] * n, {}, [1] * n)

    def drop(self, i: int, reason: str, value: str) -> None:
        self.drops.setdefault(i, (reason, value))

    def columns(self, rows: list[int] | None = None) -> dict[str, pa.Array]:
        rows = range(len(self.n_tokens)) if rows is None else rows
        f32 = pa.list_(pa.float32())
        return {
            "step_rewards": pa.array([self.step_rewards[i] for i in rows], f32),
            "response_step_rewards": pa.array([self.response_step_rewards[i] for i in rows], f32),
            "trajectory_reward": pa.array([self.trajectory_reward[i] for i in rows],
                                          pa.float32()),
            "n_tokens": pa.array([self.n_tokens[i] for i in rows], pa.int32()),
            "too_long": pa.array([self.too_long[i] for i in rows], pa.bool_()),
            "windows": pa.array([self.windows[i] for i in rows], pa.int32()),
        }


def score_of(columns: dict[str, pa.Array], alpha: float, agg: str) -> pa.Array:
    """The selection score of each row from its stored (float32) rewards."""
    s = columns["step_rewards"].to_pylist()
    r = columns["response_step_rewards"].to_pylist()
    t = columns["trajectory_reward"].to_pylist()
    return pa.array([selection_score(a, b, c, alpha, agg)
                     for a, b, c in zip(s, r, t, strict=True)], pa.float32())


class RewardModelScorer(Scorer):
    """A scorer that runs a reward model (see the module text)."""

    alpha: float = 1.0
    agg: str = "mean"
    reusable = True  # rewards can be reused by trace content (curate.scoring.cache)
    reward_columns = REWARD_COLUMNS

    def rewards(self, table: pa.Table, engine) -> Scored:
        raise NotImplementedError

    def score(self, table: pa.Table, engine) -> ScoreColumns:
        scored = self.rewards(table, engine)
        columns = scored.columns()
        columns["score"] = self.selection(columns)
        return ScoreColumns(columns, dict(scored.drops))

    def selection(self, columns: dict[str, pa.Array]) -> pa.Array:
        return score_of(columns, self.alpha, self.agg)
