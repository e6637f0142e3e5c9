"""`curate read` on bad input: one clear line on stderr, exit 2, nothing that looks complete.

Every input is built in tmp_path by the test itself (no shared data). Per-row faults (empty
question/response, unclosed thinking, a repeated id with --dedupe-ids) are not errors: the row
goes to dropped/ with a reason and the run goes on.
"""

import json
import os
import re
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import manifest, read_dropped, read_output

# --- helpers ------------------------------------------------------------------------------------


def write_parquet(path: Path, rows: dict, **kw) -> Path:
    pq.write_table(pa.table(rows), path, **kw)
    return path


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def good_rows(n: int = 3) -> dict:
    return {"id": [f"r{i}" for i in range(n)],
            "question": [f"What is {i} + {i}?" for i in range(n)],
            "response": [f"It is {2 * i}." for i in range(n)]}


def leftovers(out: Path) -> list[str]:
    """Hidden temp / old siblings a run may leave beside OUT."""
    return sorted(p.name for p in out.parent.glob(f".{out.name}.curate-*"))


def assert_nothing_written(out: Path) -> None:
    assert not (out / "_manifest.json").exists(), f"{out} looks complete after a failed run"
    assert not out.exists() or not any(out.iterdir()), f"{out} holds files after a failed run"
    assert leftovers(out) == [], f"temp folders left beside {out}"


def assert_bad_input(r, out: Path, *needles: str) -> str:
    """Exit 2, exactly one `error: ...` line on stderr naming every needle, nothing written."""
    assert r.exit_code == 2, (r.exit_code, r.output)
    assert "Traceback" not in r.output and "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    msg = lines[0]
    assert msg.startswith("error: "), msg
    assert "internal error" not in msg, msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    assert r.stdout == "", r.stdout
    assert_nothing_written(out)
    return msg


def assert_ok(r) -> None:
    assert r.exit_code == 0, (r.exit_code, r.output)
    assert "Traceback" not in r.output


# --- 1. missing file ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["missing.parquet", "missing.jsonl", "nofolder"])
def test_missing_input(cli, tmp_path, name):
    out = tmp_path / "out"
    r = cli("read", tmp_path / name, "-o", out)
    assert_bad_input(r, out, name, "no such file")


def test_missing_one_of_several_inputs_writes_nothing(cli, tmp_path):
    good = write_parquet(tmp_path / "good.parquet", good_rows())
    out = tmp_path / "out"
    r = cli("read", good, tmp_path / "gone.parquet", "-o", out)
    assert_bad_input(r, out, "gone.parquet", "no such file")


# --- 2. empty file ------------------------------------------------------------------------------


