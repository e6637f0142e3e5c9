"""The transformers engine: length-sorted, token-budget batches through the model body, and the
reward head applied only where rewards are read.

The body is loaded with ``AutoModel`` (no language-model head, so no vocabulary-sized logits are
ever computed). The heads are small modules of our own, loaded from the checkpoint's tensors, so
neither family needs the checkpoint's remote code.

Right padding under causal attention leaves every real token's hidden state unchanged, so
batching changes no reward beyond float rounding (tested against one-trace-per-pass
references), and needs no attention mask at all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from .checkpoint import SEQ_HEAD_FILE, Checkpoint
from .engine import Engine, EngineOptions, EngineStats


def plan_batches(lengths: list[int], batch_tokens: int) -> list[list[int]]:
    """Indices grouped into batches: longest first, each batch's padded size ≤ batch_tokens
    (a sequence longer than the budget gets a batch of its own)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches, cur, cur_max = [], [], 0
    for i in order:
        longest = max(cur_max, lengths[i])
        if cur and longest * (len(cur) + 1) > batch_tokens:
            batches.append(cur)
            cur, longest = [], lengths[i]
        cur.append(i)
        cur_max = longest
    if cur:
        batches.append(cur)
    return batches


@dataclass
class HFEngine(Engine):
    name = "hf"
    capabilities = frozenset({"step_probs", "seq_scores"})

    ckpt: Checkpoint
    device: str = "cpu"
    dtype: str = "auto"
    batch_tokens: int = 16384
    trust_remote_code: bool = False
    stats: EngineStats = field(default_factory=EngineStats)

    @classmethod
    def available(cls, device: str) -> bool:
        try:
            import torch  # noqa: F401
            import transformers  # noqa: F401
        except ImportError:
            return False
        return True

    @classmethod
    def create(cls, ckpt: Checkpoint, opts: EngineOptions, device: str) -> HFEngine:
        return cls(ckpt, device=device, dtype=opts.dtype, batch_tokens=opts.batch_tokens,
                   trust_remote_code=opts.trust_remote_code)

    def __post_init__(self):
        import torch
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        # The load report lists the head's score.* tensors as unexpected (the head is ours,
        # loaded below) and the weight-loading bar duplicates our progress: keep stderr clean.
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise InputError(f"--device {self.device}: no CUDA GPU is visible")
        if self.dtype == "auto":
            self.dtype = "bfloat16" if self.device.startswith("cuda") else "float32"
        try:
            self.torch_dtype = getattr(torch, self.dtype)
        except AttributeError:
            raise InputError(f"--dtype {self.dtype}: expected auto, float32, bfloat16 or "
                             "float16") from None
        # The body is the architecture's base model, loaded from its weights the same way
        # whatever --trust-remote-code says: a checkpoint whose model_type transformers knows
        # (qwen2) is loaded with transformers' own class even when it ships remote code. The
        # remote class of Qwen2.5-Math-PRM is the whole reward model (body and head) and
        # returns logits, not hidden states; the head here is ours. Remote code is used only
        # for a model type transformers does not know.
        kw = {"dtype": self.torch_dtype,
              "trust_remote_code": self.trust_remote_code and not _known_type(self.ckpt)}
        try:
            self.body = AutoModel.from_pretrained(self.ckpt.path, attn_implementation="sdpa",
                                                  **kw)
        except (ValueError, ImportError):  # an architecture without sdpa support
            self.body = AutoModel.from_pretrained(self.ckpt.path, **kw)
        self.body.to(self.device).eval()
        self.head = self._load_head().to(self.device, self.torch_dtype).eval()

    def _load_head(self):
        import torch

        h = self.ckpt.hidden_size
        if self.ckpt.family == "step-prm":
            from safetensors import safe_open

            n_out = self.ckpt.head_shapes["score.2.weight"][0]
            head = torch.nn.Sequential(torch.nn.Linear(h, h), torch.nn.ReLU(),
                                       torch.nn.Linear(h, n_out))
            state = {}
            for f in sorted(self.ckpt.path.glob("*.safetensors")):
                with safe_open(str(f), framework="pt") as st:
                    for k in st.keys():  # noqa: SIM118 - safe_open has no __iter__
                        if k.startswith("score."):
                            state[k[len("score."):]] = st.get_tensor(k)
            head.load_state_dict(state)
            return head
        state = torch.load(self.ckpt.path / SEQ_HEAD_FILE, map_location="cpu", weights_only=True)
        state = {k.split(".")[-1]: v for k, v in state.items()}  # weight / bias, any prefix
        head = torch.nn.Linear(h, state["weight"].shape[0])
        head.load_state_dict(state)
        return head

    # -- forward passes -----------------------------------------------------------------------
    def _hidden(self, seqs: list[list[int]], pad_id: int):
        import torch

        n, longest = len(seqs), max(len(s) for s in seqs)
        ids = torch.full((n, longest), pad_id, dtype=torch.long)
        mask = torch.zeros((n, longest), dtype=torch.long)
        for row, s in enumerate(seqs):
            ids[row, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[row, : len(s)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        # No attention mask on purpose: with right padding and a causal model, no real token
        # attends to the padding after it, and only real positions are read. Without a mask,
        # sdpa takes its fused causal kernel; with one it builds a [B, 1, L, L] mask and falls
        # back to the math path (measured: slower than one trace per pass on CPU).
        out = self.body(input_ids=ids, use_cache=False)
        self.stats.tokens += sum(len(s) for s in seqs)
        self.stats.padded_tokens += n * longest
        self.stats.sequences += n
        self.stats.batches += 1
        return out.last_hidden_state, ids, mask

    def step_probs(self, seqs: list[list[int]], sep_id: int, pad_id: int) -> list[np.ndarray]:
        """For each sequence, P(good) at every position holding ``sep_id`` (float64 array)."""
        import torch

        results: list[np.ndarray | None] = [None] * len(seqs)
        t0 = time.perf_counter()
        with torch.inference_mode():
            for batch in plan_batches([len(s) for s in seqs], self.batch_tokens):
                hidden, ids, mask = self._hidden([seqs[i] for i in batch], pad_id)
                where = (ids == sep_id) & mask.bool()
                logits = self.head(hidden[where]).float()  # only separator positions
                probs = torch.softmax(logits, dim=-1)[:, 1].double().cpu().numpy()
                counts = where.sum(dim=1).tolist()
                start = 0
                for i, c in zip(batch, counts, strict=True):
                    results[i] = probs[start : start + c]
                    start += c
        self.stats.seconds += time.perf_counter() - t0
        return results

    def seq_scores(self, seqs: list[list[int]], pad_id: int) -> list[float]:
        """For each sequence, sigmoid(head(hidden state of its last token))."""
        import torch

        results: list[float] = [0.0] * len(seqs)
        t0 = time.perf_counter()
        with torch.inference_mode():
            for batch in plan_batches([len(s) for s in seqs], self.batch_tokens):
                hidden, _, mask = self._hidden([seqs[i] for i in batch], pad_id)
                last = mask.sum(dim=1) - 1
                vec = hidden[torch.arange(len(batch), device=hidden.device), last]
                scores = torch.sigmoid(self.head(vec).float()[:, 0]).double().cpu().tolist()
                for i, s in zip(batch, scores, strict=True):
                    results[i] = s
        self.stats.seconds += time.perf_counter() - t0
        return results


def _known_type(ckpt: Checkpoint) -> bool:
    """Whether transformers has its own classes for the checkpoint's model_type."""
    from transformers import CONFIG_MAPPING

    return ckpt.config.get("model_type") in CONFIG_MAPPING
