"""The generate capability on real (tiny, random) models: the transformers engine against a slow
greedy loop written out here (one full forward pass per token, no cache, no batching), batched
against one prompt at a time, P(yes) against the logits by hand, and the vLLM engine against
the transformers engine (greedy fp32: the same tokens; log-probabilities within 1e-4)."""

import math
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="generation needs torch")
pytest.importorskip("transformers", reason="generation needs transformers")

from curate.scoring import verification as V  # noqa: E402
from curate.scoring.checkpoint import inspect  # noqa: E402
from curate.scoring.engine import EngineOptions  # noqa: E402
from curate.scoring.engine_hf import HFEngine  # noqa: E402
from curate.scoring.generation import GenParams, cut_at_stop  # noqa: E402
from curate.scoring.thinkprm import ThinkPRMScorer  # noqa: E402

N_NEW = 24


@pytest.fixture(scope="module")
def ckpt(tiny_thinkprm):
    return inspect(str(tiny_thinkprm), "thinkprm")


@pytest.fixture(scope="module")
def hf(ckpt):
    eng = HFEngine.create(ckpt, EngineOptions(task="generate", batch_tokens=4096), "cpu")
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def prompts(hf):
    from conftest import SAMPLE

    from curate.read.traces import ReadOptions, iter_traces
    from curate.steps import segment_trace

    out = []
    for batch in iter_traces([str(SAMPLE)], ReadOptions(limit=40)):
        for row in batch.table.to_pylist():
            _, steps = segment_trace(row.get("trajectory") or "", row["response"],
                                     row.get("trajectory_steps"), row.get("response_steps"))
            text = V.prompt_text(hf.tokenizer, row["question"], steps)
            ids = hf.tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(ids) < 700:
                out.append(ids)
    return out[:8]


@pytest.fixture(scope="module")
def lm(ckpt):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(ckpt.path, dtype=torch.float32).eval()


def slow_greedy(lm, prompt, n, eos):
    """The reference: argmax of a full forward pass per token; the log-probability of each."""
    ids, lps = list(prompt), []
    with torch.no_grad():
        for _ in range(n):
            logp = torch.log_softmax(lm(torch.tensor([ids])).logits[0, -1].float(), dim=-1)
            t = int(torch.argmax(logp))
            if t in eos:
                break
            ids.append(t)
            lps.append(float(logp[t]))
    return ids[len(prompt):], lps


def test_greedy_generation_equals_the_slow_loop(hf, lm, prompts):
    gens = hf.generate(prompts, GenParams(max_tokens=N_NEW, logprobs=True))
    for p, (g,) in zip(prompts, gens, strict=True):
        ids, lps = slow_greedy(lm, p, N_NEW, hf.eos_ids)
        assert g.token_ids == ids
        assert g.finish == ("length" if len(ids) == N_NEW else "eos")
        assert max(abs(a - b) for a, b in zip(g.logprobs, lps, strict=True)) < 1e-4


def test_batched_generation_equals_one_prompt_at_a_time(hf, prompts):
    params = GenParams(max_tokens=N_NEW)
    together = hf.generate(prompts, params)
    alone = [hf.generate([p], params)[0] for p in prompts]
    assert [g[0].token_ids for g in together] == [g[0].token_ids for g in alone]
    pair = [hf.tokenizer(V.YES, add_special_tokens=False)["input_ids"][0],
            hf.tokenizer(V.NO, add_special_tokens=False)["input_ids"][0]]
    both = hf.choice_logprobs(prompts, pair)
    one = [hf.choice_logprobs([p], pair)[0] for p in prompts]
    assert abs(both - np.array(one)).max() < 1e-4


def test_sampled_chains_are_seeded(hf, prompts):
    params = GenParams(max_tokens=8, n=3, temperature=0.8, top_p=0.95, seed=5)
    a = hf.generate(prompts[:2], params)
    b = hf.generate(prompts[:2], params)
    c = hf.generate(prompts[:2], GenParams(max_tokens=8, n=3, temperature=0.8, top_p=0.95,
                                           seed=6))
    ids = lambda gens: [[g.token_ids for g in row] for row in gens]  # noqa: E731
    assert ids(a) == ids(b) != ids(c)
    assert len({tuple(g.token_ids) for g in a[0]}) > 1  # three chains, not one thrice


