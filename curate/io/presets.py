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

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import schema as S
from ..errors import InputError, RowError
from ..steps import SEP

PRESETS = ("auto", "canonical", "s1k", "s1k-1.1", "generations", "openthoughts", "r1",
           "prompt-completion", "tags", "steps")
# Per-generation list columns of the many-generations layout (OpenR1-Math, OpenThoughts pools):
# the generations themselves, and the correctness list the `generations` preset takes as
# is_correct (first found).
GENERATION_COLS = ("generations", "completions", "responses")
CORRECTNESS_COLS = ("correctness_math_verify", "correctness", "is_correct", "correct")
# Lists that are per generation by name (OpenR1-Math's): exploded with the generations, and a row
# whose list length differs is a row fault. Other list columns are per generation when their
# lengths equal the generations' on every row of the file's first batch.
PER_GENERATION_COLS = (*CORRECTNESS_COLS, "correctness_llama", "is_reasoning_complete",
                       "finish_reasons")
GENERATION_INDEX = "generation_index"

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
    Tags("<|im_start|>think", "<|im_start|>answer"),  # s1: the answer marker ends the thought
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
    """The known marker pair used by most of a sample of texts, if any (a text counts for a
    pair when it closes the thought, or opens the answer part: rows without thinking)."""
    best, best_n = None, 0
    for tags in KNOWN_TAGS:
        n = sum(1 for v in values if v and (tags.think_close in v or (
            tags.answer_open is not None and tags.answer_open in v)))
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
    per_generation: list[str] = field(default_factory=list)  # list columns exploded alongside
    correctness_col: str | None = None  # the per-generation correctness list (is_correct)

    def describe(self) -> dict:
        d = {"preset": self.preset, "columns": dict(self.renames), "consumed": self.consumed}
        if self.tags:
            d["think_tags"] = self.tags.spec()
        if self.preset == "generations":
            d["generations"] = self.text_col
            d["per_generation"] = self.per_generation
            d["is_correct"] = self.correctness_col
        return d


@dataclass
class Mapped:
    """A canonical table plus the input rows it dropped: (input row in batch, reason, value)."""

    table: pa.Table
    row_index: pa.Array  # for each output row, its input row index within the batch
    drops: list[tuple[int, str, str]]


def parse_map(items: list[str] | None) -> list[tuple[str | None, str, str]]:
    """--map items as (file glob or None for every file, canonical column, input column). An
    item is CANONICAL=COLUMN, or GLOB:CANONICAL=COLUMN for the files the glob matches (a folder
    of several shapes: --map 'gsm8k*.jsonl:question=problem')."""
    out = []
    for item in items or []:
        left, sep, col = item.partition("=")
        glob, colon, target = left.rpartition(":")
        target, col = target.strip(), col.strip()
        if not sep or not target or not col or (colon and not glob.strip()):
            raise InputError(f"--map '{item}': expected CANONICAL=COLUMN or "
                             "GLOB:CANONICAL=COLUMN, e.g. --map trajectory=thinking_trajectories")
        if target not in S.CANONICAL:
            raise InputError(f"--map '{item}': '{target}' is not a canonical column "
                             f"(one of {', '.join(S.CANONICAL)})")
        out.append((glob.strip() or None, target, col))
    return out


def for_file(items: list[tuple[str | None, ...]], label: str) -> list[tuple]:
    """The items (from parse_map / parse_explode) that apply to the file ``label``: the global
    ones, and those whose glob matches its path or its name."""
    import fnmatch
    import os

    name = os.path.basename(label)
    return [it[1:] for it in items if it[0] is None or fnmatch.fnmatch(label, it[0])
            or fnmatch.fnmatch(name, it[0])]


def parse_explode(items: list[str] | None) -> list[tuple[str | None, str]]:
    """--explode items as (file glob or None, column): COLUMN or GLOB:COLUMN."""
    out = []
    for item in items or []:
        glob, _, col = item.rpartition(":")
        if not col.strip():
            raise InputError(f"--explode '{item}': expected COLUMN or GLOB:COLUMN")
        out.append((glob.strip() or None, col.strip()))
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


def _conversation_sample(batch: pa.RecordBatch, col: str, n: int = 256) -> list[str]:
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
    for name in ("canonical", "s1k-1.1", "s1k", "generations", "openthoughts", "r1",
                 "prompt-completion", "steps", "tags"):
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


