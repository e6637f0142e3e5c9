"""The CLI shell and the read stage's folder contract: summary, limits, atomicity, chaining."""

import json
import os
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, SAMPLE, manifest, read_dropped, read_output

from curate.stage import run_stage


def _canonical(tmp_path, n=10, name="in.parquet", **extra):
    rows = [{"id": f"r{i}", "question": f"Q{i}", "trajectory": f"t{i}\n\nu{i}",
             "response": f"A{i}", **{k: v(i) for k, v in extra.items()}} for i in range(n)]
    path = tmp_path / name
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path, rows


def test_version(cli):
    r = cli("--version")
    assert r.exit_code == 0 and r.stdout.strip().startswith("curate 0.")


def test_help_is_fast_and_imports_nothing_heavy():
    code = ("import sys, time; t=time.perf_counter(); import curate_cli.app; "
            "heavy=[m for m in ('torch','transformers','vllm','datasets','polars','pyarrow') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "curate_cli", "--help"], capture_output=True,
                       text=True)
    elapsed = time.perf_counter() - t
    assert r.returncode == 0 and "read" in r.stdout
    assert elapsed < 2.0  # well under a second on a quiet machine; slack for a busy CI box


def test_json_summary_is_the_only_stdout(cli, tmp_path):
    path, rows = _canonical(tmp_path)
    r = cli("read", path, "-o", tmp_path / "out", "--json")
    assert r.exit_code == 0
    summary = json.loads(r.stdout)  # exactly one JSON document
    assert summary["rows_in"] == summary["rows_out"] == 10
    assert summary["steps_per_trace"]["median"] == 3  # 2 thinking + 1 response step


def test_human_summary_and_quiet(cli, tmp_path):
    path, _ = _canonical(tmp_path)
    r = cli("read", path, "-o", tmp_path / "out")
    assert r.exit_code == 0 and "traces written" in r.stdout and "canonical" in r.stderr
    r = cli("read", path, "-o", tmp_path / "out", "--quiet")
    assert r.exit_code == 0 and r.stdout == "" and r.stderr == ""


def test_folder_layout_and_manifest(cli, tmp_path):
    path, rows = _canonical(tmp_path, extra_col=lambda i: i * 2)
    assert cli("read", path, "-o", tmp_path / "out").exit_code == 0
    names = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*"))
    assert names == ["_dropped", "_manifest.json", "data", "data/train-00000-of-00001.parquet"]
    m = manifest(tmp_path / "out")
    assert m["curate"]["stage"] == "read" and m["curate"]["status"] == "complete"
    assert m["inputs"][0]["bytes"] == path.stat().st_size and m["inputs"][0]["xxh3_head_tail"]
    assert m["counts"]["rows_out"] == 10 and m["parts"][0]["rows"] == 10
    assert m["parts"][0]["xxh3"] and m["parts"][0]["file"] == "data/train-00000-of-00001.parquet"
    assert "pyarrow" in m["versions"] and m["config"]["preset"] == "auto"
    out = read_output(tmp_path / "out").to_pylist()
    assert [r["extra_col"] for r in out] == [r["extra_col"] for r in rows]
    # no leftovers beside the output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet", "out"]


def test_parts_roll_over_by_size(cli, tmp_path):
    path, _ = _canonical(tmp_path, n=3000, pad=lambda i: os.urandom(200).hex())
    r = cli("read", path, "-o", tmp_path / "out", "--shard-size", "64KiB", "--batch-rows", "100")
    assert r.exit_code == 0
    parts = sorted((tmp_path / "out").glob("data/*.parquet"))
    assert len(parts) > 3
    assert all(p.stat().st_size < 64 * 1024 + 200 * 100 * 3 for p in parts)
    assert read_output(tmp_path / "out").num_rows == 3000
    assert [p["file"] for p in manifest(tmp_path / "out")["parts"]] == [
        f"data/{p.name}" for p in parts]


def test_limit_stops_early(cli, tmp_path):
    path, rows = _canonical(tmp_path, n=50)
    r = cli("read", path, "-o", tmp_path / "out", "--limit", "7", "--batch-rows", "3", "--json")
    assert json.loads(r.stdout)["rows_in"] == 7
    assert read_output(tmp_path / "out").column("id").to_pylist() == [f"r{i}" for i in range(7)]


