"""`curate report`: a real small run (read → score → filter → dedup → decontam) read back."""

from __future__ import annotations

import json
import math
import re
import shutil
import statistics
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from conftest import SAMPLE, manifest, read_dropped, read_output
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curate.report import collect
from curate.report.html import render_html
from curate.report.terminal import reward_style, sparkline

FLOW = ["read", "score", "filter", "dedup", "decontam"]
FOLDERS = ["read", "scored", "filtered", "dedup", "decontam"]
_RUN: dict = {}


@pytest.fixture
def run_dir(cli, tmp_path_factory) -> Path:
    """One real run, built once for the module through the CLI (a few seconds)."""
    if "dir" not in _RUN:
        d = tmp_path_factory.mktemp("run")
        steps = [
            ("read", SAMPLE / "processbench.parquet", "-o", d / "read"),
            ("score", d / "read", "-o", d / "scored", "--encoder", "none"),
            # --min-score so that filter drops rows too: the funnel then has two reasons.
            ("filter", d / "scored", "-o", d / "filtered", "--per-question", "1",
             "--min-score", "0.695"),
            ("dedup", d / "filtered", "-o", d / "dedup"),
            ("decontam", d / "dedup", "-o", d / "decontam", "--against", "gsm8k"),
        ]
        for args in steps:
            r = cli(*args, "-q")
            assert r.exit_code == 0, (args, r.stderr)
        _RUN["dir"] = d
    return _RUN["dir"]


@pytest.fixture
def report(cli):
    return lambda *a: cli("report", *a)


def test_funnel_matches_the_manifests_and_chains(run_dir):
    r = collect(run_dir)
    assert [s["stage"] for s in r["stages"]] == FLOW
    for s, folder in zip(r["stages"], FOLDERS, strict=True):
        counts = manifest(run_dir / folder)["counts"]
        assert (s["rows_in"], s["rows_out"]) == (counts["rows_in"], counts["rows_out"])
        assert s["rows_out"] == read_output(run_dir / folder).num_rows
    for prev, cur in zip(r["stages"], r["stages"][1:], strict=False):
        assert cur["rows_in"] == prev["rows_out"]
    assert r["funnel"]["connected"] and not r["funnel"]["breaks"]
    assert r["funnel"]["rows_in"] == 100
    assert r["funnel"]["rows_out"] == read_output(run_dir / "decontam").num_rows < 100


def test_drop_reasons_sum(run_dir):
    r = collect(run_dir)
    by = {s["stage"]: s for s in r["stages"]}
    for s in r["stages"]:
        assert sum(s["dropped"].values()) == s["rows_in"] - s["rows_out"]
    assert by["filter"]["dropped"].get("min_score", 0) > 0
    assert by["decontam"]["dropped"]["contaminated"] == read_dropped(run_dir / "decontam") \
        .num_rows
    totals: dict = {}
    for s in r["stages"]:
        for k, v in s["dropped"].items():
            totals[k] = totals.get(k, 0) + v
    assert r["drop_reasons"] == totals
    assert sum(totals.values()) == r["funnel"]["rows_in"] - r["funnel"]["rows_out"]


def test_drop_reasons_fall_back_to_dropped_parquet(run_dir, tmp_path):
    # A manifest that lists dropped parts but no reasons: counted from dropped/ instead.
    copy = tmp_path / "decontam"
    shutil.copytree(run_dir / "decontam", copy)
    m = manifest(copy)
    m["counts"]["dropped"], m["summary"]["dropped"] = {}, {}
    (copy / "_manifest.json").write_text(json.dumps(m))
    r = collect(copy)
    assert r["stages"][0]["dropped"] == {"contaminated": read_dropped(copy).num_rows}


def test_score_distribution_from_the_scored_stage(run_dir):
    s = collect(run_dir)["score"]
    df = pl.from_arrow(read_output(run_dir / "scored"))
    assert s["folder"] == str(run_dir / "scored")
    assert s["n"] == df.height and sum(s["counts"]) == df.height - s["nulls"]
    assert math.isclose(s["min"], df["score"].min(), abs_tol=1e-4)
    assert math.isclose(s["max"], df["score"].max(), abs_tol=1e-4)
    per = df.group_by("source").len()
    assert set(s["per_source"]) == set(per["source"].to_list())
    for src, n in per.iter_rows():
        assert s["per_source"][src]["n"] == n == sum(s["per_source"][src]["counts"])
    ranked = df.sort(["score", "id"], descending=[True, False])
    assert [e["id"] for e in s["top"]] == ranked["id"].head(3).to_list()
    bottom = df.sort(["score", "id"], descending=[False, False])
    assert [e["id"] for e in s["bottom"]] == bottom["id"].head(3).to_list()
    assert all(len(e["question"]) <= 100 for e in s["top"] + s["bottom"])


