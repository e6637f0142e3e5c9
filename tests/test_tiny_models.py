"""The tiny test checkpoints: real tokenizer behaviour, real-checkpoint layout, determinism."""

import importlib.util
import json
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import pytest

from curate.read.traces import ReadOptions, iter_traces

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
needs_models = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("torch", "transformers", "tokenizers",
                                                   "safetensors")),
    reason="torch, transformers, tokenizers and safetensors are needed to build tiny models")
SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."


def _rows(path=SAMPLE):
    rows = []
    for batch in iter_traces([str(path)], ReadOptions()):
        rows.extend(batch.table.select(
            [c for c in ("question", "trajectory", "response", "response_steps")
             if c in batch.table.column_names]).to_pylist())
    return rows


@pytest.fixture(scope="module")
def sample_texts():
    texts = []
    for row in _rows():
        texts.extend(row[c] for c in ("question", "trajectory", "response") if row.get(c))
    assert len(texts) > 300
    return texts


@pytest.fixture(scope="module")
def raw_tok(tiny_step_prm):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(tiny_step_prm / "tokenizer.json"))


@pytest.fixture(scope="module")
def auto_tok(tiny_step_prm):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_step_prm)


def _prm_input(tok, question, steps):
    messages = [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": question},
                {"role": "assistant", "content": "<extra_0>".join(steps) + "<extra_0>"}]
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)


# --- tokenizer ---------------------------------------------------------------------------

def test_tokenizer_round_trips_real_text(raw_tok, auto_tok, sample_texts):
    for text in sample_texts:
        ids = raw_tok.encode(text).ids
        # The Qwen2 pipeline NFC-normalises; the sample data is NFC already except rare cases.
        assert raw_tok.decode(ids, skip_special_tokens=False) == unicodedata.normalize("NFC", text)
    n_nfc = sum(t == unicodedata.normalize("NFC", t) for t in sample_texts)
    assert n_nfc >= 0.95 * len(sample_texts)
    text = sample_texts[0]
    assert auto_tok.decode(auto_tok.encode(text)) == unicodedata.normalize("NFC", text)


def test_tokenizer_compresses_real_text(raw_tok, sample_texts):
    """Trained BPE, not a byte fallback: far fewer tokens than bytes on real traces."""
    n_bytes = sum(len(t.encode()) for t in sample_texts)
    n_tokens = sum(len(raw_tok.encode(t).ids) for t in sample_texts)
    assert n_tokens < 0.5 * n_bytes


def test_auto_tokenizer_ids_equal_raw_tokenizer_ids(raw_tok, auto_tok, sample_texts):
    assert type(auto_tok).__name__ == "Qwen2Tokenizer"
    for text in sample_texts:
        assert auto_tok.encode(text) == raw_tok.encode(text).ids
    chat = _prm_input(auto_tok, "What is $2+2$?", ["First, $2+2=4$.", "So \\boxed{4}."])
    assert auto_tok.encode(chat) == raw_tok.encode(chat).ids


def test_special_tokens_are_single_tokens(raw_tok, auto_tok):
    for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<extra_0>"):
        assert len(raw_tok.encode(t).ids) == 1, t
        assert len(auto_tok.encode(t)) == 1, t
    tag = auto_tok.convert_tokens_to_ids("<extra_0>")
    assert auto_tok.encode("<extra_0>") == [tag]
    for glued in ("step<extra_0>", "x = 4.<extra_0>", "\\boxed{4}<extra_0>\n", "<extra_0>next"):
        ids = auto_tok.encode(glued)
        assert ids.count(tag) == 1, glued
        assert raw_tok.encode(glued).ids == ids
    assert auto_tok.pad_token == "<|endoftext|>"
    assert auto_tok.eos_token == "<|im_end|>"


def test_chat_template_is_qwen_style(auto_tok):
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"},
            {"role": "assistant", "content": "A"}]
    assert auto_tok.apply_chat_template(msgs, tokenize=False) == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n"
        "<|im_start|>assistant\nA<|im_end|>\n")
    assert auto_tok.apply_chat_template(msgs[:2], tokenize=False, add_generation_prompt=True
                                        ).endswith("<|im_start|>user\nQ<|im_end|>\n"
                                                   "<|im_start|>assistant\n")


def test_one_step_tag_per_step_in_prm_input(auto_tok):
    tag = auto_tok.convert_tokens_to_ids("<extra_0>")
    rows = [r for r in _rows(SAMPLE / "processbench.parquet") if r["response_steps"]]
    assert len(rows) >= 50
    for row in rows:
        steps = row["response_steps"]
        ids = auto_tok.encode(_prm_input(auto_tok, row["question"], steps))
        assert ids.count(tag) == len(steps)
        # each tag closes its step: the text between consecutive tags is exactly that step
        pos = [i for i, t in enumerate(ids) if t == tag]
        start = len(ids) - 1 - ids[::-1].index(auto_tok.convert_tokens_to_ids("<|im_start|>"))
        segments = [auto_tok.decode(ids[a + 1:b])
                    for a, b in zip([start] + pos[:-1], pos, strict=True)]
        expected = ["assistant\n" + steps[0]] + steps[1:]
        assert segments == [unicodedata.normalize("NFC", s) for s in expected]
        assert auto_tok.decode(ids[pos[-1] + 1:]) == "<|im_end|>\n"


@needs_models
def test_build_tokenizer_on_given_texts(tmp_path):
    from transformers import AutoTokenizer

    from curate.testing.tiny_models import build_tokenizer

    d = build_tokenizer(tmp_path / "tok", texts=["abc def " * 50, "12 + 34 = 46\n"] * 10,
                        vocab_size=300)
    tok = AutoTokenizer.from_pretrained(d)
    assert len(tok) <= 300
    assert tok.decode(tok.encode("abc déf ∑ 46")) == "abc déf ∑ 46"  # byte-level: no unknowns
    assert len(tok.encode("<extra_0>")) == 1


