"""Presets and the reader: shapes users bring, column mapping, optional columns (hypothesis)."""

import json
import re
import unicodedata

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import manifest, read_dropped, read_output
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curate.errors import RowError
from curate.io.presets import Tags, conversation_rows, split_tagged

R1 = Tags("<think>", "</think>")


# --- pure functions ------------------------------------------------------------------------------


def test_split_tagged_r1_forms():
    assert split_tagged("<think>\nA\n\nB\n</think>\n\nAnswer 4", R1) == ("A\n\nB", "Answer 4")
    # R1-distill: <think> was in the prompt, the output starts inside the thought
    assert split_tagged("A\n</think>\nfinal", R1) == ("A", "final")
    assert split_tagged("no thinking here", R1) == ("", "no thinking here")
    with pytest.raises(RowError) as e:
        split_tagged("<think>cut at the length cap", R1)
    assert e.value.reason == "unclosed_thinking"


def test_split_tagged_with_answer_markers():
    ot = Tags("<|begin_of_thought|>", "<|end_of_thought|>", "<|begin_of_solution|>",
              "<|end_of_solution|>")
    text = "<|begin_of_thought|>\n\nt1\n\nt2\n\n<|end_of_thought|>\n\n" \
           "<|begin_of_solution|>\n\nS\n\n<|end_of_solution|>"
    assert split_tagged(text, ot) == ("t1\n\nt2", "S")
    # a missing closing answer marker: the answer runs to the end
    assert split_tagged("<|begin_of_thought|>t<|end_of_thought|><|begin_of_solution|>S", ot) \
        == ("t", "S")


def test_tags_parse():
    assert Tags.parse("<a>,</a>") == Tags("<a>", "</a>")
    assert Tags.parse("<a>,</a>,<b>,</b>").answer_close == "</b>"
    assert Tags.parse("<a>,</a>,<b>,</b>").spec() == "<a>,</a>,<b>,</b>"


def test_conversation_shapes():
    sharegpt = [{"from": "human", "value": "Q"},
                {"from": "gpt", "value": "<|begin_of_thought|>T<|end_of_thought|>"
                                         "<|begin_of_solution|>A<|end_of_solution|>"}]
    ot = Tags("<|begin_of_thought|>", "<|end_of_thought|>", "<|begin_of_solution|>",
              "<|end_of_solution|>")
    assert conversation_rows(sharegpt, ot) == [(1, "Q", "T", "A", None)]
    rc = [{"role": "user", "content": "Q"},
          {"role": "assistant", "content": "A", "reasoning_content": "T"}]
    assert conversation_rows(rc, R1) == [(1, "Q", "T", "A", None)]
    typed = [{"role": "system", "content": [{"type": "text", "value": "S"}]},
             {"role": "user", "content": [{"type": "text", "value": "Q"}]},
             {"role": "assistant", "content": [{"type": "reasoning", "value": "T"},
                                               {"type": "text", "value": "A"}]}]
    system_and_user = [{"role": "system", "content": "S", "reasoning": None},
                       {"role": "user", "content": "Q", "reasoning": None}]
    assert conversation_rows(typed, R1) == [(2, "Q", "T", "A", system_and_user)]
    plain = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]
    assert conversation_rows(plain, R1) == [(1, "Q", "", "A", None)]
    for bad, reason in (([], "empty_conversation"),
                        ([{"role": "user", "content": "Q"}], "no_assistant_turn"),
                        ([{"role": "assistant", "content": "<think>x</think>A"}], "no_user_turn")):
        with pytest.raises(RowError) as e:
            conversation_rows(bad, R1)
        assert e.value.reason == reason


