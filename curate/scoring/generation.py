"""The ``generate`` engine capability: what a generative verifier (or a rollout) asks of an
engine, and what it gets back.

An engine that offers ``generate`` implements two calls, both on token ids (the scorer's
tokenization is the single source of truth, as for the reward heads):

* ``generate(prompts, params) -> [[Generation] * params.n] * len(prompts)``: ``n`` sampled (or
  greedy, at temperature 0) continuations of every prompt, each with the log-probability the
  model gave every chosen token (from the raw distribution, before temperature and top-p, so
  greedy and sampled chains are comparable). A continuation ends at the end-of-sequence token
  (not included), at ``max_tokens``, or at the token that completes one of ``params.stop``
  (included: the caller cuts the text, the same way whichever engine generated it);
* ``choice_logprobs(seqs, token_ids) -> array (len(seqs), len(token_ids))``: the log-probability
  of each of ``token_ids`` as the token right after each whole sequence: a forced choice (the
  verifier's " Yes" / " No").

Engines must agree: greedy decoding in float32 gives the same tokens on the transformers and the
vLLM engines, and ``choice_logprobs`` agree to 1e-4 (``tests/test_engine_generate.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class GenParams:
    max_tokens: int
    n: int = 1
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0
    logprobs: bool = False  # fill Generation.logprobs (the transformers engine pays a pass)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


@dataclass
class Generation:
    token_ids: list[int]
    logprobs: list[float] = field(default_factory=list)  # of each chosen token
    finish: str = "length"  # "eos" | "stop" | "length"
    size: int = -1  # tokens generated when token_ids are not kept (a dry run's count)

    @property
    def generated(self) -> int:
        return self.size if self.size >= 0 else len(self.token_ids)


def cut_at_stop(text: str, stops: tuple[str, ...]) -> tuple[str, str | None]:
    """The text before the first stop string in it, and that stop (None when none occurs)."""
    best, which = len(text), None
    for s in stops:
        k = text.find(s)
        if k != -1 and k < best:
            best, which = k, s
    return text[:best], which


def finish_of(ids: list[int], text_of, stops: tuple[str, ...],
              eos_ids: set[int]) -> tuple[list[int], str]:
    """Normalise a raw continuation to the contract: cut after the token that completes a stop
    string (found in the decoded text), or before the first end-of-sequence token (a batch pads
    finished rows with it); report why it ended."""
    for k, t in enumerate(ids):
        if t in eos_ids:
            ids = ids[:k]
            cut = _stop_end(ids, text_of, stops)
            return (ids[:cut], "stop") if cut is not None else (ids, "eos")
    cut = _stop_end(ids, text_of, stops)
    if cut is not None:
        return ids[:cut], "stop"
    return ids, "length"


def _stop_end(ids: list[int], text_of, stops: tuple[str, ...]) -> int | None:
    """The number of tokens up to the one that completes the first stop string, or None."""
    if not stops or not ids:
        return None
    text, which = cut_at_stop(text_of(ids), stops)
    if which is None:
        return None
    lo, hi = 1, len(ids)  # the shortest prefix whose text holds a stop string
    while lo < hi:
        mid = (lo + hi) // 2
        if cut_at_stop(text_of(ids[:mid]), stops)[1] is not None:
            hi = mid
        else:
            lo = mid + 1
    return lo
