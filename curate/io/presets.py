"""Map the shapes traces come in to the canonical columns (``curate.schema``).

A preset is chosen once per input file (``auto`` looks at the column names, and for tag-based
shapes at a sample of values). ``--map CANONICAL=COLUMN`` renames input columns first, so it also
works on top of any preset. Input columns that a preset does not consume are kept unchanged;
consumed columns (e.g. ``conversations``) are replaced by the canonical ones and named in the
manifest.

Per-row faults (an unclosed ``<think>``, a conversation without an assistant turn…) are returned
as drops; faults of a whole column (a missing or mistyped column) raise ``InputError``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from .. import schema as S
from ..errors import InputError, RowError
from ..steps import SEP

PRESETS = ("auto", "canonical", "s1k", "s1k-1.1", "openthoughts", "r1", "tags", "steps")

# Candidate input names, first match wins (the canonical name always comes first).
QUESTION_COLS = ("question", "problem", "instruction", "prompt", "query", "input")
TEXT_COLS = ("response", "output", "completion", "generation", "answer")

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
OT_THOUGHT = ("<|begin_of_thought|>", "<|end_of_thought|>")
OT_SOLUTION = ("<|begin_of_solution|>", "<|end_of_solution|>")


@dataclass(frozen=True)
class Tags:
    """Marker pairs around the thinking part and (optionally) the answer part."""

    think_open: str
    think_close: str
    answer_open: str | None = None
    answer_close: str | None = None

    @classmethod
    def parse(cls, spec: str) -> Tags:
        parts = [p.strip() for p in spec.split(",")]
        if len(parts) not in (2, 4) or not all(parts):
            raise InputError(f"--think-tags '{spec}': expected OPEN,CLOSE or "
                             "OPEN,CLOSE,ANSWER_OPEN,ANSWER_CLOSE (e.g. '<think>,</think>')")
        return cls(*parts) if len(parts) == 4 else cls(parts[0], parts[1])

    def spec(self) -> str:
        parts = [self.think_open, self.think_close]
        if self.answer_open:
            parts += [self.answer_open, self.answer_close]
        return ",".join(parts)


KNOWN_TAGS = (
    Tags(THINK_OPEN, THINK_CLOSE),
    Tags("<Thought>", "</Thought>", "<Output>", "</Output>"),
    Tags(*OT_THOUGHT, *OT_SOLUTION),
    Tags("<reasoning>", "</reasoning>", "<answer>", "</answer>"),
)


def split_tagged(text: str, tags: Tags) -> tuple[str, str]:
    """(thinking, answer) of one generated text. Raises RowError for unclosed thinking (a
    generation cut at its length cap).

    No opening marker but a closing one is the R1-distill habit of putting ``<think>`` in the
    prompt: everything before the closing marker is thinking. Neither marker: no thinking.
    """
    i = text.find(tags.think_open)
    j = text.find(tags.think_close, i + len(tags.think_open) if i >= 0 else 0)
    if i >= 0 and j < 0:
        raise RowError("unclosed_thinking", f"{tags.think_open} without {tags.think_close}")
    if j >= 0:
        before = text[:i] if i >= 0 else ""
        inner = text[i + len(tags.think_open) : j] if i >= 0 else text[:j]
        thinking = (before + inner).strip()
        rest = text[j + len(tags.think_close) :]
    else:
        thinking, rest = "", text
    if tags.answer_open:
        a = rest.find(tags.answer_open)
        if a >= 0:
            # A missing closing answer marker is common in finished outputs (Marco-o1's demo
            # data): the answer then runs to the end of the text.
            b = rest.find(tags.answer_close, a + len(tags.answer_open))
            rest = rest[a + len(tags.answer_open) : b if b >= 0 else len(rest)]
    return thinking, rest.strip()


def detect_tags(values: list[str | None]) -> Tags | None:
    """The known marker pair used by most of a sample of texts, if any."""
    best, best_n = None, 0
    for tags in KNOWN_TAGS:
        n = sum(1 for v in values if v and tags.think_close in v)
        if n > best_n:
            best, best_n = tags, n
    return best


# --- the mapping of one file --------------------------------------------------------------------


@dataclass
class Mapping:
    """How one input file maps to canonical columns; decided on its first batch."""

    preset: str
    renames: dict[str, str] = field(default_factory=dict)  # canonical -> input column
    consumed: list[str] = field(default_factory=list)  # input columns not kept as they are
    tags: Tags | None = None
    question_col: str | None = None
    text_col: str | None = None
    conversation_col: str | None = None

    def describe(self) -> dict:
        d = {"preset": self.preset, "columns": dict(self.renames), "consumed": self.consumed}
        if self.tags:
            d["think_tags"] = self.tags.spec()
        return d


@dataclass
class Mapped:
    """A canonical table plus the input rows it dropped: (input row in batch, reason, value)."""

    table: pa.Table
    row_index: pa.Array  # for each output row, its input row index within the batch
    drops: list[tuple[int, str, str]]


def parse_map(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        target, sep, col = item.partition("=")
        target, col = target.strip(), col.strip()
        if not sep or not target or not col:
            raise InputError(f"--map '{item}': expected CANONICAL=COLUMN, e.g. "
                             "--map trajectory=thinking_trajectories")
        if target not in S.CANONICAL:
            raise InputError(f"--map '{item}': '{target}' is not a canonical column "
                             f"(one of {', '.join(S.CANONICAL)})")
        out[target] = col
    return out


def apply_user_map(batch: pa.RecordBatch, user_map: dict[str, str], where: str) -> pa.RecordBatch:
    if not user_map:
        return batch
    names = list(batch.schema.names)
    for target, col in user_map.items():
        if col not in names:
            raise InputError(f"{where}: --map {target}={col}: no column '{col}' "
                             f"(columns: {', '.join(batch.schema.names)})")
        if target in names and target != col:
            raise InputError(f"{where}: --map {target}={col}: the input already has a column "
                             f"'{target}'; map it away first or drop the --map")
    new = [next((t for t, c in user_map.items() if c == n), n) for n in names]
    return batch.rename_columns(new)


def _first(names: list[str], candidates: tuple[str, ...]) -> str | None:
    return next((c for c in candidates if c in names), None)


def _is_list_of_struct(t: pa.DataType) -> bool:
    return (pa.types.is_list(t) or pa.types.is_large_list(t)) and pa.types.is_struct(t.value_type)


def _is_list_of_str(t: pa.DataType) -> bool:
    # list<null> is what a writer infers for a column of empty lists
    return (pa.types.is_list(t) or pa.types.is_large_list(t)) and (
        pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type)
        or pa.types.is_null(t.value_type)
    )


def _sample_text(batch: pa.RecordBatch, col: str, n: int = 64) -> list[str | None]:
    arr = batch.column(col).slice(0, n)
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return []
    return arr.to_pylist()


def _conversation_sample(batch: pa.RecordBatch, col: str, n: int = 16) -> list[str]:
    texts = []
    for conv in batch.column(col).slice(0, n).to_pylist():
        for m in conv or []:
            if isinstance(m, dict):
                texts.append(str(m.get("value") or m.get("content") or ""))
    return texts


def choose(batch: pa.RecordBatch, preset: str, tags: Tags | None, where: str) -> Mapping:
    """Decide the mapping of a file from its first batch (after user renames)."""
    names = list(batch.schema.names)
    if preset == "auto":
        m = _auto(batch, names, tags)
        if m is None:
            raise InputError(_no_preset_message(where, names))
        return m
    builder = _BUILDERS[preset]
    m = builder(batch, names, tags)
    if m is None:
        raise InputError(f"{where}: --preset {preset} does not fit: {_needs(preset)}; "
                         f"columns: {', '.join(names)}")
    return m


def _auto(batch, names, tags) -> Mapping | None:
    text_tags_first = []
    if S.QUESTION in names and S.RESPONSE in names and S.TRAJECTORY not in names and tags is None:
        # canonical names but thinking still inside the response (R1-style flat files)
        found = detect_tags(_sample_text(batch, S.RESPONSE))
        if found is not None:
            text_tags_first.append(found)
    if text_tags_first:
        return _tags(batch, names, text_tags_first[0])
    for name in ("canonical", "s1k-1.1", "s1k", "openthoughts", "r1", "steps", "tags"):
        m = _BUILDERS[name](batch, names, tags)
        if m is not None:
            return m
    return None


def _canonical(batch, names, tags) -> Mapping | None:
    if S.QUESTION not in names or S.RESPONSE not in names:
        return None
    renames = {c: c for c in S.CANONICAL if c in names}
    consumed = []
    if "steps" in names and not (set(S.STEP_FIELDS) & set(names)):
        if _is_list_of_str(batch.schema.field("steps").type):
            renames["steps"] = "steps"  # placed on the right side by _place_source_steps
            consumed.append("steps")
    return Mapping("canonical", renames=renames, consumed=consumed)


def _s1k(batch, names, tags) -> Mapping | None:
    if not {"question", "thinking_trajectories", "attempt"} <= set(names):
        return None
    return Mapping("s1k", renames={"question": "question", "trajectory": "thinking_trajectories",
                                   "response": "attempt",
                                   **({"reference_answer": "solution"} if "solution" in names
                                      else {})},
                   consumed=["thinking_trajectories", "attempt"]
                   + (["solution"] if "solution" in names else []))


def _s1k_11(batch, names, tags) -> Mapping | None:
    if not {"question", "deepseek_thinking_trajectory", "deepseek_attempt"} <= set(names):
        return None
    ref = {"reference_answer": "solution"} if "solution" in names else {}
    return Mapping("s1k-1.1", renames={"question": "question",
                                       "trajectory": "deepseek_thinking_trajectory",
                                       "response": "deepseek_attempt", **ref},
                   consumed=["deepseek_thinking_trajectory", "deepseek_attempt", *ref.values()])


def _openthoughts(batch, names, tags) -> Mapping | None:
    if "conversations" not in names or not _is_list_of_struct(batch.schema.field(
            "conversations").type):
        return None
    return Mapping("openthoughts", conversation_col="conversations", consumed=["conversations"],
                   tags=tags or Tags(*OT_THOUGHT, *OT_SOLUTION))


def _r1(batch, names, tags) -> Mapping | None:
    if "messages" not in names or not _is_list_of_struct(batch.schema.field("messages").type):
        return None
    return Mapping("r1", conversation_col="messages", consumed=["messages"],
                   tags=tags or Tags(THINK_OPEN, THINK_CLOSE))


def _steps(batch, names, tags) -> Mapping | None:
    q = _first(names, QUESTION_COLS)
    if q is None or "steps" not in names or not _is_list_of_str(batch.schema.field("steps").type):
        return None
    return Mapping("steps", renames={"question": q, "response_steps": "steps"},
                   consumed=[q, "steps"], question_col=q)


def _tags(batch, names, tags) -> Mapping | None:
    q = _first(names, QUESTION_COLS)
    if q is None:
        return None
    for col in TEXT_COLS:
        if col not in names:
            continue
        found = tags or detect_tags(_sample_text(batch, col))
        if found is not None:
            return Mapping("tags", renames={"question": q}, consumed=[q, col], tags=found,
                           question_col=q, text_col=col)
    return None


_BUILDERS: dict[str, Callable] = {
    "canonical": _canonical, "s1k": _s1k, "s1k-1.1": _s1k_11, "openthoughts": _openthoughts,
    "r1": _r1, "steps": _steps, "tags": _tags,
}


def _needs(preset: str) -> str:
    return {
        "canonical": "needs columns 'question' and 'response'",
        "s1k": "needs 'question', 'thinking_trajectories', 'attempt'",
        "s1k-1.1": "needs 'question', 'deepseek_thinking_trajectory', 'deepseek_attempt'",
        "openthoughts": "needs 'conversations' (a list of {from, value})",
        "r1": "needs 'messages' (a list of {role, content})",
        "steps": "needs a list-of-strings column 'steps' and a question column "
                 f"({'/'.join(QUESTION_COLS)})",
        "tags": "needs a question column and a text column "
                f"({'/'.join(TEXT_COLS)}) with thinking markers (set them with --think-tags)",
    }[preset]


def _no_preset_message(where: str, names: list[str]) -> str:
    q = _first(names, QUESTION_COLS) or next((n for n in names if "question" in n.lower()
                                               or "problem" in n.lower()), "COL")
    strs = [n for n in names if n != q]
    r = _first(names, TEXT_COLS) or (strs[-1] if strs else "COL")
    hint = f"--map question={q} --map response={r}"
    return (f"{where}: no preset fits (tried: canonical, s1k-1.1, s1k, openthoughts, r1, steps, "
            f"tags); columns: {', '.join(names)}; try e.g. {hint} (add --map trajectory=COL "
            f"for a separate thinking column)")


# --- applying a mapping to a batch ---------------------------------------------------------------


def apply(batch: pa.RecordBatch, m: Mapping, where: str) -> Mapped:
    if m.preset in ("canonical", "s1k", "s1k-1.1"):
        return _map_columns(batch, m, where)
    if m.preset == "steps":
        return _map_steps(batch, m, where)
    if m.preset == "tags":
        return _map_tags(batch, m, where)
    return _map_conversations(batch, m, where)


def _extras(batch: pa.RecordBatch, m: Mapping, used: set[str]) -> list[tuple[str, pa.Array]]:
    return [(n, batch.column(n)) for n in batch.schema.names
            if n not in used and n not in m.consumed]


def _as_text(arr: pa.Array, col: str, where: str, join_list: bool = False) -> pa.Array:
    t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return arr.cast(pa.string()) if pa.types.is_large_string(t) else arr
    if pa.types.is_null(t):
        return pa.nulls(len(arr), pa.string())
    if join_list and _is_list_of_str(t):  # s1K keeps its trajectory as a list of one string
        return pa.array([None if v is None else SEP.join(v) for v in arr.to_pylist()],
                        pa.string())
    raise InputError(f"{where}: column '{col}' has type {t}, expected text (string)")


def _as_steps(arr: pa.Array, col: str, where: str) -> pa.Array:
    t = arr.type
    if pa.types.is_null(t):
        return pa.nulls(len(arr), pa.list_(pa.string()))
    if not _is_list_of_str(t):
        raise InputError(f"{where}: column '{col}' has type {t}, expected a list of strings")
    return arr.cast(pa.list_(pa.string()))


def _assemble(cols: dict[str, pa.Array], extras, n: int) -> pa.Table:
    arrays, names = [], []
    for c in S.CANONICAL:
        if c in cols:
            arrays.append(cols[c])
            names.append(c)
        elif c in (S.TRAJECTORY,):
            arrays.append(pa.array([""] * n, pa.string()))
            names.append(c)
        elif c in (S.REFERENCE_ANSWER, S.SOURCE):
            arrays.append(pa.nulls(n, pa.string()))
            names.append(c)
        elif c == S.ID:
            continue  # derived later from content
    for name, arr in extras:
        arrays.append(arr)
        names.append(name)
    return pa.Table.from_arrays(arrays, names=names)


def _map_columns(batch: pa.RecordBatch, m: Mapping, where: str) -> Mapped:
    cols: dict[str, pa.Array] = {}
    used = set()
    for target, col in m.renames.items():
        arr = batch.column(col)
        used.add(col)
        if target == S.ID:
            cols[S.ID] = _as_text(arr, col, where)
        elif target in S.TEXT_FIELDS:
            join = m.preset == "s1k" and target == S.TRAJECTORY
            cols[target] = _as_text(arr, col, where, join_list=join)
        elif target in S.STEP_FIELDS:
            cols[target] = _as_steps(arr, col, where)
        elif target == "steps":
            cols.update(_place_source_steps(batch, arr, where))
    if S.TRAJECTORY in cols:
        cols[S.TRAJECTORY] = pc.fill_null(cols[S.TRAJECTORY], "")
    table = _assemble(cols, _extras(batch, m, used), batch.num_rows)
    return Mapped(table, pa.array(range(batch.num_rows), pa.int64()), [])


def _place_source_steps(batch: pa.RecordBatch, steps: pa.Array, where: str) -> dict:
    """A ``steps`` column in an otherwise canonical file: decide which part it covers.

    Rows without thinking: the response's steps. Rows with thinking: the steps cover the thinking,
    or thinking and response together (PRMBench's QwQ traces), in which case they all go to
    ``trajectory_steps`` and ``response_steps`` is empty, so that per-step labels stay aligned.
    """
    steps = _as_steps(steps, "steps", where)
    traj = batch.column(S.TRAJECTORY).to_pylist() if S.TRAJECTORY in batch.schema.names \
        else [""] * batch.num_rows
    resp = batch.column(S.RESPONSE).to_pylist()
    t_out, r_out = [], []
    for st, t, r in zip(steps.to_pylist(), traj, resp, strict=True):
        if st is None:
            t_out.append(None)
            r_out.append(None)
        elif not (t or "").strip():
            t_out.append(None)
            r_out.append(st)
        elif r and _squash(r) and _squash(SEP.join(st)).endswith(_squash(r)):
            t_out.append(st)
            r_out.append([])
        else:
            t_out.append(st)
            r_out.append(None)
    typ = pa.list_(pa.string())
    return {S.TRAJECTORY_STEPS: pa.array(t_out, typ), S.RESPONSE_STEPS: pa.array(r_out, typ)}


_WS_RUN = re.compile(r"\s+")


def _squash(text: str) -> str:
    return _WS_RUN.sub("", text)


def _map_steps(batch: pa.RecordBatch, m: Mapping, where: str) -> Mapped:
    steps = _as_steps(batch.column("steps"), "steps", where)
    response = pa.array([None if s is None else SEP.join(s) for s in steps.to_pylist()],
                        pa.string())
    cols = {S.QUESTION: _as_text(batch.column(m.question_col), m.question_col, where),
            S.RESPONSE: response, S.RESPONSE_STEPS: steps}
    for c in (S.ID, S.TRAJECTORY, S.REFERENCE_ANSWER, S.SOURCE):
        if c in batch.schema.names:
            cols[c] = _as_text(batch.column(c), c, where)
    used = set(cols) | {m.question_col, "steps"}
    table = _assemble(cols, _extras(batch, m, used), batch.num_rows)
    return Mapped(table, pa.array(range(batch.num_rows), pa.int64()), [])


def _map_tags(batch: pa.RecordBatch, m: Mapping, where: str) -> Mapped:
    texts = _as_text(batch.column(m.text_col), m.text_col, where).to_pylist()
    keep, traj, resp, drops = [], [], [], []
    for i, text in enumerate(texts):
        if text is None:
            keep.append(i)
            traj.append("")
            resp.append(None)  # becomes an empty_response drop in the stage
            continue
        try:
            t, r = split_tagged(text, m.tags)
        except RowError as e:
            drops.append((i, e.reason, e.value))
            continue
        keep.append(i)
        traj.append(t)
        resp.append(r)
    idx = pa.array(keep, pa.int64())
    sub = batch.take(idx)
    cols = {S.QUESTION: _as_text(sub.column(m.question_col), m.question_col, where),
            S.TRAJECTORY: pa.array(traj, pa.string()), S.RESPONSE: pa.array(resp, pa.string())}
    for c in (S.ID, S.REFERENCE_ANSWER, S.SOURCE):
        if c in sub.schema.names:
            cols[c] = _as_text(sub.column(c), c, where)
    used = set(cols) | {m.question_col, m.text_col}
    return Mapped(_assemble(cols, _extras(sub, m, used), sub.num_rows), idx, drops)


# --- conversations (OpenThoughts ShareGPT, R1 / LLaMA-Factory messages) ---------------------------

_ROLE = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
         "system": "system", "tool": "tool", "function": "tool", "observation": "tool"}


def _message_parts(msg: dict) -> tuple[str, str | None, str]:
    """(role, explicit reasoning or None, text) of one message in any of the known shapes."""
    role = _ROLE.get(str(msg.get("role") or msg.get("from") or "").lower(), "other")
    content = msg.get("content", msg.get("value"))
    reasoning = msg.get("reasoning_content") or msg.get("reasoning") or None
    if isinstance(content, list):  # typed parts: [{type: text|reasoning|tool_call, value|text}]
        texts, reasons, calls = [], [], []
        for part in content:
            if not isinstance(part, dict):
                continue
            kind = part.get("type")
            value = part.get("value", part.get("text"))
            if value is None:
                continue
            if kind in ("reasoning", "thinking"):
                reasons.append(str(value))
            elif kind == "text":
                texts.append(str(value))
            else:  # tool calls, in the Qwen / LLaMA-Factory markup
                calls.append(f"<tool_call>{value}</tool_call>")
        if reasons:
            reasoning = SEP.join(reasons)
        text = "\n".join([SEP.join(texts)] * bool(texts) + calls)
    else:
        text = "" if content is None else str(content)
    return role, reasoning, text


def conversation_rows(conv, tags: Tags) -> list[tuple[int, str, str, str]]:
    """(turn index, question, thinking, response) for each assistant turn that carries thinking,
    or for the last assistant turn when none does. Raises RowError."""
    if not isinstance(conv, list) or not conv:
        raise RowError("empty_conversation")
    turns = []
    last_user = None
    for k, msg in enumerate(conv):
        if not isinstance(msg, dict):
            raise RowError("bad_message", f"turn {k} is {type(msg).__name__}")
        role, reasoning, text = _message_parts(msg)
        if role == "user":
            last_user = text
        elif role == "assistant":
            if reasoning is None and (tags.think_close in text or tags.think_open in text):
                thinking, answer = split_tagged(text, tags)
            elif reasoning is None and tags.answer_open and tags.answer_open in text:
                thinking, answer = split_tagged(text, tags)
            else:
                thinking, answer = (reasoning or "").strip(), text.strip()
            turns.append((k, last_user, thinking, answer))
    if not turns:
        raise RowError("no_assistant_turn")
    chosen = [t for t in turns if t[2]] or [turns[-1]]
    for k, q, _, _ in chosen:
        if q is None:
            raise RowError("no_user_turn", f"assistant turn {k} has no user turn before it")
    return chosen


def _map_conversations(batch: pa.RecordBatch, m: Mapping, where: str) -> Mapped:
    convs = batch.column(m.conversation_col).to_pylist()
    idx, turn, q, t, r, drops = [], [], [], [], [], []
    for i, conv in enumerate(convs):
        try:
            rows = conversation_rows(conv, m.tags)
        except RowError as e:
            drops.append((i, e.reason, e.value))
            continue
        for k, question, thinking, answer in rows:
            idx.append(i)
            turn.append(k)
            q.append(question)
            t.append(thinking)
            r.append(answer)
    index = pa.array(idx, pa.int64())
    sub = batch.take(index)
    cols = {S.QUESTION: pa.array(q, pa.string()), S.TRAJECTORY: pa.array(t, pa.string()),
            S.RESPONSE: pa.array(r, pa.string())}
    for c in (S.REFERENCE_ANSWER, S.SOURCE):
        if c in sub.schema.names:
            cols[c] = _as_text(sub.column(c), c, where)
    if S.ID in sub.schema.names:
        ids = _as_text(sub.column(S.ID), S.ID, where).to_pylist()
        per_conv: dict[int, int] = {}
        for i in idx:
            per_conv[i] = per_conv.get(i, 0) + 1
        cols[S.ID] = pa.array([None if v is None else (v if per_conv[i] == 1 else f"{v}-{k}")
                               for v, i, k in zip(ids, idx, turn, strict=True)], pa.string())
    used = set(cols) | {m.conversation_col}
    extras = _extras(sub, m, used)
    if "turn_index" not in sub.schema.names:
        extras.append(("turn_index", pa.array(turn, pa.int32())))
    return Mapped(_assemble(cols, extras, sub.num_rows), index, drops)
