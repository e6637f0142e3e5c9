"""`curate read` inputs (curate/io/sources.py): JSON type inference over the whole file, and
CSV / TSV input. Every input is built in tmp_path by the test itself.

JSON: a field that is null (or absent) for the first batches and a value later, an integer that
later turns float, and a field that first appears late are all read (the schema is inferred over
the whole file); a real conflict (a string here, an object there) stops the run naming the field
and both lines. CSV/TSV: streamed with pyarrow, every column text.
"""

import csv
import gzip
import io
import json
import re
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import read_output
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curate.io import sources

# --- helpers ------------------------------------------------------------------------------------


def write_lines(path: Path, lines: list[str]) -> Path:
    data = "".join(line + "\n" for line in lines).encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def ok(r) -> dict:
    assert r.exit_code == 0, (r.exit_code, r.output)
    return json.loads(r.stdout)


def bad(r, out: Path, *needles: str) -> str:
    """Exit 2, one `error: ...` line naming every needle (a regex), nothing written."""
    assert r.exit_code == 2, (r.exit_code, r.output)
    assert "Traceback" not in r.output
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    msg = lines[0]
    assert msg.startswith("error: ") and "internal error" not in msg, msg
    for needle in needles:
        assert re.search(needle, msg), f"{needle!r} not in {msg!r}"
    assert not (out / "_manifest.json").exists()
    return msg


def line(n: int) -> str:
    return rf"\bline {n}\b"


def rows_read(out: Path) -> list[dict]:
    return read_output(out).to_pylist()


# --- JSON Lines: types inferred over the whole file ---------------------------------------------

SCALARS = {
    "str": st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=6),
    "int": st.integers(-(2**53), 2**53),
    "float": st.floats(allow_nan=False, allow_infinity=False),
}
SCALARS["int+float"] = st.one_of(SCALARS["int"], SCALARS["float"])
SCALARS["bool"] = st.booleans()
SCALARS["object"] = st.fixed_dictionaries({"k": SCALARS["int"],
                                           "s": st.one_of(st.none(), SCALARS["str"])})
SCALARS["list"] = st.lists(SCALARS["str"], max_size=3)


@st.composite
def null_then_value(draw):
    """Lines where one field is null (or absent) for the first k lines, k around the batch."""
    batch = draw(st.integers(1, 6))
    k = draw(st.integers(0, 3 * batch + 1))
    n = k + draw(st.integers(1, 4))
    kind = draw(st.sampled_from(sorted(SCALARS)))
    # reference_answer is a canonical (text) column: only strings are legitimate there
    field = "reference_answer" if kind == "str" and draw(st.booleans()) else "extra"
    absent = draw(st.booleans())  # absent instead of null: a field that appears late
    records = []
    for i in range(n):
        rec = {"question": f"q{i}", "response": f"r{i}"}
        if i >= k:
            rec[field] = draw(st.one_of(st.none(), SCALARS[kind]) if i > k else SCALARS[kind])
        elif not absent:
            rec[field] = None
        records.append(rec)
    gz = draw(st.booleans())
    return batch, field, [json.dumps(r) for r in records], gz


