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

from .batching import plan_batches
from .checkpoint import SEQ_HEAD_FILE, Checkpoint
from .engine import Engine, EngineOptions, EngineStats
from .hf_setup import load_model, prepare


@dataclass
class HFEngine(Engine):
    name = "hf"
    # generate: a causal LM with its head, built by create() (engine_hf_generate.HFGenerator)
    capabilities = frozenset({"step_probs", "seq_scores", "generate"})

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
    def create(cls, ckpt: Checkpoint, opts: EngineOptions, device: str) -> Engine:
        if opts.task == "generate":
            from .engine_hf_generate import HFGenerator

            return HFGenerator.create(ckpt, opts, device)
        return cls(ckpt, device=device, dtype=opts.dtype, batch_tokens=opts.batch_tokens,
                   trust_remote_code=opts.trust_remote_code)

    def __post_init__(self):
        from transformers import AutoModel

        self.dtype, self.torch_dtype = prepare(self.device, self.dtype)
        # The body is the architecture's base model (hf_setup.load_model); the head is ours.
        self.body = load_model(AutoModel, self.ckpt, self.torch_dtype, self.trust_remote_code)
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
