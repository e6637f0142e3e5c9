"""`curate eval`: hand-computed figures on a fixed example, the real data, and bad input."""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SHARED, needs_shared

pytest.importorskip("math_verify")


def _scored(tmp_path, **overrides):
    """Four scored traces whose figures are worked out by hand in the test below."""
    cols = {
        "id": ["r0", "r1", "r2", "r3"],
        "question": ["Q one", "Q two", "q  ONE", "Q two"],  # r0/r2 and r1/r3 share a question
        "trajectory": [""] * 4,
        "response": ["a", "bb", "ccc", "dddd"],
        "score": pa.array([0.1, 0.4, 0.35, 0.8], pa.float32()),
        "is_correct": [False, False, True, True],
        "step_rewards": pa.array([[]] * 4, pa.list_(pa.float32())),
        "response_step_rewards": pa.array([[0.9, 0.3, 0.8], [0.9, 0.6], [0.7, 0.8], [0.6, 0.9]],
                                          pa.list_(pa.float32())),
        "response_steps": [["s"] * 3, ["s"] * 2, ["s"] * 2, ["s"] * 2],
        "step_labels": pa.array([[1, 0, -1], [0, -1], [1, 1], [1, 1]], pa.list_(pa.int8())),
        "first_error_step": pa.array([1, 0, None, None], pa.int64()),
        "scorer": ["test"] * 4,
        "extra_json": [json.dumps({"rm_score": v}) for v in (0.9, 0.1, 0.2, 0.3)],
    }
    cols.update(overrides)
    path = tmp_path / "scored.parquet"
    pq.write_table(pa.table(cols), path)
    return path


def _json(r):
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


