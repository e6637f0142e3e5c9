"""Tiny random-initialised Qwen2 checkpoints, built offline in seconds, for tests and demos.

Each builder writes a folder that ``transformers`` (and vLLM) load offline, with no remote code
unless asked for (``build_step_prm(..., remote_code=True)``, below):

* ``build_step_prm``: the Qwen2.5-Math-PRM / ReasonFlux-PRM-7B convention. ``config.json`` says
  ``model_type: qwen2`` and ``architectures: ["Qwen2ForProcessRewardModel"]``; one
  ``model.safetensors`` holds the Qwen2 body under ``model.`` and the head ``score.0`` (Linear
  H→H), ReLU, ``score.2`` (Linear H→2). A step's reward is softmax(head(h))[1] at each
  ``<extra_0>`` token. With ``remote_code=True`` the folder also carries what the real
  Qwen2.5-Math-PRM-7B ships for ``trust_remote_code``: an ``auto_map`` in ``config.json``
  (``AutoConfig`` → ``configuration_qwen2_rm.Qwen2RMConfig``, ``AutoModel`` →
  ``modeling_qwen2_rm.Qwen2ForProcessRewardModel``) and those two files. The remote class is the
  whole reward model (body and head) and its ``forward`` returns a plain tuple ``(logits,)``,
  so ``AutoModel.from_pretrained(path, trust_remote_code=True)`` gives a model whose output has
  no ``last_hidden_state``, as the real one does.
* ``build_seq_prm``: the ReasonFlux-PRM-1.5B convention: a ``Qwen2ForCausalLM`` checkpoint plus
  a separate ``reward_head.pt`` (see below).
* ``build_causal_lm``: a plain ``Qwen2ForCausalLM`` (vocabulary-sized output): the "wrong
  model" users load by mistake (ReasonFlux issue #20).

The weights are random, so the rewards mean nothing; they are deterministic for a seed and
spread over (0, 1), so tests can tell steps apart and compare engines.

What ReasonFlux does with ``reward_head.pt`` (read in the Gen-Verse/ReasonFlux repository, as
mirrored at CloudEngineHub/ReasonFlux commit 72b1be9a: ``ReasonFlux_PRM/utils/rm_utils.py``
class ``RewardModel``, and the usage example in ``ReasonFlux_PRM/README.md``):

* the head is a bare ``torch.nn.Linear(hidden_size, 1)`` attribute named ``reward_head``;
  ``save_pretrained`` writes ``torch.save(reward_head.state_dict(), "reward_head.pt")`` next to
  the causal LM's own files, so the file is a flat dict of two tensors with no prefix:
  ``"weight"`` of shape (1, H) and ``"bias"`` of shape (1,);
* loading: ``AutoModelForCausalLM.from_pretrained(path)``, then ``torch.load`` of the file and
  ``reward_head.load_state_dict``;
* scoring: ``base_model.model(input_ids, attention_mask, output_hidden_states=True)``, take
  ``hidden_states[-1]`` (the final, normed layer output) at index
  ``attention_mask.sum(1) - 1`` (the last non-padding token, which assumes right padding),
  apply the head, squeeze, sigmoid: one score per sequence;
* input: ``tokenizer(problem + completion, truncation=True, max_length=2048)``: the plain
  concatenation, no chat template and no separator (and a silent truncation at 2048 tokens).

The tokenizer is a byte-level BPE trained here with the ``tokenizers`` library and the exact
pipeline of transformers' ``Qwen2Tokenizer`` (NFC, the Qwen2 split regex, byte-level), so that
``AutoTokenizer`` (which in transformers 5 rebuilds a ``Qwen2Tokenizer`` for qwen2 folders) and
the raw ``tokenizers.Tokenizer`` give the same ids.

CLI: ``python -m curate.testing.tiny_models OUT_DIR [--kind step-prm|seq-prm|causal-lm]
[--seed N] [--remote-code]`` builds one folder and prints its path (``--remote-code``: a step
PRM that ships remote code, as above).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

SAMPLE_DATA = Path(__file__).resolve().parents[2] / "sample_data"

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
STEP_TAG = "<extra_0>"
SPECIAL_TOKENS = [ENDOFTEXT, IM_START, IM_END, STEP_TAG]

# The pre-tokenizer split of transformers' Qwen2Tokenizer (and of the real Qwen2 tokenizer.json).
QWEN2_SPLIT_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"""
                     r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")