@pytest.mark.parametrize("name,content", [
    ("empty.parquet", b""),
    ("empty.jsonl", b""),
    ("blank.jsonl", b"\n  \n\n"),
    ("empty.json", b""),
    ("list.json", b"[]"),
    ("spaced.json", b"  [ ]\n"),
])
def test_empty_file(cli, tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    out = tmp_path / "out"
    r = cli("read", tmp_path / name, "-o", out)
    assert_bad_input(r, out, name, "empty")


def test_parquet_with_schema_but_no_rows(cli, tmp_path):
    src = write_parquet(tmp_path / "norows.parquet", {"question": pa.array([], pa.string()),
                                                     "response": pa.array([], pa.string())})
    out = tmp_path / "out"
    r = cli("read", src, "-o", out)
    assert_bad_input(r, out, "norows.parquet", "no rows")


# --- 3. not Parquet / JSON ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["traces.xlsx", "notes.txt", "data.parquet.bak"])
def test_unsupported_extension(cli, tmp_path, name):
    # .csv/.tsv are inputs now (tests/test_sources.py)
    (tmp_path / name).write_text("question,response\nq,r\n")
    out = tmp_path / "out"
    r = cli("read", tmp_path / name, "-o", out)
    assert_bad_input(r, out, name, "not a Parquet, JSON or CSV file")


def test_text_named_parquet(cli, tmp_path):
    src = tmp_path / "fake.parquet"
    src.write_text("question,response\nwhat is 1+1?,2\n" * 20)
    out = tmp_path / "out"
    r = cli("read", src, "-o", out)
    assert_bad_input(r, out, "fake.parquet", "not a readable Parquet file")


@pytest.mark.parametrize("name,text,needle", [
    ("prose.jsonl", "this is not json\n", "line 1: not valid JSON"),
    ("prose.json", "this is not json either\n", "line 1: not valid JSON"),
    ("broken.json", '[\n{"question": "q", "response": "r"},\n{"question": \n', "line 4"),
    ("later.jsonl", '{"question": "q", "response": "r"}\n{"question": "q2", oops}\n',
     "line 2: not valid JSON"),
    ("scalars.jsonl", "1\n2\n", "expected a JSON object"),
    ("object.json", json.dumps({"question": "q", "response": "r"}, indent=2), "line 1"),
])
def test_text_that_is_not_json_records(cli, tmp_path, name, text, needle):
    (tmp_path / name).write_text(text)
    out = tmp_path / "out"
    r = cli("read", tmp_path / name, "-o", out)
    assert_bad_input(r, out, name, needle)


# --- 4. truncated / corrupt Parquet -------------------------------------------------------------


def several_row_groups(path: Path, n: int = 400, compression: str = "zstd") -> bytes:
    rows = {"id": [f"i{i}" for i in range(n)],
            "question": [f"question number {i} " * 3 for i in range(n)],
            "response": [f"response {i} " * 5 for i in range(n)]}
    pq.write_table(pa.table(rows), path, row_group_size=50, compression=compression)
    assert pq.ParquetFile(path).metadata.num_row_groups == n // 50
    return path.read_bytes()


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.999])
def test_truncated_parquet(cli, tmp_path, keep):
    src = tmp_path / "cut.parquet"
    data = several_row_groups(src)
    src.write_bytes(data[: int(len(data) * keep)])
    out = tmp_path / "out"
    r = cli("read", src, "-o", out)
    assert_bad_input(r, out, "cut.parquet", "not a readable Parquet file")


def test_corrupt_parquet_footer_magic(cli, tmp_path):
    src = tmp_path / "bad.parquet"
    data = bytearray(several_row_groups(src))
    data[-4:] = b"XXXX"
    src.write_bytes(bytes(data))
    out = tmp_path / "out"
    r = cli("read", src, "-o", out)
    assert_bad_input(r, out, "bad.parquet", "not a readable Parquet file", "magic")


def test_corrupt_parquet_footer_length(cli, tmp_path):
    src = tmp_path / "bad.parquet"
    data = bytearray(several_row_groups(src))
    data[-8:-4] = (10**9).to_bytes(4, "little")
    src.write_bytes(bytes(data))
    out = tmp_path / "out"
    r = cli("read", src, "-o", out)
    assert_bad_input(r, out, "bad.parquet", "not a readable Parquet file")


@pytest.mark.parametrize("compression", ["zstd", "snappy", "none"])
@pytest.mark.parametrize("where", [0.3, 0.45, 0.6, 0.75])
def test_corrupt_parquet_middle(cli, tmp_path, compression, where):
    """Bytes flipped inside the row groups: pyarrow may or may not notice (raw string data can
    be read back changed), but the run ends cleanly: exit 2 naming the file, or exit 0."""
    src = tmp_path / "flip.parquet"
    data = bytearray(several_row_groups(src, compression=compression))
    start = int(len(data) * where)
    for k in range(16):
        data[start + k] ^= 0xFF
    src.write_bytes(bytes(data))
    out = tmp_path / "out"
    r = cli("read", src, "-o", out)
    assert r.exit_code in (0, 2), (r.exit_code, r.output)
    assert "Traceback" not in r.output
    if r.exit_code == 2:
        assert_bad_input(r, out, "flip.parquet", "Parquet")
    else:
        assert (out / "_manifest.json").is_file()
        assert leftovers(out) == []


def test_corrupt_later_row_group_removes_partial_output(cli, tmp_path):
    """A compressed page broken in the last row group fails after earlier batches were written:
    the temp folder must go and OUT must not appear."""
    src = tmp_path / "late.parquet"
    data = bytearray(several_row_groups(src, compression="zstd"))
    md = pq.ParquetFile(src).metadata
    last = md.row_group(md.num_row_groups - 1).column(1)  # 'question' of the last group
    start = last.data_page_offset + 8
    for k in range(16):
        data[start + k] ^= 0xFF
    src.write_bytes(bytes(data))
    out = tmp_path / "out"
    r = cli("read", src, "-o", out, "--batch-rows", "50")
    assert_bad_input(r, out, "late.parquet", "corrupt Parquet data")


