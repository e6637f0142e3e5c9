"""What a scorer returns for a batch of rows, and the columns it becomes."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

SCORE_COLUMNS = ("step_rewards", "response_step_rewards", "trajectory_reward", "score",
                 "n_tokens", "too_long", "windows", "scorer")


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

    def columns(self, rows: list[int]) -> dict[str, pa.Array]:
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