def _generations(batch, names, tags) -> Mapping | None:
    """One row, many generations: a question and a list of generated traces (OpenR1-Math:
    ``problem``, ``generations``, ``answer``, ``correctness_math_verify``)."""
    q = _first(names, QUESTION_COLS)
    g = next((c for c in GENERATION_COLS if c in names
              and _is_list_of_str(batch.schema.field(c).type)), None)
    if q is None or g is None:
        return None
    sample = [x for v in batch.column(g).slice(0, 64).to_pylist() for x in v or []]
    per_gen = [c for c in names if c != g and _is_list_column(batch, c)
               and (c in PER_GENERATION_COLS or _same_lengths(batch, c, g))]
    correct = next((c for c in CORRECTNESS_COLS if c in per_gen), None)
    ref = next((c for c in ("answer", "reference_answer", "solution") if c in names
                and pa.types.is_string(batch.schema.field(c).type)), None)
    renames = {"question": q, **({"reference_answer": ref} if ref else {})}
    return Mapping("generations", renames=renames, consumed=[q, g, *([ref] if ref else [])],
                   tags=tags or detect_tags(sample) or Tags(THINK_OPEN, THINK_CLOSE),
                   question_col=q, text_col=g, per_generation=per_gen, correctness_col=correct)


def _is_list_column(batch, col: str) -> bool:
    t = batch.schema.field(col).type
    return pa.types.is_list(t) or pa.types.is_large_list(t)


def _same_lengths(batch, a: str, b: str) -> bool:
    """Whether list columns a and b have the same length on every row of the batch (a row's
    per-generation lists), with at least one row of several generations."""
    la = pc.fill_null(pc.list_value_length(batch.column(a)), -1)
    lb = pc.fill_null(pc.list_value_length(batch.column(b)), -1)
    return pc.all(pc.equal(la, lb)).as_py() and (pc.max(lb).as_py() or 0) > 1


def _openthoughts(batch, names, tags) -> Mapping | None:
    if "conversations" not in names or not _is_list_of_struct(batch.schema.field(
            "conversations").type):
        return None
    # ShareGPT with any think style (curate's own sharegpt exports use the chosen one)
    found = tags or detect_tags(_conversation_sample(batch, "conversations"))
    return Mapping("openthoughts", conversation_col="conversations",
                   consumed=["conversations", *(["system"] if "system" in names else [])],
                   tags=found or Tags(*OT_THOUGHT, *OT_SOLUTION))


def _r1(batch, names, tags) -> Mapping | None:
    if "messages" not in names or not _is_list_of_struct(batch.schema.field("messages").type):
        return None
    found = tags or detect_tags(_conversation_sample(batch, "messages"))
    return Mapping("r1", conversation_col="messages", consumed=["messages"],
                   tags=found or Tags(THINK_OPEN, THINK_CLOSE))


def _prompt_completion(batch, names, tags) -> Mapping | None:
    """TRL's prompt-completion: conversational (lists of messages) or standard (strings)."""
    if "prompt" not in names or "completion" not in names:
        return None
    types = [batch.schema.field(c).type for c in ("prompt", "completion")]
    conversational = all(_is_list_of_struct(t) for t in types)
    strings = all(pa.types.is_string(t) or pa.types.is_large_string(t) for t in types)
    if not (conversational or strings):
        return None
    sample = _conversation_sample(batch, "completion") if conversational else \
        _sample_text(batch, "completion")
    return Mapping("prompt-completion", consumed=["prompt", "completion"],
                   tags=tags or detect_tags(sample) or Tags(THINK_OPEN, THINK_CLOSE),
                   conversation_col="prompt" if conversational else None,
                   question_col="prompt", text_col="completion")


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
    "canonical": _canonical, "s1k": _s1k, "s1k-1.1": _s1k_11, "generations": _generations,
    "openthoughts": _openthoughts,
    "r1": _r1, "prompt-completion": _prompt_completion, "steps": _steps, "tags": _tags,
}