# Qwen2.5's chat template, less its default system prompt: the ChatML turns, and for tool use
# what the real one renders (the tool list as a <tools> block in the system turn, tool results
# as <tool_response> in a user turn), so that conversations with tools render here as they do
# under the real tokenizer. Without tools and tool turns it renders plain ChatML.
CHAT_TEMPLATE = (
    "{%- if tools %}"
    "{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] + '\\n\\n' }}"
    "{%- endif %}"
    "{{- '# Tools\\n\\nYou may call one or more functions to assist with the user query.'"
    " + '\\n\\n<tools>' }}"
    "{%- for tool in tools %}{{- '\\n' + (tool | tojson) }}{%- endfor %}"
    "{{- '\\n</tools><|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' and tools %}"
    "{%- elif message['role'] == 'tool' %}"
    "{{- '<|im_start|>user\\n<tool_response>\\n' + message['content']"
    " + '\\n</tool_response><|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
KINDS = ("step-prm", "seq-prm", "causal-lm")

_tokenizer_cache: dict[str, str] = {}


def _extra_texts() -> list[str]:
    """LaTeX, digits and step-by-step phrasing so math traces tokenize into sensible pieces."""
    latex = [r"\frac{a}{b}", r"\sqrt{x^2 + y^2}", r"\boxed{42}", r"\cdot", r"\times", r"\pi",
             r"\left(", r"\right)", r"\begin{align*}", r"\end{align*}", r"\le", r"\ge",
             r"\neq", r"\sum_{i=1}^{n} i", r"\int_0^1 f(x)\,dx", r"\binom{n}{k}", r"\infty",
             r"\text{and}", r"\quad", r"\implies", r"\dfrac{1}{2}", r"\log_2 8 = 3"]
    texts = [" ".join(latex)] * 20
    texts += [f"Step {i}: compute {i} + {i * 7 % 13} = {i + i * 7 % 13}.\n\n" for i in range(200)]
    texts += [f"$x^{k} + {k}x - {k * k} = 0$, so the answer is $\\boxed{{{k * 3}}}$.\n"
              for k in range(100)]
    texts += ["<think>\nLet me think step by step.\n</think>\n\nThe final answer is 7.\n"] * 20
    texts += [" ".join(str(n) for n in range(1000))]
    return texts


def default_texts() -> list[str]:
    """Training text: question, trajectory and response of every trace in ``sample_data``
    (when present, as in a source checkout) plus some LaTeX and digits."""
    texts: list[str] = []
    if SAMPLE_DATA.is_dir():
        from curate.read.traces import ReadOptions, iter_traces

        for batch in iter_traces([str(SAMPLE_DATA)], ReadOptions()):
            for col in ("question", "trajectory", "response"):
                if col in batch.table.column_names:
                    texts.extend(v for v in batch.table.column(col).to_pylist() if v)
    return texts + _extra_texts()


def _train_tokenizer_json(texts: Iterable[str], vocab_size: int,
                          specials: Iterable[tuple[str, bool]] | None = None,
                          bos: str | None = None) -> str:
    """A Qwen2-pipeline byte-level BPE as tokenizer.json text. ``specials``: (content, special)
    of the added tokens, in id order after the learned vocabulary (default: ours, all special);
    ``bos``: a post-processor that puts this token first, as a Llama-style fast tokenizer with
    ``add_bos_token`` does (DeepSeek-R1-Distill's tokenizer.json)."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(SPECIAL_TOKENS), min_frequency=2, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train_from_iterator(texts, trainer)
    # Special tokens go after the learned vocabulary, as in the real Qwen2 tokenizer; an added
    # token is matched before pre-tokenization, so "step<extra_0>" still yields one <extra_0>.
    specials = [(t, True) for t in SPECIAL_TOKENS] if specials is None else list(specials)
    tok.add_tokens([AddedToken(t, special=sp, normalized=False) for t, sp in specials])
    if bos is not None:
        bos_id = tok.token_to_id(bos)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
            special_tokens=[(bos, bos_id)])
    return tok.to_str(pretty=True)


def build_tokenizer(out_dir, texts: Iterable[str] | None = None, vocab_size: int = 4000) -> Path:
    """Train a Qwen2-style byte-level BPE tokenizer and save it into ``out_dir``; return it.

    Special tokens ``<|endoftext|>`` (pad), ``<|im_start|>``, ``<|im_end|>`` (eos) and
    ``<extra_0>`` (the PRM step tag) are single tokens; the chat template is Qwen's
    ``<|im_start|>{role}\\n{content}<|im_end|>\\n``. Loads with ``AutoTokenizer`` offline.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    texts = default_texts() if texts is None else list(texts)
    h = hashlib.sha256(str(vocab_size).encode())
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    key = h.hexdigest()
    if key not in _tokenizer_cache:
        _tokenizer_cache[key] = _train_tokenizer_json(texts, vocab_size)
    tok_json = _tokenizer_cache[key]
    (out / "tokenizer.json").write_text(tok_json, encoding="utf-8")

    added = {str(a["id"]): {k: a[k] for k in ("content", "lstrip", "normalized", "rstrip",
                                                "single_word", "special")}
             for a in json.loads(tok_json)["added_tokens"]}
    config = {
        "tokenizer_class": "Qwen2Tokenizer",
        "added_tokens_decoder": added,
        "additional_special_tokens": [IM_START, IM_END, STEP_TAG],
        "bos_token": None,
        "eos_token": IM_END,
        "pad_token": ENDOFTEXT,
        "unk_token": None,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "errors": "replace",
        "split_special_tokens": False,
        "model_max_length": 131072,
        "chat_template": CHAT_TEMPLATE,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    special_map = {"additional_special_tokens": [IM_START, IM_END, STEP_TAG],
                   "eos_token": IM_END, "pad_token": ENDOFTEXT}
    (out / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2) + "\n")
    return out


def _vocab_size(tok_dir: Path) -> tuple[int, dict[str, int]]:
    data = json.loads((tok_dir / "tokenizer.json").read_text(encoding="utf-8"))
    ids = dict(data["model"]["vocab"])
    ids.update({a["content"]: a["id"] for a in data["added_tokens"]})
    return max(ids.values()) + 1, ids


def _prepare_tokenizer(out: Path, tokenizer) -> tuple[int | None, dict[str, int]]:
    """Put tokenizer files into ``out`` (True: train one; a folder: copy it; False: none)."""
    if tokenizer is False or tokenizer is None:
        return None, {}
    if tokenizer is True:
        build_tokenizer(out)
    else:
        src = Path(tokenizer)
        for name in TOKENIZER_FILES:
            if (src / name).is_file() and src.resolve() != out.resolve():
                shutil.copyfile(src / name, out / name)
    return _vocab_size(out)


def _config(*, arch: str, vocab: int, hidden: int, layers: int, heads: int, kv_heads: int,
            intermediate: int, max_pos: int, ids: dict[str, int]):
    if hidden % heads or hidden // heads < 32:
        raise ValueError(f"head_dim = hidden/heads = {hidden}/{heads} must be a whole number "
                         "of at least 32 (vLLM CPU attention accepts 32, 64, 80, 96, 112, 128)")
    if heads % kv_heads:
        raise ValueError(f"heads ({heads}) must be a multiple of kv_heads ({kv_heads})")
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
        max_position_embeddings=max_pos, max_window_layers=layers, tie_word_embeddings=False,
        use_sliding_window=False, rms_norm_eps=1e-6, architectures=[arch],
        eos_token_id=ids.get(IM_END), pad_token_id=ids.get(ENDOFTEXT), dtype="float32")


def _random_body(config, gen, *, with_lm_head: bool) -> dict:
    """Deterministic weights for every tensor of a Qwen2 body (keys under ``model.``).

    Variance-preserving scales (embeddings N(0,1), a Linear N(0, 1/fan_in)) so that each token's
    final hidden state depends on its context, unlike the 0.02 default where the token's own
    embedding dominates and all steps would score alike.
    """
    import torch
    from transformers import Qwen2ForCausalLM, Qwen2Model

    with torch.device("meta"):
        shapes = (Qwen2ForCausalLM(config) if with_lm_head else Qwen2Model(config)).state_dict()
    prefix = "" if with_lm_head else "model."
    out = {}
    for name in sorted(shapes):
        shape = tuple(shapes[name].shape)
        if name.endswith("norm.weight"):
            t = torch.ones(shape)
        elif name.endswith(".bias"):
            t = torch.randn(shape, generator=gen) * 0.02
        elif "embed_tokens" in name:
            t = torch.randn(shape, generator=gen)
        else:
            t = torch.randn(shape, generator=gen) * shape[1] ** -0.5
        out[prefix + name] = t.contiguous()
    return out


def _save(out: Path, config, tensors: dict) -> None:
    from safetensors.torch import save_file

    config.save_pretrained(out)
    path = out / "model.safetensors"
    save_file(dict(sorted(tensors.items())), str(path), metadata={"format": "pt"})
    os.chmod(path, 0o644)  # save_file creates it 0600, unlike every other file here