# --- 5. required column missing after mapping ---------------------------------------------------


def test_no_preset_fits(cli, tmp_path):
    src = write_parquet(tmp_path / "foobar.parquet", {"foo": [1, 2], "bar": ["x", "y"]})
    out = tmp_path / "out"
    r = cli("read", src, "-o", out)
    assert_bad_input(r, out, "foobar.parquet", "no preset fits", "canonical", "s1k-1.1",
                     "openthoughts", "r1", "steps", "tags", "columns: foo, bar", "--map")


def test_no_preset_fits_jsonl(cli, tmp_path):
    src = write_jsonl(tmp_path / "odd.jsonl", [{"prompt_text": "q", "reply": "r"}])
    out = tmp_path / "out"
    r = cli("read", src, "-o", out)
    assert_bad_input(r, out, "odd.jsonl", "no preset fits", "prompt_text", "reply", "--map")


@pytest.mark.parametrize("preset,needs", [
    ("s1k", ["thinking_trajectories", "attempt"]),
    ("s1k-1.1", ["deepseek_thinking_trajectory", "deepseek_attempt"]),
    ("openthoughts", ["conversations"]),
    ("r1", ["messages"]),
    ("steps", ["steps"]),
])
def test_preset_that_does_not_fit(cli, tmp_path, preset, needs):
    src = write_parquet(tmp_path / "canon.parquet", good_rows())
    out = tmp_path / "out"
    r = cli("read", src, "-o", out, "--preset", preset)
    assert_bad_input(r, out, "canon.parquet", f"--preset {preset}", "does not fit", "needs",
                     "columns: id, question, response", *needs)


def test_map_names_a_missing_column(cli, tmp_path):
    src = write_parquet(tmp_path / "canon.parquet", {"prompt": ["q"], "completion": ["r"]})
    out = tmp_path / "out"
    r = cli("read", src, "-o", out, "--map", "question=prompt", "--map", "response=answer_text")
    assert_bad_input(r, out, "canon.parquet", "--map response=answer_text",
                     "no column 'answer_text'", "prompt", "completion")


def test_map_onto_an_existing_canonical_column(cli, tmp_path):
    src = write_parquet(tmp_path / "both.parquet", {"question": ["q"], "prompt": ["p"],
                                                   "response": ["r"]})
    out = tmp_path / "out"
    r = cli("read", src, "-o", out, "--map", "question=prompt")
    assert_bad_input(r, out, "both.parquet", "--map question=prompt", "already has a column")


# --- 6. wrong column type -----------------------------------------------------------------------


@pytest.mark.parametrize("column,values,typename", [
    pytest.param("question", [1, 2], "int64", id="question-int"),
    pytest.param("response", [1.5, 2.5], "double", id="response-float"),
    pytest.param("question", [{"text": "a"}, {"text": "b"}], "struct", id="question-struct"),
    pytest.param(
        "question", [["What is", "1 + 1?"], ["What is", "2 + 2?"]], "list<", id="question-list"),
])
def test_wrong_column_type(cli, tmp_path, column, values, typename):
    rows = {"question": ["q1", "q2"], "response": ["r1", "r2"]}
    rows[column] = values
    src = write_parquet(tmp_path / "typed.parquet", rows)
    out = tmp_path / "out"
    r = cli("read", src, "-o", out)
    assert_bad_input(r, out, "typed.parquet", f"column '{column}'", typename)


# --- 7. empty question / response: dropped, not an error ----------------------------------------


def _rows_with_blanks() -> list[dict]:
    return [
        {"id": "ok0", "question": "q0", "response": "r0"},
        {"id": "nullq", "question": None, "response": "r1"},
        {"id": "blankq", "question": "  \n\t", "response": "r2"},
        {"id": "ok3", "question": "q3", "response": "r3"},
        {"id": "nullr", "question": "q4", "response": None},
        {"id": "emptyr", "question": "q5", "response": ""},
        {"id": "wsr", "question": "q6", "response": "\u00a0\u3000 "},
        {"id": "ok7", "question": "q7", "response": "r7"},
    ]