# --- presets end to end through the CLI --------------------------------------------------------


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _ok(cli, *args):
    r = cli("read", *args, "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_s1k_presets(cli, tmp_path):
    s1k = [{"question": "Q1", "thinking_trajectories": ["t1\n\nt2"], "attempt": "A1",
            "solution": "S1", "cot_type": "math"}]
    pq.write_table(pa.Table.from_pylist(s1k), tmp_path / "s1k.parquet")
    s = _ok(cli, tmp_path / "s1k.parquet", "-o", tmp_path / "a")
    assert list(s["presets"].values()) == ["s1k"]
    row = read_output(tmp_path / "a").to_pylist()[0]
    assert (row["question"], row["trajectory"], row["response"], row["reference_answer"]) == \
        ("Q1", "t1\n\nt2", "A1", "S1")
    assert row["cot_type"] == "math" and "thinking_trajectories" not in row

    s11 = [{"question": "Q", "deepseek_thinking_trajectory": "dt", "deepseek_attempt": "da",
            "gemini_thinking_trajectory": "gt", "gemini_attempt": "ga", "solution": "S"}]
    pq.write_table(pa.Table.from_pylist(s11), tmp_path / "s11.parquet")
    s = _ok(cli, tmp_path / "s11.parquet", "-o", tmp_path / "b")
    assert list(s["presets"].values()) == ["s1k-1.1"]
    row = read_output(tmp_path / "b").to_pylist()[0]
    assert (row["trajectory"], row["response"]) == ("dt", "da")
    assert row["gemini_attempt"] == "ga"  # columns the preset does not consume are kept


def test_openthoughts_preset(cli, tmp_path):
    rows = [{"system": "sys", "conversations": [
        {"from": "user", "value": "What is 2+2?"},
        {"from": "assistant", "value": "<|begin_of_thought|>\n\nadd\n\nfour\n\n"
                                       "<|end_of_thought|>\n\n<|begin_of_solution|>\n\n4\n\n"
                                       "<|end_of_solution|>"}]}]
    _write_jsonl(tmp_path / "ot.jsonl", rows)
    s = _ok(cli, tmp_path / "ot.jsonl", "-o", tmp_path / "o")
    assert list(s["presets"].values()) == ["openthoughts"]
    row = read_output(tmp_path / "o").to_pylist()[0]
    assert (row["question"], row["trajectory"], row["response"]) == \
        ("What is 2+2?", "add\n\nfour", "4")
    # the system prompt OpenThoughts trains with is part of the conversation: the context
    assert row["context"] == [{"role": "system", "content": "sys", "reasoning": None},
                              {"role": "user", "content": "What is 2+2?", "reasoning": None}]
    assert "system" not in row


def test_r1_flat_file_with_canonical_names_is_split(cli, tmp_path):
    rows = [{"question": "Q", "response": "<think>\nT\n</think>\n\nA"}]
    _write_jsonl(tmp_path / "flat.jsonl", rows)
    s = _ok(cli, tmp_path / "flat.jsonl", "-o", tmp_path / "o")
    assert list(s["presets"].values()) == ["tags"]
    row = read_output(tmp_path / "o").to_pylist()[0]
    assert (row["trajectory"], row["response"]) == ("T", "A")


def test_map_renames_then_detects(cli, tmp_path):
    rows = [{"prompt_text": "Q", "thoughts": "T", "final": "A"}]
    _write_jsonl(tmp_path / "x.jsonl", rows)
    r = cli("read", tmp_path / "x.jsonl", "-o", tmp_path / "o")
    assert r.exit_code == 2
    assert "prompt_text" in r.stderr and "--map" in r.stderr
    s = _ok(cli, tmp_path / "x.jsonl", "-o", tmp_path / "o", "--map", "question=prompt_text",
            "--map", "trajectory=thoughts", "--map", "response=final")
    assert list(s["presets"].values()) == ["canonical"]
    row = read_output(tmp_path / "o").to_pylist()[0]
    assert (row["question"], row["trajectory"], row["response"]) == ("Q", "T", "A")


def test_tags_preset_with_custom_markers(cli, tmp_path):
    rows = [{"instruction": "Q", "output": "<reason>R1\n\nR2</reason><final>F</final>"}]
    _write_jsonl(tmp_path / "x.jsonl", rows)
    s = _ok(cli, tmp_path / "x.jsonl", "-o", tmp_path / "o", "--preset", "tags",
            "--think-tags", "<reason>,</reason>,<final>,</final>")
    row = read_output(tmp_path / "o").to_pylist()[0]
    assert (row["question"], row["trajectory"], row["response"]) == ("Q", "R1\n\nR2", "F")
    assert s["rows_with_thinking"] == 1


# --- any combination of optional columns (hypothesis) -------------------------------------------

OPTIONAL = ("id", "trajectory", "reference_answer", "source", "trajectory_steps",
            "response_steps", "extra_int", "extra_nested")
# Texts read keeps: a visible character, no C0 control character but tab, newline and CR
# (those rows are dropped, and tested in tests/test_read_faults.py).
word = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1,
               max_size=8).filter(lambda s: s.strip() and not re.search(
                   "[\x00-\x08\x0b\x0c\x0e-\x1f]", s) and any(
                   unicodedata.category(c)[0] not in "CZ" for c in s))


