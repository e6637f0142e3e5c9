"""Faults a new user hit, each pinned: the environment is not a bug, a closed pipe is not a
success, --json always answers, non-finite scores are missing, statistics are exact, and the
report ends every run."""

from __future__ import annotations

import errno
import json
import math
import os
import statistics
import subprocess
import sys
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SAMPLE, manifest, read_output

import curate

CURATE = [sys.executable, "-m", "curate_cli"]


def _traces(path: Path, n: int = 2000, text: int = 400) -> Path:
    rows = [{"id": f"t{i:05d}", "question": f"Question {i % 97}?",
             "trajectory": f"step {i} " + "x" * text, "response": f"The answer is {i}.",
             "score": (i % 101) / 100} for i in range(n)]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _leftovers(parent: Path, name: str) -> list[Path]:
    return [p for p in parent.iterdir() if p.name.startswith(f".{name}.curate-")]


# --- 4. the user's environment: one line with the path and the reason, exit 2 ----------------

def _one_error_line(r) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1, (r.exit_code, r.stderr)
    assert "internal error" not in lines[0] and "bug" not in lines[0]
    return lines[0]


@pytest.mark.parametrize("code, reason", [(errno.ENOSPC, "No space left on device"),
                                          (errno.EROFS, "Read-only file system"),
                                          (errno.EACCES, "Permission denied")])
