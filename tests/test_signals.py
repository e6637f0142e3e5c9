"""The offline signals scorer: answer check, hygiene, trajectory signals, the combined score."""

from __future__ import annotations

import functools
import hashlib
import math
import time
import unicodedata
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest
from conftest import SAMPLE, SHARED, needs_shared
from hypothesis import given, settings
from hypothesis import strategies as st

from curate.signals.answers import check_answers, text_answer
from curate.signals.hygiene import (
    DEGENERATE_REPETITION,
    REPETITION_N,
    TOKEN_PATTERN,
    ends_cleanly,
    is_degenerate,
    length_tokens,
    repetition,
    step_copies,
    step_key,
)
from curate.signals.scorer import ANSWER_WEIGHT, DEGENERATE_FACTOR, SignalsScorer
from curate.signals.trajectory import TrajectorySignals, negative_steps
from curate.steps import SEP, segment_trace

pytest.importorskip("math_verify")


# --- answer check --------------------------------------------------------------------------

@pytest.mark.parametrize("response,reference,correct", [
    ("so the total is \\(\\boxed{420}\\).", "420", True),
    ("so the total is \\(\\boxed{421}\\).", "420", False),
    ("Hence $\\boxed{\\frac12}$", "0.5", True),                      # symbolic, not textual
    ("The point is $\\boxed{(3,\\frac{\\pi}{2})}$.", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
    ("16 - 3 = 13 eggs\nShe makes 13 * 2 = $26\nA: 26", "18", False),  # GSM8K style
    ("She makes 9 * 2 = $18\n#### 18", "18", True),
    ("The final stack is \"{\".\nSo the answer is ] }", "] }", True),  # not maths: text match
    ("So the answer is ) }", "] }", False),
    ("The answer is (B).", "(B)", True),
])
def test_answer_check(response, reference, correct):
    got, extracted = check_answers([response], [reference])
    assert got == [correct]
    assert extracted[0] is not None


def test_no_reference_gives_null_and_no_answer_gives_none():
    got, extracted = check_answers(["It is \\boxed{3}", "I am not sure", None], [None, "3", "3"])
    assert got == [None, False, False]
    assert extracted[1] is None and extracted[2] is None
    assert text_answer("blah. So the answer is 42.\n") == "42."


@needs_shared
def test_math_verify_agrees_with_every_gsm8k_label():
    import pyarrow.parquet as pq

    t = pq.read_table(SHARED / "real" / "gsm8k_model_solutions.parquet").slice(0, 400)
    got, _ = check_answers(t.column("response").to_pylist(),
                           t.column("reference_answer").to_pylist())
    assert got == t.column("is_correct").to_pylist()


# --- hygiene -------------------------------------------------------------------------------

@pytest.mark.parametrize("trajectory,response,clean", [
    ("Let me think.", "The answer is 4.", True),
    ("", "A: 26", True),
    ("", "so the answer is B", True),                  # an answer line ending in a letter
    ("Let me think about", "", False),                  # thinking never closed
    ("", "and then we multiply the", False),            # cut mid-sentence
    ("", "we have x = 3 +", False),
    ("", "Therefore $\\boxed{5}$", True),
    ("", "   ", False),
])
def test_ends_cleanly(trajectory, response, clean):
    assert ends_cleanly(trajectory, response) is clean


def _repetition_reference(text: str, n: int) -> float:
    words = text.lower().split()
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    if len(grams) <= 1:
        return 0.0
    seen, rep = set(), 0
    for g in grams:
        rep += g in seen
        seen.add(g)
    return rep / len(grams)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", "x=1", "B"]), max_size=60), st.integers(2, 6))
def test_repetition_matches_reference(words, n):
    text = " ".join(words)
    assert repetition(text, n) == pytest.approx(_repetition_reference(text, n))


def test_repetition_of_a_loop_is_high_and_of_prose_is_zero():
    para = " ".join(f"w{i}" for i in range(40))
    assert repetition(para) == 0.0
    looped = " ".join([para] * 5)
    # period 40: the n-grams starting in the first copy are new, every later one repeats
    total = 200 - REPETITION_N + 1
    assert repetition(looped) == pytest.approx((total - 40) / total)


@settings(max_examples=200, deadline=None)
# Code points this Python's Unicode database leaves unassigned (Cn) may be letters in RE2's
# newer tables; the two agree on every assigned character.
@given(st.lists(st.one_of(st.text(st.characters(exclude_categories=("Cn", "Cs")), max_size=40),
                          st.none()), max_size=8))
def test_length_tokens_matches_a_python_reference(texts):
    def word(c):
        return c == "_" or unicodedata.category(c)[0] in "LN"

    def count(t):
        n, prev_word = 0, False
        for c in t:
            if c.isspace():
                prev_word = False
            elif word(c):
                n += not prev_word
                prev_word = True
            else:
                n += 1
                prev_word = False
        return n

    assert length_tokens(texts).to_pylist() == [count(t or "") for t in texts]
    assert TOKEN_PATTERN.startswith("[")


# --- trajectory signals, with a fake encoder ------------------------------------------------

class HashEncoder:
    """Deterministic unit vectors from a hash of the text; similar texts share words."""

    name = "hash"
    fingerprint = "hash-v1"
    dim = 32

    def encode(self, texts):
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            words = Counter(t.lower().split())  # a 1 MB loop has a handful of distinct words
            for w, c in words.items():
                out[i] += c * self._word(w)
            n = np.linalg.norm(out[i])
            if n:
                out[i] /= n
        return out

    @staticmethod
    @functools.cache
    def _word(w):
        h = hashlib.blake2b(w.encode(), digest_size=8).digest()
        rng = np.random.default_rng(int.from_bytes(h, "little"))
        return rng.standard_normal(HashEncoder.dim).astype(np.float32)


@pytest.fixture(scope="module")
def signals():
    return TrajectorySignals(HashEncoder())


def _coherence_reference(enc, question, steps, tau=0.1):
    """One step at a time, straight from the definition (log softmax over 1 + K candidates)."""
    neg = enc.encode(list(negative_steps()))
    logps = []
    prev = question
    for s in steps:
        p, x = enc.encode([prev])[0], enc.encode([s])[0]
        logits = [float(p @ x) / tau] + [float(p @ n) / tau for n in neg]
        m = max(logits)
        logps.append(logits[0] - (m + math.log(sum(math.exp(v - m) for v in logits))))
        prev = s
    return logps


def test_coherence_matches_the_definition(signals):
    q = "How many eggs does Janet sell?"
    steps = ["Janet has 16 eggs.", "She eats 3 eggs, so 13 eggs are left.",
             "She sells 13 eggs for 2 dollars each: 26 dollars."]
    [sig] = signals.compute([q], [steps], [[]], ["26 dollars"])
    ref = _coherence_reference(signals.encoder, q, steps)
    assert sig.coherence == pytest.approx(sum(ref) / len(ref), rel=1e-5)
    chance = math.log(len(negative_steps()) + 1)
    assert sig.step_rewards == pytest.approx([min(max(1 + v / chance, 0), 1) for v in ref],
                                             abs=1e-6)
    enc = signals.encoder
    want = np.mean([enc.encode([s])[0] @ enc.encode(["26 dollars"])[0] for s in steps])
    assert sig.alignment == pytest.approx(float(want), rel=1e-5)


def test_a_trace_without_thinking_aligns_with_its_question(signals):
    q = "eggs sold per day"
    [sig] = signals.compute([q], [[]], [["eggs sold per day is 9", "so 9"]], ["so 9"])
    enc = signals.encoder
    want = np.mean([enc.encode([s])[0] @ enc.encode([q])[0]
                    for s in ["eggs sold per day is 9", "so 9"]])
    assert sig.alignment == pytest.approx(float(want), rel=1e-5)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["eggs", "sell", "13", "x", "dollars", "so"]),
                         min_size=1, max_size=4).map(" ".join), min_size=0, max_size=5),
       st.integers(0, 3))