# --- checkpoints -------------------------------------------------------------------------

def _expected_body(cfg) -> dict[str, tuple]:
    h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    kv = cfg["num_key_value_heads"] * h // cfg["num_attention_heads"]
    shapes = {"model.embed_tokens.weight": (v, h), "model.norm.weight": (h,)}
    for n in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{n}."
        shapes.update({
            p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (h, h), p + "self_attn.q_proj.bias": (h,),
            p + "self_attn.k_proj.weight": (kv, h), p + "self_attn.k_proj.bias": (kv,),
            p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.v_proj.bias": (kv,),
            p + "self_attn.o_proj.weight": (h, h),
            p + "mlp.gate_proj.weight": (i, h), p + "mlp.up_proj.weight": (i, h),
            p + "mlp.down_proj.weight": (h, i),
        })
    return shapes


def _shapes(path: Path) -> dict[str, tuple]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


def test_step_prm_has_the_real_checkpoint_layout(tiny_step_prm, raw_tok):
    cfg = json.loads((tiny_step_prm / "config.json").read_text())
    assert cfg["model_type"] == "qwen2"
    assert cfg["architectures"] == ["Qwen2ForProcessRewardModel"]
    assert "auto_map" not in cfg
    assert cfg["hidden_size"] // cfg["num_attention_heads"] in (32, 64, 80, 96, 112, 128)
    assert cfg["vocab_size"] == raw_tok.get_vocab_size(with_added_tokens=True)
    assert cfg["max_position_embeddings"] == 1024
    h = cfg["hidden_size"]
    expected = _expected_body(cfg) | {"score.0.weight": (h, h), "score.0.bias": (h,),
                                      "score.2.weight": (2, h), "score.2.bias": (2,)}
    assert _shapes(tiny_step_prm / "model.safetensors") == expected
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (tiny_step_prm / name).is_file()


def test_step_prm_body_loads_into_qwen2model(tiny_step_prm):
    from transformers import Qwen2Model

    _, info = Qwen2Model.from_pretrained(tiny_step_prm, output_loading_info=True)
    assert not info["missing_keys"] and not info["mismatched_keys"]
    assert set(info["unexpected_keys"]) <= {"score.0.weight", "score.0.bias",
                                            "score.2.weight", "score.2.bias"}


def test_bad_head_and_unknown_arch_variants(tiny_prm_bad_head, tiny_prm_unknown_arch):
    assert _shapes(tiny_prm_bad_head / "model.safetensors")["score.2.weight"][0] == 3
    cfg = json.loads((tiny_prm_unknown_arch / "config.json").read_text())
    assert cfg["architectures"] == ["Qwen2ForSomethingElse"]


def test_seq_prm_reward_head_loads_with_weights_only(tiny_seq_prm):
    import torch
    from transformers import Qwen2ForCausalLM

    cfg = json.loads((tiny_seq_prm / "config.json").read_text())
    assert cfg["architectures"] == ["Qwen2ForCausalLM"]
    h = cfg["hidden_size"]
    state = torch.load(tiny_seq_prm / "reward_head.pt", weights_only=True)
    assert set(state) == {"weight", "bias"}  # ReasonFlux: nn.Linear(H, 1).state_dict()
    assert tuple(state["weight"].shape) == (1, h) and tuple(state["bias"].shape) == (1,)
    torch.nn.Linear(h, 1).load_state_dict(state, strict=True)
    _, info = Qwen2ForCausalLM.from_pretrained(tiny_seq_prm, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))


def test_causal_lm_has_a_vocabulary_sized_output(tiny_causal_lm):
    cfg = json.loads((tiny_causal_lm / "config.json").read_text())
    assert cfg["architectures"] == ["Qwen2ForCausalLM"]
    shapes = _shapes(tiny_causal_lm / "model.safetensors")
    assert shapes["lm_head.weight"] == (cfg["vocab_size"], cfg["hidden_size"])
    assert not any(k.startswith("score.") for k in shapes)
    assert not (tiny_causal_lm / "reward_head.pt").exists()


@needs_models
def test_build_is_deterministic_and_fast(tmp_path):
    from curate.testing import tiny_models

    tiny_models._tokenizer_cache.clear()  # time and compare a real tokenizer training too
    t0 = time.perf_counter()
    a = tiny_models.build_step_prm(tmp_path / "a", seed=7)
    elapsed = time.perf_counter() - t0
    tiny_models._tokenizer_cache.clear()
    b = tiny_models.build_step_prm(tmp_path / "b", seed=7)
    c = tiny_models.build_step_prm(tmp_path / "c", seed=8)
    assert elapsed < 10
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()


@needs_models
def test_head_dim_below_32_is_refused(tmp_path):
    from curate.testing.tiny_models import build_step_prm

    with pytest.raises(ValueError, match="head_dim"):
        build_step_prm(tmp_path, hidden=64, heads=4, tokenizer=False)


@needs_models
def test_cli_builds_each_kind(tmp_path, capsys):
    from curate.testing.tiny_models import main

    main([str(tmp_path / "seq"), "--kind", "seq-prm", "--seed", "3"])
    assert capsys.readouterr().out.strip() == str(tmp_path / "seq")
    assert (tmp_path / "seq" / "reward_head.pt").is_file()
    main([str(tmp_path / "lm"), "--kind", "causal-lm"])
    assert (tmp_path / "lm" / "model.safetensors").is_file()


def test_importing_the_module_is_cheap():
    code = ("import sys, curate.testing.tiny_models; "
            "print(sorted(m for m in ('torch', 'transformers', 'tokenizers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
