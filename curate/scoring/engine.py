"""The Engine contract: what runs a model on token sequences, and nothing else.

A scorer builds token sequences and reads rewards from what an engine returns; an engine only
runs batches fast. Engines differ in what they can compute, so each declares its
*capabilities*, and a scorer declares the one it needs (``Scorer.needs``):

* ``step_probs(seqs, sep_id, pad_id) -> [np.ndarray]``: P(good step) at every position holding
  the separator id (a step PRM's 2-class head);
* ``seq_scores(seqs, pad_id) -> [float]``: one sigmoid reward from the last token (a sequence
  PRM's head);
* ``generate``: ``generate(prompts, params)`` (continuations with the chosen tokens'
  log-probabilities) and ``choice_logprobs(seqs, token_ids)`` (a forced choice among a few
  tokens): generative verifiers and Monte-Carlo rollouts (``curate.scoring.generation``).

A model is loaded for one capability (``EngineOptions.task``): a reward head's body, or a
language model with its head, so an engine class may build a different object per task.

``--engine auto`` takes the first registered engine (``curate.registry``) that has the
capability and can run on the device. ``ProxyEngine`` forwards every capability through one
method, which is how the lazy, counting and multi-device engines wrap a real one without
repeating each capability.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..errors import InputError

CAPABILITIES = ("step_probs", "seq_scores", "generate")


@dataclass
class EngineStats:
    sequences: int = 0
    tokens: int = 0  # real tokens
    padded_tokens: int = 0  # tokens computed, padding included
    batches: int = 0
    seconds: float = 0.0
    generated: int = 0  # tokens generated (the generate capability)

    @property
    def padding_waste(self) -> float:
        return 1 - self.tokens / self.padded_tokens if self.padded_tokens else 0.0

    def add(self, other: EngineStats, parallel: bool = False) -> None:
        self.sequences += other.sequences
        self.tokens += other.tokens
        self.padded_tokens += other.padded_tokens
        self.batches += other.batches
        self.generated += other.generated
        # engines side by side (one per device) take the longest one's time
        self.seconds = max(self.seconds, other.seconds) if parallel else \
            self.seconds + other.seconds

    def as_dict(self) -> dict:
        out = {"sequences": self.sequences, "tokens": self.tokens, "batches": self.batches,
               "padding_waste": round(self.padding_waste, 4),
               "forward_seconds": round(self.seconds, 3),
               "tokens_per_s": round(self.tokens / self.seconds, 1) if self.seconds else None}
        if self.generated:
            out["generated_tokens"] = self.generated
            out["generated_tokens_per_s"] = round(self.generated / self.seconds, 1) \
                if self.seconds else None
        return out


@dataclass
class EngineOptions:
    """How to run a model: the engine-side options of `curate score` (and `curate eval`)."""

    device: str = "auto"
    dtype: str = "auto"
    batch_tokens: int = 16384
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None
    tensor_parallel_size: int = 1
    trust_remote_code: bool = False
    task: str = "step_probs"  # the capability the model is loaded for
    seed: int = 0  # sampling seed (the generate capability)

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        try:
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
        except ImportError:
            return "cpu"


class Engine:
    """Base of every engine (see the module text)."""

    name: ClassVar[str] = "engine"
    capabilities: ClassVar[frozenset[str]] = frozenset()
    stats: EngineStats

    @classmethod
    def available(cls, device: str) -> bool:
        """Whether this engine can run here, on ``device`` (its libraries import, a GPU …)."""
        return True

    @classmethod
    def create(cls, ckpt, opts: EngineOptions, device: str) -> Engine:
        raise NotImplementedError

    def step_probs(self, seqs: list[list[int]], sep_id: int, pad_id: int) -> list[np.ndarray]:
        raise self._unsupported("step_probs")

    def seq_scores(self, seqs: list[list[int]], pad_id: int) -> list[float]:
        raise self._unsupported("seq_scores")

    def generate(self, prompts: list[list[int]], params) -> list[list]:
        raise self._unsupported("generate")

    def choice_logprobs(self, seqs: list[list[int]], token_ids: list[int]) -> np.ndarray:
        raise self._unsupported("generate")

    def close(self) -> None:
        """Release the model (processes, GPU memory)."""

    def _unsupported(self, capability: str) -> InputError:
        return unsupported(self.name, self.capabilities, capability)


def unsupported(name: str, offers, capability: str) -> InputError:
    """The refusal of an engine asked for what it cannot compute, naming those that can."""
    from ..registry import engine_names, get_engine

    able = [n for n in engine_names() if capability in get_engine(n).capabilities]
    return InputError(f"--engine {name}: cannot compute {capability} (it offers "
                      f"{', '.join(sorted(offers)) or 'nothing'}); use "
                      f"{' or '.join(f'--engine {n}' for n in able) or 'another scorer'}")


class ProxyEngine(Engine):
    """An engine that forwards every capability call through ``_call(name, *args)``."""

    def _call(self, capability: str, *args):
        raise NotImplementedError

    def step_probs(self, seqs, sep_id, pad_id):
        return self._call("step_probs", seqs, sep_id, pad_id)

    def seq_scores(self, seqs, pad_id):
        return self._call("seq_scores", seqs, pad_id)

    def generate(self, prompts, params):
        return self._call("generate", prompts, params)

    def choice_logprobs(self, seqs, token_ids):
        return self._call("choice_logprobs", seqs, token_ids)


class LazyEngine(ProxyEngine):
    """Stands for an engine and builds it at the first forward pass: a resumed, reused or
    all-too-long run never loads the model."""

    def __init__(self, make: Callable[[], Engine], name: str):
        self._make = make
        self.name = name
        self.loaded: Engine | None = None

    @property
    def stats(self) -> EngineStats:
        return self.loaded.stats if self.loaded is not None else EngineStats()

    def _call(self, capability: str, *args):
        if self.loaded is None:
            self.loaded = self._make()
        return getattr(self.loaded, capability)(*args)

    def close(self) -> None:
        if self.loaded is not None:
            self.loaded.close()


class CountingEngine(ProxyEngine):
    """Dry runs: counts the sequences and tokens a real engine would process, runs nothing."""

    name = "count"
    capabilities = frozenset({"step_probs", "seq_scores", "generate"})

    def __init__(self):
        self.stats = EngineStats()

    def _call(self, capability: str, seqs, *rest):
        self.stats.sequences += len(seqs)
        self.stats.tokens += sum(len(s) for s in seqs)
        if capability == "step_probs":
            sep_id = rest[0]
            return [np.full(sum(1 for t in s if t == sep_id), np.nan) for s in seqs]
        if capability == "generate":  # the budget, as the upper bound of what is generated
            from .generation import Generation

            params = rest[0]
            self.stats.generated += len(seqs) * params.n * params.max_tokens
            return [[Generation([], [], "length", size=params.max_tokens)
                     for _ in range(params.n)] for _ in seqs]
        if capability == "choice_logprobs":
            return np.full((len(seqs), len(rest[0])), np.nan)
        return [float("nan")] * len(seqs)