def _needs(preset: str) -> str:
    return {
        "canonical": "needs columns 'question' and 'response'",
        "s1k": "needs 'question', 'thinking_trajectories', 'attempt'",
        "s1k-1.1": "needs 'question', 'deepseek_thinking_trajectory', 'deepseek_attempt'",
        "generations": "needs a question column and a list of generated traces "
                       f"({'/'.join(GENERATION_COLS)})",
        "openthoughts": "needs 'conversations' (a list of {from, value})",
        "r1": "needs 'messages' (a list of {role, content})",
        "prompt-completion": "needs 'prompt' and 'completion' (both lists of {role, content}, "
                             "or both text)",
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
    return (f"{where}: no preset fits (tried: canonical, s1k-1.1, s1k, generations, "
            f"openthoughts, r1, prompt-completion, steps, tags); columns: {', '.join(names)}; "
            f"try e.g. {hint} (add --map trajectory=COL for a separate thinking column; a column "
            f"holding a list of traces per row is read one trace per element with --explode "
            "COL --map response=COL)")


# --- applying a mapping to a batch ---------------------------------------------------------------


def apply(batch: pa.RecordBatch, m: Mapping, where: str) -> Mapped:
    if m.preset in ("canonical", "s1k", "s1k-1.1"):
        return _map_columns(batch, m, where)
    if m.preset == "steps":
        return _map_steps(batch, m, where)
    if m.preset == "tags" or (m.preset == "prompt-completion" and m.conversation_col is None):
        return _map_tags(batch, m, where)
    if m.preset == "generations":
        return _map_generations(batch, m, where)
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


def _as_context(arr: pa.Array, col: str, where: str) -> pa.Array:
    """A context column (``schema.CONTEXT``): a list of {role, content[, reasoning]} messages."""
    t = arr.type
    if pa.types.is_null(t):
        return pa.nulls(len(arr), S.CONTEXT_TYPE)
    if not _is_list_of_struct(t) or not {"role", "content"} <= {f.name for f in t.value_type}:
        raise InputError(f"{where}: column '{col}' has type {t}, expected a list of messages "
                         "{role, content}")
    rows = [None if conv is None else [
        {"role": m.get("role"), "content": m.get("content"), "reasoning": m.get("reasoning")}
        for m in conv] for conv in arr.to_pylist()]
    return pa.array(rows, S.CONTEXT_TYPE)


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
        elif target == S.CONTEXT:
            cols[target] = _as_context(arr, col, where)
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


def _split_texts(texts: list[str | None], tags: Tags, label=lambda k: ""
                 ) -> tuple[list[int], list[str], list[str | None], list[tuple[int, str, str]]]:
    """Thinking and answer of each text: (rows kept, thinking, answers, (row, reason, value)
    drops). A null text is kept with a null answer (an empty_response drop in the stage)."""
    keep, traj, resp, drops = [], [], [], []
    for i, text in enumerate(texts):
        if text is None:
            keep.append(i)
            traj.append("")
            resp.append(None)
            continue
        try:
            t, r = split_tagged(text, tags)
        except RowError as e:
            drops.append((i, e.reason, label(i) + e.value))
            continue
        keep.append(i)
        traj.append(t)
        resp.append(r)
    return keep, traj, resp, drops


def _map_tags(batch: pa.RecordBatch, m: Mapping, where: str) -> Mapped:
    texts = _as_text(batch.column(m.text_col), m.text_col, where).to_pylist()
    keep, traj, resp, drops = _split_texts(texts, m.tags)
    idx = pa.array(keep, pa.int64())
    sub = batch.take(idx)
    cols = {S.QUESTION: _as_text(sub.column(m.question_col), m.question_col, where),
            S.TRAJECTORY: pa.array(traj, pa.string()), S.RESPONSE: pa.array(resp, pa.string())}
    for c in (S.ID, S.REFERENCE_ANSWER, S.SOURCE):
        if c in sub.schema.names:
            cols[c] = _as_text(sub.column(c), c, where)
    used = set(cols) | {m.question_col, m.text_col}
    return Mapped(_assemble(cols, _extras(sub, m, used), sub.num_rows), idx, drops)


def explode(batch: pa.RecordBatch | pa.Table, cols: list[str], where: str
            ) -> tuple[pa.Table, pa.Array, list[tuple[int, str, str]]]:
    """One row per element of the list columns ``cols`` (taken in lockstep), with its position
    in the list as ``generation_index``: (rows, index of each row's input row, drops). A row
    whose lists have different lengths is a row fault (``list_lengths_differ``); an empty or
    null list gives no row (``no_generation``)."""
    table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    for c in cols:
        if c not in table.column_names:
            raise InputError(f"{where}: --explode {c}: no column '{c}' (columns: "
                             f"{', '.join(table.column_names)})")
        t = table.schema.field(c).type
        if not (pa.types.is_list(t) or pa.types.is_large_list(t)):
            raise InputError(f"{where}: --explode {c}: column '{c}' is {t}, not a list")
    lengths = [pc.fill_null(pc.list_value_length(table.column(c)), 0).to_numpy(
        zero_copy_only=False) for c in cols]
    drops = []
    ok = np.ones(table.num_rows, dtype=bool)
    for i in range(table.num_rows):
        ls = {int(x[i]) for x in lengths}
        if len(ls) > 1:
            ok[i] = False
            drops.append((i, "list_lengths_differ", ", ".join(
                f"{c}: {int(x[i])}" for c, x in zip(cols, lengths, strict=True))))
        elif ls == {0}:
            ok[i] = False
            drops.append((i, "no_generation", f"{cols[0]} is empty"))
    counts = np.where(ok, lengths[0], 0)
    index = np.repeat(np.arange(table.num_rows), counts)
    within = np.concatenate([np.arange(n) for n in counts]) if len(counts) else \
        np.zeros(0, dtype=np.int64)
    out = table.take(pa.array(index, pa.int64()))
    for c in cols:
        flat = pc.list_flatten(table.column(c).filter(pa.array(ok)))
        out = out.set_column(out.column_names.index(c), c, flat)
    out = out.append_column(GENERATION_INDEX, pa.array(within, pa.int32()))
    return out, pa.array(index, pa.int64()), drops


def _map_generations(batch: pa.RecordBatch, m: Mapping, where: str) -> Mapped:
    rows, index, drops = explode(batch, [m.text_col, *m.per_generation], where)
    within = rows.column(GENERATION_INDEX).to_pylist()
    texts = [t or "" for t in rows.column(m.text_col).to_pylist()]
    keep, traj, resp, split_drops = _split_texts(texts, m.tags,
                                                 lambda k: f"generation {within[k]}: ")
    drops += [(int(index[k].as_py()), reason, value) for k, reason, value in split_drops]
    take = pa.array(keep, pa.int64())
    sub = rows.take(take)
    cols = {S.QUESTION: _as_text(sub.column(m.question_col), m.question_col, where),
            S.TRAJECTORY: pa.array(traj, pa.string()), S.RESPONSE: pa.array(resp, pa.string())}
    if "reference_answer" in m.renames:
        c = m.renames["reference_answer"]
        cols[S.REFERENCE_ANSWER] = _as_text(sub.column(c), c, where)
    for c in (S.ID, S.SOURCE):
        if c in sub.schema.names:
            cols[c] = _as_text(sub.column(c), c, where)
    if S.ID in cols:  # one id per generation
        within = sub.column(GENERATION_INDEX).to_pylist()
        cols[S.ID] = pa.array([None if v is None else f"{v}-{k}" for v, k in
                               zip(cols[S.ID].to_pylist(), within, strict=True)], pa.string())
    extras = _extras(sub, m, set(cols) | set(m.consumed) | {m.question_col, m.text_col})
    if m.correctness_col is not None:
        correct = pc.cast(sub.column(m.correctness_col), pa.bool_())
        extras = [(n, a) for n, a in extras if n != "is_correct"] + [("is_correct", correct)]
    return Mapped(_assemble(cols, extras, sub.num_rows), index.take(take), drops)


# --- conversations (OpenThoughts ShareGPT, R1 / LLaMA-Factory messages) ---------------------------

_ROLE = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
         "system": "system", "tool": "tool", "function": "tool", "observation": "tool",
         "function_call": "assistant"}


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
    if str(msg.get("from") or msg.get("role") or "").lower() == "function_call":
        text = tool_call_markup(text)  # LLaMA-Factory's ShareGPT tool call: the call's JSON
    return role, reasoning, text