def test_a_trace_scores_the_same_alone_or_in_any_batch(steps, pos):
    sig = TrajectorySignals(HashEncoder())
    others = [(["other step one", "and two"], "ans"), (["unrelated"], "x")]
    batch = others[:pos] + [(steps, "so 13")] + others[pos:]
    many = sig.compute(["q"] * len(batch), [s for s, _ in batch], [[]] * len(batch),
                       [r for _, r in batch])
    [alone] = sig.compute(["q"], [steps], [[]], ["so 13"])
    assert many[min(pos, len(others))] == alone


# --- the combined score ---------------------------------------------------------------------

def _table(rows):
    return pa.Table.from_pylist(rows)


def test_every_correct_clean_trace_outranks_every_wrong_one(signals):
    rows = []
    for i in range(6):  # clean: rambling, but no word 10-gram or step repeats (loops: below)
        ramble = " ".join(f"I wonder about w{j} and wander" for j in range(i * 5))
        rows.append({"id": f"c{i}", "question": "What is 2+2?", "trajectory": "",
                     "response": ramble + " \\boxed{4}", "reference_answer": "4"})
        rows.append({"id": f"w{i}", "question": "What is 2+2?",
                     "trajectory": "Two plus two.\n\nIt is four, clearly.",
                     "response": "So 2+2 = 5.\n\nThe answer is \\boxed{5}.",
                     "reference_answer": "4"})
    cols = SignalsScorer(signals).score(_table(rows))
    score = cols["score"].to_pylist()
    correct = [s for s, r in zip(score, rows, strict=True) if r["id"][0] == "c"]
    wrong = [s for s, r in zip(score, rows, strict=True) if r["id"][0] == "w"]
    assert min(correct) > max(wrong)
    assert cols["answer_correct"].to_pylist() == [r["id"][0] == "c" for r in rows]
    q = cols["quality"].to_pylist()
    assert score == pytest.approx([ANSWER_WEIGHT * (r["id"][0] == "c") + (1 - ANSWER_WEIGHT) * v
                                   for r, v in zip(rows, q, strict=True)], abs=1e-6)