EXPECTED_DROPS = [("nullq", "empty_question", 1), ("blankq", "empty_question", 2),
                  ("nullr", "empty_response", 4), ("emptyr", "empty_response", 5),
                  ("wsr", "empty_response", 6)]


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "json"])
@pytest.mark.parametrize("batch_rows", ["2048", "3"])
def test_empty_question_or_response_rows_are_dropped(cli, tmp_path, fmt, batch_rows):
    rows = _rows_with_blanks()
    src = tmp_path / f"blanks.{fmt}"
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), src)
    elif fmt == "jsonl":
        write_jsonl(src, rows)
    else:
        src.write_text(json.dumps(rows, indent=1))
    out = tmp_path / "out"
    r = cli("read", src, "-o", out, "--batch-rows", batch_rows)
    assert_ok(r)
    assert read_output(out).column("id").to_pylist() == ["ok0", "ok3", "ok7"]
    dropped = read_dropped(out).to_pylist()
    got = sorted((d["id"], d["drop_reason"], d["input_row"]) for d in dropped)
    assert got == sorted(EXPECTED_DROPS)
    assert {d["input_file"] for d in dropped} == {str(src)}
    counts = manifest(out)["counts"]
    assert counts["rows_in"] == 8 and counts["rows_out"] == 3
    assert counts["dropped"] == {"empty_question": 2, "empty_response": 3}
    assert leftovers(out) == []


def test_every_row_empty_is_an_error(cli, tmp_path):
    src = write_jsonl(tmp_path / "allblank.jsonl", [{"question": "", "response": "r"},
                                                    {"question": "q", "response": None}])
    out = tmp_path / "out"
    r = cli("read", src, "-o", out)
    assert_bad_input(r, out, "allblank.jsonl", "no row survived")


# --- 8. non-UTF-8 bytes -------------------------------------------------------------------------


@pytest.mark.parametrize("name,data", [
    ("latin1.jsonl", b'{"question": "a", "response": "b"}\n{"question": "c", "response": "d"}\n'
                     b'{"question": "caf\xe9", "response": "e"}\n'),
    ("crlf.jsonl", b'{"question": "a", "response": "b"}\r\n\r\n'
                   b'{"question": "\xff\xfe", "response": "e"}\r\n'),
    ("lines.json", b'{"question": "a", "response": "b"}\n{"question": "c", "response": "d"}\n'
                   b'{"question": "x", "response": "\xc3\x28"}\n'),
    ("list.json", b'[\n{"question": "a", "response": "b"},\n{"question": "caf\xe9", '
                  b'"response": "e"}\n]\n'),
])
def test_non_utf8_names_the_line(cli, tmp_path, name, data):
    (tmp_path / name).write_bytes(data)
    out = tmp_path / "out"
    r = cli("read", tmp_path / name, "-o", out)
    assert_bad_input(r, out, name, "line 3", "UTF-8")


# --- 9. existing output folder ------------------------------------------------------------------


def test_refuses_a_foreign_non_empty_folder(cli, tmp_path):
    src = write_parquet(tmp_path / "in.parquet", good_rows())
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.tex").write_text("months of work")
    r = cli("read", src, "-o", out)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "out" in lines[0] and "not a curate output" in lines[0] and "--overwrite" in lines[0]
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]
    assert (out / "thesis.tex").read_text() == "months of work"
    assert leftovers(out) == []

    r = cli("read", src, "-o", out, "--overwrite")
    assert_ok(r)
    assert not (out / "thesis.tex").exists()
    assert manifest(out)["curate"]["stage"] == "read"
    assert read_output(out).column("id").to_pylist() == ["r0", "r1", "r2"]
    assert leftovers(out) == []


def test_empty_existing_folder_is_fine(cli, tmp_path):
    src = write_parquet(tmp_path / "in.parquet", good_rows())
    out = tmp_path / "out"
    out.mkdir()
    assert_ok(cli("read", src, "-o", out))
    assert manifest(out)["counts"]["rows_out"] == 3


def test_output_path_is_a_file(cli, tmp_path):
    src = write_parquet(tmp_path / "in.parquet", good_rows())
    out = tmp_path / "out"
    out.write_text("a file")
    r = cli("read", src, "-o", out)
    assert r.exit_code == 2 and len(r.stderr.splitlines()) == 1, r.output
    assert "out" in r.stderr and "is a file" in r.stderr
    assert out.read_text() == "a file"
    assert leftovers(out) == []


