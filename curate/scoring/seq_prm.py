"""Sequence-head PRMs (ReasonFlux-PRM-1.5B): one reward per trace, no step rewards.

Input: the plain concatenation of the problem and the completion (no chat template), where the
completion is the thinking and the response joined by a blank line. The reward is
sigmoid(Linear(H, 1)) on the hidden state of the last token. It is stored as
``trajectory_reward``; ``score`` is that reward (there is no step part to aggregate).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from .. import schema as S
from ..errors import InputError
from ..steps import SEP
from .checkpoint import SEQ_HEAD_FILE, Checkpoint
from .result import RewardModelScorer, Scored
from .scorer import ScorerFamily
from .step_prm import load_tokenizer, pad_id_of

# How the question and the completion are joined: nothing in between, as ReasonFlux's own
# RewardModel builds `problem + completion` (ReasonFlux_PRM/utils/rm_utils.py). Unlike it, curate
# never truncates (their tokenizer call cuts at 2,048 tokens silently).
JOIN = ""


@dataclass
class SeqPRMScorer(RewardModelScorer):
    family = "seq-prm"
    needs = "seq_scores"

    ckpt: Checkpoint
    tokenizer: object
    max_len: int | None = None
    alpha: float = 1.0
    agg: str = "mean"

    def __post_init__(self):
        self.pad_id = pad_id_of(self.tokenizer)
        self.max_len = self.max_len or self.ckpt.max_len
        self.name = self.ckpt.label

    def key(self) -> dict:
        return {"family": self.family, "model": self.ckpt.key(), "max_len": self.max_len}

    def describe(self) -> dict:
        return {"family": self.family, "model": self.ckpt.model, "scorer": self.name,
                "alpha": self.alpha, "agg": self.agg}

    def count_plan(self) -> dict:
        return {"max_len": self.max_len}

    @staticmethod
    def build(question: str, trajectory: str, response: str) -> str:
        completion = (trajectory.strip() + SEP + response.strip()) if trajectory.strip() \
            else response.strip()
        return question + JOIN + completion

    def rewards(self, table: pa.Table, engine) -> Scored:
        n = table.num_rows
        q = table.column(S.QUESTION).to_pylist()
        t = table.column(S.TRAJECTORY).to_pylist()
        r = table.column(S.RESPONSE).to_pylist()
        out = Scored.empty(n)
        texts = [self.build(q[i], t[i] or "", r[i]) for i in range(n)]
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        fits = []
        for i in range(n):
            out.n_tokens[i] = len(ids[i])
            if len(ids[i]) > self.max_len:
                out.too_long[i] = True
                out.drop(i, "too_long", f"{len(ids[i])} tokens > {self.max_len}")
            else:
                fits.append(i)
        scores = engine.seq_scores([ids[i] for i in fits], self.pad_id) if fits else []
        for i, s in zip(fits, scores, strict=True):
            out.trajectory_reward[i] = float(s)
            out.step_rewards[i] = []
            out.response_step_rewards[i] = []
        return out


class SeqPRMFamily(ScorerFamily):
    """ReasonFlux-PRM-1.5B: a causal LM plus ``reward_head.pt`` (Linear(H, 1), sigmoid)."""

    name = "seq-prm"

    @classmethod
    def detect(cls, ckpt: Checkpoint) -> bool:
        return (ckpt.path / SEQ_HEAD_FILE).is_file()

    @classmethod
    def check(cls, ckpt: Checkpoint) -> dict:
        if not (ckpt.path / SEQ_HEAD_FILE).is_file():
            raise InputError(f"--model {ckpt.model}: a sequence PRM needs {SEQ_HEAD_FILE} "
                             "beside the weights")
        return {}

    @classmethod
    def build(cls, opts, ckpt: Checkpoint, reporter=None) -> SeqPRMScorer:
        tok = load_tokenizer(ckpt, opts.trust_remote_code)
        return SeqPRMScorer(ckpt, tok, max_len=opts.max_model_len or ckpt.max_len,
                            alpha=opts.alpha, agg=opts.agg)
