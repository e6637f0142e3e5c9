"""The dataset folder contract: every folder the demo writes loads in the four Parquet readers
users reach for, with no options and with the manifest's row count; one schema per folder;
missing or damaged parts are noticed; leftovers of killed runs are removed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, SAMPLE, manifest, read_output

import curate

STAGE_FOLDERS = ("read", "score", "filter", "dedup", "decontam", "export")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The README's main job (sample_data/demo.toml), run from Python into a temporary OUT."""
    pytest.importorskip("sentence_transformers", reason="the demo's signals scorer needs the "
                                                        "signals extra")
    out = tmp_path_factory.mktemp("demo") / "out"
    doc = tomllib.loads((ROOT / "sample_data" / "demo.toml").read_text())
    doc["run"]["out"] = str(out)
    doc["read"]["inputs"] = [str(SAMPLE)]
    doc["report"]["html"] = str(out / "report.html")
    result = curate.run(doc)
    assert [s["stage"] for s in result["stages"]] == [*STAGE_FOLDERS, "report"]
    return out


def _rows_in_readers(folder) -> dict[str, int]:
    import datasets
    import pandas as pd
    import polars as pl
    import pyarrow.dataset as ds

    datasets.disable_progress_bars()
    splits = datasets.load_dataset("parquet", data_dir=str(folder))
    return {
        "polars": pl.scan_parquet(f"{folder}/data/*.parquet").select(pl.len()).collect().item(),
        "pandas": len(pd.read_parquet(folder)),
        "pyarrow.dataset": ds.dataset(folder).count_rows(),
        "datasets": sum(split.num_rows for split in splits.values()),
    }


@pytest.mark.parametrize("stage", STAGE_FOLDERS)
def test_every_demo_folder_loads_in_the_four_readers_with_the_manifests_count(demo, stage):
    folder = demo / stage
    rows = manifest(folder)["counts"]["rows_out"]
    assert rows > 0
    assert _rows_in_readers(folder) == dict.fromkeys(
        ("polars", "pandas", "pyarrow.dataset", "datasets"), rows)


def test_the_export_folder_loads_as_a_hub_dataset_with_its_splits(demo):
    import datasets

    ds = datasets.load_dataset(str(demo / "export"))
    m = manifest(demo / "export")
    assert {k: v.num_rows for k, v in ds.items()} == {
        k: v["rows"] for k, v in m["splits"].items() if v["rows"]}


def test_parts_of_inputs_with_different_columns_share_one_schema(tmp_path, cli):
    # The demo's read mixes files with and without a `tools` column: the parts used to carry
    # different schemas, which polars' and pyarrow's folder readers refuse.
    out = tmp_path / "read"
    assert cli("read", SAMPLE, "-o", out, "--quiet").exit_code == 0
    parts = sorted((out / "data").glob("*.parquet"))
    assert len(parts) > 1
    schemas = {pq.read_schema(p).remove_metadata().to_string() for p in parts}
    assert len(schemas) == 1
    assert "tools" in pq.read_schema(parts[0]).names


def test_a_column_whose_type_differs_between_inputs_becomes_text(tmp_path, cli):
    a = tmp_path / "in" / "a.parquet"
    a.parent.mkdir()
    pq.write_table(pa.table({"question": ["q1"], "response": ["r1"], "meta": [1]}), a)
    pq.write_table(pa.table({"question": ["q2"], "response": ["r2"], "meta": [[1, 2]]}),
                   tmp_path / "in" / "b.parquet")
    assert cli("read", tmp_path / "in", "-o", tmp_path / "out", "--quiet").exit_code == 0
    t = read_output(tmp_path / "out")
    assert t.schema.field("meta").type == pa.string()
    assert t.column("meta").to_pylist() == ["1", "[1, 2]"]


# --- missing or damaged parts ---------------------------------------------------------------------

def _read_folder(cli, tmp_path):
    out = tmp_path / "read"
    r = cli("read", SAMPLE, "-o", out, "--quiet")
    assert r.exit_code == 0
    return out, manifest(out)


def test_every_part_is_listed_with_its_rows_and_hash(cli, tmp_path):
    out, m = _read_folder(cli, tmp_path)
    files = sorted(p.relative_to(out).as_posix() for p in (out / "data").glob("*.parquet"))
    assert [p["file"] for p in m["parts"]] == files
    assert sum(p["rows"] for p in m["parts"]) == m["counts"]["rows_out"]
    assert all(len(p["xxh3"]) == 32 for p in m["parts"])


