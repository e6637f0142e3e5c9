"""ThinkPRM's text conventions: the verification prompt, where a critique stops, the forced
verdict, the trigger phrases of sequential rounds, and the step verdicts read from a critique.

Pure functions, no model: the scorer (``curate.scoring.thinkprm``) applies them around an
engine. Sources (``../shared/PRM_REFERENCE.md`` §8, re-read in the public mukhal/ThinkPRM
code):

* the user message is ``format_verification_cot_for_thinkprm``'s template with the default
  instruction the released models were trained with; the solution is ``Step {i}: {step}``
  lines joined by a newline, i from 1 (its ``process_example``);
* the chat template is applied with a generation prompt, then ``"\\nLet's verify step by
  step:"`` is appended (the models' verification chains open with that line);
* generation stops at ``"Is the solution correct?"``, at the end of thinking (``</think>``) or
  at the end-of-sequence token; the stop string itself is not kept;
* the verdict is forced: ``"\\nIs the solution correct?"`` is appended and the next-token
  log-probabilities of ``" Yes"`` and ``" No"`` are read (the repository's vLLM class);
  P(yes) = softmax(lp_yes / T, lp_no / T)[0], decision temperature T = 1;
* sequential rounds append the repository's budget-forcing phrases, in order, and continue;
* step verdicts: every ``\\boxed{correct}`` / ``\\boxed{incorrect}`` in order, 1 / 0.

Where curate differs, on purpose: the template is filled in one pass (the repository's chained
``str.replace`` would substitute a literal ``{solution}`` inside a problem's text), a step's
own leading ``Step N:`` label is dropped before it is numbered (as the repository's API client
does; the numbering would otherwise read ``Step 2: Step 2: …``), and the rendered prompt is
tokenized without special tokens, so the BOS the template writes is the only one (encoding it
with special tokens on, as the public usage example does, puts two BOS first).
"""

from __future__ import annotations

import math
import re

INSTRUCTION = ("Review and critique each step in the proposed solution to determine whether each "
               "step is correct. If the solution is incomplete, only verify the provided steps.")
TEMPLATE = ("You are given a math problem and a proposed step-by-step solution:\n\n"
            "[Math Problem]\n\n{problem}\n\n[Solution]\n\n{solution}\n\n{instruction}")
VERIFY_START = "\nLet's verify step by step:"
STOPS = ("Is the solution correct?", "</think>")
PREDECISION = "\nIs the solution correct?"
YES, NO = " Yes", " No"
TRIGGERS = ("Let me double check", "Let's verify again", "Did I miss something?")
# Bumped whenever anything above changes what is generated: stored verdicts are then not reused.
PROMPT_VERSION = 1

_LABEL = re.compile(r"^\s*(?:#+\s*)?Step\s+\d+\s*:\s*", re.IGNORECASE)
_VERDICT = re.compile(r"\\boxed\{(correct|incorrect)\}")


def solution_text(steps: list[str]) -> str:
    """The steps as the verifier reads them: ``Step i: …`` lines, i from 1."""
    return "\n".join(f"Step {i}: {_LABEL.sub('', s.strip(), count=1)}"
                     for i, s in enumerate(steps, 1))


def user_message(problem: str, steps: list[str]) -> str:
    return TEMPLATE.format(problem=problem, solution=solution_text(steps),
                           instruction=INSTRUCTION)


def prompt_text(tokenizer, problem: str, steps: list[str]) -> str:
    """The whole prompt: the chat template with a generation prompt, then the opening line."""
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": user_message(problem, steps)}], tokenize=False,
        add_generation_prompt=True)
    return rendered + VERIFY_START


def trigger(round_index: int) -> str:
    """The phrase that opens sequential round ``round_index`` (1 for the second round …)."""
    return TRIGGERS[(round_index - 1) % len(TRIGGERS)]


def step_verdicts(critique: str) -> list[int]:
    """Every boxed verdict in order: 1 for correct, 0 for incorrect."""
    return [1 if m == "correct" else 0 for m in _VERDICT.findall(critique)]


def last_verdicts(rounds: list[str]) -> list[int]:
    """The verdicts of the last round that gave any (a double check revises the first)."""
    for text in reversed(rounds):
        found = step_verdicts(text)
        if found:
            return found
    return []


def p_yes(lp_yes: float, lp_no: float, temperature: float = 1.0) -> float:
    """softmax(lp_yes / T, lp_no / T)[0], computed stably; NaN stays NaN (a dry run)."""
    a, b = lp_yes / temperature, lp_no / temperature
    if math.isnan(a) or math.isnan(b):
        return math.nan
    m = max(a, b)
    ea, eb = math.exp(a - m), math.exp(b - m)
    return ea / (ea + eb)