def _build_causal(out_dir, *, hidden, layers, heads, kv_heads, intermediate,
                  max_position_embeddings, seed, tokenizer, vocab_size):
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab, ids = _prepare_tokenizer(out, tokenizer)
    config = _config(arch="Qwen2ForCausalLM", vocab=vocab or vocab_size, hidden=hidden,
                     layers=layers, heads=heads, kv_heads=kv_heads, intermediate=intermediate,
                     max_pos=max_position_embeddings, ids=ids)
    gen = torch.Generator().manual_seed(seed)
    _save(out, config, _random_body(config, gen, with_lm_head=True))
    return out, gen


# Remote code written into a step PRM folder by ``build_step_prm(..., remote_code=True)``, laid
# out like the real Qwen2.5-Math-PRM-7B's two files (written here, not copied from it).
REMOTE_CONFIG_FILE = "configuration_qwen2_rm.py"
REMOTE_MODELING_FILE = "modeling_qwen2_rm.py"
REMOTE_AUTO_MAP = {"AutoConfig": "configuration_qwen2_rm.Qwen2RMConfig",
                   "AutoModel": "modeling_qwen2_rm.Qwen2ForProcessRewardModel"}

_REMOTE_CONFIG_SOURCE = '''\
"""Configuration of the tiny process reward model (test fixture remote code)."""

from transformers import Qwen2Config


class Qwen2RMConfig(Qwen2Config):
    """A Qwen2 configuration under the name the reward model's auto_map gives."""

    model_type = "qwen2"
'''

_REMOTE_MODELING_SOURCE = '''\
"""The tiny process reward model as remote code (test fixture): the whole model, Qwen2 body and
two-class head, whose forward returns a plain tuple, as remote code written for
return_dict=False does."""

from torch import nn
from transformers import Qwen2Model, Qwen2PreTrainedModel

from .configuration_qwen2_rm import Qwen2RMConfig


class Qwen2ForProcessRewardModel(Qwen2PreTrainedModel):
    config_class = Qwen2RMConfig

    def __init__(self, config):
        super().__init__(config)
        self.model = Qwen2Model(config)
        size = config.hidden_size
        self.score = nn.Sequential(nn.Linear(size, size), nn.ReLU(), nn.Linear(size, 2))
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None,
                past_key_values=None, inputs_embeds=None, use_cache=None, **kwargs):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask,
                            position_ids=position_ids, past_key_values=past_key_values,
                            inputs_embeds=inputs_embeds, use_cache=use_cache)[0]
        logits = self.score(hidden)
        return (logits,)
'''


def _add_remote_code(out: Path) -> None:
    """The auto_map in config.json and the two remote code files beside the weights."""
    cfg_file = out / "config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["auto_map"] = dict(REMOTE_AUTO_MAP)
    cfg_file.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    (out / REMOTE_CONFIG_FILE).write_text(_REMOTE_CONFIG_SOURCE)
    (out / REMOTE_MODELING_FILE).write_text(_REMOTE_MODELING_SOURCE)


