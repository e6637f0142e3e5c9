"""TEST HELPER: slow, literal reference scorers that follow the model cards, for engine-agreement
tests and benchmarks (no stage uses it).

One trace per forward pass, no batching, no padding, fp32, the head applied by hand from the
checkpoint's own tensors. Nothing here is fast or clever on purpose: the engines are tested
against it. It imports nothing from the rest of ``curate.scoring``.

* ``reference_step_rewards``: the Qwen2.5-Math-PRM / ReasonFlux-PRM-7B model card: messages
  [system, user = question, assistant = steps joined by ``<extra_0>`` plus a final
  ``<extra_0>``], chat template without a generation prompt, encode, the Qwen2 body, then
  ``score.0`` → ReLU → ``score.2`` → softmax → class 1 at every ``<extra_0>`` position.
* ``reference_seq_reward``: ReasonFlux-PRM-1.5B (``ReasonFlux_PRM/utils/rm_utils.py``): the
  plain text (problem + completion, no chat template), the final hidden state of the last
  token, ``reward_head.pt`` (Linear(H, 1)), sigmoid.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
STEP_TAG = "<extra_0>"


def _weights_file(model_dir: Path, key: str) -> Path:
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        return model_dir / json.loads(index.read_text())["weight_map"][key]
    return model_dir / "model.safetensors"


def _stamp(model_dir: Path) -> int:
    files = list(model_dir.glob("*.safetensors")) + list(model_dir.glob("reward_head.pt"))
    return max(f.stat().st_mtime_ns for f in files)


@lru_cache(maxsize=4)
def _load(model_dir: str, stamp: int):
    import torch
    from transformers import AutoTokenizer, Qwen2Model

    tok = AutoTokenizer.from_pretrained(model_dir)
    body, info = Qwen2Model.from_pretrained(model_dir, dtype=torch.float32,
                                            output_loading_info=True)
    if info["missing_keys"]:
        raise ValueError(f"{model_dir}: body weights missing: {sorted(info['missing_keys'])}")
    return tok, body.eval()


def _head_tensors(model_dir: Path) -> dict:
    from safetensors import safe_open

    out = {}
    for key in ("score.0.weight", "score.0.bias", "score.2.weight", "score.2.bias"):
        with safe_open(str(_weights_file(model_dir, key)), framework="pt") as f:
            out[key] = f.get_tensor(key).float()
    return out


def reference_step_rewards(model_dir, question: str, steps: list[str],
                           system: str = SYSTEM_PROMPT) -> list[float]:
    """One probability of "good" per step, computed as the model card says."""
    import torch

    model_dir = Path(model_dir)
    tok, body = _load(str(model_dir), _stamp(model_dir))
    head = _head_tensors(model_dir)
    if head["score.2.weight"].shape[0] != 2:
        raise ValueError(f"score.2 has {head['score.2.weight'].shape[0]} outputs, expected 2")

    messages = [
        {"role": "system", "content": system},
        {"role": "user", "content": question},
        {"role": "assistant", "content": STEP_TAG.join(steps) + STEP_TAG},
    ]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    input_ids = torch.tensor([tok.encode(text)])
    tag = tok.encode(STEP_TAG)
    if len(tag) != 1:
        raise ValueError(f"{STEP_TAG} is not a single token: {tag}")
    mask = input_ids[0] == tag[0]
    if int(mask.sum()) != len(steps):
        raise ValueError(f"{int(mask.sum())} {STEP_TAG} tokens for {len(steps)} steps")
    if input_ids.shape[1] > body.config.max_position_embeddings:
        raise ValueError(f"{input_ids.shape[1]} tokens > max_position_embeddings "
                         f"{body.config.max_position_embeddings}")

    with torch.inference_mode():
        h = body(input_ids=input_ids).last_hidden_state[0]  # (T, H)
        h = h[mask]  # (steps, H)
        x = torch.relu(h @ head["score.0.weight"].T + head["score.0.bias"])
        logits = x @ head["score.2.weight"].T + head["score.2.bias"]
        probs = torch.softmax(logits, dim=-1)[:, 1]
    return [float(p) for p in probs]


def reference_seq_reward(model_dir, text: str) -> float:
    """One score for a whole text (problem + completion), as ReasonFlux-PRM-1.5B computes it."""
    import torch

    model_dir = Path(model_dir)
    tok, body = _load(str(model_dir), _stamp(model_dir))
    head = torch.load(model_dir / "reward_head.pt", map_location="cpu", weights_only=True)
    if tuple(head["weight"].shape) != (1, body.config.hidden_size):
        raise ValueError(f"reward_head.pt weight has shape {tuple(head['weight'].shape)}")
    input_ids = torch.tensor([tok.encode(text)])
    if input_ids.shape[1] > body.config.max_position_embeddings:
        raise ValueError(f"{input_ids.shape[1]} tokens > max_position_embeddings "
                         f"{body.config.max_position_embeddings}")
    with torch.inference_mode():
        h = body(input_ids=input_ids).last_hidden_state[0, -1]  # (H,)
        logit = h @ head["weight"].float()[0] + head["bias"].float()[0]
        return float(torch.sigmoid(logit))