@st.composite
def datasets(draw):
    present = draw(st.sets(st.sampled_from(OPTIONAL)))
    n = draw(st.integers(1, 6))
    rows = []
    for i in range(n):
        row = {"question": f"{draw(word)} #{i}", "response": draw(word)}
        if "id" in present:
            row["id"] = f"row/{i}"  # path-like ids are legitimate
        if "trajectory" in present:
            row["trajectory"] = draw(st.one_of(st.none(), word))
        if "reference_answer" in present:
            row["reference_answer"] = draw(st.one_of(st.none(), word))
        if "source" in present:
            row["source"] = draw(st.one_of(st.none(), word))
        if "trajectory_steps" in present:
            row["trajectory_steps"] = draw(st.one_of(st.none(), st.lists(word, max_size=3)))
        if "response_steps" in present:
            row["response_steps"] = draw(st.one_of(st.none(), st.lists(word, max_size=3)))
        if "extra_int" in present:
            row["extra_int"] = draw(st.integers(-5, 5))
        if "extra_nested" in present:
            row["extra_nested"] = {"k": draw(st.lists(st.integers(0, 3), max_size=2))}
        rows.append(row)
    return present, rows, draw(st.sampled_from(["parquet", "jsonl"]))


@settings(deadline=None, max_examples=40,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(datasets())
def test_reader_keeps_every_value_whatever_columns_are_present(cli, tmp_path_factory, data):
    present, rows, fmt = data
    tmp = tmp_path_factory.mktemp("r")
    path = tmp / f"in.{fmt}"
    table = pa.Table.from_pylist(rows)
    if fmt == "parquet":
        pq.write_table(table, path)
    else:
        _write_jsonl(path, rows)
    r = cli("read", path, "-o", tmp / "out", "--json")
    assert r.exit_code == 0, r.output
    out = read_output(tmp / "out").to_pylist()
    assert len(out) == len(rows)
    for src, got in zip(rows, out, strict=True):
        assert got["question"] == src["question"] and got["response"] == src["response"]
        assert got["trajectory"] == (src.get("trajectory") or "")
        assert got["reference_answer"] == src.get("reference_answer")
        assert got["source"] == (src.get("source") or path.name)
        for col in ("trajectory_steps", "response_steps"):
            if col in present:
                assert got[col] == src[col]
            else:
                assert col not in got  # never invented by read
        if "id" in present:
            assert got["id"] == src["id"]
        else:
            assert got["id"].startswith("h") and len(got["id"]) == 25
        for col in ("extra_int", "extra_nested"):
            if col in present:
                assert got[col] == src[col]
    m = manifest(tmp / "out")
    assert m["counts"] == {"rows_in": len(rows), "rows_out": len(rows), "dropped": {}}
    assert {f["name"] for f in m["schema"]} == set(out[0])
    assert read_dropped(tmp / "out") is None


def test_identical_traces_without_ids_keep_the_first(cli, tmp_path):
    rows = [{"question": "Q", "response": "A"}, {"question": "Q2", "response": "A"},
            {"question": "Q", "response": "A"}]
    _write_jsonl(tmp_path / "x.jsonl", rows)
    s = _ok(cli, tmp_path / "x.jsonl", "-o", tmp_path / "o")
    assert s["rows_out"] == 2 and s["dropped"] == {"duplicate_content": 1}
    d = read_dropped(tmp_path / "o").to_pylist()
    assert d[0]["input_row"] == 2 and "row 0" in d[0]["drop_value"]
    assert d[0]["id"] == read_output(tmp_path / "o").to_pylist()[0]["id"]


def test_steps_column_of_only_empty_lists_is_accepted(cli, tmp_path):
    # pyarrow infers list<null> for it; found by the property test above on a fresh machine
    rows = [{"question": "Q", "response": "A", "trajectory_steps": []}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "x.parquet")
    _ok(cli, tmp_path / "x.parquet", "-o", tmp_path / "o")
    assert read_output(tmp_path / "o").to_pylist()[0]["trajectory_steps"] == []


def test_blank_means_what_python_calls_whitespace(cli, tmp_path):
    rows = [{"question": "Q", "response": "\x0b\u3000\x85"}, {"question": "Q", "response": "ok"}]
    _write_jsonl(tmp_path / "x.jsonl", rows)
    s = _ok(cli, tmp_path / "x.jsonl", "-o", tmp_path / "o")
    assert s["dropped"] == {"empty_response": 1} and all(not c.strip() for c in rows[0]["response"])