def test_without_encoder_the_hygiene_terms_share_the_quality():
    rows = [{"id": "a", "question": "q", "trajectory": "", "response": "A: 3",
             "reference_answer": None},
            {"id": "b", "question": "q", "trajectory": "thinking", "response": "",
             "reference_answer": None}]
    cols = SignalsScorer(None).score(_table(rows))
    assert cols["quality"].to_pylist() == pytest.approx([1.0, 1 / 3])  # b: only no-repetition
    assert cols["score"].to_pylist() == pytest.approx([0.3 + 0.4, 0.3 + 0.4 / 3])
    assert cols["alignment"].null_count == 2 and cols["step_rewards"].null_count == 2


def test_step_rewards_follow_the_source_steps(signals):
    rows = [{"id": "a", "question": "q", "trajectory": "t1\n\nt2", "response": "r1\n\nr2\n\nr3",
             "trajectory_steps": ["only one"], "response_steps": None,
             "reference_answer": None}]
    cols = SignalsScorer(signals).score(_table(rows))
    assert len(cols["step_rewards"][0].as_py()) == 1
    assert len(cols["response_step_rewards"][0].as_py()) == 3


def test_negative_pool_is_fixed_and_attributed():
    import json

    from curate.signals.trajectory import POOL_FILE

    doc = json.loads(POOL_FILE.read_text())
    assert len(doc["steps"]) == 256 == len(set(doc["steps"]))
    assert {s["license"] for s in doc["sources"]} == {"Apache-2.0"}
    assert sum(s["steps"] for s in doc["sources"]) == 256
    assert Counter(len(s) >= 40 for s in doc["steps"])[True] == 256


# --- degenerate traces: loops score below every clean trace ----------------------------------

def test_step_key_folds_case_whitespace_and_a_step_label():
    assert step_key("Janet  has\n16 EGGS.") == step_key("janet has 16 eggs.")
    for label in ("Step 3:", "**Step 3.**", "3)", "## 3.", "step 12 :"):
        assert step_key(f"{label} Let me check again.") == "let me check again."
    assert step_key("3.5 is the answer") != step_key("4.5 is the answer")  # not a label
    assert step_copies("Q?", ["q?", "a", "A", "Step 2: a", "b", "a"]) == [
        True, False, True, True, False, False]  # only the predecessor counts


