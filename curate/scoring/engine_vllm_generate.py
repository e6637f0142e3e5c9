"""The vLLM engine for the ``generate`` capability (``curate.scoring.generation``): a causal LM on
vLLM's generate runner, at GPU speed.

* Prefix caching is on: every chain of one trace shares its prompt (``SamplingParams(n=K)``),
  and the forced verdict re-reads prompt + critique, which the cache mostly holds already.
* Prompts go in as token ids; vLLM still loads the tokenizer, because stop strings are matched
  on its detokenized text (special tokens kept, as the scorer decodes). Each continuation is
  then normalised exactly as the transformers engine's (``generation.finish_of``).
* Log-probabilities are vLLM's default *raw* ones (before temperature and top-p), as the
  transformers engine computes them. The forced choice asks for the two tokens by id
  (``SamplingParams(logprob_token_ids=…)``, one generated token), not for a top-k that might
  not hold them.
* Sampling seeds: a per-request seed fails on vLLM's CPU build ("CPU Generator does not use
  offset"), so the engine is seeded once (``LLM(seed=…)``); sampled chains are reproducible for
  the same requests in the same order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .checkpoint import Checkpoint, transformers_knows
from .engine import Engine, EngineOptions
from .engine_hf_generate import eos_ids
from .generation import Generation, GenParams, finish_of
from .vllm_setup import VLLMSettings, check_placement, import_vllm, memory_kwargs


@dataclass
class VLLMGenerator(VLLMSettings, Engine):
    name = "vllm"
    capabilities = frozenset({"generate"})

    @classmethod
    def create(cls, ckpt: Checkpoint, opts: EngineOptions, device: str) -> VLLMGenerator:
        return cls.from_options(ckpt, opts, device)

    def __post_init__(self):
        from .step_prm import load_tokenizer

        import_vllm()
        from vllm import LLM, SamplingParams

        self.dtype = check_placement(self.device, self.dtype)
        self.SamplingParams = SamplingParams
        self.tokenizer = load_tokenizer(self.ckpt, self.trust_remote_code)
        self.eos_ids = eos_ids(self.ckpt, self.tokenizer)
        on_gpu = self.device.startswith("cuda")
        t0 = time.perf_counter()
        try:
            self.llm = LLM(model=str(self.ckpt.path), runner="generate", dtype=self.dtype,
                           seed=self.seed, enable_prefix_caching=True,
                           tensor_parallel_size=self.tensor_parallel_size,
                           trust_remote_code=self.trust_remote_code
                           and not transformers_knows(self.ckpt),
                           enforce_eager=not on_gpu,
                           **memory_kwargs(self.device, self.gpu_memory_utilization,
                                           self.max_model_len))
        except (ValueError, RuntimeError) as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise InputError(f"--engine vllm: cannot start vLLM on {self.ckpt.model} "
                             f"({first})") from None
        self.start_seconds = time.perf_counter() - t0

    def _text(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def _run(self, prompts: list[list[int]], sampling) -> list:
        from vllm.inputs import TokensPrompt

        return self.llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompts],
                                 sampling, use_tqdm=False)

    def generate(self, prompts: list[list[int]], params: GenParams) -> list[list[Generation]]:
        if not prompts:
            return []
        t0 = time.perf_counter()
        sampling = self.SamplingParams(
            n=params.n, max_tokens=params.max_tokens,
            temperature=0.0 if params.greedy else params.temperature,
            top_p=1.0 if params.greedy else params.top_p,
            stop=list(params.stop) or None, skip_special_tokens=False,
            logprobs=0 if params.logprobs else None)
        out = []
        for p, res in zip(prompts, self._run(prompts, sampling), strict=True):
            gens = []
            for c in res.outputs:
                kept, why = finish_of(list(c.token_ids), self._text, params.stop, self.eos_ids)
                # each position's dict always holds the chosen token
                lps = [d[tok].logprob for d, tok in zip(c.logprobs, kept, strict=False)] \
                    if params.logprobs else []
                gens.append(Generation(kept, lps, why))
                self.stats.generated += len(kept)
            out.append(gens)
            self.stats.tokens += len(p) * params.n
        self.stats.sequences += len(prompts) * params.n
        self.stats.padded_tokens = self.stats.tokens
        self.stats.batches += 1
        self.stats.seconds += time.perf_counter() - t0
        return out

    def choice_logprobs(self, seqs: list[list[int]], token_ids: list[int]) -> np.ndarray:
        out = np.zeros((len(seqs), len(token_ids)))
        if not seqs:
            return out
        t0 = time.perf_counter()
        sampling = self.SamplingParams(max_tokens=1, temperature=0.0,
                                       logprob_token_ids=list(token_ids))
        for row, res in enumerate(self._run(seqs, sampling)):
            first = res.outputs[0].logprobs[0]
            out[row] = [first[t].logprob for t in token_ids]
        self.stats.tokens += sum(len(s) for s in seqs)
        self.stats.padded_tokens = self.stats.tokens
        self.stats.sequences += len(seqs)
        self.stats.batches += 1
        self.stats.seconds += time.perf_counter() - t0
        return out