def test_output_parent_is_a_file(cli, tmp_path):
    src = write_parquet(tmp_path / "in.parquet", good_rows())
    (tmp_path / "afile").write_text("not a folder")
    out = tmp_path / "afile" / "out"
    r = cli("read", src, "-o", out)
    assert_bad_input(r, out, "afile", "parent folder")
    assert (tmp_path / "afile").read_text() == "not a folder"


def test_output_parents_are_created(cli, tmp_path):
    src = write_parquet(tmp_path / "in.parquet", good_rows())
    out = tmp_path / "new" / "deeper" / "out"
    assert_ok(cli("read", src, "-o", out))
    assert manifest(out)["counts"]["rows_out"] == 3
    assert leftovers(out) == []


def test_replaces_an_earlier_read_output_without_overwrite(cli, tmp_path):
    first = write_parquet(tmp_path / "first.parquet", good_rows(3))
    second = write_parquet(tmp_path / "second.parquet",
                           {"id": ["s0", "s1"], "question": ["a", "b"], "response": ["c", "d"]})
    out = tmp_path / "out"
    assert_ok(cli("read", first, "-o", out))
    assert read_output(out).num_rows == 3
    r = cli("read", second, "-o", out)
    assert_ok(r)
    assert read_output(out).column("id").to_pylist() == ["s0", "s1"]
    assert manifest(out)["inputs"][0]["path"] == str(second)
    assert leftovers(out) == []


def test_refuses_the_output_of_another_stage(cli, tmp_path):
    src = write_parquet(tmp_path / "in.parquet", good_rows())
    out = tmp_path / "out"
    assert_ok(cli("read", src, "-o", out))
    doc = manifest(out)
    doc["curate"]["stage"] = "score"
    (out / "_manifest.json").write_text(json.dumps(doc))
    before = (out / "_manifest.json").read_text()
    r = cli("read", src, "-o", out)
    assert r.exit_code == 2 and len(r.stderr.splitlines()) == 1, r.output
    assert "curate score" in r.stderr and "--overwrite" in r.stderr
    assert (out / "_manifest.json").read_text() == before
    assert_ok(cli("read", src, "-o", out, "--overwrite"))
    assert manifest(out)["curate"]["stage"] == "read"


def test_failed_rerun_keeps_the_previous_output(cli, tmp_path):
    src = write_parquet(tmp_path / "in.parquet", good_rows())
    out = tmp_path / "out"
    assert_ok(cli("read", src, "-o", out))
    before = (out / "_manifest.json").read_text()
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(src.read_bytes()[:100])
    r = cli("read", bad, "-o", out)
    assert r.exit_code == 2 and "bad.parquet" in r.stderr, r.output
    assert (out / "_manifest.json").read_text() == before
    assert read_output(out).num_rows == 3
    assert leftovers(out) == []


# --- 10. ids that look like paths ---------------------------------------------------------------

PATH_IDS = ["../../etc/passwd", "test/precalculus/807.json", "/abs/olute", "..", "a\\b\\c.parquet"]


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_path_like_ids_are_kept_verbatim(cli, tmp_path, fmt):
    rows = [{"id": i, "question": f"q{k}", "response": f"r{k}"} for k, i in enumerate(PATH_IDS)]
    rows.append({"id": PATH_IDS[1], "question": "again", "response": "dup"})
    src = tmp_path / "in" / f"ids.{fmt}"
    src.parent.mkdir()
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), src)
    else:
        write_jsonl(src, rows)
    out = tmp_path / "deep" / "er" / "out"  # so '../..' from OUT would still land in tmp_path
    out.parent.mkdir(parents=True)
    before = {p.relative_to(tmp_path) for p in tmp_path.rglob("*")}

    r = cli("read", src, "-o", out, "--dedupe-ids", "--keep-dropped-rows")
    assert_ok(r)
    assert read_output(out).column("id").to_pylist() == PATH_IDS
    dropped = read_dropped(out).to_pylist()
    assert [(d["id"], d["drop_reason"], d["input_row"]) for d in dropped] == [
        (PATH_IDS[1], "duplicate_id", len(PATH_IDS))]

    created = {p.relative_to(tmp_path) for p in tmp_path.rglob("*")} - before
    allowed = {"out", "_manifest.json", "_dropped", "data"}
    for rel in created:
        assert rel.parts[:3] == ("deep", "er", "out"), f"created outside OUT: {rel}"
        for part in rel.parts[3:]:
            assert part in allowed or (part.startswith(("part-", "train-"))
                                       and part.endswith(".parquet")), f"unexpected file {rel}"
    for p in tmp_path.rglob("*"):
        assert p.name not in {"passwd", "etc", "precalculus", "807.json", "olute", "abs"}, p
    assert not Path("/abs").exists()


