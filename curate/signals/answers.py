"""The answer check: does a trace's final answer equal the reference answer?

Math answers are extracted and compared by ``math-verify`` (Hugging Face's verifier, the one the
open-r1 and s1 pipelines use): it finds ``\\boxed{}``, "the answer is …", a last expression, and
compares symbolically (``\\frac12`` equals ``0.5``, ``(3, \\frac{\\pi}{2})`` equals
``\\left( 3, \\frac{\\pi}{2} \\right)``). The reference is parsed as if it were boxed, because a
bare LaTeX reference is otherwise read as its first number.

Answers that are not mathematics (BIG-Bench's ``] }``, a multiple-choice ``(B)``) parse to nothing
on either side; for those the text after the last "answer is" (or ``A:`` / ``####``) is compared
with the reference after folding case, whitespace and a trailing full stop. No LaTeX is compared
by hand anywhere.

Only the response's last ``TAIL_CHARS`` characters are parsed: the answer sits at the end, and
parsing a 30k-character response costs seconds in sympy.
"""

from __future__ import annotations

import re
import threading

from ..errors import InputError

TAIL_CHARS = 3000


def _math_verify():
    try:
        import math_verify
    except ImportError:
        raise InputError("the answer check needs math-verify: pip install "
                         "'curate-prm[signals]'") from None
    return math_verify


def _timeouts() -> dict:
    # math-verify's timeouts use SIGALRM, which only the main thread may set.
    main = threading.current_thread() is threading.main_thread()
    return {"parsing_timeout": 5 if main else None}


def _fold(text: str) -> str:
    text = " ".join(text.split()).strip().rstrip(".").strip()
    return text.strip("*$ ").lower()


def text_answer(response: str | None) -> str | None:
    """The text after the last "answer is" / "A:" / "####", or None."""
    if not response:
        return None
    tail = response[-TAIL_CHARS:]
    last = None
    for m in re.finditer(r"answer is|answer:|\bA:|####", tail, re.IGNORECASE):
        last = m
    if last is None:
        return None
    line = tail[last.end():].strip().split("\n", 1)[0].strip()
    return line or None


def check_answers(responses: list[str | None], references: list[str | None]
                  ) -> tuple[list[bool | None], list[str | None]]:
    """(answer_correct, extracted answer) per row; correct is None where no reference exists.

    The extracted answer is math-verify's string for the response, or the text answer; None when
    the response has no recognisable final answer.
    """
    mv = _math_verify()
    kw = _timeouts()
    correct: list[bool | None] = []
    extracted: list[str | None] = []
    for resp, ref in zip(responses, references, strict=True):
        tail = (resp or "")[-TAIL_CHARS:]
        pred = mv.parse(tail, **kw) if tail.strip() else []
        text = text_answer(resp)
        extracted.append(str(pred[1]) if len(pred) > 1 else (str(pred[0]) if pred else text))
        if ref is None or not str(ref).strip():
            correct.append(None)
            continue
        gold = mv.parse("\\boxed{" + str(ref) + "}", **kw)
        if gold and pred:
            correct.append(bool(mv.verify(gold, pred, timeout_seconds=kw["parsing_timeout"])))
        elif text is not None:
            correct.append(_fold(text) == _fold(str(ref)))
        else:
            correct.append(False)
    return correct, extracted
