"""A checkpoint that ships remote code, as Qwen2.5-Math-PRM-7B does (`--trust-remote-code`).

The real checkpoint's config.json says ``model_type: qwen2`` and has an ``auto_map`` whose
``AutoModel`` is its own ``Qwen2ForProcessRewardModel``: the whole reward model, whose output
has no ``last_hidden_state``. With ``--trust-remote-code`` the hf engine used to load that class
as its body and crashed (``'tuple' object has no attribute 'last_hidden_state'``); the body must
be transformers' own ``Qwen2Model`` whenever transformers knows the model type.
"""

import json
import os

import pytest
from conftest import SAMPLE, rows_by_id, score_json

torch = pytest.importorskip("torch", reason="scoring needs torch (scripts/test.sh installs it)")
transformers = pytest.importorskip("transformers", reason="scoring needs transformers")

from curate.scoring.reference import reference_step_rewards  # noqa: E402
from curate.stage import run_stage  # noqa: E402
from curate.steps import segment_trace  # noqa: E402
from curate.testing.tiny_models import (  # noqa: E402
    REMOTE_AUTO_MAP,
    REMOTE_CONFIG_FILE,
    REMOTE_MODELING_FILE,
    STEP_TAG,
)

QUESTION = "What is 3 + 4 * 2?"
STEPS = ["First, 4 * 2 = 8.", "Then 3 + 8 = 11.", "The answer is $\\boxed{11}$."]


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    """Real traces from sample_data in canonical form."""
    from curate.read.traces import ReadOptions

    out = tmp_path_factory.mktemp("traces") / "read"
    run_stage("read", [str(SAMPLE)], str(out), ReadOptions())
    return out