# --- 11. duplicate ids --------------------------------------------------------------------------


def test_duplicate_id_is_an_error(cli, tmp_path):
    src = write_parquet(tmp_path / "dups.parquet", {
        "id": ["a-1", "twin-42", "b-2", "twin-42"],
        "question": ["q0", "q1", "q2", "q3"], "response": ["r0", "r1", "r2", "r3"]})
    out = tmp_path / "out"
    r = cli("read", src, "-o", out)
    assert_bad_input(r, out, "dups.parquet", "duplicate id 'twin-42'", "row 3", "row 1",
                     "--dedupe-ids")


def test_duplicate_id_across_batches_and_files(cli, tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{"id": f"x{i}", "question": "q", "response": "r"}
                                           for i in range(5)])
    b = write_jsonl(tmp_path / "b.jsonl", [{"id": "y0", "question": "q", "response": "r"},
                                           {"id": "x3", "question": "q", "response": "r"}])
    out = tmp_path / "out"
    r = cli("read", a, b, "-o", out, "--batch-rows", "2")
    assert_bad_input(r, out, "duplicate id 'x3'", "b.jsonl row 1", "a.jsonl row 3")


def test_identical_rows_without_id_keep_the_first(cli, tmp_path):
    """Without an id column the id is derived from content: a repeat is an identical trace, which
    is dropped as 'duplicate_content' (not an error, and --dedupe-ids is not needed)."""
    src = write_jsonl(tmp_path / "same.jsonl", [{"question": "q", "response": "r"},
                                                {"question": "q2", "response": "r2"},
                                                {"question": "q", "response": "r"}])
    out = tmp_path / "out"
    assert_ok(cli("read", src, "-o", out))
    assert read_output(out).column("question").to_pylist() == ["q", "q2"]
    dropped = read_dropped(out).to_pylist()
    assert [(d["drop_reason"], d["input_row"]) for d in dropped] == [("duplicate_content", 2)]
    assert "row 0" in dropped[0]["drop_value"]


def test_dedupe_ids_drops_the_second_copy(cli, tmp_path):
    src = write_parquet(tmp_path / "dups.parquet", {
        "id": ["a-1", "twin-42", "b-2", "twin-42"],
        "question": ["q0", "first", "q2", "second"], "response": ["r0", "r1", "r2", "r3"]})
    out = tmp_path / "out"
    r = cli("read", src, "-o", out, "--dedupe-ids")
    assert_ok(r)
    kept = read_output(out)
    assert kept.column("id").to_pylist() == ["a-1", "twin-42", "b-2"]
    assert kept.column("question").to_pylist()[1] == "first"
    dropped = read_dropped(out).to_pylist()
    assert len(dropped) == 1
    assert dropped[0]["id"] == "twin-42"
    assert dropped[0]["drop_reason"] == "duplicate_id"
    assert dropped[0]["input_row"] == 3
    assert "row 1" in dropped[0]["drop_value"]
    assert manifest(out)["counts"]["dropped"] == {"duplicate_id": 1}


# --- 12. bad options ----------------------------------------------------------------------------


def opt(args: list[str], needles: list[str], **kw):
    return pytest.param(args, needles, id="_".join(args), **kw)


