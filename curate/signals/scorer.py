"""The offline ``signals`` scorer: one column per signal, and a documented ``score`` from them.

    quality = 0.35·alignment + 0.35·coherence' + 0.10·ends_cleanly + 0.10·has_answer
              + 0.10·(1 − repetition)                          (each term in [0, 1])
    base    = 0.6·a + 0.4·quality,   a = 1 correct, 0 wrong, 0.5 no reference to check against
    score   = base          for a clean trace
            = 0.01·base     for a degenerate trace: repetition > 0.5, or at least half of its
                            steps copy the step before them (the question before the first)

- ``alignment`` is clipped to [0, 1]; ``coherence'`` is the mean log-probability of the true
  successor mapped to [0, 1] (0 at chance); both are 0 for a trace with no step. A step that
  copies its predecessor (same text up to case, whitespace and a step label) scores chance.
- With ``--encoder none`` alignment and coherence are not computed and the three hygiene terms
  share the quality weight equally. The degenerate rule is the same (it needs no embeddings).
- Why these weights: a checked answer is the strongest evidence there is (math-verify agrees
  with human correctness labels on all of the first 400 GSM8K model solutions), so it dominates:
  0.6 > 0.4 × the largest possible quality, hence every correct clean trace outranks every
  wrong one and quality orders traces within each group. An unchecked trace (no reference)
  sits between. ``curate eval`` measures each signal on labelled data (bench/RESULTS.md).
- Why the degenerate rule, and why it overrides the answer: a loop is not SFT data even when it
  ends with the right boxed answer (fine-tuning on it teaches the loop), and the weighted sum
  cannot see that: the repetition term takes at most 0.04 off a score, so a 1 MB "step step …"
  trace with the right answer outscored every clean trace of its question. A clean trace
  has repetition ≤ 0.5, so its quality is at least 0.10 × 0.5 and its score at least
  0.4 × 0.05 = 0.02 (0.067 with ``--encoder none``); a degenerate one scores at most 0.01.
  Every degenerate trace therefore ranks below every clean trace, whatever its answer and its
  other signals, and degenerate traces keep their own order (a correct loop above a wrong one)
  for inspection. The score stays in [0, 1].
- Why these thresholds: on the labelled real files (bench/RESULTS.md) every trace above 0.5
  repetition is a genuine loop (33 BIG-Bench Mistake Dyck traces, a logical-deduction loop and a
  GSM8K "subtract x, divide by 2, multiply by 2" cycle; all labelled wrong where labelled),
  while correct traces do reach 0.3–0.5 (Dyck stack notation legitimately repeats itself).
  Repeating every step in place (k ≥ 2 copies) makes at least half the steps copies, so such a
  stutter is degenerate even when too short for the 10-gram measure. Copies of an *earlier*
  step do not count: a palindrome check's "a vs a – match." steps are legitimate (one real
  LLaMA-Factory trace repeats earlier steps in 54% of its steps).

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
from ..scoring.checkpoint import STEP_SEPARATOR
from ..scoring.scorer import ScoreColumns, Scorer, ScorerFamily
from ..steps import segment_trace
from .answers import check_answers
from .hygiene import ends_cleanly, is_degenerate, length_tokens, repetition, step_copies

VERSION = "signals-v2"  # v2: the degenerate rule, copies score chance
ANSWER_WEIGHT = 0.6
QUALITY_WEIGHTS = {"alignment": 0.35, "coherence": 0.35, "ends_cleanly": 0.10,
                   "has_answer": 0.10, "no_repetition": 0.10}
UNCHECKED = 0.5  # the answer term of a trace without a reference
DEGENERATE_FACTOR = 0.01  # score of a degenerate trace = this × base (≤ 0.01 < 0.02 ≤ clean)

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
                "weights": {"answer": ANSWER_WEIGHT, "quality": QUALITY_WEIGHTS,
                            "degenerate": DEGENERATE_FACTOR}}

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
        copies = [step_copies(q, t + r) for q, (t, r) in zip(col[S.QUESTION], steps, strict=True)]
        degenerate = [is_degenerate(v, c) for v, c in zip(rep, copies, strict=True)]
        if self.trajectory is not None:
            sig = self.trajectory.compute([q or "" for q in col[S.QUESTION]],
                                          [t for t, _ in steps], [r for _, r in steps],
                                          [r or "" for r in resp], copies)
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
            base = ANSWER_WEIGHT * ans + (1 - ANSWER_WEIGHT) * q
            score.append(DEGENERATE_FACTOR * base if degenerate[i] else base)
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
        }, _separator_drops(col))


def _separator_drops(col: dict[str, list]) -> dict[int, tuple[str, str]]:
    """Rows holding the step PRMs' separator token: dropped here too, as the PRM scorers drop
    them (``contains_separator``), so that a set scored offline can be rescored by a step PRM
    with the same rows, and no special token of Qwen tokenizers reaches the SFT export."""
    out = {}
    for i, texts in enumerate(zip(col[S.QUESTION], col[S.TRAJECTORY], col[S.RESPONSE],
                                  strict=True)):
        if any(STEP_SEPARATOR in (t or "") for t in texts):
            out[i] = ("contains_separator", f"the text contains {STEP_SEPARATOR}")
    return out


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