def tool_call_markup(value: str) -> str:
    """A ShareGPT ``function_call`` value (one call's JSON, or a JSON list of calls) as the
    inline ``<tool_call>…</tool_call>`` markup curate keeps tool calls in."""
    value = value.strip()
    if value.startswith("["):
        try:
            calls = json.loads(value)
        except json.JSONDecodeError:
            calls = None
        if isinstance(calls, list):
            return "\n".join(f"<tool_call>{json.dumps(c, ensure_ascii=False)}</tool_call>"
                             for c in calls)
    return f"<tool_call>{value}</tool_call>"


def conversation_rows(conv, tags: Tags, first: int = 0
                      ) -> list[tuple[int, str, str, str, list | None]]:
    """(turn index, question, thinking, response, context) for each assistant turn (from index
    ``first`` on) that carries thinking, or for the last assistant turn when none does.
    ``context`` is every message before the turn (``schema.CONTEXT``), or None when that is the
    question alone. Raises RowError."""
    if not isinstance(conv, list) or not conv:
        raise RowError("empty_conversation")
    turns = []
    last_user = None
    before: list[dict] = []  # the messages so far, as context messages
    for k, msg in enumerate(conv):
        if not isinstance(msg, dict):
            raise RowError("bad_message", f"turn {k} is {type(msg).__name__}")
        role, reasoning, text = _message_parts(msg)
        if role == "user":
            last_user = text
        if role == "assistant":
            used = tags if reasoning is None else None
            if used is not None and not (tags.think_close in text or tags.think_open in text or (
                    tags.answer_open and tags.answer_open in text)):
                # another known style's thinking markers in this turn (a file chooses its tags
                # on its first rows, which may have had no thinking at all)
                used = next((t for t in KNOWN_TAGS if t.think_close in text), None)
            if used is not None:
                thinking, answer = split_tagged(text, used)
            else:
                thinking, answer = (reasoning or "").strip(), text.strip()
            context = None if [m["role"] for m in before] in ([], ["user"]) else list(before)
            if k >= first:
                turns.append((k, last_user, thinking, answer, context))
            before.append({"role": "assistant", "content": answer, "reasoning": thinking or None})
        else:
            before.append({"role": role, "content": text, "reasoning": None})
    if not turns:
        raise RowError("no_assistant_turn")
    chosen = [t for t in turns if t[2]] or [turns[-1]]
    for k, q, *_ in chosen:
        if q is None:
            raise RowError("no_user_turn", f"assistant turn {k} has no user turn before it")
    return chosen