@pytest.mark.parametrize("args,needles", [
    opt(["--map", "nonsense"], ["--map", "nonsense", "CANONICAL=COLUMN"]),
    opt(["--map", "=col"], ["--map", "CANONICAL=COLUMN"]),
    opt(["--map", "question="], ["--map", "CANONICAL=COLUMN"]),
    opt(["--map", "foo=bar"], ["--map", "foo=bar", "'foo' is not a canonical column"]),
    opt(["--preset", "nope"], ["--preset", "nope", "expected one of", "s1k-1.1"]),
    opt(["--think-tags", "<a>"], ["--think-tags", "<a>", "OPEN,CLOSE"]),
    opt(["--think-tags", "<a>,</a>,<b>"], ["--think-tags", "OPEN,CLOSE"]),
    opt(["--think-tags", "<a>,"], ["--think-tags", "OPEN,CLOSE"]),
    opt(["--limit", "0"], ["--limit", "0", "at least 1"]),
    opt(["--limit", "-5"], ["--limit", "-5", "at least 1"]),
    opt(["--sample", "0"], ["--sample", "at least 1"]),
    opt(["--limit", "1", "--sample", "1"], ["--limit", "--sample"]),
    opt(["--batch-rows", "0"], ["--batch-rows", "at least 1"]),
    opt(["--shard-size", "abc"], ["--shard-size", "abc"]),
    opt(["--shard-size", "10"], ["--shard-size", "too small"]),
])
def test_bad_option(cli, tmp_path, args, needles):
    src = write_parquet(tmp_path / "in.parquet", good_rows())
    out = tmp_path / "out"
    r = cli("read", src, "-o", out, *args)
    assert_bad_input(r, out, *needles)


@pytest.mark.parametrize("size", ["abc", "10", "1.5.3MB"])
def test_bad_shard_size_is_a_clean_input_error(cli, tmp_path, size):
    """What works today for --shard-size: exit 2 with one line naming the bad value."""
    src = write_parquet(tmp_path / "in.parquet", good_rows())
    out = tmp_path / "out"
    r = cli("read", src, "-o", out, "--shard-size", size)
    assert_bad_input(r, out, f"'{size}'")


def test_split_missing_from_saved_dataset_dict(cli, tmp_path):
    d = tmp_path / "dsdict"
    (d / "train").mkdir(parents=True)
    (d / "dataset_dict.json").write_text(json.dumps({"splits": ["train"]}))
    out = tmp_path / "out"
    r = cli("read", d, "-o", out, "--split", "test")
    assert_bad_input(r, out, "dsdict", "no split 'test'", "--split")


# --- 13. hub id, offline ------------------------------------------------------------------------


def test_unknown_hub_dataset_offline(cli, tmp_path, monkeypatch):
    # huggingface_hub and datasets read HF_HUB_OFFLINE when first imported; if another test
    # imported them already, set their flags too (otherwise the lookup retries for ~20 s).
    for mod, attr in (("huggingface_hub.constants", "HF_HUB_OFFLINE"),
                      ("datasets.config", "HF_HUB_OFFLINE")):
        if mod in sys.modules:
            monkeypatch.setattr(sys.modules[mod], attr, True)
    before = os.environ.get("HF_HUB_OFFLINE")
    out = tmp_path / "out"
    r = cli("read", "someone/nonexistent-dataset", "-o", out, env={"HF_HUB_OFFLINE": "1"})
    assert_bad_input(r, out, "someone/nonexistent-dataset", "cannot load hub dataset")
    assert os.environ.get("HF_HUB_OFFLINE") == before  # the run leaves the environment alone


# --- 14. a JSONL field that appears in a later batch, or changes type ----------------------------


def test_jsonl_field_added_after_first_batch(cli, tmp_path):
    # The schema is inferred over the whole file: a late field is read, null before it.
    src = write_jsonl(tmp_path / "drift.jsonl", [
        {"question": "q1", "response": "r1"},
        {"question": "q2", "response": "r2"},
        {"question": "q3", "response": "r3"},
        {"question": "q4", "response": "r4", "model": "late-field"},
    ])
    out = tmp_path / "out"
    r = cli("read", src, "-o", out, "--batch-rows", "2")
    assert_ok(r)
    assert read_output(out).column("model").to_pylist() == [None, None, None, "late-field"]