@settings(deadline=None, max_examples=40,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(null_then_value())
def test_field_null_for_the_first_lines_then_a_value_is_read(cli, tmp_path_factory, case):
    batch, field, lines, gz = case
    tmp = tmp_path_factory.mktemp("j")
    src = write_lines(tmp / ("in.jsonl.gz" if gz else "in.jsonl"), lines)
    ok(cli("read", src, "-o", tmp / "out", "--batch-rows", batch, "--json"))
    got = rows_read(tmp / "out")
    assert len(got) == len(lines)
    for text, row in zip(lines, got, strict=True):
        want = json.loads(text)
        assert row["question"] == want["question"] and row["response"] == want["response"]
        assert row[field] == want.get(field)  # an int read into a float column compares equal
    if any(isinstance(json.loads(t).get(field), float) for t in lines):  # ints and floats
        assert all(isinstance(row[field], float) for row in got if row[field] is not None)


CONFLICTS = [("str", "object"), ("object", "str"), ("float", "str"), ("str", "list"),
             ("list", "object"), ("bool", "int")]


@st.composite
def conflicting(draw):
    first, second = draw(st.sampled_from(CONFLICTS))
    a = draw(st.integers(1, 12))
    b = a + draw(st.integers(1, 12))
    n = b + draw(st.integers(0, 3))
    records = []
    for i in range(1, n + 1):
        rec = {"question": f"q{i}", "response": f"r{i}"}
        if i == a:
            rec["meta"] = draw(SCALARS[first])
        elif i == b:
            rec["meta"] = draw(SCALARS[second])
        elif draw(st.booleans()):
            rec["meta"] = None
        records.append(rec)
    return draw(st.integers(1, 6)), a, b, [json.dumps(r) for r in records]


@settings(deadline=None, max_examples=30,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(conflicting())
def test_real_type_conflict_names_the_field_and_both_lines(cli, tmp_path_factory, case):
    batch, a, b, lines = case
    tmp = tmp_path_factory.mktemp("c")
    src = write_lines(tmp / "mixed.jsonl", lines)
    r = cli("read", src, "-o", tmp / "out", "--batch-rows", batch)
    bad(r, tmp / "out", "mixed.jsonl", "'meta'", line(a), line(b), "change type")


def test_the_issue_case_reference_answer_null_for_2048_lines(cli, tmp_path):
    # One source without reference answers, then one with: the default batch is 2048 rows.
    n_null, n_str = 2100, 30
    lines = [json.dumps({"question": f"q{i}", "response": f"r{i}", "reference_answer": None})
             for i in range(n_null)]
    lines += [json.dumps({"question": f"Q{i}", "response": f"R{i}", "reference_answer": f"{i}",
                          "model": "late"}) for i in range(n_str)]
    src = write_lines(tmp_path / "dump.jsonl", lines)
    s = ok(cli("read", src, "-o", tmp_path / "out", "--json"))
    assert s["rows_out"] == n_null + n_str
    t = read_output(tmp_path / "out")
    assert t.schema.field("reference_answer").type == pa.string()
    assert t.column("reference_answer").to_pylist() == [None] * n_null + \
        [str(i) for i in range(n_str)]
    assert t.column("model").to_pylist() == [None] * n_null + ["late"] * n_str


def test_int_then_float_across_batches_is_a_float_column(cli, tmp_path):
    lines = [json.dumps({"question": f"q{i}", "response": "r", "score": i}) for i in range(5)]
    lines.append(json.dumps({"question": "q5", "response": "r", "score": 0.5}))
    src = write_lines(tmp_path / "scores.jsonl", lines)
    ok(cli("read", src, "-o", tmp_path / "out", "--batch-rows", "2", "--json"))
    t = read_output(tmp_path / "out")
    assert t.schema.field("score").type == pa.float64()
    assert t.column("score").to_pylist() == [0.0, 1.0, 2.0, 3.0, 4.0, 0.5]


def test_objects_merge_their_fields_across_batches(cli, tmp_path):
    lines = [json.dumps({"question": "q0", "response": "r", "meta": {"a": 1}}),
             json.dumps({"question": "q1", "response": "r", "meta": None}),
             json.dumps({"question": "q2", "response": "r", "meta": {"b": ["x"], "a": 2.5}})]
    src = write_lines(tmp_path / "meta.jsonl", lines)
    ok(cli("read", src, "-o", tmp_path / "out", "--batch-rows", "1", "--json"))
    assert [r["meta"] for r in rows_read(tmp_path / "out")] == \
        [{"a": 1.0, "b": None}, None, {"a": 2.5, "b": ["x"]}]


def test_nested_conflict_names_the_path(cli, tmp_path):
    lines = [json.dumps({"question": "q0", "response": "r", "meta": {"tags": "a"}}),
             json.dumps({"question": "q1", "response": "r", "meta": {"tags": ["a"]}})]
    src = write_lines(tmp_path / "nested.jsonl", lines)
    r = cli("read", src, "-o", tmp_path / "out")
    bad(r, tmp_path / "out", "nested.jsonl", "'meta.tags'", line(1), line(2))


def test_json_list_conflict_names_both_records(cli, tmp_path):
    rows = [{"question": "q0", "response": "r", "x": "s"}, {"question": "q1", "response": "r"},
            {"question": "q2", "response": "r", "x": {"k": 1}}]
    (tmp_path / "list.json").write_text(json.dumps(rows))
    r = cli("read", tmp_path / "list.json", "-o", tmp_path / "out", "--batch-rows", "1")
    bad(r, tmp_path / "out", "list.json", "'x'", r"\brecord 1\b", r"\brecord 3\b")


def test_json_list_null_then_value(cli, tmp_path):
    rows = [{"question": f"q{i}", "response": "r", "reference_answer": None} for i in range(3)]
    rows.append({"question": "q3", "response": "r", "reference_answer": "4"})
    (tmp_path / "list.json").write_text(json.dumps(rows))
    ok(cli("read", tmp_path / "list.json", "-o", tmp_path / "out", "--batch-rows", "2",
           "--json"))
    assert [r["reference_answer"] for r in rows_read(tmp_path / "out")] == [None] * 3 + ["4"]


def test_jsonl_batches_share_one_schema_and_memory_stays_bounded(tmp_path):
    # ~12 MB of records read 100 at a time: the reader holds a batch, never the file.
    text = "x" * 1000
    lines = [json.dumps({"question": f"q{i}", "response": text, "a": None if i < 9000 else i})
             for i in range(12000)]
    src = write_lines(tmp_path / "big.jsonl", lines)
    (source,) = sources.resolve_inputs([str(src)])
    schemas, rows = set(), 0
    warm = sources.iter_batches(source, 100)
    next(warm)  # the imports a first conversion makes are not the reader's memory
    warm.close()
    tracemalloc.start()
    try:
        for b in sources.iter_batches(source, 100):
            assert b.num_rows <= 100
            schemas.add(b.schema.to_string())
            rows += b.num_rows
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rows == 12000 and len(schemas) == 1
    assert peak < 3_000_000, f"peak {peak} bytes of Python objects for a 12 MB file"


# --- CSV / TSV -----------------------------------------------------------------------------------

TRICKY = [("1", "2"), ("What is 3, quoted \"x\"?", "line one\nline two\r\nthree"),
          ("tab\there", "NA"), ("0042", "null"), ("é漢 ünicode", "")]


def write_csv(path: Path, header: list[str], rows: list[tuple], delimiter: str = ",") -> Path:
    buf = io.StringIO(newline="")
    w = csv.writer(buf, delimiter=delimiter)  # \r\n rows: a value with \r in it is quoted
    w.writerow(header)
    w.writerows(rows)
    data = buf.getvalue().encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


@pytest.mark.parametrize("name", ["t.csv", "t.tsv", "t.csv.gz", "t.TSV.gz"])
def test_csv_and_tsv_are_read_as_text(cli, tmp_path, name):
    delim = "\t" if ".tsv" in name.lower() else ","
    rows = [(q, r or "resp", str(i), "" if i % 2 else "7") for i, (q, r) in enumerate(TRICKY)]
    src = write_csv(tmp_path / name, ["question", "response", "id", "n"], rows, delim)
    s = ok(cli("read", src, "-o", tmp_path / "out", "--batch-rows", "2", "--json"))
    assert s["rows_out"] == len(rows)
    t = read_output(tmp_path / "out")
    assert t.schema.field("n").type == pa.string()  # numbers stay text
    got = t.to_pylist()
    assert [(g["question"], g["response"], g["id"]) for g in got] == [r[:3] for r in rows]
    assert [g["n"] for g in got] == [None if i % 2 else "7" for i in range(len(rows))]


def test_csv_empty_cell_is_null_and_quoted_empty_is_empty(cli, tmp_path):
    src = tmp_path / "e.csv"
    src.write_bytes(b'question,response,reference_answer,note\nq1,r1,,""\nq2,r2,NA,x\n')
    ok(cli("read", src, "-o", tmp_path / "out", "--json"))
    got = rows_read(tmp_path / "out")
    assert [(g["reference_answer"], g["note"]) for g in got] == [(None, ""), ("NA", "x")]


cell = st.text(st.sampled_from(list('ab,"\n\r\t é1 ')), min_size=1, max_size=8)


@settings(deadline=None, max_examples=30,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(cell, cell, cell), min_size=1, max_size=12), st.integers(1, 5),
       st.sampled_from(["x.csv", "x.tsv"]))
def test_csv_values_round_trip(cli, tmp_path_factory, rows, batch, name):
    rows = [(f"{i}:{q}", r, e) for i, (q, r, e) in enumerate(rows)]  # distinct questions
    rows = [row for row in rows if row[1].strip()]  # a blank response is dropped (a row fault)
    if not rows:
        return
    tmp = tmp_path_factory.mktemp("csv")
    src = write_csv(tmp / name, ["question", "response", "extra"], rows,
                    "\t" if name.endswith(".tsv") else ",")
    ok(cli("read", src, "-o", tmp / "out", "--batch-rows", batch, "--json"))
    got = [(g["question"], g["response"], g["extra"]) for g in rows_read(tmp / "out")]
    assert got == rows


def test_folder_picks_up_csv_and_tsv(cli, tmp_path):
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    write_csv(d / "a.csv", ["question", "response"], [("qa", "ra")])
    write_csv(d / "sub" / "b.tsv", ["question", "response"], [("qb", "rb")], "\t")
    pq.write_table(pa.table({"question": ["qc"], "response": ["rc"]}), d / "c.parquet")
    s = ok(cli("read", d, "-o", tmp_path / "out", "--json"))
    assert set(s["presets"]) == {str(d / "a.csv"), str(d / "sub" / "b.tsv"), str(d / "c.parquet")}
    assert sorted(r["question"] for r in rows_read(tmp_path / "out")) == ["qa", "qb", "qc"]


def test_csv_glob(cli, tmp_path):
    write_csv(tmp_path / "a.csv", ["question", "response"], [("qa", "ra")])
    s = ok(cli("read", str(tmp_path / "*.csv"), "-o", tmp_path / "out", "--json"))
    assert s["rows_out"] == 1


def test_missing_csv_path_is_not_a_hub_id(cli, tmp_path):
    out = tmp_path / "out"
    r = cli("read", "nodir/traces.csv", "-o", out, env={"HF_HUB_OFFLINE": "1"})
    bad(r, out, "nodir/traces.csv", "no such file")


def test_row_longer_than_the_block_is_read_once(cli, tmp_path, monkeypatch):
    # A block must hold a whole row; a longer one restarts the read with a bigger block,
    # skipping the rows already handed on.
    monkeypatch.setattr(sources, "CSV_BLOCK_BYTES", 256)
    monkeypatch.setattr(sources, "CSV_BLOCK_MAX", 1 << 20)
    rows = [(f"q{i}", f"r{i}") for i in range(40)]
    rows[30] = ("q30", "long\n" * 400)
    src = write_csv(tmp_path / "long.csv", ["question", "response"], rows)
    ok(cli("read", src, "-o", tmp_path / "out", "--batch-rows", "4", "--json"))
    assert [(g["question"], g["response"]) for g in rows_read(tmp_path / "out")] == rows


@pytest.mark.parametrize("name,data,needles", [
    ("ragged.csv", b"question,response\nq1,r1\nq2,r2,extra\nq3,r3\n",
     [r"\brow 3\b", "expected 2 values, got 3"]),
    ("short.tsv", b"question\tresponse\nq1\tr1\nq2\n", [r"\brow 3\b", "got 1"]),
    ("utf8.csv", b"question,response\nq1,r1\nq2,r2\nq\xff3,r3\n",
     [r"\brow 4\b", "'question'", "UTF-8"]),
    ("open_quote.csv", b'question,response\nq1,r1\nq2,"r2\nq3,r3\n',
     [r"\brow 3\b", "never closed"]),
    ("open_quote_first.csv", b'question,response\nq1,r1\n"q2,r2\nq3,r3\n',
     [r"\brow 3\b", "not closed"]),
    ("empty.csv", b"", ["file is empty"]),
    ("header.csv", b"question,response\n", ["no rows"]),
    ("twice.csv", b"question,response,question\nq,r,q\n", ["'question' twice"]),
])
def test_unreadable_csv_is_one_line(cli, tmp_path, name, data, needles):
    (tmp_path / name).write_bytes(data)
    out = tmp_path / "out"
    r = cli("read", tmp_path / name, "-o", out)
    bad(r, out, re.escape(name), *needles)


def test_utf8_error_in_a_later_batch_names_its_row(cli, tmp_path):
    data = b"question,response\n" + b"".join(b"q%d,r\n" % i for i in range(5000)) + \
        b"q,\xc3(\n"
    (tmp_path / "late.csv").write_bytes(data)
    out = tmp_path / "out"
    bad(cli("read", tmp_path / "late.csv", "-o", out, "--batch-rows", "100"), out,
        r"\brow 5002\b", "'response'", "UTF-8")


def test_truncated_gzip_csv_is_one_line(cli, tmp_path):
    data = b"question,response\n" + b"".join(b"q%d,r%d\n" % (i, i) for i in range(20000))
    (tmp_path / "cut.csv.gz").write_bytes(gzip.compress(data)[:-40])
    out = tmp_path / "out"
    bad(cli("read", tmp_path / "cut.csv.gz", "-o", out), out, "cut.csv.gz", "cannot read the file")
