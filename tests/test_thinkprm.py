"""The ThinkPRM scorer on scripted critiques: what it sends an engine (prompts, budgets, rounds,
the forced verdict) and what it makes of what comes back (verdicts, first error, mismatches,
chains, windows). The engine here writes given texts; the real engines are in
tests/test_engine_generate.py."""

import numpy as np
import pyarrow as pa
import pytest

pytest.importorskip("torch", reason="the tiny verifier needs torch")
pytest.importorskip("transformers", reason="the tiny verifier needs transformers")

from curate.errors import InputError  # noqa: E402
from curate.scoring import verification as V  # noqa: E402
from curate.scoring.checkpoint import inspect  # noqa: E402
from curate.scoring.generation import Generation  # noqa: E402
from curate.scoring.step_prm import load_tokenizer  # noqa: E402
from curate.scoring.thinkprm import ThinkPRMScorer  # noqa: E402


class Scripted:
    """An engine with the generate capability that writes ``script(prompt_text, chain, call)``
    and answers the forced choice with ``lp(verdict_text)``."""

    name = "scripted"
    capabilities = frozenset({"generate"})

    def __init__(self, tok, script, lp=lambda text: (-0.4, -1.2)):
        self.tok, self.script, self.lp = tok, script, lp
        self.calls, self.verdict_inputs = [], []

    def _text(self, ids):
        return self.tok.decode(ids, skip_special_tokens=False)

    def generate(self, prompts, params):
        self.calls.append((prompts, params))
        return [[Generation(self.tok(self.script(self._text(p), c, len(self.calls)),
                                     add_special_tokens=False)["input_ids"][: params.max_tokens],
                            [], "stop") for c in range(params.n)] for p in prompts]

    def choice_logprobs(self, seqs, token_ids):
        self.verdict_inputs.append(seqs)
        return np.array([self.lp(self._text(s)) for s in seqs])


@pytest.fixture(scope="module")
def ckpt(tiny_thinkprm):
    return inspect(str(tiny_thinkprm), "thinkprm")


@pytest.fixture(scope="module")
def tok(ckpt):
    return load_tokenizer(ckpt)


def scorer(ckpt, tok, **kw):
    kw.setdefault("max_tokens", 64)
    return ThinkPRMScorer(ckpt, tok, **kw)


def table(*rows):
    base = {"id": None, "question": "Q?", "trajectory": "", "response": ""}
    return pa.Table.from_pylist([{**base, **r} for r in rows])


def boxed(*verdicts):
    return "".join(f"Step {k}: fine? \\boxed{{{'correct' if v else 'incorrect'}}}\n"
                   for k, v in enumerate(verdicts, 1))


def test_columns_from_a_critique(ckpt, tok):
    critique = boxed(1, 0, 1) + "Is the solution correct? No\nmore text"
    eng = Scripted(tok, lambda p, c, k: critique)
    s = scorer(ckpt, tok)
    t = table({"id": "a", "trajectory": "t1\n\nt2", "response": "r1\n\nr2\n\nr3"})
    cols = s.score(t, eng)
    row = {k: v[0].as_py() for k, v in cols.columns.items()}
    assert row["step_verdicts"] == [1, 0, 1]
    # 0-based over trajectory + response steps: response step 2 is step 3 of 5
    assert row["predicted_first_error"] == 3
    assert row["verdict_count_mismatch"] is False
    assert row["critique"] == boxed(1, 0, 1)  # cut before the stop string
    assert row["verifier_score"] == pytest.approx(V.p_yes(-0.4, -1.2), rel=1e-6)
    assert row["score"] == row["verifier_score"] and row["chain_scores"] == [row["score"]]
    # the prompt: the response steps only (--verify-part response), one BOS, the opening line
    prompts, params = eng.calls[0]
    text = tok.decode(prompts[0], skip_special_tokens=False)
    assert text == V.prompt_text(tok, "Q?", ["r1", "r2", "r3"])
    assert prompts[0].count(tok.bos_token_id) == 1 and prompts[0][0] == tok.bos_token_id
    assert params.max_tokens == 64 and params.n == 1 and params.greedy
    assert params.stop == ("Is the solution correct?", "</think>")
    # the forced verdict: prompt + critique + "\nIs the solution correct?", nothing after
    (verdict,) = eng.verdict_inputs[0]
    assert verdict[: len(prompts[0])] == prompts[0]
    assert tok.decode(verdict[len(prompts[0]):], skip_special_tokens=False) == \
        boxed(1, 0, 1) + "\nIs the solution correct?"