def test_jsonl_field_changes_type_after_first_batch(cli, tmp_path):
    src = write_jsonl(tmp_path / "types.jsonl", [
        {"question": "q1", "response": "r1", "score": 1.0},
        {"question": "q2", "response": "r2", "score": 2.0},
        {"question": "q3", "response": "r3", "score": "high"},
    ])
    out = tmp_path / "out"
    r = cli("read", src, "-o", out, "--batch-rows", "2")
    msg = assert_bad_input(r, out, "types.jsonl", "change type", "'high'")
    assert re.search(r"\bline 3\b", msg), msg


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_field_missing_from_the_first_record_is_kept(cli, tmp_path, fmt):
    rows = [{"question": "q1", "response": "r1"},
            {"question": "q2", "response": "r2", "model": "m"}]
    src = tmp_path / f"ok.{fmt}"
    if fmt == "jsonl":
        write_jsonl(src, rows)
    else:
        src.write_text(json.dumps(rows))
    out = tmp_path / "out"
    r = cli("read", src, "-o", out, "--batch-rows", "2")
    assert r.exit_code in (0, 2), r.output
    if r.exit_code == 2:  # refusing is acceptable too, if it names the line and field
        assert_bad_input(r, out, "line 2", "model")
    else:
        assert read_output(out).column("model").to_pylist() == [None, "m"]


# --- 15. unclosed thinking ----------------------------------------------------------------------


def _conv(q: str, a: str) -> list[dict]:
    return [{"role": "user", "content": q}, {"role": "assistant", "content": a}]


def test_unclosed_think_in_r1_messages_is_dropped(cli, tmp_path):
    src = write_jsonl(tmp_path / "r1.jsonl", [
        {"id": "m0", "messages": _conv("Q0", "<think>fine</think>A0")},
        {"id": "m1", "messages": _conv("Q1", "<think>cut at the length cap because")},
        {"id": "m2", "messages": _conv("Q2", "<think>also fine</think>A2")},
    ])
    out = tmp_path / "out"
    r = cli("read", src, "-o", out)
    assert_ok(r)
    kept = read_output(out)
    assert kept.column("id").to_pylist() == ["m0", "m2"]
    assert kept.column("trajectory").to_pylist() == ["fine", "also fine"]
    assert kept.column("response").to_pylist() == ["A0", "A2"]
    dropped = read_dropped(out).to_pylist()
    assert [(d["id"], d["drop_reason"], d["input_row"]) for d in dropped] == [
        ("m1", "unclosed_thinking", 1)]
    assert "<think>" in dropped[0]["drop_value"]
    assert manifest(out)["mappings"][str(src)]["preset"] == "r1"


def test_unclosed_think_in_flat_response_is_dropped(cli, tmp_path):
    src = write_parquet(tmp_path / "flat.parquet", {
        "question": ["Q0", "Q1", "Q2", "Q3"],
        "response": ["<think>a</think>A0", "<think>b</think>A1", "<think>never closed",
                     "<think>d</think>A3"]})
    out = tmp_path / "out"
    r = cli("read", src, "-o", out)
    assert_ok(r)
    assert read_output(out).column("question").to_pylist() == ["Q0", "Q1", "Q3"]
    dropped = read_dropped(out).to_pylist()
    assert [(d["drop_reason"], d["input_row"]) for d in dropped] == [("unclosed_thinking", 2)]


def test_only_unclosed_thinking_is_an_error(cli, tmp_path):
    src = write_jsonl(tmp_path / "allcut.jsonl", [
        {"id": "m0", "messages": _conv("Q0", "<think>cut")},
        {"id": "m1", "messages": _conv("Q1", "<think>cut too")},
    ])
    out = tmp_path / "out"
    r = cli("read", src, "-o", out)
    assert_bad_input(r, out, "allcut.jsonl", "no row survived", "unclosed_thinking")


@pytest.mark.parametrize("shape", ["r1", "flat"])
def test_a_batch_of_only_unclosed_thinking_is_dropped(cli, tmp_path, shape):
    answers = ["<think>a</think>A0", "<think>cut", "<think>cut too", "<think>d</think>A3"]
    if shape == "r1":
        src = write_jsonl(tmp_path / "r1.jsonl", [
            {"id": f"m{i}", "messages": _conv(f"Q{i}", a)} for i, a in enumerate(answers)])
    else:
        src = write_parquet(tmp_path / "flat.parquet", {
            "question": [f"Q{i}" for i in range(4)], "response": answers})
    out = tmp_path / "out"
    r = cli("read", src, "-o", out, "--batch-rows", "1")
    assert_ok(r)
    assert read_output(out).num_rows == 2
    dropped = read_dropped(out).to_pylist()
    assert [(d["drop_reason"], d["input_row"]) for d in dropped] == [
        ("unclosed_thinking", 1), ("unclosed_thinking", 2)]
