"""Round trips: what curate writes, and the shapes trainers use, read back into the same traces;
conversations keep the context their answers depend on."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SAMPLE, SHARED, needs_shared, read_output
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curate.export import formats as F
from curate.stage import run_stage

LF_RAW = SHARED / "raw" / "llamafactory_reason_tool_use_demo_50.jsonl"
LF_SAMPLE = SAMPLE / "llamafactory_reason_tool_use.jsonl"


def _traces(folder: Path) -> dict[str, dict]:
    out = {}
    for r in read_output(folder).to_pylist():
        ctx = r.get("context")
        out[r["id"]] = {
            "question": r["question"].strip(), "trajectory": (r["trajectory"] or "").strip(),
            "response": r["response"].strip(),
            "context": [(m["role"], m["content"]) for m in ctx] if ctx else None}
    return out


@pytest.fixture(scope="module")
def read_once(tmp_path_factory) -> Path:
    """The bundled traces (single-turn math, multi-turn tool use) read once."""
    out = tmp_path_factory.mktemp("rt") / "read"
    run_stage("read", [str(SAMPLE / "processbench.parquet"), str(SAMPLE / "prmbench_qwq.parquet"),
                       str(LF_SAMPLE)], out)
    return out


@pytest.mark.parametrize("style", F.THINK_STYLES)
@pytest.mark.parametrize("fmt", F.FORMATS)
def test_read_export_read_gives_the_same_traces(read_once, tmp_path, fmt, style):
    before = _traces(read_once)
    assert any(t["context"] for t in before.values())  # multi-turn rows are in the set
    run_stage("export", [str(read_once)], tmp_path / "sft", {"format": fmt, "think-style": style})
    run_stage("read", [str(tmp_path / "sft")], tmp_path / "again")
    after = _traces(tmp_path / "again")
    exported = read_output(tmp_path / "sft").num_rows
    if style == "none":  # a text holding another style's marker reads back as that style's
        markers = [m for ms in F.MARKERS.values() for m in ms]
        ambiguous = {i for i, t in before.items()
                     if any(m in t[k] for m in markers for k in ("question", "response"))}
        exported -= len(ambiguous)
        after = {i: t for i, t in after.items() if i not in ambiguous}
    assert len(after) == exported > 0.9 * len(before)
    for i, t in after.items():
        want = dict(before[i])
        if style == "none":
            want["trajectory"] = ""  # that style drops the thinking on purpose
        assert t == want, (i, fmt, style)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40),
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=60),
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=60)),
    min_size=1, max_size=6), st.sampled_from(F.FORMATS), st.sampled_from(["r1", "s1"]))
def test_round_trip_of_arbitrary_text(tmp_path_factory, rows, fmt, style):
    rows = [(q.strip() or "q", t.strip(), r.strip() or "r") for q, t, r in rows]
    rows = [(q, t, r) for q, t, r in rows
            if not any(m in x for x in (q, t, r) for mk in F.MARKERS.values() for m in mk)
            and "<" not in q + t + r]
    if not rows:
        return
    tmp = tmp_path_factory.mktemp("rt")
    src = tmp / "in.parquet"
    pq.write_table(pa.Table.from_pylist([
        {"id": f"r{i}", "question": q, "trajectory": t, "response": r}
        for i, (q, t, r) in enumerate(rows)]), src)
    run_stage("export", [str(src)], tmp / "sft", {"format": fmt, "think-style": style})
    run_stage("read", [str(tmp / "sft")], tmp / "back")
    got = _traces(tmp / "back")
    assert {i: (t["question"], t["trajectory"], t["response"]) for i, t in got.items()} == {
        f"r{i}": row for i, row in enumerate(rows)}


# --- TRL's standard formats ----------------------------------------------------------------------

def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _one(cli, path, tmp_path) -> dict:
    r = cli("read", path, "-o", tmp_path / "out", "--json")
    assert r.exit_code == 0, r.stderr
    rows = read_output(tmp_path / "out").to_pylist()
    assert len(rows) == 1
    return rows[0]


@pytest.mark.parametrize("record", [
    {"messages": [{"role": "user", "content": "Q?"},
                  {"role": "assistant", "content": "A.", "reasoning_content": "T."}]},
    {"messages": [{"role": "user", "content": "Q?"},
                  {"role": "assistant", "content": "<think>\nT.\n</think>\n\nA."}]},
    {"prompt": [{"role": "user", "content": "Q?"}],
     "completion": [{"role": "assistant", "content": "<think>T.</think>A."}]},
    {"prompt": [{"role": "user", "content": "Q?"}],
     "completion": [{"role": "assistant", "content": "A.", "reasoning_content": "T."}]},
    {"prompt": "Q?", "completion": "<think>T.</think> A."},
])
def test_trl_formats_read_into_question_thinking_response(cli, tmp_path, record):
    row = _one(cli, _jsonl(tmp_path / "trl.jsonl", [record]), tmp_path)
    assert (row["question"], row["trajectory"], row["response"]) == ("Q?", "T.", "A.")


def test_trl_prompt_completion_keeps_the_prompts_conversation_as_context(cli, tmp_path):
    record = {"prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q?"},
                         {"role": "assistant", "content": "earlier"},
                         {"role": "user", "content": "Q2?"}],
              "completion": [{"role": "assistant", "content": "<think>T</think>A"}]}
    row = _one(cli, _jsonl(tmp_path / "pc.jsonl", [record]), tmp_path)
    assert (row["question"], row["trajectory"], row["response"]) == ("Q2?", "T", "A")
    assert [(m["role"], m["content"]) for m in row["context"]] == [
        ("system", "S"), ("user", "Q?"), ("assistant", "earlier"), ("user", "Q2?")]


# --- conversations keep their context -------------------------------------------------------------

def _records(folder: Path) -> list[dict]:
    return read_output(folder).to_pylist()


@pytest.mark.parametrize("path", [pytest.param(LF_RAW, marks=needs_shared), LF_SAMPLE])
def test_a_record_citing_a_tool_result_has_that_result_in_its_prompt(tmp_path, path):
    run_stage("read", [str(path)], tmp_path / "read")
    traces = _records(tmp_path / "read")
    later = [t for t in traces if t["turn_index"] >= 3]
    assert later and all(t["context"] for t in later)
    for fmt in F.FORMATS:
        out = tmp_path / fmt
        run_stage("export", [str(tmp_path / "read")], out, {"format": fmt})
        checked = 0
        for rec in _records(out):
            if fmt == "messages":
                prompt, answer = rec["messages"][:-1], rec["messages"][-1]["content"]
                tools = [m["content"] for m in prompt if m["role"] == "tool"]
            elif fmt == "prompt-completion":
                prompt, answer = rec["prompt"], rec["completion"][0]["content"]
                tools = [m["content"] for m in prompt if m["role"] == "tool"]
            else:
                prompt, answer = rec["conversations"][:-1], rec["conversations"][-1]["value"]
                tools = [m["value"] for m in prompt if m["from"] == "observation"]
            # every number the answer cites from a tool result is in a tool result it was shown
            for result in tools:
                numbers = [x for x in json.dumps(json.loads(result)).replace(",", " ").split()
                           if x.replace(".", "", 1).isdigit() and "." in x]
                for x in numbers:
                    if x in answer:
                        checked += 1
            if rec.get("tools") is not None:
                assert isinstance(json.loads(rec["tools"]), list)
        assert checked > 0, fmt  # the set has answers that cite tool results


@needs_shared
def test_the_square_meters_record_is_trained_with_its_tool_result(tmp_path):
    # The example: an answer quoting 19.63, 50.27 and 95.03 square meters, numbers that
    # exist only in the tool message before it.
    run_stage("read", [str(LF_RAW)], tmp_path / "read")
    run_stage("export", [str(tmp_path / "read")], tmp_path / "sft")
    hits = [r for r in _records(tmp_path / "sft")
            if "95.03" in r["messages"][-1]["content"]]
    assert hits
    for r in hits:
        prompt = r["messages"][:-1]
        assert any(m["role"] == "tool" and "95.03" in m["content"] for m in prompt)
        assert prompt[0]["role"] == "system" and json.loads(r["tools"])


def test_export_of_a_multi_turn_row_renders_under_a_chat_template_with_tools(tmp_path,
                                                                              tiny_causal_lm):
    from curate.validate import checks as C

    run_stage("read", [str(LF_SAMPLE)], tmp_path / "read")
    run_stage("export", [str(tmp_path / "read")], tmp_path / "sft")
    tok = C.load_student_tokenizer(str(tiny_causal_lm))
    examples = [e for split in C.read_export(str(tmp_path / "sft")).values() for e in split]
    assert any(e.tools for e in examples)
    ok, summary = C.check_examples(examples, tok, 4096)
    assert all(ok), summary["fault_ids"]
    multi = next(e for e in examples if any(m["role"] == "tool" for m in e.prompt))
    text = tok.apply_chat_template(multi.prompt, tools=multi.tools, tokenize=False)
    assert "<tools>" in text and "<tool_response>" in text
