"""A tiny random checkpoint laid out like ThinkPRM's (``launch/ThinkPRM-1.5B``), for tests and the
README's tour.

The released ThinkPRM models are fine-tunes of DeepSeek-R1-Distill-Qwen, so the folder carries
what those ship, written here (nothing is downloaded or copied):

* ``config.json``: ``Qwen2ForCausalLM``, ``model_type: qwen2``, an untied ``lm_head``, and
  ``bos_token_id`` = ``eos_token_id`` = the end-of-sentence id, as in the R1-Distill config;
* ``generation_config.json``: the released *sampling* defaults (``do_sample: true``,
  temperature 0.6, top-p 0.95), which a greedy verifier must override explicitly;
* a fast tokenizer (``tokenizer_class: LlamaTokenizerFast``, ``add_bos_token: true``) whose
  ``tokenizer.json`` post-processor puts ``<｜begin▁of▁sentence｜>`` first, and a chat template
  that renders the same BOS itself: tokenizing a rendered prompt with special tokens on gives
  two BOS (the pitfall of the public vLLM usage example), with them off exactly one;
* the R1 added tokens in their order (``<｜end▁of▁sentence｜>``, ``<｜User｜>``,
  ``<｜Assistant｜>``, ``<｜begin▁of▁sentence｜>``, ``<|EOT|>``, ``<think>``, ``</think>``; the
  last two not special, so they survive decoding), and a generation prompt
  ``<｜Assistant｜><think>\\n``;
* ``" Yes"`` and ``" No"`` as single tokens, as in the released vocabulary, so the forced verdict
  reads one token each.

The weights are random: the critiques are noise, but deterministic for a seed, and every
mechanism (prompting, generation, stopping, the forced verdict, K chains, rounds) runs on it.

CLI: ``python -m curate.testing.tiny_verifier OUT_DIR [--seed N] [--context N]``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .tiny_models import _config, _random_body, _save, _train_tokenizer_json, default_texts

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
USER = "<｜User｜>"
ASSISTANT = "<｜Assistant｜>"
EOT = "<|EOT|>"
THINK, END_THINK = "<think>", "</think>"
# (content, special), in the released id order
ADDED = [(EOS, True), (USER, True), (ASSISTANT, True), (BOS, True), (EOT, True),
         (THINK, False), (END_THINK, False)]

# Shaped like DeepSeek-R1-Distill's template (system text first, after the BOS; user turns after
# <｜User｜>; an assistant turn keeps only what follows its </think>; the generation prompt opens
# the thinking), without its tool-call branches.
CHAT_TEMPLATE = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}"
    "{% endif %}"
    "{%- set ns = namespace(system_prompt='') -%}"
    "{%- for message in messages -%}{%- if message['role'] == 'system' -%}"
    "{%- set ns.system_prompt = message['content'] -%}{%- endif -%}{%- endfor -%}"
    "{{- bos_token }}{{- ns.system_prompt }}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}{{- '" + USER + "' + message['content'] }}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{%- set content = message['content'] -%}"
    "{%- if '</think>' in content -%}{%- set content = content.split('</think>')[-1] -%}"
    "{%- endif -%}"
    "{{- '" + ASSISTANT + "' + content + '" + EOS + "' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '" + ASSISTANT + "<think>\\n' }}{%- endif -%}"
)


def _verifier_texts() -> list[str]:
    """What a verification chain says, so its phrases tokenize into few pieces, and " Yes" /
    " No" become single tokens."""
    texts = ["Let's verify step by step:\nStep 1: The step is correct. \\boxed{correct}\n"
             "Step 2: This is wrong. \\boxed{incorrect}\n</think>\nIs the solution correct? "
             "Yes\n"] * 40
    texts += ["Is the solution correct? No", "Is the solution correct? Yes"] * 40
    texts += [f"Step {i}: \\boxed{{{'correct' if i % 3 else 'incorrect'}}}" for i in range(60)]
    return texts


def build_tokenizer(out: Path, vocab_size: int = 4000) -> dict[str, int]:
    tok_json = _train_tokenizer_json(default_texts() + _verifier_texts(), vocab_size,
                                     specials=ADDED, bos=BOS)
    (out / "tokenizer.json").write_text(tok_json, encoding="utf-8")
    data = json.loads(tok_json)
    ids = dict(data["model"]["vocab"])
    ids.update({a["content"]: a["id"] for a in data["added_tokens"]})
    added = {str(a["id"]): {k: a[k] for k in ("content", "lstrip", "normalized", "rstrip",
                                                "single_word", "special")}
             for a in data["added_tokens"]}
    config = {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": added,
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": EOS,
        "unk_token": None,
        "clean_up_tokenization_spaces": False,
        "legacy": True,
        "model_max_length": 16384,
        "sp_model_kwargs": {},
        "use_default_system_prompt": False,
        "tokenizer_class": "LlamaTokenizerFast",
        "chat_template": CHAT_TEMPLATE,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False)
                                               + "\n", encoding="utf-8")
    special_map = {"bos_token": BOS, "eos_token": EOS, "pad_token": EOS}
    (out / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2,
                                                            ensure_ascii=False) + "\n",
                                                 encoding="utf-8")
    return ids


def build_thinkprm(out_dir, *, hidden: int = 64, layers: int = 2, heads: int = 2,
                   kv_heads: int = 1, intermediate: int = 128,
                   max_position_embeddings: int = 2048, seed: int = 0) -> Path:
    """A tiny ThinkPRM-shaped causal LM (see the module text); returns its folder."""
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ids = build_tokenizer(out)
    vocab = max(ids.values()) + 1
    config = _config(arch="Qwen2ForCausalLM", vocab=vocab, hidden=hidden, layers=layers,
                     heads=heads, kv_heads=kv_heads, intermediate=intermediate,
                     max_pos=max_position_embeddings, ids={})
    config.bos_token_id = ids[EOS]  # as in the R1-Distill config: both are end-of-sentence
    config.eos_token_id = ids[EOS]
    gen = torch.Generator().manual_seed(seed)
    _save(out, config, _random_body(config, gen, with_lm_head=True))
    generation = {"bos_token_id": ids[BOS], "eos_token_id": ids[EOS], "do_sample": True,
                  "temperature": 0.6, "top_p": 0.95}
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m curate.testing.tiny_verifier",
                                description="Build a tiny ThinkPRM-shaped checkpoint offline.")
    p.add_argument("out_dir", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--context", type=int, default=2048, help="max_position_embeddings")
    args = p.parse_args(argv)
    print(build_thinkprm(args.out_dir, seed=args.seed, max_position_embeddings=args.context))


if __name__ == "__main__":
    main()