def test_sample_is_seeded_uniform_and_spans_files(cli, tmp_path):
    a, _ = _canonical(tmp_path, n=40, name="a.parquet")
    rows = [{"id": f"j{i}", "question": f"q{i}", "response": "x"} for i in range(40)]
    (tmp_path / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    def ids(seed, out):
        r = cli("read", a, tmp_path / "b.jsonl", "-o", tmp_path / out, "--sample", "20",
                "--seed", str(seed), "--batch-rows", "7")
        assert r.exit_code == 0, r.output
        return read_output(tmp_path / out).column("id").to_pylist()

    first, again, other = ids(1, "s1"), ids(1, "s2"), ids(2, "s3")
    assert len(first) == 20 and len(set(first)) == 20
    assert first == again and first != other
    import random

    chosen = sorted(random.Random(1).sample(range(80), 20))  # the documented rule
    expected = [f"r{i}" if i < 40 else f"j{i - 40}" for i in chosen]
    assert first == expected


def test_a_stage_folder_is_an_input(cli, tmp_path):
    path, rows = _canonical(tmp_path)
    rows_bad = [{"id": "bad", "question": "", "response": "x"}]
    pq.write_table(pa.Table.from_pylist(rows_bad), tmp_path / "bad.parquet")
    assert cli("read", path, tmp_path / "bad.parquet", "-o", tmp_path / "one").exit_code == 0
    assert read_dropped(tmp_path / "one").num_rows == 1
    r = cli("read", tmp_path / "one", "-o", tmp_path / "two", "--json")
    assert r.exit_code == 0
    assert json.loads(r.stdout)["rows_in"] == 10  # dropped/ is not read as data
    a, b = read_output(tmp_path / "one"), read_output(tmp_path / "two")
    assert a.equals(b.select(a.column_names))


def test_keep_dropped_rows_copies_the_input_row(cli, tmp_path):
    rows = [{"id": "a", "question": "Q", "response": "A", "meta": 1},
            {"id": "b", "question": "Q", "response": " ", "meta": 2}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet")
    assert cli("read", tmp_path / "in.parquet", "-o", tmp_path / "slim").exit_code == 0
    slim = read_dropped(tmp_path / "slim").to_pylist()
    assert slim == [{"id": "b", "drop_reason": "empty_response", "drop_value": "blank",
                     "input_file": str(tmp_path / "in.parquet"), "input_row": 1}]
    assert cli("read", tmp_path / "in.parquet", "-o", tmp_path / "full",
               "--keep-dropped-rows").exit_code == 0
    full = read_dropped(tmp_path / "full").to_pylist()[0]
    assert full["meta"] == 2 and full["input.id"] == "b" and full["response"] == " "


def test_interrupted_run_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    from curate.io import writer
    from curate.read.traces import ReadOptions

    path, _ = _canonical(tmp_path, n=100)
    calls = {"n": 0}
    real_write = writer.PartWriter.write

    def boom(self, table):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_write(self, table)

    monkeypatch.setattr(writer.PartWriter, "write", boom)
    with pytest.raises(KeyboardInterrupt):
        run_stage("read", [str(path)], str(tmp_path / "out"), ReadOptions(batch_rows=10))
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet"]


def test_rerun_replaces_a_previous_read(cli, tmp_path):
    path, _ = _canonical(tmp_path, n=5)
    assert cli("read", path, "-o", tmp_path / "out").exit_code == 0
    path2, _ = _canonical(tmp_path, n=3, name="in2.parquet")
    assert cli("read", path2, "-o", tmp_path / "out").exit_code == 0
    assert read_output(tmp_path / "out").num_rows == 3


def test_sample_data_demo(cli, tmp_path):
    """The README's main command on the bundled sample data."""
    r = cli("read", SAMPLE, "-o", tmp_path / "out", "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert sorted(set(s["presets"].values())) == ["canonical", "r1", "steps", "tags"]
    assert s["rows_out"] > 200 and s["rows_with_thinking"] > 100


def test_console_script_entry_point(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "curate")
    path, _ = _canonical(tmp_path)
    r = subprocess.run([exe, "read", str(path), "-o", str(tmp_path / "o"), "--json"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and json.loads(r.stdout)["rows_out"] == 10
    r = subprocess.run([exe, "read", str(tmp_path / "missing.parquet"), "-o", "x"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "missing.parquet" in r.stderr


@pytest.mark.parametrize("args,needle", [
    (["read", "x", "-o", "y", "--limit", "abc"], "'--limit'"),
    (["read"], "Missing argument 'INPUT'"),
    (["nope"], "No such command 'nope'"),
])
def test_usage_errors_are_one_line(args, needle):
    exe = os.path.join(os.path.dirname(sys.executable), "curate")
    r = subprocess.run([exe, *args], capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ") and needle in r.stderr


def test_gzipped_jsonl_reads_and_samples(cli, tmp_path):
    import gzip

    rows = [{"id": f"g{i}", "question": f"q{i}", "response": "<think>t</think>a"}
            for i in range(30)]
    with gzip.open(tmp_path / "in.jsonl.gz", "wt") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    r = cli("read", tmp_path / "in.jsonl.gz", "-o", tmp_path / "o", "--sample", "5", "--json")
    assert r.exit_code == 0, r.output
    out = read_output(tmp_path / "o").to_pylist()
    assert len(out) == 5 and all(x["trajectory"] == "t" and x["response"] == "a" for x in out)
