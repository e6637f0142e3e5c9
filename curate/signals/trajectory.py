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

A step that copies its predecessor (``hygiene.step_copies``: the same text up to case,
whitespace and a step label; the question counts as the first step's predecessor) is given
chance, ``log 1/(K+1)``, instead: a copy is trivially "picked out" by its predecessor (cosine 1,
the largest possible logit), so the contrastive score would rate a stuck loop as perfectly
coherent. A copy adds nothing to the reasoning, so it gets the lowest reward there is.
Near-copies are left to the contrastive score and the repetition check: with the static
encoder, 56% of BIG-Bench Mistake's consecutive step pairs (Dyck stack updates such as
``( ; stack: ( (`` → ``) ; stack: (``) have a cosine above 0.99, so no cosine threshold tells a
near-copy from a legitimate next step.

A step's *coherence reward* is that log-probability mapped to [0, 1]: 0 at chance
(log 1/(K+1)) or below, 1 when the step is certainly the successor. These are the signals
scorer's step rewards, so step-level tools (``curate eval``'s ProcessBench protocol, filters on
``min`` step reward) work on them as on a PRM's.

Cost grows with a trace's length, never with its square, and memory stays bounded: texts are
embedded once per distinct text, contrastive scores are computed once per distinct
(predecessor, step) pair, and both they and the alignment cosines in blocks of ``BLOCK`` rows,
so nothing is kept per step but a few numbers. A 1 MB loop of 170,000 identical steps costs
one step embedding and one contrastive score.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .hygiene import step_copies

TEMPERATURE = 0.1
BLOCK = 4096  # steps or (predecessor, step) pairs handled at a time: bounded memory on huge traces
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
                responses_steps: list[list[str]], responses: list[str],
                copies: list[list[bool]] | None = None) -> list[TraceSignals]:
        """Signals for a batch of traces; each trace's result depends on that trace alone.

        ``copies`` (per trace, per step) is ``hygiene.step_copies`` for each trace, when the
        caller has it already; it is computed here otherwise.
        """
        texts: list[str] = []
        index: dict[str, int] = {}

        def slot(text: str) -> int:
            i = index.get(text)
            if i is None:
                i = index[text] = len(texts)
                texts.append(text)
            return i

        plan = []
        for i, (q, t, r_steps, r) in enumerate(zip(questions, thinking, responses_steps,
                                                   responses, strict=True)):
            steps = list(t) + list(r_steps)
            copy = copies[i] if copies is not None else step_copies(q, steps)
            if len(copy) != len(steps):
                raise ValueError(f"trace {i}: {len(copy)} copy flags for {len(steps)} steps")
            plan.append((slot(q or ""), np.array([slot(s) for s in steps], np.int64), len(t),
                         slot(r or ""), np.array(copy, bool)))
        emb = self.encoder.encode(texts) if texts else np.zeros((0, 1), np.float32)
        return [self._trace(emb, *p) for p in plan]

    def _trace(self, emb: np.ndarray, q: int, steps: np.ndarray, n_thinking: int,
               response: int, copy: np.ndarray) -> TraceSignals:
        if not len(steps):
            return TraceSignals(None, None, [])
        part, anchor = (steps[:n_thinking], response) if n_thinking else (steps, q)
        total = 0.0
        for start in range(0, len(part), BLOCK):
            total += float(np.sum(emb[part[start:start + BLOCK]] @ emb[anchor], dtype=np.float64))
        alignment = total / len(part)
        # Coherence, once per distinct (predecessor, step) pair; a copy scores chance.
        prev = np.concatenate([[q], steps[:-1]])
        logp = np.full(len(steps), -self.chance)
        keep = ~copy
        if keep.any():
            code = prev[keep] * len(emb) + steps[keep]
            ucode, inv = np.unique(code, return_inverse=True)
            logp[keep] = self._logp(emb, ucode // len(emb), ucode % len(emb))[inv.reshape(-1)]
        rewards = np.clip(1.0 + logp / self.chance, 0.0, 1.0)
        return TraceSignals(alignment, float(np.mean(logp)), rewards.tolist())

    def _logp(self, emb: np.ndarray, prev: np.ndarray, step: np.ndarray) -> np.ndarray:
        """log P(true successor) among it and the negatives, for each (prev[i], step[i])."""
        out = np.empty(len(prev))
        for start in range(0, len(prev), BLOCK):
            p, x = emb[prev[start:start + BLOCK]], emb[step[start:start + BLOCK]]
            true = np.einsum("ij,ij->i", p, x)
            logits = np.concatenate([true[:, None], p @ self.negatives.T], axis=1)
            logits = logits.astype(np.float64) / self.temperature
            top = logits.max(axis=1, keepdims=True)
            out[start:start + len(p)] = (true / self.temperature
                                         - (top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))))
        return out