def test_hand_computed_figures(cli, tmp_path):
    out = _json(cli("eval", _scored(tmp_path), "--threshold", "0.5", "--json",
                    "--baseline-column", "extra_json.rm_score"))
    # AUROC: pairs (correct, wrong): (0.35,0.1) (0.35,0.4) (0.8,0.1) (0.8,0.4) → 3 of 4 won
    assert out["auroc"] == pytest.approx(0.75)
    # AP: ranked 0.8✓ 0.4✗ 0.35✓ 0.1✗ → P@1 = 1 at R = .5, P@3 = 2/3 at R = 1
    assert out["average_precision"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # questions (normalised text): {r0 ✗ 0.1, r2 ✓ 0.35} and {r1 ✗ 0.4, r3 ✓ 0.8}: both right
    assert out["top1_accuracy"] == pytest.approx(1.0)
    assert out["baselines"]["random"]["top1_accuracy"] == pytest.approx(0.5)
    assert out["baselines"]["longest"]["top1_accuracy"] == pytest.approx(1.0)
    assert out["baselines"]["shortest"]["top1_accuracy"] == pytest.approx(0.0)
    # rm_score 0.9 0.1 0.2 0.3: pairs won (0.2>0.1) (0.3>0.1) → 2 of 4
    assert out["baselines"]["extra_json.rm_score"]["auroc"] == pytest.approx(0.5)
    # step level at 0.5: r0 predicts 1 = truth ✓; r1 predicts none, truth 0 ✗;
    # r2, r3 predict none, no error ✓✓ → acc_error 1/2, acc_correct 1, F1 = 2·.5·1/1.5
    assert out["processbench_f1"] == pytest.approx(2 / 3)
    s = out["step_level"]
    assert (s["acc_error"], s["acc_correct"], s["threshold"]) == (0.5, 1.0, 0.5)
    assert "response_steps" in s["split_rule"]
    assert set(out) >= {"auroc", "average_precision", "top1_accuracy", "processbench_f1",
                        "signals", "baselines"}


def test_human_report_shows_the_tables(cli, tmp_path):
    r = cli("eval", _scored(tmp_path), "--threshold", "0.5")
    assert r.exit_code == 0, r.stderr
    for text in ("AUROC", "0.750", "ProcessBench F1", "0.667", "baseline: longest",
                 "score histogram"):
        assert text in r.stdout


def test_all_one_class_is_undefined_not_nan(cli, tmp_path):
    out = _json(cli("eval", _scored(tmp_path, is_correct=[True] * 4), "--json",
                    "--threshold", "0.5"))
    assert out["auroc"] is None and out["average_precision"] is None
    assert any("undefined" in n for n in out["notes"])
    r = cli("eval", _scored(tmp_path, is_correct=[True] * 4))
    assert "nan" not in r.stdout.lower()


def test_step_label_count_mismatch_is_reported(cli, tmp_path):
    labels = pa.array([[1, 0, -1, 1], [0, -1], [1, 1], [1, 1]], pa.list_(pa.int8()))
    out = _json(cli("eval", _scored(tmp_path, step_labels=labels), "--json",
                    "--threshold", "0.5"))
    s = out["step_level"]
    assert s["length_mismatch"] == 1 and s["rows"] == 3
    assert "1 rows" in s["note"] and "response_steps" in s["note"]


def test_threshold_is_chosen_on_a_calibration_half(cli, tmp_path):
    n = 40
    rewards = [[0.9, 0.2 if i % 2 else 0.8] for i in range(n)]
    out = _json(cli("eval", _scored(
        tmp_path, id=[f"r{i}" for i in range(n)], question=[f"q{i}" for i in range(n)],
        trajectory=[""] * n, response=["x"] * n, score=[0.5] * n,
        is_correct=[i % 2 == 0 for i in range(n)],
        step_rewards=pa.array([[]] * n, pa.list_(pa.float32())),
        response_step_rewards=pa.array(rewards, pa.list_(pa.float32())),
        response_steps=[["a", "b"]] * n,
        step_labels=pa.array([[1, 0] if i % 2 else [1, 1] for i in range(n)],
                             pa.list_(pa.int8())),
        first_error_step=pa.array([1 if i % 2 else None for i in range(n)], pa.int64()),
        scorer=["t"] * n, extra_json=["{}"] * n), "--json"))
    s = out["step_level"]
    assert s["calibration_rows"] + s["test_rows"] == n and s["calibration_rows"] > 0
    assert 0.2 < s["threshold"] <= 0.8 and out["processbench_f1"] == 1.0
    assert out["auroc"] == 0.5 and not math.isnan(out["auroc"])


@pytest.mark.parametrize("args,overrides,message", [
    (["--label-column", "nope"], {}, "--label-column nope: no such column"),
    ([], {"is_correct": ["yes", "no", "yes", "no"]}, "expected boolean or 0/1"),
    ([], {"is_correct": pa.array([0, 1, 2, 1], pa.int64())}, "expected 0/1"),
    (["--baseline-column", "extra_json.rm_score.x", "--baseline-column", "zz"], {},
     "column 'zz' not found"),
    (["--threshold", "1.5"], {}, "--threshold 1.5"),
    (["--step-labels-column", "question"], {}, "expected a list"),
])
def test_bad_input(cli, tmp_path, args, overrides, message):
    r = cli("eval", _scored(tmp_path, **overrides), *args, "--json")
    assert r.exit_code == 2
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    # --json: stdout holds one object on failure too (it used to be empty)
    assert json.loads(r.stdout) == {"error": r.stderr.strip().removeprefix("error: "),
                                    "exit_code": 2}


def test_unscored_input_is_scored_with_signals(cli, tmp_path):
    rows = [{"id": f"r{i}", "question": f"What is {i}+{i}?", "response":
             f"So it is \\boxed{{{2 * i + (i % 2)}}}.", "reference_answer": str(2 * i)}
            for i in range(8)]
    lab = tmp_path / "lab.jsonl"  # the even rows are right
    lab.write_text("\n".join(json.dumps({**r, "is_correct": i % 2 == 0})
                             for i, r in enumerate(rows)))
    out = _json(cli("eval", lab, "--encoder", "none", "--json"))
    assert out["scored_here"] and out["scored_by"].startswith("signals")
    assert out["auroc"] == 1.0
    assert out["signals"]["answer_correct"]["auroc"] == 1.0
    assert out["processbench_f1"] is None and "step_level" not in out
    # ... and says why (no figure is null without a note)
    assert any(n.startswith("processbench_f1: no step labels") for n in out["notes"])


@needs_shared
def test_prmbench_labels_come_from_marked_errors(cli):
    out = _json(cli("eval", SHARED / "real" / "prmbench_target400.parquet", "--encoder",
                    "none", "--json", "--limit", "200"))
    assert "derived from first_error_step" in out["label_note"]
    assert out["labelled_rows"] == 200 and 0 < out["positives"] < 200
