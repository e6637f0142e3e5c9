"""Format checks of exported SFT rows under the student's tokenizer and chat template.

Rows are handled as *examples*: ``(id, prompt messages, completion messages)``, the shape of
TRL's conversational prompt-completion format, whatever the export's format was (``messages``:
the last assistant turn is the completion, the turns before it the prompt; ``sharegpt``:
human/gpt turns and the optional ``system`` column; ``prompt-completion`` as is).

Checks, per row (a row failing one is a *fault*: reported with its id, never trained on):

* ``render_error``: the chat template raises on the conversation.
* ``prefix_mismatch``: the rendered prompt (with the generation prompt) is not a prefix of the
  rendered full conversation, so completion masking cannot find where the answer starts.
* ``empty_assistant``: the assistant part has no tokens after masking, or none left once the
  row is truncated to ``--max-seq-len`` (its prompt alone fills the window).
* ``unbalanced_think``: the assistant text opens a thought it does not close (or closes one it
  never opened) in any known think style: the student would learn broken markers.

Lengths (prompt + completion tokens under the template) are reported as a distribution, with
the count of rows over ``--max-seq-len``: those are truncated by TRL, not faults.
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InputError
from ..export import formats as F
from ..io import folder as layout
from ..select.normalize import text_key

MAX_LISTED = 20  # fault ids listed per kind in the summary
FAULT_KINDS = ("render_error", "prefix_mismatch", "empty_assistant", "unbalanced_think")

# (open, close) marker pairs per style; s1 has no closing marker, its "answer" ends the thought.
THINK_PAIRS: dict[str, tuple[tuple[str, str], ...]] = {
    "r1": (("<think>", "</think>"),),
    "openthoughts": (("<|begin_of_thought|>", "<|end_of_thought|>"),
                     ("<|begin_of_solution|>", "<|end_of_solution|>")),
    "s1": (("<|im_start|>think", "<|im_start|>answer"),),
}


@dataclass
class Example:
    id: str
    prompt: list[dict]
    completion: list[dict]
    tools: list | None = None  # tool definitions, handed to the chat template as TRL does

    @property
    def question_key(self) -> str:
        """text_key of the user turn: rows of one problem share it across ids."""
        user = [m["content"] for m in self.prompt if m["role"] == "user"]
        return text_key(user[-1] if user else "")

    def as_record(self) -> dict:
        record = {"prompt": self.prompt, "completion": self.completion}
        if self.tools is not None:
            record["tools"] = json.dumps(self.tools)  # TRL's SFTTrainer reads a JSON string
        return record


# --- reading -------------------------------------------------------------------------------------

def is_export(path: str) -> bool:
    p = Path(path)
    if not layout.is_curate_folder(p):
        return False
    return layout.read_manifest(p).get("curate", {}).get("stage") == "export"


def read_export(path: str, label: str = "EXPORTED") -> dict[str, list[Example]]:
    """Examples per split (``train``, ``test``) of a ``curate export`` folder."""
    if not is_export(path):
        raise InputError(f"{label} {path}: not a curate export folder (expected the "
                         f"{layout.MANIFEST} of `curate export` and data/train-*.parquet; run "
                         "`curate export` first)")
    splits: dict[str, list[Example]] = {}
    for f in sorted(glob.glob(str(Path(path) / "data" / "*-*.parquet"))):
        split = Path(f).name.split("-", 1)[0]
        try:
            table = pq.read_table(f)
        except (pa.ArrowException, OSError) as e:
            raise InputError(f"{label} {f}: cannot read ({str(e).splitlines()[0]})") from None
        splits.setdefault(split, []).extend(examples_from_records(table, f"{label} {f}"))
    return splits


def examples_from_records(table: pa.Table, label: str) -> list[Example]:
    cols = table.column_names
    if "id" not in cols:
        raise InputError(f"{label}: no 'id' column (validate needs ids to keep the held-out set "
                         "apart from the training sets)")
    ids = [str(x) for x in table.column("id").to_pylist()]
    tools = [_tools(t, label) for t in table.column("tools").to_pylist()] if "tools" in cols \
        else [None] * len(ids)
    if "messages" in cols:
        out = []
        for i, conv, tl in zip(ids, table.column("messages").to_pylist(), tools, strict=True):
            conv = [{"role": m["role"], "content": m["content"]} for m in conv or []]
            last = max((k for k, m in enumerate(conv) if m["role"] == "assistant"), default=None)
            if last is None:  # no assistant turn: an empty completion, caught by the checks
                out.append(Example(i, conv, [{"role": "assistant", "content": ""}], tl))
            else:
                out.append(Example(i, conv[:last], conv[last:last + 1], tl))
        return out
    if "prompt" in cols and "completion" in cols:
        return [Example(i, [dict(m) for m in p or []], [dict(m) for m in c or []], tl)
                for i, p, c, tl in zip(ids, table.column("prompt").to_pylist(),
                                       table.column("completion").to_pylist(), tools,
                                       strict=True)]
    if "conversations" in cols:
        systems = table.column("system").to_pylist() if "system" in cols else [None] * len(ids)
        out = []
        for i, conv, sys_, tl in zip(ids, table.column("conversations").to_pylist(), systems,
                                     tools, strict=True):
            msgs = ([{"role": "system", "content": sys_}] if sys_ is not None else []) + [
                F.from_sharegpt(m) for m in conv or []]
            out.append(Example(i, msgs[:-1], msgs[-1:], tl))
        return out
    raise InputError(f"{label}: no record columns (expected messages, prompt/completion or "
                     "conversations)")


def examples_from_traces(table: pa.Table, style: str, system: str | None) -> list[Example]:
    """Canonical traces rendered as the export renders them (same think style and system)."""
    convs = F.chat_messages(table, style, system)
    ids = [str(x) for x in table.column("id").to_pylist()]
    tools = [_tools(t, "traces") for t in F.tools_text(table).to_pylist()]
    return [Example(i, c[:-1], c[-1:], tl) for i, c, tl in zip(ids, convs, tools, strict=True)]


def _tools(value, label: str) -> list | None:
    if value is None:
        return None
    try:
        tools = json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError as e:
        raise InputError(f"{label}: a tools value is not JSON ({e.msg})") from None
    return tools if isinstance(tools, list) else [tools]


# --- the student's tokenizer ---------------------------------------------------------------------

def load_student_tokenizer(path: str):
    from ..export.stage import load_tokenizer

    return load_tokenizer(path, "--student", "validate")


# --- checks --------------------------------------------------------------------------------------

def unbalanced_think(text: str) -> str | None:
    """The first marker that breaks a pair in ``text`` (any style), else None."""
    for pairs in THINK_PAIRS.values():
        for open_, close in pairs:
            depth = 0
            pos = 0
            # Walk the markers in order: a close before its open, or a second open before the
            # close, is as broken as a missing close.
            while True:
                a, b = text.find(open_, pos), text.find(close, pos)
                if a < 0 and b < 0:
                    break
                if a >= 0 and (b < 0 or a < b):
                    if depth:
                        return open_
                    depth, pos = 1, a + len(open_)
                else:
                    if not depth:
                        return close
                    depth, pos = 0, b + len(close)
            if depth:
                return open_
    return None


def _ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def check_examples(examples: list[Example], tok, max_seq_len: int) -> tuple[list[bool], dict]:
    """(ok mask, summary) for these examples under the tokenizer's chat template."""
    ok = [True] * len(examples)
    faults: dict[str, list[str]] = {k: [] for k in FAULT_KINDS}
    lengths: list[int] = []
    completion_tokens: list[int] = []

    def fault(k: int, kind: str, detail: str) -> None:
        ok[k] = False
        faults[kind].append(f"{examples[k].id}: {detail}" if detail else examples[k].id)

    for k, ex in enumerate(examples):
        answer = "".join(m.get("content") or "" for m in ex.completion)
        marker = unbalanced_think(answer)
        if marker is not None:
            fault(k, "unbalanced_think", f"'{marker}'")
        try:
            prompt = tok.apply_chat_template(ex.prompt, tokenize=False, tools=ex.tools,
                                             add_generation_prompt=True)
            full = tok.apply_chat_template(ex.prompt + ex.completion, tokenize=False,
                                           tools=ex.tools)
        except Exception as e:  # noqa: BLE001 - a template may raise anything (jinja, KeyError)
            fault(k, "render_error", (str(e).splitlines() or [type(e).__name__])[0][:200])
            continue
        if not full.startswith(prompt):
            fault(k, "prefix_mismatch", "")
            continue
        n_prompt = len(_ids(tok, prompt))
        n_full = len(_ids(tok, full))
        lengths.append(n_full)
        kept = min(n_full, max_seq_len) - n_prompt  # assistant tokens left after truncation
        completion_tokens.append(max(kept, 0))
        if not answer.strip() or kept <= 0:
            fault(k, "empty_assistant", f"{n_prompt} prompt tokens, {n_full} in all")
    counts = {k: len(v) for k, v in faults.items()}
    summary = {
        "rows": len(examples),
        "ok_rows": int(sum(ok)),
        "faults": counts,
        "fault_ids": {k: v[:MAX_LISTED] for k, v in faults.items() if v},
        "tokens": _length_summary(lengths, max_seq_len),
        "completion_tokens_kept": int(sum(completion_tokens)),
    }
    return ok, summary


def _length_summary(lengths: list[int], max_seq_len: int) -> dict:
    if not lengths:
        return {"max_seq_len": max_seq_len, "over": 0}
    a = np.asarray(lengths)
    return {
        "max_seq_len": max_seq_len,
        "min": int(a.min()), "median": int(np.median(a)),
        "p90": int(np.percentile(a, 90)), "p99": int(np.percentile(a, 99)), "max": int(a.max()),
        "over": int((a > max_seq_len).sum()),
        "over_share": round(float((a > max_seq_len).mean()), 4),
    }