def test_json_is_one_object_with_the_keys(run_dir, report):
    r = report(run_dir, "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)  # exactly one object: json.loads fails on anything extra
    assert set(doc) == {"dir", "run", "stages", "funnel", "drop_reasons", "too_long", "score",
                        "verification"}
    assert doc["run"] is None  # folders written by the commands, not by `curate run`
    assert doc["verification"] is None  # no generative verifier scored this run
    assert [s["stage"] for s in doc["stages"]] == FLOW
    assert set(doc["too_long"]) == {"flagged_by_scorer", "dropped_by_scorer",
                                    "dropped_max_tokens"}
    assert doc["too_long"]["flagged_by_scorer"] == 0


def test_terminal_output_shows_every_stage_and_reason(run_dir, report):
    r = report(run_dir)
    assert r.exit_code == 0, r.stderr
    for word in [*FLOW, "contaminated", "min_score", "score distribution", "█", "bottom"]:
        assert word in r.stdout, word


def test_html_is_self_contained(run_dir, report, tmp_path):
    page = tmp_path / "report.html"
    r = report(run_dir, "--html", page, "-q")
    assert r.exit_code == 0, r.stderr
    text = page.read_text()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", text, re.I)
    assert "http://" not in text and "https://" not in text
    assert "<svg" in text or "data:image" in text
    top = collect(run_dir)["score"]["top"][0]["id"]
    assert top in text and "contaminated" in text and text.count("<svg") == 5  # all + 4 sources


def test_html_escapes_data(run_dir):
    r = collect(run_dir)
    r["stages"][0]["dropped"] = {"<script>alert(1)</script>": 1}
    assert "<script>" not in render_html(r)


@pytest.mark.parametrize("make", ["empty", "missing", "foreign"])
def test_dir_without_curate_output_exits_2(report, tmp_path, make):
    d = tmp_path / "d"
    if make != "missing":
        d.mkdir()
        (d / "sub").mkdir()
    if make == "foreign":
        (d / "_manifest.json").write_text('{"name": "not curate"}')
    page = tmp_path / "r.html"
    r = report(d, "--html", page)
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "DIR" in lines[0], r.stderr
    assert not page.exists()


def test_single_stage_folder(run_dir, report):
    r = report(run_dir / "decontam", "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [s["stage"] for s in doc["stages"]] == ["decontam"]
    # No score stage here: the distribution comes from the decontam rows themselves.
    assert doc["score"]["n"] == doc["stages"][0]["rows_out"] == doc["funnel"]["rows_out"]
    only_read = collect(run_dir / "read")
    assert only_read["score"] is None and only_read["stages"][0]["stage"] == "read"


def test_reward_colours_and_sparkline():
    assert [reward_style(v) for v in (0.95, 0.7, 0.5, 0.4, 0.1, None)] == \
        ["green", "green", "yellow", "yellow", "red", "dim"]
    assert sparkline([0, 1, 8]) == " ▂█"


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scores=st.lists(st.one_of(st.none(), st.floats(-5, 5, allow_nan=False),
                                 st.sampled_from([math.nan, math.inf, -math.inf])),
                       min_size=1, max_size=40),
       bins=st.integers(1, 12))
def test_histogram_bins_every_scored_row_once(tmp_path_factory, scores, bins):
    from curate.io.writer import StageOutput

    out = tmp_path_factory.mktemp("h") / "scored"
    n = len(scores)
    table = pa.table({
        "id": [f"r{i:03d}" for i in range(n)],
        "question": ["q " * 80] * n,
        "source": [f"s{i % 3}" for i in range(n)],
        "score": pa.array(scores, pa.float32()),
        "step_rewards": pa.array([[0.9, 0.5, 0.1]] * n, pa.list_(pa.float32())),
    })
    with StageOutput(out, "score") as dest:
        dest.write(table)
        files = dest.finish()
        dest.publish({"counts": {"rows_in": n, "rows_out": n, "dropped": {}},
                      "timings": {"seconds": 0.5}, "parts": files.parts,
                      "dropped_parts": files.dropped_parts})
    s = collect(out.parent, bins=bins)["score"]
    # NaN and ±inf are no score: counted with the nulls, never binned, ranked or averaged
    as_stored = pa.array(scores, pa.float32()).to_pylist()
    valid = [v for v in as_stored if v is not None and math.isfinite(v)]
    assert s["nulls"] == n - len(valid)
    if not valid:
        assert s["counts"] == [] and s["top"] == []
        return
    assert sum(s["counts"]) == len(valid)
    assert len(s["counts"]) == (bins if max(valid) > min(valid) else 1)
    assert sum(sum(p["counts"]) for p in s["per_source"].values()) == len(valid)
    # Ranked by score descending, ties by id ascending; nulls never shown.
    want = sorted(((-v, f"r{i:03d}") for i, v in enumerate(as_stored)
                   if v is not None and math.isfinite(v)))[:3]
    assert [e["id"] for e in s["top"]] == [i for _, i in want]
    assert s["median"] == pytest.approx(statistics.median(valid), abs=1e-4)
    assert s["mean"] == pytest.approx(statistics.fmean(valid), abs=1e-4)
    assert all(e["step_rewards"] == [0.9, 0.5, 0.1] for e in s["top"])
    assert all(len(e["question"]) <= 100 for e in s["top"])


def test_rows_split_into_several_traces_are_explained_not_kept_over_100_percent():
    from curate.report.terminal import split_rows

    assert split_rows({"rows_in": 10, "rows_out": 11, "dropped": {"empty_response": 2}}) == 3
    assert split_rows({"rows_in": 10, "rows_out": 8, "dropped": {"empty_response": 2}}) == 0
    assert split_rows({"rows_in": None, "rows_out": 8, "dropped": {}}) == 0