def test_fixture_ships_remote_code_like_the_real_checkpoint(tiny_step_prm_remote):
    """The fixture is shaped like the real thing: with trust_remote_code, AutoModel gives the
    checkpoint's own whole-model class, whose forward returns a tuple of logits (no
    last_hidden_state), computing the model card's rewards."""
    path = tiny_step_prm_remote
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["model_type"] == "qwen2"
    assert cfg["architectures"] == ["Qwen2ForProcessRewardModel"]
    assert cfg["auto_map"] == REMOTE_AUTO_MAP
    assert (path / REMOTE_CONFIG_FILE).is_file() and (path / REMOTE_MODELING_FILE).is_file()

    remote = transformers.AutoModel.from_pretrained(path, trust_remote_code=True,
                                                    dtype=torch.float32).eval()
    assert type(remote).__name__ == "Qwen2ForProcessRewardModel"
    assert not type(remote).__module__.startswith("transformers.models.")
    assert type(remote.config).__name__ == "Qwen2RMConfig"
    assert not isinstance(remote, transformers.Qwen2Model)

    tok = transformers.AutoTokenizer.from_pretrained(path)
    messages = [{"role": "system", "content": "Please reason step by step, and put your final "
                 "answer within \\boxed{}."},
                {"role": "user", "content": QUESTION},
                {"role": "assistant", "content": STEP_TAG.join(STEPS) + STEP_TAG}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    ids = torch.tensor([tok.encode(text)])
    with torch.inference_mode():
        out = remote(input_ids=ids)
    assert type(out) is tuple and len(out) == 1
    assert not hasattr(out, "last_hidden_state")
    logits = out[0][0]
    assert logits.shape == (ids.shape[1], 2)
    at_tags = logits[ids[0] == tok.convert_tokens_to_ids(STEP_TAG)]
    got = torch.softmax(at_tags.float(), dim=-1)[:, 1].tolist()
    ref = reference_step_rewards(path, QUESTION, STEPS)
    assert len(got) == len(ref) == len(STEPS)
    assert max(abs(a - b) for a, b in zip(got, ref, strict=True)) <= 1e-5

    # without trust_remote_code transformers loads its own Qwen2 body from the same folder
    plain = transformers.AutoModel.from_pretrained(path, trust_remote_code=False)
    assert type(plain) is transformers.Qwen2Model


def test_hf_engine_with_trust_remote_code_loads_the_transformers_body(tiny_step_prm_remote):
    from curate.scoring.checkpoint import inspect
    from curate.scoring.engine_hf import HFEngine
    from curate.scoring.step_prm import StepPRMScorer, load_tokenizer

    ckpt = inspect(str(tiny_step_prm_remote))
    engine = HFEngine(ckpt, trust_remote_code=True)
    assert type(engine.body) is transformers.Qwen2Model
    import pyarrow as pa

    scorer = StepPRMScorer(ckpt, load_tokenizer(ckpt, True), alpha=1.0)
    table = pa.table({"question": [QUESTION], "trajectory": [""],
                      "response": ["\n\n".join(STEPS)]})
    scored = scorer.rewards(table, engine)
    got = scored.response_step_rewards[0]
    ref = reference_step_rewards(tiny_step_prm_remote, QUESTION, STEPS)
    assert len(got) == len(ref) == len(STEPS)
    assert max(abs(a - b) for a, b in zip(got, ref, strict=True)) <= 1e-5


def test_cli_trust_remote_code_gives_the_same_rewards(cli, tmp_path, traces,
                                                      tiny_step_prm_remote):
    """`curate score --trust-remote-code` on a checkpoint that ships remote code succeeds, and
    its rewards are those of the run without the flag and of the model card's computation."""
    model = tiny_step_prm_remote
    args = ["--model", model, "--limit", "30", "--batch-tokens", "3000"]
    with_flag = score_json(cli, traces, "-o", tmp_path / "trusted", *args, "--trust-remote-code")
    without = score_json(cli, traces, "-o", tmp_path / "plain", *args)
    assert with_flag["rows_out"] == without["rows_out"] > 10
    trusted, plain = rows_by_id(tmp_path / "trusted"), rows_by_id(tmp_path / "plain")
    assert trusted.keys() == plain.keys()
    checked = 0
    for i, row in trusted.items():
        got = row["step_rewards"] + row["response_step_rewards"] + [row["trajectory_reward"]]
        other = plain[i]
        base = other["step_rewards"] + other["response_step_rewards"] + \
            [other["trajectory_reward"]]
        assert len(got) == len(base)
        assert max(abs(a - b) for a, b in zip(got, base, strict=True)) <= 1e-7
        assert row["score"] == pytest.approx(other["score"], abs=1e-7)
        if checked < 12:
            t_steps, r_steps = segment_trace(row["trajectory"], row["response"],
                                             row.get("trajectory_steps"),
                                             row.get("response_steps"))
            ref = reference_step_rewards(model, row["question"],
                                         [x.strip() for x in t_steps + r_steps])
            steps = row["step_rewards"] + row["response_step_rewards"]
            assert len(steps) == len(ref)
            assert max(abs(a - b) for a, b in zip(steps, ref, strict=True)) <= 1e-5
            checked += 1
    assert checked == 12


def test_vllm_engine_with_trust_remote_code_equals_the_model_card(tmp_path_factory,
                                                                   tiny_step_prm_remote):
    """vLLM with --trust-remote-code on the same checkpoint: its own Qwen2 reward model class,
    the model card's rewards (about 15-30 s on CPU; skipped without vLLM). vLLM picks its class
    by architecture, so this held before the hf fix too: it guards the flag's vLLM path."""
    # vLLM on a CPU machine, as tests/test_engine_vllm.py sets it up (before vLLM's import)
    for k, v in {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
                 "VLLM_CPU_NUM_OF_RESERVED_CPU": "0", "HF_HUB_OFFLINE": "1",
                 "VLLM_LOGGING_LEVEL": "WARNING", "VLLM_LOGGING_STREAM": "ext://sys.stderr",
                 "VLLM_CACHE_ROOT": str(tmp_path_factory.mktemp("vllm_cache"))}.items():
        os.environ.setdefault(k, v)
    try:
        import vllm  # noqa: F401
    except Exception as e:  # noqa: BLE001 - absent, or broken (CUDA torchvision beside CPU torch)
        pytest.skip(f"vllm is not importable ({type(e).__name__}: {e})")
    import pyarrow as pa

    from curate.scoring.checkpoint import inspect
    from curate.scoring.engine_vllm import VLLMEngine
    from curate.scoring.step_prm import StepPRMScorer, load_tokenizer

    ckpt = inspect(str(tiny_step_prm_remote))
    device = "cpu" if not torch.cuda.is_available() else "cuda"
    engine = VLLMEngine(ckpt, device=device, dtype="float32", gpu_memory_utilization=0.2,
                        trust_remote_code=True)
    scorer = StepPRMScorer(ckpt, load_tokenizer(ckpt, True), alpha=1.0)
    table = pa.table({"question": [QUESTION], "trajectory": [""],
                      "response": ["\n\n".join(STEPS)]})
    got = scorer.rewards(table, engine).response_step_rewards[0]
    ref = reference_step_rewards(tiny_step_prm_remote, QUESTION, STEPS)
    assert len(got) == len(ref) == len(STEPS)
    assert max(abs(a - b) for a, b in zip(got, ref, strict=True)) <= 1e-5


def test_tiny_models_cli_builds_a_remote_code_checkpoint(tmp_path, capsys):
    from curate.testing.tiny_models import main

    main([str(tmp_path / "m"), "--remote-code", "--seed", "3"])
    out = tmp_path / "m"
    assert capsys.readouterr().out.strip() == str(out)
    assert json.loads((out / "config.json").read_text())["auto_map"] == REMOTE_AUTO_MAP
    assert (out / REMOTE_CONFIG_FILE).is_file() and (out / REMOTE_MODELING_FILE).is_file()
    main([str(tmp_path / "plain")])
    assert "auto_map" not in json.loads((tmp_path / "plain" / "config.json").read_text())
    assert not list((tmp_path / "plain").glob("*.py"))
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path / "s"), "--kind", "seq-prm", "--remote-code"])
    assert e.value.code == 2 and "step-prm" in capsys.readouterr().err
