"""From per-step rewards to one selection score (ReasonFlux-PRM Eq. 11 and the usual variants).

score = agg(step rewards) + alpha × trajectory_reward

- the step part uses the thinking steps' rewards, or the response steps' when a trace has no
  thinking part; ``agg`` is mean (Eq. 11), min (Math-Shepherd), last (outcome-style) or prod;
- ``alpha`` defaults to 1.0 (the paper's headline setting); with alpha 0 no trajectory pass runs;
- a model that gives no step rewards (a sequence PRM) scores a trace by its trajectory reward.

Kept apart from the scorers so that ``curate score --rescore`` recomputes scores from stored
rewards without loading a model.
"""

from __future__ import annotations

import math

import pyarrow as pa

AGGS = ("mean", "min", "last", "prod")


def aggregate(rewards: list[float], agg: str) -> float | None:
    if not rewards:
        return None
    if agg == "mean":
        return math.fsum(rewards) / len(rewards)
    if agg == "min":
        return min(rewards)
    if agg == "last":
        return rewards[-1]
    if agg == "prod":
        return math.prod(rewards)
    raise ValueError(f"unknown aggregation {agg!r}")


def selection_score(step_rewards: list[float] | None, response_step_rewards: list[float] | None,
                    trajectory_reward: float | None, alpha: float, agg: str) -> float | None:
    part = aggregate(list(step_rewards or []) or list(response_step_rewards or []), agg)
    if part is None:
        return trajectory_reward
    if alpha == 0:
        return part
    if trajectory_reward is None:
        return None
    return part + alpha * trajectory_reward


def score_column(table: pa.Table, alpha: float, agg: str) -> pa.Array:
    s = table.column("step_rewards").to_pylist()
    r = table.column("response_step_rewards").to_pylist()
    t = table.column("trajectory_reward").to_pylist()
    return pa.array([selection_score(a, b, c, alpha, agg) for a, b, c in zip(s, r, t,
                                                                               strict=True)],
                    pa.float32())