def test_a_missing_part_is_an_input_error_naming_it(cli, tmp_path):
    out, m = _read_folder(cli, tmp_path)
    gone = m["parts"][1]["file"]
    (out / gone).unlink()
    r = cli("filter", out, "-o", tmp_path / "kept", "--min-tokens", "1")
    assert r.exit_code == 2 and f"part {gone} is missing" in r.stderr
    assert not (tmp_path / "kept").exists()


def test_a_truncated_part_is_an_input_error_naming_it(cli, tmp_path):
    out, m = _read_folder(cli, tmp_path)
    part = out / m["parts"][0]["file"]
    t = pq.read_table(part)
    pq.write_table(t.slice(0, t.num_rows - 1), part)
    r = cli("dedup", out, "-o", tmp_path / "d")
    assert r.exit_code == 2
    assert f"holds {t.num_rows - 1} rows, the manifest says {t.num_rows}" in r.stderr


def _run_config(tmp_path, out) -> dict:
    return {"run": {"out": str(out)}, "read": {"inputs": [str(SAMPLE / "processbench.parquet"),
                                                          str(SAMPLE / "prmbench_qwq.parquet")]},
            "filter": {"min-tokens": 1}}


def test_a_run_reruns_a_stage_whose_part_was_deleted(tmp_path):
    out = tmp_path / "out"
    cfg = _run_config(tmp_path, out)
    first = curate.run(cfg)
    kept = first["stages"][1]["summary"]["rows_out"]
    gone = manifest(out / "read")["parts"][0]["file"]
    (out / "read" / gone).unlink()
    doc = curate.run(cfg)
    acts = {s["stage"]: (s["action"], s["reason"]) for s in doc["stages"]}
    assert acts["read"] == ("run", f"part {gone} is missing")
    assert acts["filter"][0] == "run"  # the stage after it reads what the rerun wrote
    assert doc["stages"][1]["summary"]["rows_out"] == kept


def test_a_run_reruns_a_stage_whose_part_changed_though_its_count_did_not(tmp_path):
    out = tmp_path / "out"
    cfg = _run_config(tmp_path, out)
    curate.run(cfg)
    part = out / "filter" / manifest(out / "filter")["parts"][0]["file"]
    t = pq.read_table(part)
    t = t.set_column(t.column_names.index("response"), "response",
                     pa.array(["tampered"] * t.num_rows))
    pq.write_table(t, part)  # same rows, other content: readers' count check passes
    assert read_output(out / "filter").num_rows == manifest(out / "filter")["counts"]["rows_out"]
    doc = curate.run(cfg)
    acts = {s["stage"]: s for s in doc["stages"]}
    assert acts["read"]["action"] == "skip"
    assert acts["filter"]["action"] == "run" and "content hash differs" in acts["filter"]["reason"]
    assert "tampered" not in read_output(out / "filter").column("response").to_pylist()


# --- leftovers of killed runs ---------------------------------------------------------------------

def test_a_rerun_removes_the_temp_folders_of_dead_runs_of_the_same_output(cli, tmp_path):
    out = tmp_path / "read"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    leftover = tmp_path / f".read.curate-tmp-{dead}"
    (leftover / "data").mkdir(parents=True)
    (leftover / "data" / "part-00000.parquet").write_bytes(os.urandom(1000))
    old = tmp_path / f".read.curate-old-{dead}"
    old.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    live = tmp_path / f".read.curate-tmp-{sleeper.pid}"  # a run still going: left alone
    other = tmp_path / f".other.curate-tmp-{dead}"  # another output's: not ours to remove
    live.mkdir()
    other.mkdir()
    try:
        assert cli("read", SAMPLE / "processbench.parquet", "-o", out, "--quiet").exit_code == 0
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not leftover.exists() and not old.exists()
    assert live.exists() and other.exists()


def test_a_killed_read_is_planned_as_starting_over_not_resuming(tmp_path):
    out = tmp_path / "out"
    cfg = _run_config(tmp_path, out)
    curate.run(cfg)
    state = json.loads((out / "run.json").read_text())
    state["stages"]["read"]["status"] = "started"  # what a kill -9 during read leaves
    (out / "run.json").write_text(json.dumps(state))
    plan = curate.run(cfg, dry_run=True)
    read = plan["stages"][0]
    assert (read["action"], read["reason"]) == ("run", "interrupted; starts over (this stage "
                                                       "does not resume)")