@pytest.mark.parametrize("critique,verdicts,first,mismatch", [
    (boxed(1, 1), [1, 1], -1, True),  # judged 2 of 3 steps: kept, flagged
    (boxed(1, 1, 1, 0), [1, 1, 1, 0], 3, True),  # judged a 4th step that does not exist
    ("no verdict at all", [], None, True),
    (boxed(1, 1, 1), [1, 1, 1], -1, False),
])
def test_verdict_counts(ckpt, tok, critique, verdicts, first, mismatch):
    cols = scorer(ckpt, tok).score(table({"response": "a\n\nb\n\nc"}),
                                   Scripted(tok, lambda p, c, k: critique))
    assert cols["step_verdicts"][0].as_py() == verdicts
    assert cols["predicted_first_error"][0].as_py() == first
    assert cols["verdict_count_mismatch"][0].as_py() is mismatch
    assert not cols.drops


def test_verify_part_both_and_trajectory(ckpt, tok):
    t = table({"trajectory": "t1\n\nt2", "response": "r1"})
    eng = Scripted(tok, lambda p, c, k: boxed(1, 1, 0))
    cols = scorer(ckpt, tok, part="both").score(t, eng)
    assert cols["predicted_first_error"][0].as_py() == 2
    assert "Step 3: r1" in tok.decode(eng.calls[0][0][0])
    eng = Scripted(tok, lambda p, c, k: boxed(0, 1))
    cols = scorer(ckpt, tok, part="trajectory").score(t, eng)
    assert cols["predicted_first_error"][0].as_py() == 0
    assert "r1" not in tok.decode(eng.calls[0][0][0]).split("[Solution]")[1]
    # a trace without the part asked for is dropped, with the reason
    cols = scorer(ckpt, tok, part="trajectory").score(table({"response": "r"}), eng)
    assert cols.drops == {0: ("no_steps", "no trajectory step to verify (--verify-part "
                                          "trajectory)")}


def test_k_chains_average_and_vote(ckpt, tok):
    scripts = [boxed(1, 0, 1) + "chain0", boxed(1, 1, 1) + "chain1", boxed(1, 0) + "chain2"]
    lps = {"chain0": (-0.1, -2.0), "chain1": (-1.0, -0.3), "chain2": (-0.7, -0.7)}

    def lp(text):
        return next(v for k, v in lps.items() if k in text)

    eng = Scripted(tok, lambda p, c, k: scripts[c], lp)
    cols = scorer(ckpt, tok, k=3).score(table({"response": "a\n\nb\n\nc"}), eng)
    want = [V.p_yes(*lps[f"chain{c}"]) for c in range(3)]
    assert cols["chain_scores"][0].as_py() == pytest.approx(want, rel=1e-6)
    assert cols["verifier_score"][0].as_py() == pytest.approx(np.mean(want), rel=1e-6)
    # chains 0 and 1 judged 3 steps (chain 2 only 2): step 2 is a tie, so incorrect
    assert cols["step_verdicts"][0].as_py() == [1, 0, 1]
    assert cols["verdict_count_mismatch"][0].as_py() is False
    assert [c.endswith(f"chain{k}") for k, c in enumerate(cols["critiques"][0].as_py())] == \
        [True] * 3
    params = eng.calls[0][1]
    assert params.n == 3 and params.temperature == 0.4 and params.top_p == 0.95


def test_rounds_continue_with_trigger_phrases_in_one_budget(ckpt, tok):
    def script(prompt, chain, call):
        return boxed(1, 1) if call == 1 else "on reflection " + boxed(1, 0)

    eng = Scripted(tok, script)
    s = scorer(ckpt, tok, rounds=3, max_tokens=200)
    cols = s.score(table({"response": "a\n\nb"}), eng)
    assert len(eng.calls) == 3
    used = len(tok(boxed(1, 1), add_special_tokens=False)["input_ids"])
    second_prompts, second = eng.calls[1]
    assert second.n == 1 and second.max_tokens == 200 - used
    assert tok.decode(second_prompts[0]).endswith(boxed(1, 1) + "Let me double check")
    assert tok.decode(eng.calls[2][0][0]).endswith("Let's verify again")
    crit = cols["critique"][0].as_py()
    assert crit.startswith(boxed(1, 1) + "Let me double check" + "on reflection ")
    assert cols["step_verdicts"][0].as_py() == [1, 0]  # the last round's verdicts
    assert cols["generated_tokens"][0].as_py() <= 200


def test_too_long_is_dropped_with_its_counts(ckpt, tok):
    s = scorer(ckpt, tok, max_len=300, max_tokens=64)
    long = "\n\n".join(f"step {i} computes {i} + {i} = {2 * i}" for i in range(60))
    cols = s.score(table({"id": "a", "response": long}, {"id": "b", "response": "x"}),
                   Scripted(tok, lambda p, c, k: boxed(1)))
    reason, value = cols.drops[0]
    assert reason == "too_long" and int(value.split()[0]) > 300 - s.reserve
    assert 1 not in cols.drops and cols["too_long"][0].as_py() is True


def test_windows_verify_every_step_once(ckpt, tok):
    s = scorer(ckpt, tok, max_len=600, max_tokens=150, long="window")
    steps = [f"step {i}: {'BAD' if i == 17 else 'fine'} arithmetic {i} + 1 = {i + 1}"
             for i in range(25)]

    def judge(prompt, chain, call):  # a verdict per shown step, incorrect for the BAD one
        shown = prompt.split("[Solution]")[1].split("Review and critique")[0]
        lines = [ln for ln in shown.strip().split("\n") if ln.startswith("Step ")]
        return "".join(f"\\boxed{{{'incorrect' if 'BAD' in ln else 'correct'}}}" for ln in lines)

    eng = Scripted(tok, judge)
    cols = s.score(table({"response": "\n\n".join(steps)}), eng)
    assert not cols.drops
    n_windows = cols["windows"][0].as_py()
    assert n_windows > 1 and len(eng.calls[0][0]) == n_windows
    assert all(len(p) <= 600 - s.reserve for p in eng.calls[0][0])
    assert cols["step_verdicts"][0].as_py() == [0 if i == 17 else 1 for i in range(25)]
    assert cols["predicted_first_error"][0].as_py() == 17
    assert cols["critique"][0].as_py().startswith("[steps 1–")


def test_verdict_tokens_fall_back_to_their_first_token(ckpt, tok, monkeypatch):
    monkeypatch.setattr(V, "YES", " Yesterday's")
    s = scorer(ckpt, tok)
    first = tok(" Yesterday's", add_special_tokens=False)["input_ids"]
    assert len(first) > 1 and s.yes_id == first[0]
    assert "first token" in s.describe()["verdict_tokens"]["fallback"]


def test_refusals(ckpt, tok):
    with pytest.raises(InputError, match="--verify-max-tokens 2048"):
        scorer(ckpt, tok, max_tokens=2048)  # the fixture's context is 2048
    import copy

    bare = copy.copy(tok)
    bare.chat_template = None
    with pytest.raises(InputError, match="no chat template"):
        scorer(ckpt, bare)
