"""ThinkPRM's text conventions (curate.scoring.verification) and the generation contract's text
handling (curate.scoring.generation): prompts byte for byte, the verdict parser, stop strings,
P(yes). No model here."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curate.scoring import verification as V
from curate.scoring.generation import cut_at_stop, finish_of

# Written out from ../shared/PRM_REFERENCE.md §8 (format_verification_cot_for_thinkprm and
# process_example), not built with the module's own constants.
EXPECTED_USER = (
    "You are given a math problem and a proposed step-by-step solution:\n"
    "\n"
    "[Math Problem]\n"
    "\n"
    "What is 15% of 200?\n"
    "\n"
    "[Solution]\n"
    "\n"
    "Step 1: To find 15% of 200, I need to multiply 200 by 0.15\n"
    "Step 2: 200 * 0.15 = 30, so the answer is \\boxed{30}.\n"
    "\n"
    "Review and critique each step in the proposed solution to determine whether each step is "
    "correct. If the solution is incomplete, only verify the provided steps."
)
STEPS = ["To find 15% of 200, I need to multiply 200 by 0.15",
         "200 * 0.15 = 30, so the answer is \\boxed{30}."]


def test_user_message_is_the_repository_template_byte_for_byte():
    assert V.user_message("What is 15% of 200?", STEPS) == EXPECTED_USER


def test_steps_are_stripped_numbered_from_one_and_lose_their_own_label():
    assert V.solution_text(["  a\n", "Step 7: b", "## Step 3: c", "see Step 2: above"]) == \
        "Step 1: a\nStep 2: b\nStep 3: c\nStep 4: see Step 2: above"


def test_braces_in_the_problem_are_text_not_placeholders():
    # the repository's chained str.replace would put the solution inside this problem
    msg = V.user_message("Is {solution} a set? {}", ["yes"])
    assert "[Math Problem]\n\nIs {solution} a set? {}\n\n[Solution]\n\nStep 1: yes" in msg


class _Template:
    """A tokenizer stand-in rendering the R1-Distill chat template's shape."""

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert tokenize is False and add_generation_prompt is True
        assert [m["role"] for m in messages] == ["user"]
        return "<｜begin▁of▁sentence｜><｜User｜>" + messages[0]["content"] + \
            "<｜Assistant｜><think>\n"


def test_prompt_is_the_chat_turn_with_a_generation_prompt_then_the_opening_line():
    text = V.prompt_text(_Template(), "What is 15% of 200?", STEPS)
    assert text == ("<｜begin▁of▁sentence｜><｜User｜>" + EXPECTED_USER
                    + "<｜Assistant｜><think>\n\nLet's verify step by step:")


# --- the verdict parser -------------------------------------------------------------------------

_noise = st.text(alphabet=st.characters(blacklist_characters="\\"), max_size=30)


@settings(max_examples=200)
@given(st.lists(st.booleans(), max_size=40), st.lists(_noise, min_size=41, max_size=41))
def test_verdicts_are_read_in_order_whatever_surrounds_them(verdicts, noise):
    text = noise[0] + "".join(
        f"\\boxed{{{'correct' if v else 'incorrect'}}}{noise[k + 1]}"
        for k, v in enumerate(verdicts))
    assert V.step_verdicts(text) == [int(v) for v in verdicts]


@given(st.lists(st.sampled_from(["\\boxed{42}", "boxed{correct}", "\\boxed{ correct}",
                                 "\\boxed{Correct}", "\\boxed{incorrect", "correct"]),
                max_size=10))
def test_other_boxes_and_bare_words_are_not_verdicts(parts):
    assert V.step_verdicts(" ".join(parts)) == []


def test_the_last_round_with_verdicts_wins():
    first = "Step 1 \\boxed{correct} Step 2 \\boxed{correct}"
    second = "Step 2 again: \\boxed{incorrect}"
    assert V.last_verdicts([first, second]) == [0]
    assert V.last_verdicts([first, "nothing new"]) == [1, 1]
    assert V.last_verdicts([]) == []


def test_trigger_phrases_are_the_repositorys_in_order_then_again():
    assert [V.trigger(r) for r in (1, 2, 3, 4)] == [
        "Let me double check", "Let's verify again", "Did I miss something?",
        "Let me double check"]


# --- P(yes) -----------------------------------------------------------------------------------

@given(st.floats(-50, 0), st.floats(-50, 0), st.floats(0.1, 5))
def test_p_yes_is_the_two_way_softmax(a, b, t):
    want = math.exp(a / t) / (math.exp(a / t) + math.exp(b / t))
    assert V.p_yes(a, b, t) == pytest.approx(want, rel=1e-9, abs=1e-300)


def test_p_yes_of_a_dry_run_is_nan_and_far_logits_do_not_overflow():
    assert math.isnan(V.p_yes(float("nan"), -1.0))
    assert V.p_yes(-1e4, 0.0) == 0.0 and V.p_yes(0.0, -1e4) == 1.0


# --- stop strings --------------------------------------------------------------------------------

@given(st.text(max_size=60), st.lists(st.sampled_from(V.STOPS + ("ab",)), max_size=3,
                                      unique=True))
def test_cut_at_stop_keeps_the_longest_prefix_without_a_stop(text, stops):
    kept, which = cut_at_stop(text, tuple(stops))
    assert text.startswith(kept)
    assert not any(s in kept for s in stops)
    if which is None:
        assert kept == text
    else:
        assert text[len(kept):].startswith(which)


def test_cut_at_stop_takes_the_earliest_stop():
    assert cut_at_stop("x</think>y Is the solution correct? Yes", V.STOPS) == ("x", "</think>")


CHARS = "abc IstheolucrXY?</>k"


def _text_of(ids):  # a character-level "tokenizer": id k is CHARS[k]
    return "".join(CHARS[i] for i in ids)


@settings(max_examples=300)
@given(st.lists(st.integers(0, len(CHARS) - 1), max_size=40), st.booleans())
def test_finish_of_cuts_after_the_token_that_completes_a_stop(ids, with_eos):
    eos = len(CHARS)  # an id outside the text
    raw = ids + ([eos, eos] if with_eos else [])
    stops = ("ck", "X?")
    kept, why = finish_of(raw, lambda x: _text_of([i for i in x if i != eos]), stops, {eos})
    text = _text_of(ids)
    first = min((text.find(s) + len(s) for s in stops if s in text), default=None)
    if first is not None:
        assert why == "stop" and _text_of(kept) == text[:first]
    else:
        assert kept == ids and why == ("eos" if with_eos else "length")