def test_is_degenerate_thresholds():
    assert not is_degenerate(DEGENERATE_REPETITION, [False, False])
    assert is_degenerate(DEGENERATE_REPETITION + 1e-6, [])
    assert is_degenerate(0.0, [False, True])            # half the steps are copies
    assert not is_degenerate(0.0, [False, True, False])
    assert not is_degenerate(0.0, [])


def test_a_step_that_copies_its_predecessor_gets_coherence_reward_zero(signals):
    q = "How many eggs does Janet sell?"
    steps = ["Janet has 16 eggs.", "janet  has 16 eggs.", "She eats 3 eggs, so 13 are left.",
             "Step 4: She eats 3 eggs, so 13 are left.", "She sells 13 eggs for 26 dollars."]
    [sig] = signals.compute([q], [steps], [[]], ["26 dollars"])
    ref = _coherence_reference(signals.encoder, q, steps)
    chance = math.log(len(negative_steps()) + 1)
    assert sig.step_rewards[1] == 0.0 and sig.step_rewards[3] == 0.0
    for i in (0, 2, 4):  # the others follow the definition
        assert sig.step_rewards[i] == pytest.approx(min(max(1 + ref[i] / chance, 0), 1),
                                                    abs=1e-6)
    want = [ref[0], -chance, ref[2], -chance, ref[4]]  # a copy scores chance
    assert sig.coherence == pytest.approx(sum(want) / 5, rel=1e-5)
    # a loop of one step: every step after the first, and a step restating the question, get 0
    [loop] = signals.compute([q], [["Let me think."] * 50], [[]], ["4"])
    assert loop.step_rewards[1:] == [0.0] * 49
    [restated] = signals.compute([q], [[q.upper(), "Janet has 16 eggs."]], [[]], ["4"])
    assert restated.step_rewards[0] == 0.0


def _sample(name, **extra):
    import pyarrow.parquet as pq

    rows = []
    for r in pq.read_table(SAMPLE / f"{name}.parquet").to_pylist():
        rows.append({"id": r["id"], "question": r["question"], "trajectory": r["trajectory"],
                     "response": r["response"], "response_steps": r.get("response_steps"),
                     "reference_answer": r["reference_answer"], **extra})
    return rows


@functools.cache
def _clean_traces():
    """Real traces with references: PRMBench QwQ (long thinking) and BIG-Bench Mistake (CoT)."""
    rows = _sample("prmbench_qwq") + _sample("bigbench_mistake")
    return [r for r in rows if repetition((r["trajectory"] or "") + SEP + r["response"])
            <= DEGENERATE_REPETITION]


def _loops(question, answer):
    """~1 MB traces that loop, each ending with the correct boxed answer."""
    end = f"So the answer is \\boxed{{{answer}}}."
    para = "Let me compute the total again, carefully, from the first equation."
    return [
        {"id": "loop-words", "trajectory": "step " * 200_000, "response": end},
        {"id": "loop-steps", "trajectory": "step\n\n" * 170_000, "response": end},
        {"id": "loop-paragraph", "trajectory": SEP.join([para] * 15_000), "response": end},
        {"id": "loop-in-response", "trajectory": None,
         "response": SEP.join(["Step: add 3 and 4 to get 7."] * 35_000 + [end])},
        # a stutter too short for word 10-grams: half its 4 steps copy the one before
        {"id": "stutter", "trajectory": "step\n\nstep\n\nstep", "response": end},
    ]


