"""The transformers engine for the ``generate`` capability (``curate.scoring.generation``): a
causal language model with its head, on a laptop CPU or a GPU.

* ``generate``: prompts grouped into token-budget batches (prompt + budget, times the chains),
  left padded, through ``model.generate`` under ``inference_mode``, with a generation config
  built here from the request alone: a checkpoint's own ``generation_config.json`` (ThinkPRM's
  ships ``do_sample: true``, temperature 0.6) never turns a greedy request into a sampled one.
  Stop strings are matched by transformers' ``StopStringCriteria`` on the tokens; every row is
  then normalised the same way as vLLM's (``generation.finish_of``).
* the chosen tokens' log-probabilities, when asked for (``GenParams.logprobs``), come from one
  teacher-forced pass over prompt + continuation, reading the language-model head only at the
  generated positions: keeping every step's vocabulary-sized logits (``output_logits``) would
  take gigabytes for an 8k-token chain.
* ``choice_logprobs``: right padded batches through the body (no mask is needed under causal
  attention, as in the reward engine), the head applied at each sequence's last token only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .batching import plan_batches
from .checkpoint import Checkpoint
from .engine import Engine, EngineOptions, EngineStats
from .generation import Generation, GenParams, finish_of
from .hf_setup import load_model, prepare


@dataclass
class HFGenerator(Engine):
    name = "hf"
    capabilities = frozenset({"generate"})

    ckpt: Checkpoint
    device: str = "cpu"
    dtype: str = "auto"
    batch_tokens: int = 16384
    trust_remote_code: bool = False
    seed: int = 0
    stats: EngineStats = field(default_factory=EngineStats)

    @classmethod
    def create(cls, ckpt: Checkpoint, opts: EngineOptions, device: str) -> HFGenerator:
        return cls(ckpt, device=device, dtype=opts.dtype, batch_tokens=opts.batch_tokens,
                   trust_remote_code=opts.trust_remote_code, seed=opts.seed)

    def __post_init__(self):
        from transformers import AutoModelForCausalLM

        from .step_prm import load_tokenizer, pad_id_of

        self.dtype, torch_dtype = prepare(self.device, self.dtype)
        self.model = load_model(AutoModelForCausalLM, self.ckpt, torch_dtype,
                                self.trust_remote_code)
        self.model.to(self.device).eval()
        self.tokenizer = load_tokenizer(self.ckpt, self.trust_remote_code)
        self.pad_id = pad_id_of(self.tokenizer)
        self.eos_ids = eos_ids(self.ckpt, self.tokenizer)

    def _text(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    # -- generate -----------------------------------------------------------------------------
    def generate(self, prompts: list[list[int]], params: GenParams) -> list[list[Generation]]:
        import torch
        from transformers import GenerationConfig

        out: list[list[Generation]] = [[] for _ in prompts]
        if not prompts:
            return out
        config = GenerationConfig(
            max_new_tokens=params.max_tokens, do_sample=not params.greedy,
            num_return_sequences=params.n, eos_token_id=sorted(self.eos_ids),
            pad_token_id=self.pad_id, return_dict_in_generate=False,
            stop_strings=list(params.stop) or None,
            **({} if params.greedy else {"temperature": params.temperature,
                                         "top_p": params.top_p, "top_k": 0}))
        t0 = time.perf_counter()
        cost = [(len(p) + params.max_tokens) * params.n for p in prompts]
        with torch.inference_mode():
            for batch in plan_batches(cost, self.batch_tokens * params.n):
                longest = max(len(prompts[i]) for i in batch)
                ids = torch.full((len(batch), longest), self.pad_id, dtype=torch.long)
                mask = torch.zeros((len(batch), longest), dtype=torch.long)
                for row, i in enumerate(batch):  # left padding: every prompt ends together
                    ids[row, longest - len(prompts[i]):] = torch.tensor(prompts[i])
                    mask[row, longest - len(prompts[i]):] = 1
                if not params.greedy:
                    torch.manual_seed(params.seed)
                seqs = self.model.generate(
                    input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                    generation_config=config, tokenizer=self.tokenizer).cpu()
                new = seqs[:, longest:].tolist()
                for row, i in enumerate(batch):
                    for c in range(params.n):
                        raw = new[row * params.n + c]
                        kept, why = finish_of(raw, self._text, params.stop, self.eos_ids)
                        out[i].append(Generation(kept, [], why))
                self.stats.tokens += sum(len(prompts[i]) for i in batch) * params.n
                self.stats.padded_tokens += len(batch) * params.n * seqs.shape[1]
                self.stats.batches += 1
        self.stats.sequences += len(prompts) * params.n
        self.stats.generated += sum(len(g.token_ids) for gens in out for g in gens)
        if params.logprobs:
            self._chosen_logprobs(prompts, out)
        self.stats.seconds += time.perf_counter() - t0
        return out

    def _chosen_logprobs(self, prompts: list[list[int]], out: list[list[Generation]]) -> None:
        """Fill each generation's log-probabilities by one teacher-forced pass."""
        import torch

        flat = [(i, g) for i, gens in enumerate(out) for g in gens if g.token_ids]
        seqs = [prompts[i] + g.token_ids for i, g in flat]
        with torch.inference_mode():
            for batch in plan_batches([len(s) for s in seqs], self.batch_tokens):
                hidden = self._hidden([seqs[k] for k in batch])
                for row, k in enumerate(batch):
                    i, g = flat[k]
                    start = len(prompts[i]) - 1  # the position that predicts the first token
                    h = hidden[row, start : start + len(g.token_ids)]
                    lp = torch.log_softmax(self.model.lm_head(h).float(), dim=-1)
                    chosen = torch.tensor(g.token_ids, device=lp.device)
                    g.logprobs = lp[torch.arange(len(g.token_ids)), chosen].double().tolist()

    # -- choice_logprobs ----------------------------------------------------------------------
    def choice_logprobs(self, seqs: list[list[int]], token_ids: list[int]) -> np.ndarray:
        import torch

        out = np.zeros((len(seqs), len(token_ids)))
        t0 = time.perf_counter()
        pick = torch.tensor(token_ids)
        with torch.inference_mode():
            for batch in plan_batches([len(s) for s in seqs], self.batch_tokens):
                hidden = self._hidden([seqs[i] for i in batch])
                last = torch.tensor([len(seqs[i]) - 1 for i in batch], device=hidden.device)
                h = hidden[torch.arange(len(batch), device=hidden.device), last]
                lp = torch.log_softmax(self.model.lm_head(h).float(), dim=-1)
                out[batch] = lp[:, pick.to(lp.device)].double().cpu().numpy()
                self.stats.tokens += sum(len(seqs[i]) for i in batch)
                self.stats.padded_tokens += len(batch) * max(len(seqs[i]) for i in batch)
                self.stats.batches += 1
        self.stats.sequences += len(seqs)
        self.stats.seconds += time.perf_counter() - t0
        return out

    def _hidden(self, seqs: list[list[int]]):
        """The body's last hidden states of right-padded sequences (no mask: under causal
        attention no real token attends to the padding after it)."""
        import torch

        longest = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), longest), self.pad_id, dtype=torch.long)
        for row, s in enumerate(seqs):
            ids[row, : len(s)] = torch.tensor(s, dtype=torch.long)
        body = self.model.get_decoder() if hasattr(self.model, "get_decoder") else \
            self.model.model
        return body(input_ids=ids.to(self.device), use_cache=False).last_hidden_state


def eos_ids(ckpt: Checkpoint, tokenizer) -> set[int]:
    """Every end-of-sequence id the checkpoint declares (config, generation config, tokenizer):
    R1-style checkpoints name the end of sentence in all three, not always the same way."""
    import json

    ids: set[int] = set()
    sources = [ckpt.config]
    gen = ckpt.path / "generation_config.json"
    if gen.is_file():
        try:
            sources.append(json.loads(gen.read_text()))
        except ValueError:
            pass
    for src in sources:
        v = src.get("eos_token_id")
        ids.update(v if isinstance(v, list) else [v] if isinstance(v, int) else [])
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids
