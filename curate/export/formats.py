"""SFT records from canonical traces: the three record formats and the four think styles.

Formats (the columns a trainer reads):

* ``messages`` (TRL conversational language modelling): ``messages`` = list of
  ``{role, content}``: an optional system message, the user's question, the assistant's text.
* ``sharegpt`` (LLaMA-Factory): ``conversations`` = list of ``{from, value}`` with ``human`` and
  ``gpt`` turns, and a ``system`` column when ``--system`` is given (LLaMA-Factory reads it with
  ``"columns": {"messages": "conversations", "system": "system"}``).
* ``prompt-completion`` (TRL), in its *conversational* form: ``prompt`` = ``[system?, user]``,
  ``completion`` = ``[assistant]``. Chosen over plain strings because TRL then renders both
  through the student's own chat template (a plain-string prompt would have to bake one
  template in here), and because a prompt-completion dataset gets completion-only loss by
  default in TRL, which is what distillation wants.

Context (a row cut from a longer conversation: ``schema.CONTEXT``). The prompt is then the
whole conversation before the assistant turn, in order: the system prompt, earlier turns, tool
calls and tool results, not only the last user message (an answer that cites a tool result
without it teaches the student to invent one). Every format holds it: ``messages`` and
``prompt-completion`` as ``{role, content}`` messages (roles system, user, assistant, tool);
``sharegpt`` as LLaMA-Factory writes tool use: the system prompt in the ``system`` column, user
turns ``human``, tool results ``observation``, an assistant turn that only calls tools
``function_call`` (its value the call's JSON, a JSON list for several), other assistant turns
``gpt``. Earlier assistant turns carry their answers, not their thinking (as the R1 and Qwen3
chat templates render history); the thinking stays in the trace's ``context`` column. A
``--system`` prompt is added only to a row whose context has none. The tool definitions
(``schema.TOOLS``) go into a ``tools`` column, a JSON string: TRL's SFTTrainer and
LLaMA-Factory both read that and hand it to the chat template.

Think styles (how the assistant text joins thinking and answer; texts are used verbatim, as
``curate read`` left them, i.e. already stripped at the markers):

* ``r1``: ``<think>\\n{trajectory}\\n</think>\\n\\n{response}`` (DeepSeek-R1 and its distills).
* ``openthoughts``: ``<|begin_of_thought|>\\n\\n{trajectory}\\n\\n<|end_of_thought|>\\n\\n
  <|begin_of_solution|>\\n\\n{response}\\n\\n<|end_of_solution|>`` (Bespoke-Stratos /
  OpenThoughts, as the open-thoughts repository's ShareGPT mapping builds it).
* ``s1``: ``<|im_start|>think\\n{trajectory}\\n<|im_start|>answer\\n{response}``. Read in s1's
  ``data/tokenization.py`` (simplescaling/s1, seen in its forks limJhyeok/s1-clone and
  kaileh57/s1): the assistant content is ``"<|im_start|>think\\n" + thinking.strip() +
  "\\n<|im_start|>answer\\n" + answer.strip()``. s1 also prefixes ``"Answer: "`` to its own
  attempts; that is a property of the s1K data, not of the format, so responses stay verbatim.
* ``none``: the response alone; the thinking is dropped.

A trace without thinking (null or blank trajectory) gets no thinking block in any style: ``r1``
gives the bare response, ``openthoughts`` the solution block alone, ``s1`` the answer part alone.
An empty block (``<think>\\n\\n</think>``) would teach the student to open and close a thought
it never had; the number of such rows is reported so that a mixed set is noticed.

A row whose question, trajectory or response already holds one of the chosen style's markers is
a row fault (``contains_think_marker``): the trained text would have markers the student cannot
tell from the real ones, and escaping them would change the text it learns. ``marker_faults``
finds those rows; the stage leaves them out and records them.
"""

from __future__ import annotations

import json
import re

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from .. import schema as S
from ..io.presets import tool_call_markup
from ..steps import NON_SPACE

FORMATS = ("messages", "sharegpt", "prompt-completion")
THINK_STYLES = ("r1", "openthoughts", "s1", "none")

# The strings that delimit thinking and answer in each style (what a row must not contain).
MARKERS: dict[str, tuple[str, ...]] = {
    "r1": ("<think>", "</think>"),
    "openthoughts": ("<|begin_of_thought|>", "<|end_of_thought|>", "<|begin_of_solution|>",
                     "<|end_of_solution|>"),
    "s1": ("<|im_start|>think", "<|im_start|>answer"),
    "none": (),
}

# Canonical columns whose text the record carries: they are not repeated as metadata (the step
# lists are the same text cut into steps).
CONSUMED = (S.QUESTION, S.TRAJECTORY, S.RESPONSE, S.TRAJECTORY_STEPS, S.RESPONSE_STEPS,
            S.CONTEXT, S.TOOLS)
CHECKED = (S.QUESTION, S.TRAJECTORY, S.RESPONSE)
SHAREGPT_ROLES = {"user": "human", "assistant": "gpt", "tool": "observation",
                  "system": "system"}
_TOOL_CALLS = re.compile(r"\s*(?:<tool_call>(.*?)</tool_call>\s*)+", re.S)
_ONE_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.S)

MARKER_REASON = "contains_think_marker"


def record_columns(fmt: str, system: bool, tools: bool = False) -> tuple[str, ...]:
    """The columns a record of this format has, in order (``system``: a sharegpt record has a
    system column; ``tools``: the rows carry tool definitions)."""
    extra = ("tools",) if tools else ()
    if fmt == "messages":
        return ("messages", *extra)
    if fmt == "sharegpt":
        return ("conversations", *(("system",) if system else ()), *extra)
    return ("prompt", "completion", *extra)


def has_context(table: pa.Table) -> bool:
    return S.CONTEXT in table.column_names and table.column(S.CONTEXT).null_count < \
        table.num_rows


def tools_text(table: pa.Table) -> pa.Array:
    """The rows' tool definitions as JSON text (null where a row has none)."""
    if S.TOOLS not in table.column_names:
        return pa.nulls(table.num_rows, pa.string())
    col = table.column(S.TOOLS)
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return pc.cast(col, pa.string())
    return pa.array([None if v is None else json.dumps(v, ensure_ascii=False)
                     for v in col.to_pylist()], pa.string())


def text_column(table: pa.Table, name: str) -> pa.Array:
    if name not in table.column_names:
        return pa.array([""] * table.num_rows, pa.string())
    col = table.column(name)
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return pc.fill_null(pc.cast(col, pa.string()), "")


def has_thinking(trajectory: pa.Array) -> pa.Array:
    """True where the trajectory has a non-whitespace character."""
    return pc.match_substring_regex(pc.fill_null(trajectory, ""), NON_SPACE)


def assistant_text(trajectory: pa.Array, response: pa.Array, style: str) -> pa.Array:
    """The assistant's content for each row (vectorised; no Python loop over rows)."""
    t = pc.fill_null(trajectory, "")
    r = pc.fill_null(response, "")
    if style == "none":
        return r
    join = pc.binary_join_element_wise
    if style == "r1":
        thought, answer = join("<think>\n", t, "\n</think>\n\n", r, ""), r
    elif style == "openthoughts":
        answer = join("<|begin_of_solution|>\n\n", r, "\n\n<|end_of_solution|>", "")
        thought = join("<|begin_of_thought|>\n\n", t, "\n\n<|end_of_thought|>\n\n", answer, "")
    elif style == "s1":
        answer = join("<|im_start|>answer\n", r, "")
        thought = join("<|im_start|>think\n", t, "\n", answer, "")
    else:
        raise ValueError(style)
    return pc.if_else(has_thinking(t), thought, answer)


def _conversation(turns: list[tuple[str, pa.Array]], keys: tuple[str, str]) -> pa.ListArray:
    """One list<struct<keys>> per row from K (role, contents) turns given column-wise."""
    n = len(turns[0][1])
    k = len(turns)
    # Message j of row i sits at j*n + i in the concatenated columns: interleave by a take.
    order = (np.arange(k)[None, :] * n + np.arange(n)[:, None]).ravel()
    contents = pa.concat_arrays([pc.cast(c, pa.string()) for _, c in turns]).take(order)
    roles = pa.array(np.tile(np.array([r for r, _ in turns], dtype=object), n), pa.string())
    struct = pa.StructArray.from_arrays([roles, contents], names=list(keys))
    return pa.ListArray.from_arrays(pa.array(np.arange(0, n * k + 1, k, dtype=np.int32)), struct)


def build_records(table: pa.Table, fmt: str, style: str, system: str | None,
                  sharegpt_system: bool = False, tools: bool = False) -> dict[str, pa.Array]:
    """The record columns (``record_columns``) for the rows of a canonical table.
    ``sharegpt_system``: a sharegpt record has a system column even without ``--system`` (some
    row's context has a system prompt); ``tools``: add the tools column."""
    out = (_records_with_context(table, fmt, style, system) if has_context(table)
           else _records(table, fmt, style, system))
    if fmt == "sharegpt" and sharegpt_system and "system" not in out:
        out["system"] = pa.nulls(table.num_rows, pa.string())
    if tools:
        out["tools"] = tools_text(table)
    return out


def _records(table: pa.Table, fmt: str, style: str, system: str | None) -> dict[str, pa.Array]:
    """Single-turn rows, column-wise (no Python loop over rows: export's hot path)."""
    n = table.num_rows
    question = text_column(table, S.QUESTION)
    answer = assistant_text(text_column(table, S.TRAJECTORY), text_column(table, S.RESPONSE), style)
    sys_col = pa.array([system] * n, pa.string()) if system is not None else None
    if fmt == "sharegpt":
        out = {"conversations": _conversation([("human", question), ("gpt", answer)],
                                              ("from", "value"))}
        if sys_col is not None:
            out["system"] = sys_col
        return out
    prompt = ([("system", sys_col)] if sys_col is not None else []) + [("user", question)]
    if fmt == "messages":
        return {"messages": _conversation([*prompt, ("assistant", answer)],
                                          ("role", "content"))}
    return {"prompt": _conversation(prompt, ("role", "content")),
            "completion": _conversation([("assistant", answer)], ("role", "content"))}


def prompts(table: pa.Table, system: str | None) -> list[list[dict]]:
    """Each row's prompt as {role, content} messages: its context, or [system?, user]."""
    question = text_column(table, S.QUESTION).to_pylist()
    contexts = table.column(S.CONTEXT).to_pylist() if S.CONTEXT in table.column_names \
        else [None] * table.num_rows
    out = []
    for q, ctx in zip(question, contexts, strict=True):
        if ctx:
            msgs = [{"role": m["role"], "content": m["content"] or ""} for m in ctx]
            if system is not None and not any(m["role"] == "system" for m in msgs):
                msgs.insert(0, {"role": "system", "content": system})
        else:
            msgs = ([{"role": "system", "content": system}] if system is not None else []) + [
                {"role": "user", "content": q}]
        out.append(msgs)
    return out


def _messages_array(rows: list[list[dict]], keys: tuple[str, str]) -> pa.Array:
    typ = pa.list_(pa.struct([(keys[0], pa.string()), (keys[1], pa.string())]))
    return pa.array(rows, typ)


def _records_with_context(table: pa.Table, fmt: str, style: str,
                          system: str | None) -> dict[str, pa.Array]:
    answers = assistant_text(text_column(table, S.TRAJECTORY), text_column(table, S.RESPONSE),
                             style).to_pylist()
    rows = prompts(table, system)
    if fmt == "messages":
        return {"messages": _messages_array(
            [[*p, {"role": "assistant", "content": a}] for p, a in zip(rows, answers,
                                                                        strict=True)],
            ("role", "content"))}
    if fmt == "prompt-completion":
        return {"prompt": _messages_array(rows, ("role", "content")),
                "completion": _messages_array([[{"role": "assistant", "content": a}]
                                               for a in answers], ("role", "content"))}
    convs, systems = [], []
    for p, a in zip(rows, answers, strict=True):
        sys_ = next((m["content"] for m in p if m["role"] == "system"), None)
        systems.append(sys_)
        convs.append([_sharegpt_turn(m) for m in p if m["role"] != "system"]
                     + [{"from": "gpt", "value": a}])
    out = {"conversations": _messages_array(convs, ("from", "value"))}
    if system is not None or any(x is not None for x in systems):
        out["system"] = pa.array(systems, pa.string())
    return out


def _sharegpt_turn(m: dict) -> dict:
    content = m["content"] or ""
    if m["role"] == "assistant" and _TOOL_CALLS.fullmatch(content):
        calls = [c.strip() for c in _ONE_CALL.findall(content)]
        value = calls[0] if len(calls) == 1 else "[" + ", ".join(calls) + "]"
        return {"from": "function_call", "value": value}
    return {"from": SHAREGPT_ROLES.get(m["role"], m["role"]), "value": content}


def from_sharegpt(turn: dict) -> dict:
    """A ShareGPT {from, value} turn as a {role, content} message (the inverse of the export's
    mapping: a function_call becomes an assistant turn with <tool_call> markup)."""
    value = turn["value"] or ""
    if turn["from"] == "function_call":
        return {"role": "assistant", "content": tool_call_markup(value)}
    role = {v: k for k, v in SHAREGPT_ROLES.items()}.get(turn["from"], turn["from"])
    return {"role": role, "content": value}


def chat_messages(table: pa.Table, style: str, system: str | None) -> list[list[dict]]:
    """The same conversations as Python messages (for a tokenizer's chat template)."""
    answer = assistant_text(text_column(table, S.TRAJECTORY), text_column(table, S.RESPONSE),
                            style).to_pylist()
    return [[*p, {"role": "assistant", "content": a}]
            for p, a in zip(prompts(table, system), answer, strict=True)]


def marker_faults(table: pa.Table, style: str) -> tuple[np.ndarray, list[str]]:
    """(mask of rows holding a marker of ``style``, 'field: marker' for each such row)."""
    n = table.num_rows
    bad = np.zeros(n, dtype=bool)
    markers = MARKERS[style]
    if not markers:
        return bad, []
    first: dict[int, str] = {}
    for name in CHECKED:
        if name not in table.column_names:
            continue
        col = text_column(table, name)
        # One Aho-Corasick pass in polars (pyarrow's match_substring is ~20x slower on long
        # texts); the few rows that hit are then told apart in Python.
        hit = pl.from_arrow(col).str.contains_any(list(markers)).fill_null(False).to_numpy()
        for i in np.flatnonzero(hit & ~bad).tolist():
            text = col[i].as_py()
            first[i] = f"{name}: {next(m for m in markers if m in text)}"
        bad |= hit
    if has_context(table):  # the context's messages are trained on as the prompt
        for i, ctx in enumerate(table.column(S.CONTEXT).to_pylist()):
            for m in ctx or []:
                found = next((mk for mk in markers if mk in (m["content"] or "")), None)
                if found and not bad[i]:
                    bad[i] = True
                    first[i] = f"{S.CONTEXT}: {found}"
    return bad, [first[i] for i in np.flatnonzero(bad).tolist()]


def text_bytes(table: pa.Table) -> np.ndarray:
    """UTF-8 bytes of question + trajectory + response per row (a row's share of a shard)."""
    total = np.zeros(table.num_rows, dtype=np.int64)
    for name in CHECKED:
        if name in table.column_names:
            total += pc.fill_null(pc.binary_length(table.column(name)), 0).to_numpy(
                zero_copy_only=False).astype(np.int64)
    return total
