"""The vLLM engine: step-separator PRMs through vLLM's pooling runner.

The checkpoint loads as vLLM's own ``Qwen2ForProcessRewardModel`` (body plus the ``score.0`` /
ReLU / ``score.2`` head, no remote code). The pooler is set explicitly rather than left to the
model's defaults:

* ``pooling_type="STEP"`` with ``step_tag_id`` = the scorer's separator id: only the rows at
  separator positions come back (vLLM's default tag is Qwen2.5's 151651; a vocabulary without
  that id would silently give zero rows);
* ``use_activation=False``: ``outputs.data`` is then the raw 2-class logits, shape
  (separators, 2), and the softmax is ours (float32, as in the transformers engine), so the
  result does not depend on how vLLM resolves an activation from the model config
  (``problem_type`` can turn it into a sigmoid or the identity).

Prompts go in as token ids (``TokensPrompt``): the scorer's tokenization is the single source of
truth, the engine never tokenizes. The engine schedules its own batches (``max_num_seqs`` /
``max_num_batched_tokens``), so there is no padding; ``--batch-tokens`` does not apply.

Prefix caching is off: vLLM skips prefix-cache *reads* for every ``token_classify`` request (a
cached prefix has no hidden states left to pool: ``PoolingParams.skip_reading_prefix_cache``),
so traces that share a question save nothing, and vLLM warns that this model "does not
officially support prefix caching" when it is forced on.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .checkpoint import Checkpoint, transformers_knows
from .engine import Engine, EngineOptions
from .vllm_setup import (
    VLLMSettings,
    check_placement,
    import_vllm,
    memory_kwargs,
    vllm_available,
)


class _DropWarmupFailure(logging.Filter):
    """With ``skip_tokenizer_init`` LLM() still warms up a chat template and logs the expected
    failure with a traceback; drop that record only."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Chat template warmup failed")


@dataclass
class VLLMEngine(VLLMSettings, Engine):
    name = "vllm"
    # generate: a causal LM on vLLM's generate runner, built by create()
    # (engine_vllm_generate.VLLMGenerator)
    capabilities = frozenset({"step_probs", "generate"})

    @classmethod
    def available(cls, device: str) -> bool:
        """For --engine auto: a visible GPU and a vLLM that imports (on a CPU, vLLM is taken
        only when asked for by name)."""
        if not device.startswith("cuda"):
            return False
        try:
            import torch
        except ImportError:
            return False
        return torch.cuda.is_available() and vllm_available()

    @classmethod
    def create(cls, ckpt: Checkpoint, opts: EngineOptions, device: str) -> Engine:
        if opts.task == "generate":
            from .engine_vllm_generate import VLLMGenerator

            return VLLMGenerator.create(ckpt, opts, device)
        return cls.from_options(ckpt, opts, device)

    def __post_init__(self):
        if self.ckpt.family != "step-prm":
            raise InputError("--engine vllm: sequence-head PRMs (reward_head.pt) run on "
                             "--engine hf only")
        import_vllm()
        from vllm import LLM, PoolingParams
        from vllm.config import PoolerConfig

        self.dtype = check_placement(self.device, self.dtype)
        self.sep_id = self._separator_id()
        self.PoolingParams = PoolingParams
        t0 = time.perf_counter()
        self.llm = self._start(LLM, PoolerConfig)
        self.start_seconds = time.perf_counter() - t0

    def _separator_id(self) -> int:
        from .checkpoint import STEP_SEPARATOR
        from .step_prm import load_tokenizer

        tok = load_tokenizer(self.ckpt, self.trust_remote_code)
        sep = tok.convert_tokens_to_ids(STEP_SEPARATOR)
        if sep is None or sep == tok.unk_token_id:
            raise InputError(f"--model {self.ckpt.model}: its tokenizer has no "
                             f"{STEP_SEPARATOR} token")
        return int(sep)

    def _start(self, LLM, PoolerConfig):  # noqa: N803 - the vLLM classes, imported lazily
        kw = memory_kwargs(self.device, self.gpu_memory_utilization, self.max_model_len)
        on_gpu = self.device.startswith("cuda")
        pooler = PoolerConfig(pooling_type="STEP", step_tag_id=self.sep_id,
                              use_activation=False)
        warmup_log = logging.getLogger("vllm.renderers.base")
        drop = _DropWarmupFailure()
        warmup_log.addFilter(drop)  # a filter survives vLLM's logging.config.dictConfig
        try:
            return LLM(model=str(self.ckpt.path), runner="pooling", pooler_config=pooler,
                       dtype=self.dtype, seed=self.seed, enable_prefix_caching=False,
                       tensor_parallel_size=self.tensor_parallel_size,
                       # vLLM has its own class for the architecture: remote code only
                       # where transformers does not know the model type (see engine_hf)
                       trust_remote_code=self.trust_remote_code
                       and not transformers_knows(self.ckpt),
                       skip_tokenizer_init=True,
                       enforce_eager=not on_gpu, **kw)
        except (ValueError, RuntimeError) as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise InputError(f"--engine vllm: cannot start vLLM on {self.ckpt.model} "
                             f"({first})") from None
        finally:
            warmup_log.removeFilter(drop)

    def step_probs(self, seqs: list[list[int]], sep_id: int, pad_id: int) -> list[np.ndarray]:
        """For each sequence, P(good) at every position holding ``sep_id`` (float64 array).
        ``pad_id`` is unused: vLLM packs sequences without padding."""
        import torch
        from vllm.inputs import TokensPrompt

        del pad_id
        if not seqs:
            return []
        t0 = time.perf_counter()
        params = self.PoolingParams(step_tag_id=int(sep_id), use_activation=False)
        outs = self.llm.encode([TokensPrompt(prompt_token_ids=list(s)) for s in seqs],
                               pooling_params=params, pooling_task="token_classify",
                               use_tqdm=False)
        results = []
        for s, o in zip(seqs, outs, strict=True):
            logits = torch.as_tensor(o.outputs.data).float().reshape(-1, 2)
            results.append(torch.softmax(logits, dim=-1)[:, 1].double().cpu().numpy())
            self.stats.tokens += len(s)
        self.stats.sequences += len(seqs)
        self.stats.padded_tokens = self.stats.tokens  # no padding
        self.stats.batches += 1  # one encode call (vLLM schedules its own steps)
        self.stats.seconds += time.perf_counter() - t0
        return results