def test_os_faults_while_writing_are_the_users_environment(cli, tmp_path, monkeypatch, code,
                                                           reason):
    from curate.io import writer

    def refuse(self, table):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(writer.PartWriter, "_write_now", refuse)
    out = tmp_path / "out"
    line = _one_error_line(cli("read", SAMPLE / "processbench.parquet", "-o", out))
    assert str(out) in line and reason in line
    assert not out.exists() and not _leftovers(tmp_path, "out")


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs: a real full disk (needs the right to mount; skipped without it)."""
    mnt = tmp_path / f"small-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


def test_a_real_full_disk_is_exit_2_and_leaves_nothing(cli, small_disk):
    out = small_disk / "out"
    line = _one_error_line(cli("read", SAMPLE, "-o", out))
    assert str(out) in line and "No space left on device" in line
    assert list(small_disk.iterdir()) == []


def test_output_into_the_folder_you_are_in_is_refused(cli, tmp_path, monkeypatch):
    here = tmp_path / "work"
    here.mkdir()
    (here / "keep.txt").write_text("mine")
    monkeypatch.chdir(here)
    line = _one_error_line(cli("read", SAMPLE / "processbench.parquet", "-o", ".",
                               "--overwrite"))
    assert "-o .: is the folder you are in" in line
    line = _one_error_line(cli("read", SAMPLE / "processbench.parquet", "-o", "..",
                               "--overwrite"))
    assert (here / "keep.txt").read_text() == "mine"


def test_export_to_a_full_stdout_is_exit_2_with_one_line(tmp_path):
    inp = _traces(tmp_path / "in.parquet", n=200)
    with open("/dev/full", "wb") as full:
        r = subprocess.run([*CURATE, "export", str(inp), "-o", "-"], stdout=full,
                           stderr=subprocess.PIPE, text=True)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == "error: stdout: No space left on device"


# --- 5. a consumer that stops reading: no success, exit 141 ----------------------------------

def test_export_into_a_pipe_closed_early_is_not_a_success(tmp_path):
    # 2,000 records of ~0.5 KB: far more than a pipe holds, so the writer sees the close.
    inp = _traces(tmp_path / "in.parquet")
    p = subprocess.Popen([*CURATE, "export", str(inp), "-o", "-"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    first = p.stdout.readline()
    p.stdout.close()  # `| head -1`
    err = p.stderr.read().decode()
    code = p.wait()
    assert json.loads(first)["rank"] == 1
    assert code == 141, err
    assert "exported" not in err and "error" not in err


def test_export_to_a_pipe_read_to_the_end_writes_every_record(tmp_path):
    inp = _traces(tmp_path / "in.parquet")
    r = subprocess.run([*CURATE, "export", str(inp), "-o", "-", "--quiet"],
                       capture_output=True)
    assert r.returncode == 0
    lines = r.stdout.decode().splitlines()
    assert len(lines) == 2000 and [json.loads(x)["rank"] for x in lines] == list(range(1, 2001))


# --- 7. --json: one object on stdout, on failure too -------------------------------------------

@pytest.mark.parametrize("args", [
    ["read", "no-such-file.parquet", "-o", "OUT"],
    ["filter", "no-such-folder", "-o", "OUT", "--top-k", "0"],
    ["score", str(SAMPLE / "processbench.parquet"), "-o", "OUT", "--agg", "median"],
    ["report", "no-such-folder"],
    ["eval", "no-such-file.parquet"],
])
def test_json_on_failure_is_one_object(cli, tmp_path, args):
    args = [str(tmp_path / "o") if a == "OUT" else a for a in args]
    r = cli(*args, "--json")
    assert r.exit_code == 2
    doc = json.loads(r.stdout)  # exactly one JSON document
    assert doc["exit_code"] == 2 and doc["error"] in r.stderr


def test_json_on_a_failed_run_is_one_object(cli, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[run]\nout = "{tmp_path / "o"}"\n[read]\ninputs = ["{tmp_path}/nope"]\n')
    r = cli("run", cfg, "--json")
    assert r.exit_code == 2 and json.loads(r.stdout)["exit_code"] == 2


# --- 8. NaN and ±inf scores are missing, everywhere ---------------------------------------------

SCORES = [0.9, math.inf, 0.5, math.nan, -math.inf, 0.7, None, 0.1]


@pytest.fixture
def odd_scores(tmp_path) -> Path:
    rows = [{"id": f"r{i}", "question": f"q{i % 2}", "response": f"The answer is {i}.",
             "score": s, "is_correct": i % 3 == 0} for i, s in enumerate(SCORES)]
    path = tmp_path / "odd.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema(
        [("id", pa.string()), ("question", pa.string()), ("response", pa.string()),
         ("score", pa.float64()), ("is_correct", pa.bool_())])), path)
    return path


def test_eval_treats_non_finite_scores_as_unscored(cli, odd_scores):
    r = cli("eval", odd_scores, "--json")
    assert r.exit_code == 0, r.stderr  # an internal error before
    doc = json.loads(r.stdout)
    assert doc["unscored"] == 4 and doc["auroc"] is not None


def test_filter_ranks_non_finite_scores_last(cli, tmp_path, odd_scores):
    r = cli("filter", odd_scores, "-o", tmp_path / "top", "--top-k", "3", "--json")
    assert r.exit_code == 0, r.stderr
    assert sorted(read_output(tmp_path / "top").column("id").to_pylist()) == ["r0", "r2", "r5"]
    r = cli("filter", odd_scores, "-o", tmp_path / "min", "--min-score", "-1e9", "--json")
    assert sorted(read_output(tmp_path / "min").column("id").to_pylist()) == [
        "r0", "r2", "r5", "r7"]


def test_export_ranks_non_finite_scores_last(tmp_path, odd_scores):
    import io

    buf = io.BytesIO()
    curate.run_stage("export", [str(odd_scores)], "-", stdout=buf)
    ids = [json.loads(x)["id"] for x in buf.getvalue().decode().splitlines()]
    assert ids[:4] == ["r0", "r5", "r2", "r7"]
    assert sorted(ids[4:]) == ["r1", "r3", "r4", "r6"]  # then by id: no score is no score


def test_manifest_statistics_count_non_finite_as_missing(tmp_path, odd_scores):
    curate.run_stage("filter", [str(odd_scores)], tmp_path / "f", {"min-tokens": 0})
    s = manifest(tmp_path / "f")["score"]
    assert (s["count"], s["missing"]) == (4, 4)
    assert s["median"] == statistics.median([0.9, 0.5, 0.7, 0.1])
    assert s["max"] == 0.9 and s["min"] == 0.1


# --- 9. summary statistics over every row, not a sample ----------------------------------------

def test_score_summary_is_exact_over_all_rows(cli, tmp_path):
    # Rewards rising with the row number: the first 256 rows of a chunk (what the summary used
    # to sample) have the lowest scores, so a sampled median is far off.
    n = 3000
    rows = [{"id": f"r{i:05d}", "question": "q", "response": "r",
             "step_rewards": [i / n], "response_step_rewards": [], "trajectory_reward": None,
             "n_tokens": 5, "too_long": False, "windows": 1, "score": 0.0,
             "scorer": "tiny@local"} for i in range(n)]
    src = tmp_path / "scored.parquet"
    pq.write_table(pa.Table.from_pylist(rows), src)
    r = cli("score", src, "-o", tmp_path / "re", "--rescore", "--alpha", "0", "--json")
    assert r.exit_code == 0, r.stderr
    got = json.loads(r.stdout)["score"]
    want = [float(pa.scalar(i / n, pa.float32()).as_py()) for i in range(n)]
    assert got["count"] == n and got["missing"] == 0
    assert got["median"] == round(statistics.median(want), 4)
    assert got["mean"] == round(statistics.fmean(want), 4)
    assert got["max"] == round(max(want), 4)


# --- 12. the report ends every run --------------------------------------------------------------

def test_the_report_ends_a_run_whose_stage_list_names_none(tmp_path):
    out = tmp_path / "out"
    doc = curate.run({"run": {"out": str(out), "stages": ["read", "filter"]},
                      "read": {"inputs": [str(SAMPLE / "processbench.parquet")]},
                      "filter": {"min-tokens": 1}})
    assert [s["stage"] for s in doc["stages"]] == ["read", "filter", "report"]
    report = doc["stages"][-1]["summary"]
    assert [s["stage"] for s in report["stages"]] == ["read", "filter"]
