"""The Scorer contract: one for every way of scoring a trace.

A *scorer* knows a model family's convention: how to build the model's input from a trace,
which positions hold the rewards, how to turn what the engine returns into rewards, and how
to combine them into ``score``. It declares the engine capability it needs (``needs``: see
``curate.scoring.engine``; None for a scorer that runs no model, like ``signals``), and
``score(table, engine)`` returns ``ScoreColumns``: one value per input row for each column it
adds, and the rows it could not score with a reason (too long for the model, …).

A *scorer family* (registered in ``curate.registry``: ``--scorer NAME``) makes scorers: it says
whether a checkpoint is one of its kind (``detect``, for ``--scorer auto``), refuses one that
looks like it but is not (``check``), and builds the scorer from the score stage's options.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import pyarrow as pa


@dataclass
class ScoreColumns:
    """What a scorer gives for a table: columns aligned with the table's rows, and the rows
    it could not score (row index → (reason, value)); the stage drops those."""

    columns: dict[str, pa.Array]
    drops: dict[int, tuple[str, str]] = field(default_factory=dict)

    def kept(self, n: int) -> list[int]:
        return [i for i in range(n) if i not in self.drops]

    def __getitem__(self, name: str) -> pa.Array:
        return self.columns[name]


class Scorer:
    """Base of every scorer (see the module text)."""

    family: ClassVar[str] = ""
    needs: ClassVar[str | None] = None  # the engine capability it calls
    name: str = ""  # what the `scorer` column records: model@revision, or a versioned name
    reusable: ClassVar[bool] = False  # results can be reused by trace content (scoring.cache)
    reward_columns: tuple[str, ...] = ()  # what is reused; ``selection`` makes score of them

    def score(self, table: pa.Table, engine) -> ScoreColumns:
        raise NotImplementedError

    def key(self) -> dict:
        """What stored results must share to be reused or resumed (model identity and every
        setting that changes the rewards)."""
        return {"family": self.family, "name": self.name}

    def describe(self) -> dict:
        """For the summary and the manifest."""
        return {"family": self.family, "scorer": self.name}

    def count_plan(self) -> dict:
        """For --dry-run: the context limit its counts are measured against."""
        return {}

    def selection(self, columns: dict[str, pa.Array]) -> pa.Array:
        """``score`` from the ``reward_columns`` (stored or reused ones included)."""
        raise NotImplementedError

    def chunk_stats(self, table: pa.Table) -> dict[str, int]:
        """Counts over a committed chunk (the scored rows) that the summary adds up."""
        return {}


class ScorerFamily:
    """Makes scorers of one kind (see the module text)."""

    name: ClassVar[str] = ""
    needs_model: ClassVar[bool] = True

    @classmethod
    def detect(cls, ckpt) -> bool:
        """Whether the checkpoint is of this family (``--scorer auto``)."""
        return False

    @classmethod
    def near_miss(cls, ckpt) -> str | None:
        """A hint when the checkpoint looks like this family but ``detect`` refused it."""
        return None

    @classmethod
    def check(cls, ckpt) -> dict:
        """Refuse (InputError) a checkpoint this family cannot score; returns the head shapes
        worth recording."""
        return {}

    @classmethod
    def build(cls, opts, ckpt, reporter) -> Scorer:
        """The scorer for the score stage's options (``ckpt`` None for a model-free family)."""
        raise NotImplementedError
