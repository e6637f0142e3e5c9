"""The offline ``signals`` scorer: one column per signal, and a documented ``score`` from them.

    quality = 0.35·alignment + 0.35·coherence' + 0.10·ends_cleanly + 0.10·has_answer
              + 0.10·(1 − repetition)                          (each term in [0, 1])
    score   = 0.6·a + 0.4·quality,   a = 1 correct, 0 wrong, 0.5 no reference to check against

- ``alignment`` is clipped to [0, 1]; ``coherence'`` is the mean log-probability of the true
  successor mapped to [0, 1] (0 at chance); both are 0 for a trace with no step.
- With ``--encoder none`` alignment and coherence are not computed and the three hygiene terms
  share the quality weight equally.
- Why these weights: a checked answer is the strongest evidence there is (math-verify agrees
  with human correctness labels on all of the first 400 GSM8K model solutions), so it dominates:
  0.6 > 0.4 × the largest possible quality, hence every correct trace outranks every wrong one
  and quality orders traces within each group. An unchecked trace (no reference) sits between.
  ``curate eval`` measures each signal on labelled data (bench/RESULTS.md).

The step rewards are the coherence rewards of ``curate.signals.trajectory``; there is no
trajectory-level reward (``trajectory_reward`` is null), and ``score`` is not Eq. 11, so
``curate score --rescore`` refuses a signals-scored folder (rerun ``score``: it is cheap).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from .. import schema as S
from ..scoring.scorer import ScoreColumns, Scorer, ScorerFamily
from ..steps import segment_trace
from .answers import check_answers
from .hygiene import ends_cleanly, length_tokens, repetition

VERSION = "signals-v1"
ANSWER_WEIGHT = 0.6
QUALITY_WEIGHTS = {"alignment": 0.35, "coherence": 0.35, "ends_cleanly": 0.10,
                   "has_answer": 0.10, "no_repetition": 0.10}
UNCHECKED = 0.5  # the answer term of a trace without a reference

SIGNAL_COLUMNS = ("answer_correct", "answer", "alignment", "coherence", "ends_cleanly",
                  "has_answer", "repetition", "length_tokens", "quality")


@dataclass
class SignalsScorer(Scorer):
    family = "signals"
    needs = None  # no reward model: the engine argument is not used

    trajectory: object | None  # a TrajectorySignals, or None for --encoder none

    def __post_init__(self):
        self.name = f"{VERSION}+{self.encoder_name}"

    @property
    def encoder_name(self) -> str:
        return self.trajectory.encoder.name if self.trajectory is not None else "none"

    @property
    def encoder_fingerprint(self):
        return self.trajectory.encoder.fingerprint if self.trajectory is not None else "none"

    def key(self) -> dict:
        return {"family": self.family, "scorer": VERSION, "encoder": self.encoder_fingerprint}

    def describe(self) -> dict:
        return {"family": self.family, "model": None, "scorer": self.name,
                "encoder": self.encoder_name,
                "weights": {"answer": ANSWER_WEIGHT, "quality": QUALITY_WEIGHTS}}

    def score(self, table: pa.Table, engine=None) -> ScoreColumns:
        n = table.num_rows
        col = {c: (table.column(c).to_pylist() if c in table.column_names else [None] * n)
               for c in (S.QUESTION, S.TRAJECTORY, S.RESPONSE, S.TRAJECTORY_STEPS,
                         S.RESPONSE_STEPS, S.REFERENCE_ANSWER)}
        traj, resp = col[S.TRAJECTORY], col[S.RESPONSE]
        correct, answer = check_answers(resp, col[S.REFERENCE_ANSWER])
        clean = [ends_cleanly(t, r) for t, r in zip(traj, resp, strict=True)]
        whole = [(t or "") + "\n\n" + (r or "") for t, r in zip(traj, resp, strict=True)]
        rep = [repetition(w) for w in whole]
        has_answer = [a is not None for a in answer]
        steps = [segment_trace(t or "", r, ts, rs) for t, r, ts, rs in
                 zip(traj, resp, col[S.TRAJECTORY_STEPS], col[S.RESPONSE_STEPS], strict=True)]
        if self.trajectory is not None:
            sig = self.trajectory.compute([q or "" for q in col[S.QUESTION]],
                                          [t for t, _ in steps], [r for _, r in steps],
                                          [r or "" for r in resp])
            chance = self.trajectory.chance
        else:
            sig, chance = None, 1.0
        align, coher, step_r, resp_r, quality, score = [], [], [], [], [], []
        for i in range(n):
            s = sig[i] if sig is not None else None
            a = s.alignment if s else None
            c = s.coherence if s else None
            align.append(a)
            coher.append(c)
            k = len(steps[i][0])
            step_r.append(s.step_rewards[:k] if s else None)
            resp_r.append(s.step_rewards[k:] if s else None)
            terms = {"ends_cleanly": float(clean[i]), "has_answer": float(has_answer[i]),
                     "no_repetition": 1.0 - rep[i]}
            if sig is not None:
                terms["alignment"] = min(max(a or 0.0, 0.0), 1.0)
                terms["coherence"] = 0.0 if c is None else min(max(1 + c / chance, 0.0), 1.0)
            weight = sum(QUALITY_WEIGHTS[t] for t in terms)
            q = math.fsum(QUALITY_WEIGHTS[t] * v for t, v in terms.items()) / weight
            quality.append(q)
            ans = UNCHECKED if correct[i] is None else float(correct[i])
            score.append(ANSWER_WEIGHT * ans + (1 - ANSWER_WEIGHT) * q)
        f32, lf32 = pa.float32(), pa.list_(pa.float32())
        tokens = length_tokens(pa.array(whole, pa.large_string()))
        return ScoreColumns({
            "step_rewards": pa.array(step_r, lf32),
            "response_step_rewards": pa.array(resp_r, lf32),
            "trajectory_reward": pa.nulls(n, f32),
            "n_tokens": tokens,
            "too_long": pa.array(np.zeros(n, bool)),
            "windows": pa.array(np.ones(n, np.int32)),
            "answer_correct": pa.array(correct, pa.bool_()),
            "answer": pa.array(answer, pa.string()),
            "alignment": pa.array(align, f32),
            "coherence": pa.array(coher, f32),
            "ends_cleanly": pa.array(clean, pa.bool_()),
            "has_answer": pa.array(has_answer, pa.bool_()),
            "repetition": pa.array(rep, f32),
            "length_tokens": tokens,
            "quality": pa.array(quality, f32),
            "score": pa.array(score, f32),
        })


class SignalsFamily(ScorerFamily):
    """The offline scorer: answers, trajectory signals and hygiene, no reward model."""

    name = "signals"
    needs_model = False

    @classmethod
    def build(cls, opts, ckpt=None, reporter=None) -> SignalsScorer:
        if opts.encoder == "none":
            return SignalsScorer(None)
        from .encoder import load_encoder
        from .trajectory import TrajectorySignals

        label = "distilling static embeddings from all-MiniLM-L6-v2 (once; cached)"
        if reporter is None:
            return SignalsScorer(TrajectorySignals(load_encoder(opts.encoder)))
        with reporter.lazy(label) as progress:
            return SignalsScorer(TrajectorySignals(load_encoder(opts.encoder,
                                                                progress=progress)))
