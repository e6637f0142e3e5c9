"""`curate read --preset auto` on every file of ../shared/data: right preset, sources' steps kept.

The shared folder holds each source twice: as published (raw/) and converted by someone else to
the canonical layout (real/). Reading a raw file must give what that independent conversion
gives, which checks the presets against code we did not write.
"""

import json
import re

import pyarrow.parquet as pq
import pytest
from conftest import SHARED, manifest, needs_shared, read_dropped, read_output

pytestmark = needs_shared

REAL = sorted(p.name for p in (SHARED / "real").glob("*.parquet")) if SHARED.is_dir() else []
EXTRA_COLUMNS = ("step_source", "step_split", "step_labels", "first_error_step", "is_correct",
                 "model", "extra_json")


def _read(cli, path, out, *extra):
    r = cli("read", path, "-o", out, "--json", *extra)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


@pytest.mark.parametrize("name", REAL)
def test_real_files_are_canonical_and_keep_their_steps(cli, tmp_path, name):
    src = pq.read_table(SHARED / "real" / name).to_pylist()
    summary = _read(cli, SHARED / "real" / name, tmp_path / "out")
    assert list(summary["presets"].values()) == ["canonical"]
    out = read_output(tmp_path / "out").to_pylist()
    by_id = {r["id"]: r for r in out}
    dropped = read_dropped(tmp_path / "out")
    dropped_ids = set(dropped.column("id").to_pylist()) if dropped is not None else set()
    # every input row is either written or dropped with a reason, never both, never lost
    assert len(by_id) + len(dropped_ids) == len(src)
    reasons = dict(zip(dropped.column("id").to_pylist(),
                       dropped.column("drop_reason").to_pylist(), strict=True)) \
        if dropped is not None else {}
    for row in src:
        if row["id"] in dropped_ids:
            # the only reasons here: no response, or a control character in a text (corrupt
            # generations: NUL, ESC, backspace … in a few sampled solutions)
            if reasons[row["id"]] == "control_character":
                assert any(re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", row[c] or "")
                           for c in ("question", "trajectory", "response"))
            else:
                assert reasons[row["id"]] == "empty_response"
                assert not (row["response"] or "").strip()
            continue
        got = by_id[row["id"]]
        for col in ("question", "trajectory", "response", "reference_answer", *EXTRA_COLUMNS):
            assert got[col] == row[col], (name, row["id"], col)
        if "steps" in row:
            if row["steps"] is None:
                assert got["trajectory_steps"] is None and got["response_steps"] is None
            elif row["trajectory"]:
                # PRMBench-QwQ: one step list over thinking and answer; labels stay aligned
                assert got["trajectory_steps"] == row["steps"]
                assert got["response_steps"] == []
                if got["step_labels"] is not None:
                    assert len(got["step_labels"]) == len(got["trajectory_steps"])
            else:
                assert got["response_steps"] == row["steps"]
        for col in ("trajectory_steps", "response_steps"):
            if col in row:
                assert got[col] == row[col]


def test_ref_aime_rows_without_solution_are_dropped_with_reason(cli, tmp_path):
    _read(cli, SHARED / "real" / "ref_aime.parquet", tmp_path / "out")
    d = read_dropped(tmp_path / "out").to_pylist()
    assert len(d) == 30 and {r["drop_reason"] for r in d} == {"empty_response"}
    assert all(r["id"].startswith("aime25") for r in d)
    assert manifest(tmp_path / "out")["counts"]["dropped"] == {"empty_response": 30}


def test_raw_processbench_is_the_steps_preset(cli, tmp_path):
    raw = json.loads((SHARED / "raw" / "processbench_gsm8k.json").read_text())
    summary = _read(cli, SHARED / "raw" / "processbench_gsm8k.json", tmp_path / "out")
    assert list(summary["presets"].values()) == ["steps"]
    out = read_output(tmp_path / "out").to_pylist()
    assert len(out) == len(raw)
    real = {r["id"]: r for r in pq.read_table(SHARED / "real" / "processbench.parquet").to_pylist()}
    for src, got in zip(raw, out, strict=True):
        assert got["id"] == src["id"]
        assert got["question"] == src["problem"]
        assert got["response_steps"] == src["steps"]  # the source's own steps, unchanged
        assert got["label"] == src["label"] and got["generator"] == src["generator"]
        assert got["response"] == real[src["id"]]["response"]


def test_raw_marco_is_the_tags_preset(cli, tmp_path):
    summary = _read(cli, SHARED / "raw" / "marco_o1_CoT_demo.json", tmp_path / "out")
    assert list(summary["presets"].values()) == ["tags"]
    mapping = manifest(tmp_path / "out")["mappings"]
    assert list(mapping.values())[0]["think_tags"] == "<Thought>,</Thought>,<Output>,</Output>"
    out = read_output(tmp_path / "out").to_pylist()
    real = pq.read_table(SHARED / "real" / "marco_o1_cot_demo.parquet").to_pylist()
    assert len(out) == len(real) == 125
    assert [r["trajectory"] for r in out] == [r["trajectory"] for r in real]
    assert [r["question"] for r in out] == [r["question"] for r in real]
    # Two records lack </Output>; the other conversion then kept the whole text as the answer,
    # markers included. Ours keeps the answer only.
    differ = [i for i, (a, b) in enumerate(zip(out, real, strict=True))
              if a["response"] != b["response"]]
    assert differ == [8, 109]
    for i in differ:
        assert "<Thought>" not in out[i]["response"] and out[i]["response"]
        assert real[i]["response"].endswith(out[i]["response"])


def test_raw_llamafactory_is_r1_with_typed_parts(cli, tmp_path):
    summary = _read(cli, SHARED / "raw" / "llamafactory_reason_tool_use_demo_50.jsonl",
                    tmp_path / "out")
    assert list(summary["presets"].values()) == ["r1"]
    out = read_output(tmp_path / "out").to_pylist()
    real = pq.read_table(SHARED / "real" / "llamafactory_reason_tool_use.parquet").to_pylist()
    # one row per assistant turn that carries reasoning, as in the independent conversion
    assert len(out) == len(real) == 112
    for a, b in zip(out, real, strict=True):
        assert (a["question"], a["trajectory"], a["response"]) == \
            (b["question"], b["trajectory"], b["response"])
        assert a["turn_index"] == json.loads(b["extra_json"])["turn_index"]
        assert a["tools"] == json.loads(b["extra_json"])["tools"]  # other columns kept


def test_whole_shared_folder_in_one_run(cli, tmp_path):
    """Mixed shapes in one run: each file gets its own preset; all rows accounted for."""
    summary = _read(cli, SHARED / "raw", tmp_path / "out")
    assert sorted(summary["presets"].values()) == ["r1", "steps", "tags"]
    assert summary["rows_out"] == 400 + 125 + 112
