"""The literal reference scorers, checked against a Qwen2 forward pass written out by hand."""

import json
import math
from pathlib import Path

import pytest

from curate.read.traces import ReadOptions, iter_traces

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"


@pytest.fixture(scope="module")
def traces():
    rows = []
    for batch in iter_traces([str(SAMPLE / "processbench.parquet")], ReadOptions()):
        rows.extend(batch.table.select(["question", "response_steps"]).to_pylist())
    return [r for r in rows if r["response_steps"] and len(r["response_steps"]) >= 3][:12]


def hand_qwen2(model_dir: Path, ids: list[int]):
    """Final normed hidden states (T, H) of a Qwen2 body, from config.json and the safetensors
    tensors alone: embeddings, RMSNorm, RoPE, grouped-query causal attention, SwiGLU."""
    import torch
    from safetensors.torch import load_file

    cfg = json.loads((model_dir / "config.json").read_text())
    w = load_file(str(model_dir / "model.safetensors"))
    h, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd, eps = h // nh, cfg["rms_norm_eps"]
    theta = (cfg.get("rope_parameters") or {}).get("rope_theta", cfg.get("rope_theta", 1e4))

    def rms(x, weight):
        return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

    def rope(x):  # x: (heads, T, hd); rotate the two halves of each head
        inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
        ang = torch.arange(x.shape[1]).float()[:, None] * inv[None, :]
        cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)
        x1, x2 = x[..., :hd // 2], x[..., hd // 2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    t = len(ids)
    x = w["model.embed_tokens.weight"][torch.tensor(ids)]
    causal = torch.full((t, t), float("-inf")).triu(1)
    for n in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{n}."
        a = rms(x, w[p + "input_layernorm.weight"])
        q = (a @ w[p + "self_attn.q_proj.weight"].T + w[p + "self_attn.q_proj.bias"])
        k = (a @ w[p + "self_attn.k_proj.weight"].T + w[p + "self_attn.k_proj.bias"])
        v = (a @ w[p + "self_attn.v_proj.weight"].T + w[p + "self_attn.v_proj.bias"])
        q = rope(q.view(t, nh, hd).transpose(0, 1))
        k = rope(k.view(t, nkv, hd).transpose(0, 1)).repeat_interleave(nh // nkv, 0)
        v = v.view(t, nkv, hd).transpose(0, 1).repeat_interleave(nh // nkv, 0)
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(hd) + causal, -1) @ v
        x = x + att.transpose(0, 1).reshape(t, h) @ w[p + "self_attn.o_proj.weight"].T
        m = rms(x, w[p + "post_attention_layernorm.weight"])
        gate = torch.nn.functional.silu(m @ w[p + "mlp.gate_proj.weight"].T)
        x = x + (gate * (m @ w[p + "mlp.up_proj.weight"].T)) @ w[p + "mlp.down_proj.weight"].T
    return rms(x, w["model.norm.weight"]), w


def hand_step_rewards(model_dir: Path, question: str, steps: list[str]) -> list[float]:
    import torch
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    system = "Please reason step by step, and put your final answer within \\boxed{}."
    text = (f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n"
            f"<|im_start|>assistant\n{''.join(s + '<extra_0>' for s in steps)}<|im_end|>\n")
    ids = tok.encode(text).ids
    hidden, w = hand_qwen2(model_dir, ids)
    tag = tok.token_to_id("<extra_0>")
    out = []
    for i, tid in enumerate(ids):
        if tid == tag:
            r = torch.relu(w["score.0.weight"] @ hidden[i] + w["score.0.bias"])
            logits = w["score.2.weight"] @ r + w["score.2.bias"]
            out.append(float(torch.softmax(logits, 0)[1]))
    return out


def test_step_rewards_are_probabilities_one_per_step(tiny_step_prm, traces):
    from curate.scoring.reference import reference_step_rewards

    spread = []
    for row in traces:
        r = reference_step_rewards(tiny_step_prm, row["question"], row["response_steps"])
        assert len(r) == len(row["response_steps"])
        assert all(0.0 < x < 1.0 for x in r)
        assert max(r) - min(r) > 1e-3  # steps get different rewards
        spread.extend(r)
    assert max(spread) - min(spread) > 0.2


def test_step_rewards_match_a_hand_written_forward_pass(tiny_step_prm, traces):
    from curate.scoring.reference import reference_step_rewards

    for row in traces[:6]:
        ref = reference_step_rewards(tiny_step_prm, row["question"], row["response_steps"])
        hand = hand_step_rewards(tiny_step_prm, row["question"], row["response_steps"])
        assert ref == pytest.approx(hand, abs=1e-6)


def test_system_prompt_changes_the_rewards(tiny_step_prm, traces):
    from curate.scoring.reference import SYSTEM_PROMPT, reference_step_rewards

    assert SYSTEM_PROMPT == ("Please reason step by step, and put your final answer within "
                             "\\boxed{}.")
    row = traces[0]
    a = reference_step_rewards(tiny_step_prm, row["question"], row["response_steps"])
    b = reference_step_rewards(tiny_step_prm, row["question"], row["response_steps"],
                               system="You are a helpful assistant.")
    assert a != pytest.approx(b, abs=1e-6)


def test_step_tag_inside_a_step_is_refused(tiny_step_prm):
    from curate.scoring.reference import reference_step_rewards

    with pytest.raises(ValueError, match="<extra_0>"):
        reference_step_rewards(tiny_step_prm, "Q", ["a<extra_0>b", "c"])


def test_bad_head_is_refused(tiny_prm_bad_head):
    from curate.scoring.reference import reference_step_rewards

    with pytest.raises(ValueError, match="3 outputs"):
        reference_step_rewards(tiny_prm_bad_head, "Q", ["a", "b"])


def test_too_long_input_is_refused(tiny_step_prm):
    from curate.scoring.reference import reference_step_rewards

    with pytest.raises(ValueError, match="max_position_embeddings"):
        reference_step_rewards(tiny_step_prm, "Q", ["word " * 2000])


def test_seq_reward_matches_hand_forward_and_the_reasonflux_recipe(tiny_seq_prm, traces):
    import torch
    from transformers import AutoTokenizer, Qwen2ForCausalLM

    from curate.scoring.reference import reference_seq_reward

    texts = [r["question"] + "\n\n".join(r["response_steps"]) for r in traces[:4]]
    ref = [reference_seq_reward(tiny_seq_prm, t) for t in texts]
    assert all(0.0 < x < 1.0 for x in ref) and len({round(x, 6) for x in ref}) == len(ref)

    # 1) by hand: final hidden state of the last token, Linear(H, 1), sigmoid
    head = torch.load(tiny_seq_prm / "reward_head.pt", weights_only=True)
    tok = AutoTokenizer.from_pretrained(tiny_seq_prm)
    for text, r in zip(texts, ref, strict=True):
        hidden, _ = hand_qwen2(tiny_seq_prm, tok.encode(text))
        hand = torch.sigmoid(head["weight"][0] @ hidden[-1] + head["bias"][0])
        assert r == pytest.approx(float(hand), abs=1e-6)

    # 2) the ReasonFlux recipe: causal LM's body, right-padded batch, hidden_states[-1] at
    #    attention_mask.sum(1) - 1, nn.Linear head, sigmoid
    lm = Qwen2ForCausalLM.from_pretrained(tiny_seq_prm, dtype=torch.float32).eval()
    linear = torch.nn.Linear(lm.config.hidden_size, 1)
    linear.load_state_dict(head)
    tok.padding_side = "right"
    enc = tok(texts, return_tensors="pt", padding=True)
    assert len({int(n) for n in enc["attention_mask"].sum(1)}) > 1  # padding really happens
    with torch.inference_mode():
        out = lm.model(**enc, output_hidden_states=True, return_dict=True)
        last = out.hidden_states[-1][torch.arange(len(texts)), enc["attention_mask"].sum(1) - 1]
        rf = torch.sigmoid(linear(last).squeeze(-1))
    assert ref == pytest.approx(rf.tolist(), abs=1e-5)
