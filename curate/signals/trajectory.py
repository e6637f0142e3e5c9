"""Trajectory signals from the ReasonFlux-PRM paper that need no trained reward model.

Both use unit-norm sentence embeddings (``curate.signals.encoder``), so a dot product is a cosine.

**Alignment** (the paper's step-level alignment, §4): cosine between each thinking step and the
final response, averaged over the thinking steps. A trace whose thinking wanders away from what
it finally answers scores low. A trace with no thinking part (a plain chain-of-thought solution)
is aligned step by step with its *question* instead: does each step stay on the problem.

**Coherence** (the paper's contrastive coherence): for each step, its predecessor (the question
for the first step) must pick it out among itself and ``K`` negative steps from unrelated
traces: ``log softmax([cos(prev, step), cos(prev, neg_1..K)] / τ)[0]``. The negatives are a fixed
pool shipped with curate (``negative_steps.json``, K = 256, built by
``scripts/make_negative_pool.py``), never the current batch, so a trace's value cannot depend on
batching, chunking, a resumed run or the rest of the dataset. τ = 0.1.

A step's *coherence reward* is that log-probability mapped to [0, 1]: 0 at chance
(log 1/(K+1)) or below, 1 when the step is certainly the successor. These are the signals
scorer's step rewards, so step-level tools (``curate eval``'s ProcessBench protocol, filters on
``min`` step reward) work on them as on a PRM's.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TEMPERATURE = 0.1
POOL_FILE = Path(__file__).with_name("negative_steps.json")


@functools.cache
def negative_steps() -> tuple[str, ...]:
    return tuple(json.loads(POOL_FILE.read_text())["steps"])


@dataclass
class TraceSignals:
    alignment: float | None
    coherence: float | None  # mean log-probability of the true successor
    step_rewards: list[float]  # one per step, thinking then response, in [0, 1]


class TrajectorySignals:
    def __init__(self, encoder, temperature: float = TEMPERATURE):
        self.encoder = encoder
        self.temperature = temperature
        self.negatives = encoder.encode(list(negative_steps()))  # (K, d)
        self.chance = math.log(len(self.negatives) + 1)

    def compute(self, questions: list[str], thinking: list[list[str]],
                responses_steps: list[list[str]], responses: list[str]) -> list[TraceSignals]:
        """Signals for a batch of traces; each trace's result depends on that trace alone."""
        texts: list[str] = []
        index: dict[str, int] = {}

        def slot(text: str) -> int:
            if text not in index:
                index[text] = len(texts)
                texts.append(text)
            return index[text]

        plan = []
        for q, t, r_steps, r in zip(questions, thinking, responses_steps, responses,
                                    strict=True):
            steps = list(t) + list(r_steps)
            plan.append((slot(q or ""), [slot(s) for s in steps], len(t), slot(r or "")))
        emb = self.encoder.encode(texts) if texts else np.zeros((0, 1), np.float32)
        return [self._trace(emb, *p) for p in plan]

    def _trace(self, emb: np.ndarray, q: int, steps: list[int], n_thinking: int,
               response: int) -> TraceSignals:
        if not steps:
            return TraceSignals(None, None, [])
        x = emb[steps]
        if n_thinking:
            alignment = float(np.mean(x[:n_thinking] @ emb[response]))
        else:
            alignment = float(np.mean(x @ emb[q]))
        prev = np.vstack([emb[q][None, :], x[:-1]])
        true = np.einsum("ij,ij->i", prev, x)
        logits = np.concatenate([true[:, None], prev @ self.negatives.T], axis=1)
        logits = logits.astype(np.float64) / self.temperature
        top = logits.max(axis=1, keepdims=True)
        logp = true / self.temperature - (top[:, 0] + np.log(np.exp(logits - top).sum(axis=1)))
        rewards = np.clip(1.0 + logp / self.chance, 0.0, 1.0)
        return TraceSignals(alignment, float(np.mean(logp)), [float(v) for v in rewards])