def test_p_yes_is_the_hand_computation_from_the_logits(ckpt, hf, lm, prompts):
    """The whole scorer on one real trace: its critique is the slow greedy loop's text (the
    checkpoint's sampling defaults do not leak into a greedy run), and verifier_score is
    softmax over the " Yes" / " No" logits after prompt + critique + the question."""
    import pyarrow as pa

    tok = hf.tokenizer
    s = ThinkPRMScorer(ckpt, tok, max_tokens=N_NEW)
    row = {"id": "x", "question": "What is 2 + 3?", "trajectory": "",
           "response": "2 + 3 = 5.\n\nSo the answer is $\\boxed{5}$."}
    cols = s.score(pa.Table.from_pylist([row]), hf)
    prompt = tok(V.prompt_text(tok, row["question"], ["2 + 3 = 5.",
                                                      "So the answer is $\\boxed{5}$."]),
                 add_special_tokens=False)["input_ids"]
    ids, _ = slow_greedy(lm, prompt, N_NEW, hf.eos_ids)
    critique = cut_at_stop(tok.decode(ids, skip_special_tokens=False), V.STOPS)[0]
    assert cols["critique"][0].as_py() == critique
    full = prompt + tok(critique + "\nIs the solution correct?",
                        add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = lm(torch.tensor([full])).logits[0, -1].float()
    yes = tok(" Yes", add_special_tokens=False)["input_ids"]
    no = tok(" No", add_special_tokens=False)["input_ids"]
    assert len(yes) == len(no) == 1  # single tokens, as in the released vocabulary
    want = math.exp(logits[yes[0]]) / (math.exp(logits[yes[0]]) + math.exp(logits[no[0]]))
    assert cols["verifier_score"][0].as_py() == pytest.approx(want, abs=1e-5)


# --- vLLM against transformers ------------------------------------------------------------------

@pytest.fixture(scope="module")
def vllm_engine(ckpt):
    for k, v in {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
                 "VLLM_CPU_NUM_OF_RESERVED_CPU": "0", "HF_HUB_OFFLINE": "1"}.items():
        os.environ.setdefault(k, v)
    try:
        import vllm  # noqa: F401
    except Exception as e:  # noqa: BLE001 - absent, or a broken build
        pytest.skip(f"vllm is not importable ({type(e).__name__}); on CPU install it with "
                    "CURATE_TEST_VLLM=1 scripts/test.sh")
    from curate.scoring.engine_vllm import VLLMEngine

    eng = VLLMEngine.create(ckpt, EngineOptions(task="generate", dtype="float32",
                                                max_model_len=2048), "cpu")
    yield eng
    eng.close()


def test_vllm_greedy_tokens_and_logprobs_equal_transformers(hf, vllm_engine, prompts):
    params = GenParams(max_tokens=N_NEW, logprobs=True, stop=V.STOPS)
    a = hf.generate(prompts, params)
    b = vllm_engine.generate(prompts, params)
    assert [g[0].token_ids for g in a] == [g[0].token_ids for g in b]
    assert [g[0].finish for g in a] == [g[0].finish for g in b]
    diff = max(abs(x - y) for ga, gb in zip(a, b, strict=True)
               for x, y in zip(ga[0].logprobs, gb[0].logprobs, strict=True))
    assert diff < 1e-4
    pair = [880, 1005]
    assert abs(hf.choice_logprobs(prompts, pair)
               - vllm_engine.choice_logprobs(prompts, pair)).max() < 1e-4


def test_vllm_stop_strings_cut_where_transformers_cuts(hf, vllm_engine, prompts):
    """A stop string the random model does write: both engines end the chain at the same
    token, the one that completes it."""
    free = hf.generate(prompts[:4], GenParams(max_tokens=N_NEW))
    text = hf.tokenizer.decode(free[0][0].token_ids[4:7], skip_special_tokens=False)
    params = GenParams(max_tokens=N_NEW, stop=(text,))
    a, b = hf.generate(prompts[:4], params), vllm_engine.generate(prompts[:4], params)
    assert a[0][0].finish == "stop" and len(a[0][0].token_ids) <= 7
    assert [g[0].token_ids for g in a] == [g[0].token_ids for g in b]
    assert [g[0].finish for g in a] == [g[0].finish for g in b]