@pytest.mark.parametrize("encoder", ["hash", "none"])
def test_a_1mb_loop_ranks_below_every_clean_trace_of_its_question(signals, encoder):
    clean = [dict(r) for r in _clean_traces()]
    # the PRMBench question with two real traces: a correct one and a wrong one cut short
    q = "equilateral triangle is inscribed in the parabola"
    pair = [r for r in clean if q in r["question"]]
    assert len(pair) == 2 and {r["id"] for r in pair} == {"prm_test_p1_9-4", "prm_test_p2_315-38"}
    question, answer = pair[0]["question"], pair[0]["reference_answer"]
    loops = [{**lp, "question": question, "response_steps": None, "reference_answer": answer}
             for lp in _loops(question, answer)]
    scorer = SignalsScorer(signals if encoder == "hash" else None)
    t0 = time.perf_counter()
    cols = scorer.score(_table(clean + loops))
    elapsed = time.perf_counter() - t0
    score = cols["score"].to_pylist()
    n = len(clean)
    assert cols["answer_correct"].to_pylist()[n:] == [True] * len(loops)
    assert min(cols["repetition"].to_pylist()[n:-1]) > 0.99
    # last in its question, and below every clean trace of any question, correct or wrong
    assert max(score[n:]) < min(score[i] for i, r in enumerate(clean) if r["question"] == question)
    assert max(score[n:]) < min(score[:n])
    assert max(score[n:]) <= DEGENERATE_FACTOR and min(score[:n]) >= 0.02 - 1e-7
    if encoder == "hash":  # the loops' copied steps are not painted as coherent
        for i in range(n + 1, n + len(loops)):
            rewards = cols["step_rewards"][i].as_py() + cols["response_step_rewards"][i].as_py()
            assert max(rewards[1:-1]) == 0.0
    # linear in the text: ~4.2 MB of loops (1 s here); the quadratic pairwise alternative or
    # one (steps × 257) matrix for 170,000 steps would take far longer or gigabytes
    assert elapsed < 30, elapsed


def test_a_loop_with_the_right_answer_ranks_below_every_clean_wrong_trace(signals):
    clean = [dict(r) for r in _clean_traces()]
    scorer = SignalsScorer(signals)
    cols = scorer.score(_table(clean))
    wrong = [i for i, c in enumerate(cols["answer_correct"].to_pylist()) if c is False]
    assert len(wrong) >= 20
    lowest_wrong = min(cols["score"][i].as_py() for i in wrong)
    loops = []
    for r in clean[:12]:  # each trace looped four times, its own (correct) answer kept
        th, rs = segment_trace(r["trajectory"], r["response"], None, r["response_steps"])
        if th:
            loops.append({**r, "trajectory": SEP.join(th * 4), "reference_answer": None})
        else:
            loops.append({**r, "response": SEP.join(rs * 4), "response_steps": rs * 4,
                          "reference_answer": None})
        loops[-1]["id"] = r["id"] + "-loop"
        loops[-1]["reference_answer"] = r["reference_answer"]
    looped = scorer.score(_table(loops))
    assert all(v > DEGENERATE_REPETITION for v in looped["repetition"].to_pylist())
    assert max(looped["score"].to_pylist()) < lowest_wrong


def _repeat(steps, k, mode):
    return [s for s in steps for _ in range(k)] if mode == "stutter" else steps * k


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 5), st.sampled_from(["stutter", "cycle"]),
       st.booleans())
def test_repeating_a_clean_traces_steps_never_raises_its_score(signals, pick, k, mode,
                                                               reasoning_only):
    """Each step k times in place ("stutter") or the whole list k times ("cycle"), on a real
    trace; `reasoning_only` repeats the thinking alone when there is one."""
    clean = _clean_traces()
    r = clean[pick % len(clean)]
    th, rs = segment_trace(r["trajectory"], r["response"], None, r["response_steps"])
    new_th = _repeat(th, k, mode)
    new_rs = rs if (th and reasoning_only) else _repeat(rs, k, mode)
    rows = [{**r, "trajectory": SEP.join(th) or None, "trajectory_steps": th or None,
             "response_steps": rs},
            {**r, "trajectory": SEP.join(new_th) or None, "trajectory_steps": new_th or None,
             "response": SEP.join(new_rs), "response_steps": new_rs}]
    for scorer in (SignalsScorer(signals), SignalsScorer(None)):
        before, after = scorer.score(_table(rows))["score"].to_pylist()
        assert after <= before + 1e-6