def build_step_prm(out_dir, *, hidden: int = 64, layers: int = 2, heads: int = 2,
                   kv_heads: int = 1, intermediate: int = 128,
                   max_position_embeddings: int = 1024, seed: int = 0, head_outputs: int = 2,
                   architecture: str = "Qwen2ForProcessRewardModel", tokenizer=True,
                   vocab_size: int = 4000, remote_code: bool = False) -> Path:
    """A tiny Qwen2.5-Math-PRM-style checkpoint: body under ``model.``, head ``score.0`` /
    ``score.2`` (``head_outputs`` classes), tokenizer files alongside.

    ``tokenizer``: True trains the default tokenizer into the folder, a folder path copies its
    tokenizer files, False writes none (then ``vocab_size`` sets the embedding size).
    ``remote_code``: also ship remote code as the real checkpoint does (``auto_map`` in
    ``config.json``, ``configuration_qwen2_rm.py`` and ``modeling_qwen2_rm.py``; see the module
    docstring). The weights are the same as without it, for the same arguments.
    """
    import torch

    if remote_code and head_outputs != 2:
        raise ValueError("remote_code: the remote class has the real checkpoint's 2-class head "
                         f"(head_outputs={head_outputs})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab, ids = _prepare_tokenizer(out, tokenizer)
    config = _config(arch=architecture, vocab=vocab or vocab_size, hidden=hidden, layers=layers,
                     heads=heads, kv_heads=kv_heads, intermediate=intermediate,
                     max_pos=max_position_embeddings, ids=ids)
    gen = torch.Generator().manual_seed(seed)
    tensors = _random_body(config, gen, with_lm_head=False)
    # Head scales: score.2 at std 0.5 spreads softmax(class 1) over most of (0, 1).
    tensors["score.0.weight"] = torch.randn(hidden, hidden, generator=gen) * hidden ** -0.5
    tensors["score.0.bias"] = torch.randn(hidden, generator=gen) * 0.1
    tensors["score.2.weight"] = torch.randn(head_outputs, hidden, generator=gen) * 0.5
    tensors["score.2.bias"] = torch.randn(head_outputs, generator=gen) * 0.1
    _save(out, config, tensors)
    if remote_code:
        _add_remote_code(out)
    return out


def build_seq_prm(out_dir, *, hidden: int = 64, layers: int = 2, heads: int = 2,
                  kv_heads: int = 1, intermediate: int = 128,
                  max_position_embeddings: int = 1024, seed: int = 0, tokenizer=True,
                  vocab_size: int = 4000) -> Path:
    """A tiny ReasonFlux-PRM-1.5B-style checkpoint: a ``Qwen2ForCausalLM`` plus
    ``reward_head.pt``, the state dict of ``Linear(H, 1)`` (keys ``weight`` (1, H), ``bias``
    (1,)), loadable with ``torch.load(..., weights_only=True)``."""
    import torch

    out, gen = _build_causal(out_dir, hidden=hidden, layers=layers, heads=heads,
                             kv_heads=kv_heads, intermediate=intermediate,
                             max_position_embeddings=max_position_embeddings, seed=seed,
                             tokenizer=tokenizer, vocab_size=vocab_size)
    head = {"weight": torch.randn(1, hidden, generator=gen) * 0.25,
            "bias": torch.randn(1, generator=gen) * 0.1}
    torch.save(head, out / "reward_head.pt")
    return out


def build_causal_lm(out_dir, *, hidden: int = 64, layers: int = 2, heads: int = 2,
                    kv_heads: int = 1, intermediate: int = 128,
                    max_position_embeddings: int = 1024, seed: int = 0, tokenizer=True,
                    vocab_size: int = 4000) -> Path:
    """A plain tiny ``Qwen2ForCausalLM`` with tokenizer: a model whose output is
    vocabulary-sized, not a reward head."""
    out, _ = _build_causal(out_dir, hidden=hidden, layers=layers, heads=heads,
                           kv_heads=kv_heads, intermediate=intermediate,
                           max_position_embeddings=max_position_embeddings, seed=seed,
                           tokenizer=tokenizer, vocab_size=vocab_size)
    return out


BUILDERS = {"step-prm": build_step_prm, "seq-prm": build_seq_prm, "causal-lm": build_causal_lm}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m curate.testing.tiny_models",
                                description="Build a tiny random Qwen2 checkpoint offline.")
    p.add_argument("out_dir", type=Path)
    p.add_argument("--kind", choices=KINDS, default="step-prm")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--context", type=int, default=1024,
                   help="max_position_embeddings (Qwen2.5-Math-PRM-7B has 4096)")
    p.add_argument("--remote-code", action="store_true",
                   help="step-prm only: ship remote code (auto_map, configuration_qwen2_rm.py, "
                        "modeling_qwen2_rm.py) as the real Qwen2.5-Math-PRM-7B does")
    args = p.parse_args(argv)
    kw = {}
    if args.remote_code:
        if args.kind != "step-prm":
            p.error("--remote-code builds a step PRM only (--kind step-prm)")
        kw["remote_code"] = True
    print(BUILDERS[args.kind](args.out_dir, seed=args.seed,
                              max_position_embeddings=args.context, **kw))


if __name__ == "__main__":
    main()
