"""``--long window``: how a trace longer than the model's context is cut into windows of steps.

Shared by every scorer that reads steps (the step PRM's rewards, the generative verifier's
verdicts): a window shows as many *new* steps as fit, then as many of the steps before them as
still fit (context whose results are not read), so every step is judged once, with as much of
what came before it as the context allows. Nothing is ever truncated inside a step: a step that
does not fit on its own makes the row ``step_too_long``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ..errors import RowError

T = TypeVar("T")


def plan_windows(costs: list[int], room: int,
                 build: Callable[[int, int], tuple[int, T]],
                 limit: int) -> list[tuple[int, int, int, T]]:
    """Consecutive windows over steps whose estimated token costs are ``costs``, in a budget of
    ``room`` tokens: ``(begin, start, end, built)`` with steps ``begin:end`` shown and
    ``start:end`` read. The estimate is per step; ``build(begin, end)`` renders the window and
    returns (its real length, what it built), which decides: a window longer than ``limit``
    loses context first, then new steps. RowError ``step_too_long`` for a step that does not
    fit alone."""
    out: list[tuple[int, int, int, T]] = []
    start, n = 0, len(costs)
    while start < n:
        end, used = start, 0
        while end < n and used + costs[end] <= room:
            used += costs[end]
            end += 1
        if end == start:
            raise RowError("step_too_long", f"step {start} alone needs {costs[start]} tokens, "
                                            f"more than the {room} a window has for steps")
        begin = start
        while begin > 0 and used + costs[begin - 1] <= room:
            begin -= 1
            used += costs[begin]
        while True:
            length, built = build(begin, end)
            if length <= limit:
                break
            if begin < start:
                begin += 1
            elif end - start > 1:
                end -= 1
            else:
                raise RowError("step_too_long", f"step {start} alone needs {length} tokens > "
                                                f"{limit}")
        out.append((begin, start, end, built))
        start = end
    return out