def _conversations(batch: pa.RecordBatch, m: Mapping) -> tuple[list, int | None]:
    """The batch's conversations, and for prompt-completion rows the index of the first
    completion turn (only those are rows)."""
    if m.preset == "prompt-completion":
        prompts = batch.column("prompt").to_pylist()
        completions = batch.column("completion").to_pylist()
        return [(p or []) + (c or []) for p, c in zip(prompts, completions, strict=True)], \
            [len(p or []) for p in prompts]
    convs = batch.column(m.conversation_col).to_pylist()
    if "system" in m.consumed:  # LLaMA-Factory keeps the system prompt in its own column
        systems = batch.column("system").to_pylist()
        convs = [([{"role": "system", "content": s}] if s else []) + (c or [])
                 for c, s in zip(convs, systems, strict=True)]
    return convs, None


def _map_conversations(batch: pa.RecordBatch, m: Mapping, where: str) -> Mapped:
    convs, first_turn = _conversations(batch, m)
    idx, turn, q, t, r, ctx, drops = [], [], [], [], [], [], []
    for i, conv in enumerate(convs):
        try:
            rows = conversation_rows(conv, m.tags, first_turn[i] if first_turn else 0)
        except RowError as e:
            drops.append((i, e.reason, e.value))
            continue
        for k, question, thinking, answer, context in rows:
            idx.append(i)
            turn.append(k)
            q.append(question)
            t.append(thinking)
            r.append(answer)
            ctx.append(context)
    index = pa.array(idx, pa.int64())
    sub = batch.take(index)
    cols = {S.QUESTION: pa.array(q, pa.string()), S.TRAJECTORY: pa.array(t, pa.string()),
            S.RESPONSE: pa.array(r, pa.string())}
    if any(c is not None for c in ctx):
        cols[S.CONTEXT] = pa.array(ctx, S.CONTEXT_TYPE)
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
    used = set(cols) | {m.conversation_col, *m.consumed}
    extras = _extras(sub, m, used)
    if "turn_index" not in sub.schema.names:
        extras.append(("turn_index", pa.array(turn, pa.int32())))
    return Mapped(_assemble(cols, extras, sub.num_rows), index, drops)
