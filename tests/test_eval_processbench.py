"""`curate eval` on ProcessBench's own format (-1 = no error), notes for every null figure, and
`--sample N --seed S`.

The fixtures are shaped like ProcessBench's raw JSON (QwenLM/ProcessBench, dataset/*.json: `id`,
`generator`, `problem`, `steps`, `final_answer_correct`, `label` = index of the first wrong step,
-1 when every step is right), as `sample_data/processbench_gsm8k_steps.json` is. Where a figure
is worked out by hand, the rows also carry the columns a scorer writes (`score`, `step_rewards`,
`response_step_rewards`, `scorer`), so that eval takes them as scored and the rewards are known.
"""

from __future__ import annotations

import json
import random
import re

import pyarrow as pa
import pytest
from conftest import SAMPLE, SHARED, needs_shared
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curate.errors import InputError
from curate.evaluation.stage import EvalOptions, evaluate, load_table

pytest.importorskip("math_verify")

PB_SAMPLE = SAMPLE / "processbench_gsm8k_steps.json"
NULLABLE = ("auroc", "auroc_ci95", "average_precision", "top1_accuracy", "oracle_top1",
            "processbench_f1")


def pb_record(i, steps, label, rewards=None, score=None, problem=None):
    """One record in ProcessBench's raw shape (+ a scorer's columns when rewards are given)."""
    rec = {"id": f"gsm8k-{i}", "generator": "Qwen2-7B-Instruct",
           "problem": problem or f"Problem {i}: what is {i} + {i}?",
           "steps": [f"Step {k + 1} of problem {i}: {i} + {k} = {i + k}." for k in range(steps)],
           "final_answer_correct": label == -1, "label": label}
    if rewards is not None:
        rec.update(score=score, scorer="test", step_rewards=[], response_step_rewards=rewards)
    return rec


def write_json(path, records):
    path.write_text(json.dumps(records, indent=1))
    return path


# Six ProcessBench records with known step rewards. At --threshold 0.5 the predicted first
# error is the first step whose reward is < 0.5:
#   gsm8k-0  label -1  [.9 .8 .7]      → none  = truth none  ✓ (correct sample)
#   gsm8k-1  label -1  [.9 .4 .8]      → 1     ≠ none        ✗ (correct sample)
#   gsm8k-2  label  0  [.2 .9]         → 0     = 0           ✓ (erroneous sample)
#   gsm8k-3  label  2  [.9 .3 .1 .2]   → 1     ≠ 2           ✗ (erroneous sample)
#   gsm8k-4  label  2  [.8 .7 .6]      → none  ≠ 2           ✗ (erroneous sample)
#   gsm8k-5  label -1  [.6 .55]        → none  = none        ✓ (correct sample)
# acc_error = 1/3, acc_correct = 2/3, F1 = 2 · 1/3 · 2/3 / (1/3 + 2/3) = 4/9.
# Trace level (no marked error = correct): correct {0: .9, 1: .6, 5: .7}, wrong {2: .2, 3: .65,
# 4: .5}; pairs won: .9 beats 3, .6 beats 2 (.2, .5), .7 beats 3 → AUROC 8/9.
HAND = [(3, -1, [0.9, 0.8, 0.7], 0.9), (3, -1, [0.9, 0.4, 0.8], 0.6), (2, 0, [0.2, 0.9], 0.2),
        (4, 2, [0.9, 0.3, 0.1, 0.2], 0.65), (3, 2, [0.8, 0.7, 0.6], 0.5),
        (2, -1, [0.6, 0.55], 0.7)]


def hand_records():
    return [pb_record(i, n, lab, r, s) for i, (n, lab, r, s) in enumerate(HAND)]


def _json(r):
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


def note_metrics(note: str) -> list[str]:
    """The figures a note names: "auroc, auroc_ci95: why" → ["auroc", "auroc_ci95"]."""
    head = note.split(": ", 1)[0]
    return [m.strip() for m in head.split(",")]


def assert_every_null_has_a_note(out: dict) -> None:
    notes = out["notes"]
    for key in NULLABLE:
        if key in out and out[key] is None:
            assert any(key in note_metrics(n) for n in notes), (key, notes)
    shared = {m for n in notes if n.endswith("too)") for m in note_metrics(n)}
    for kind, rows in (("baseline", out.get("baselines", {})), ("signal",
                                                                 out.get("signals", {}))):
        for name, figs in rows.items():
            own = {m for n in notes if n.startswith(f"{kind} {name}: ")
                   for m in note_metrics(n.removeprefix(f"{kind} {name}: "))}
            for key, v in figs.items():
                if key in NULLABLE and v is None:
                    assert key in own or key in shared, (kind, name, key, notes)


def squeeze(text: str) -> str:
    """Text without whitespace and table borders, so a wrapped table cell reads as one run."""
    return re.sub(r"[\s│┃┌┐└┘├┤┬┴┼─━┏┓┗┛┡┩╇]", "", text)


# --- ProcessBench's -1 convention -------------------------------------------------------------


@pytest.mark.parametrize("column,no_error", [("label", -1), ("first_error_step", -1),
                                             ("first_error_step", None)])
def test_processbench_raw_minus_one_gives_the_hand_computed_f1(cli, tmp_path, column, no_error):
    recs = hand_records()
    for r in recs:
        lab = r.pop("label")
        r[column] = no_error if lab == -1 else lab
    path = write_json(tmp_path / "gsm8k.json", recs)
    args = ["--first-error-column", column] if column != "first_error_step" else []
    out = _json(cli("eval", path, *args, "--threshold", "0.5", "--json"))
    assert out["processbench_f1"] == pytest.approx(4 / 9)
    s = out["step_level"]
    assert (s["acc_error"], s["acc_correct"]) == (pytest.approx(1 / 3), pytest.approx(2 / 3))
    assert (s["n_error"], s["n_correct"], s["rows"], s["out_of_range"]) == (3, 3, 6, 0)
    assert "response_steps" in s["split_rule"]
    # the trace labels come from the same column: -1 (or null) = correct
    assert out["positives"] == 3 and out["labelled_rows"] == 6
    assert out["auroc"] == pytest.approx(8 / 9)
    assert f"derived from {column}" in out["label_note"]
    assert_every_null_has_a_note(out)


def test_processbench_text_view_shows_the_f1(cli, tmp_path):
    path = write_json(tmp_path / "gsm8k.json", hand_records())
    r = cli("eval", path, "--first-error-column", "label", "--threshold", "0.5")
    assert r.exit_code == 0, r.stderr
    assert "ProcessBench F1" in r.stdout and "0.444" in r.stdout


def test_out_of_range_first_error_is_left_out_with_a_note(cli, tmp_path):
    # gsm8k-6 says its first wrong step is 5, but it has 3 steps; gsm8k-7 says -3.
    recs = hand_records() + [pb_record(6, 3, 5, [0.1, 0.1, 0.1], 0.1),
                             pb_record(7, 2, -3, [0.9, 0.9], 0.3)]
    path = write_json(tmp_path / "gsm8k.json", recs)
    out = _json(cli("eval", path, "--first-error-column", "label", "--threshold", "0.5",
                    "--json"))
    assert out["processbench_f1"] == pytest.approx(4 / 9)  # as without the two rows
    assert out["step_level"]["out_of_range"] == 2 and out["step_level"]["rows"] == 6
    assert out["labelled_rows"] == 6  # the trace labels derived from them are unknown too
    note = next(n for n in out["notes"] if "not a step of the row" in n)
    assert note.startswith("2 rows") and "label" in note and "gsm8k-6" in note
    assert "5 of 3 steps" in note


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(
    st.integers(1, 5).flatmap(lambda n: st.tuples(
        st.lists(st.integers(0, 10).map(lambda k: k / 10), min_size=n, max_size=n),
        st.one_of(st.just(-1), st.integers(0, n - 1), st.integers(n, n + 2),
                  st.integers(-4, -2)))),
    min_size=1, max_size=12))
def test_minus_one_convention_matches_a_reference(rows):
    """Any mix of -1, in-range and out-of-range labels: the F1 is the reference computation on
    the in-range rows (-1 = correct), the same under either column name and with null for -1;
    a null F1 always carries a note."""
    def table(column, none_value):
        n = len(rows)
        labels = [none_value if lab == -1 else lab for _, lab in rows]
        return pa.table({
            "id": [f"pb-{i}" for i in range(n)], "question": [f"q{i}" for i in range(n)],
            "trajectory": [""] * n, "response": ["x"] * n,
            "response_steps": [["s"] * len(r) for r, _ in rows],
            column: pa.array(labels, pa.int64()),
            "score": [0.5] * n, "scorer": ["t"] * n,
            "step_rewards": pa.array([[]] * n, pa.list_(pa.float32())),
            "response_step_rewards": pa.array([r for r, _ in rows], pa.list_(pa.float64()))})

    valid = [(r, None if lab == -1 else lab) for r, lab in rows if -1 <= lab < len(r)]
    pred = [next((k for k, v in enumerate(r) if v < 0.5), None) for r, _ in valid]
    errs = [p == t for p, (_, t) in zip(pred, valid, strict=True) if t is not None]
    cors = [p is None for p, (_, t) in zip(pred, valid, strict=True) if t is None]
    want = None
    if errs and cors:
        a, b = sum(errs) / len(errs), sum(cors) / len(cors)
        want = 2 * a * b / (a + b) if a + b else 0.0
    got = [evaluate(table(c, v), EvalOptions(first_error_column=c, threshold=0.5, n_boot=0))
           for c, v in (("label", -1), ("first_error_step", -1), ("first_error_step", None))]
    for out in got:
        assert out["processbench_f1"] == (None if want is None else pytest.approx(want))
        assert out["step_level"]["out_of_range"] == len(rows) - len(valid)
        assert out["labelled_rows"] == len(valid)
        assert_every_null_has_a_note(out)
    assert got[0]["step_level"] | {"first_error_source": "-"} == \
        got[1]["step_level"] | {"first_error_source": "-"}


def test_bundled_processbench_sample_gets_an_f1(cli):
    # The bundled raw sample: 39 records with label -1 and one with label 0.
    out = _json(cli("eval", PB_SAMPLE, "--first-error-column", "label", "--threshold", "0.5",
                    "--json"))
    assert out["processbench_f1"] is not None
    s = out["step_level"]
    assert (s["n_error"], s["n_correct"]) == (1, 39)
    assert out["positives"] == 39 and out["auroc"] is not None


def test_named_first_error_column_must_exist(cli, tmp_path):
    path = write_json(tmp_path / "gsm8k.json", hand_records())
    r = cli("eval", path, "--first-error-column", "lable", "--json")
    assert r.exit_code == 2
    assert "--first-error-column lable: no such column" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_text_first_error_column_is_refused(cli, tmp_path):
    recs = hand_records()
    for r in recs:
        r["label"] = str(r["label"])
    r = cli("eval", write_json(tmp_path / "gsm8k.json", recs), "--first-error-column", "label")
    assert r.exit_code == 2 and "--first-error-column label: is string" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


# --- every null figure says why ---------------------------------------------------------------


def _variants(tmp_path):
    """Inputs on which some figures cannot be computed, each for a different reason."""
    recs = hand_records()
    yield "one class", write_json(tmp_path / "all_wrong.json",
                                  [r | {"label": 1} for r in recs]), ["--first-error-column",
                                                                      "label"]
    yield "all correct", write_json(tmp_path / "all_right.json",
                                    [r | {"label": -1} for r in recs]), ["--first-error-column",
                                                                         "label"]
    # trace labels but no step labels at all (the shape of gsm8k_model_solutions)
    plain = [{"id": r["id"], "question": r["problem"], "response": " ".join(r["steps"]),
              "is_correct": r["label"] == -1, "score": r["score"], "scorer": "t"}
             for r in recs]
    yield "no step labels", write_json(tmp_path / "plain.json", plain), []
    # step labels, but the scorer gave no step rewards
    yield "no rewards", PB_SAMPLE, ["--first-error-column", "label", "--encoder", "none"]
    # a calibration half without erroneous samples (one wrong row in 40)
    yield "calibration", PB_SAMPLE, ["--first-error-column", "label"]
    # a baseline column with no value in any row
    yield "empty baseline", write_json(tmp_path / "extra.json",
                                       [r | {"extra_json": "{}"} for r in recs]), [
        "--first-error-column", "label", "--baseline-column", "extra_json.rm_score"]


def test_every_null_figure_has_a_note_in_json_and_text(cli, tmp_path):
    seen = set()
    for what, path, args in _variants(tmp_path):
        out = _json(cli("eval", path, *args, "--json"))
        assert_every_null_has_a_note(out)
        nulls = {k for k in NULLABLE if k in out and out[k] is None}
        assert nulls, what  # each variant leaves something undefined
        seen |= nulls
        text = cli("eval", path, *args)
        assert text.exit_code == 0, text.stderr
        for note in out["notes"]:  # the terminal view carries the same lines
            assert squeeze(note) in squeeze(text.stdout), (what, note)
    assert seen >= {"auroc", "auroc_ci95", "average_precision", "top1_accuracy",
                    "processbench_f1"}


def test_notes_say_the_specific_reason(cli, tmp_path):
    v = {what: (path, args) for what, path, args in _variants(tmp_path)}

    def notes(what):
        path, args = v[what]
        return "\n".join(_json(cli("eval", path, *args, "--json"))["notes"])

    assert "auroc, auroc_ci95, average_precision: undefined: every labelled row is wrong" \
        in notes("one class")
    assert "every labelled row is correct" in notes("all correct")
    assert "processbench_f1: every usable sample is correct" in notes("all correct")
    assert "processbench_f1: no step labels" in notes("no step labels")
    assert "processbench_f1: the scorer gave no step rewards" in notes("no rewards")
    assert re.search(r"processbench_f1: only 40 rows: the calibration half \(\d+ rows\) has no "
                     "erroneous samples", notes("calibration"))
    assert "top1_accuracy, oracle_top1: no question has two or more scored samples" \
        in notes("one class")
    assert "baseline extra_json.rm_score: auroc, auroc_ci95, average_precision: no labelled " \
        "row has a value" in notes("empty baseline")


# --- --sample N --seed S ----------------------------------------------------------------------


def sorted_by_label(n=120):
    """ProcessBench records ordered as a converted file often is: every erroneous sample first
    (by label), then every correct one (-1)."""
    rnd = random.Random(7)
    recs = []
    for i in range(n):
        steps = rnd.randint(2, 5)
        label = -1 if i % 2 else rnd.randrange(steps)
        rewards = [round(rnd.random(), 2) for _ in range(steps)]
        recs.append(pb_record(i, steps, label, rewards, round(rnd.random(), 3)))
    return sorted(recs, key=lambda r: (r["label"] == -1, r["label"]))


def _ids(path, **opts):
    table, _ = load_table([str(path)], EvalOptions(**opts))
    return table.column("id").to_pylist()


def test_sample_is_the_same_rows_whatever_the_input_order(cli, tmp_path):
    recs = sorted_by_label()
    shuffled = list(recs)
    random.Random(3).shuffle(shuffled)
    a = write_json(tmp_path / "a.json", recs)
    b = write_json(tmp_path / "b.json", shuffled)
    (tmp_path / "parts").mkdir()  # the same rows split over two files, in reverse
    write_json(tmp_path / "parts" / "p0.json", recs[60:][::-1])
    write_json(tmp_path / "parts" / "p1.json", recs[:60])
    ids = _ids(a, sample=25, seed=4)
    assert len(ids) == 25 == len(set(ids))
    assert _ids(b, sample=25, seed=4) == ids == _ids(tmp_path / "parts", sample=25, seed=4)
    assert _ids(a, sample=25, seed=5) != ids  # another seed, another sample
    # the whole report is the same, bootstrap interval and calibration split included
    args = ["--first-error-column", "label", "--sample", "25", "--seed", "4", "--json"]
    outs = [_json(cli("eval", p, *args)) for p in (a, b)]
    for o in outs:
        del o["input"], o["seconds"]
    assert outs[0] == outs[1]
    assert outs[0]["sample"] == {"requested": 25, "rows": 25, "of": 120, "seed": 4}


def test_sample_mixes_a_file_sorted_by_label_where_limit_does_not(cli, tmp_path):
    path = write_json(tmp_path / "sorted.json", sorted_by_label())
    first = _json(cli("eval", path, "--first-error-column", "label", "--limit", "40",
                      "--json"))
    assert first["positives"] == 0 and first["auroc"] is None and first["processbench_f1"] \
        is None
    assert_every_null_has_a_note(first)
    for seed in (0, 1, 2):
        out = _json(cli("eval", path, "--first-error-column", "label", "--sample", "40",
                        "--seed", seed, "--threshold", "0.5", "--json"))
        assert out["rows"] == 40 and 0 < out["positives"] < 40
        assert out["auroc"] is not None and out["processbench_f1"] is not None
        s = out["step_level"]
        assert s["n_error"] > 0 and s["n_correct"] > 0


def test_sample_is_uniform_and_reproducible(tmp_path):
    path = write_json(tmp_path / "pb.json",
                      [pb_record(i, 2, -1, [0.9, 0.9], 0.5) for i in range(20)])
    counts = {f"gsm8k-{i}": 0 for i in range(20)}
    for seed in range(200):
        ids = _ids(path, sample=5, seed=seed)
        assert ids == _ids(path, sample=5, seed=seed)
        for i in ids:
            counts[i] += 1
    # each row is in 5/20 of the samples: 50 of 200 expected (binomial sd ≈ 6.1)
    assert all(25 <= c <= 75 for c in counts.values()), counts
    assert sorted(_ids(path, sample=50)) == sorted(counts)  # N ≥ rows: every row


@pytest.mark.parametrize("args,message", [
    (["--sample", "5", "--limit", "5"], "--limit and --sample: choose one"),
    (["--sample", "0"], "--sample 0: must be at least 1"),
    (["--limit", "0"], "--limit 0: must be at least 1"),
])
def test_sample_bad_options(cli, tmp_path, args, message):
    path = write_json(tmp_path / "pb.json", hand_records())
    r = cli("eval", path, *args, "--json")
    assert r.exit_code == 2
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert json.loads(r.stdout)["exit_code"] == 2


def test_sample_and_limit_refused_in_the_library():
    with pytest.raises(InputError, match="--limit and --sample"):
        EvalOptions(limit=3, sample=3)


# --- the real files ---------------------------------------------------------------------------


@needs_shared
def test_real_processbench_raw_json(cli):
    out = _json(cli("eval", SHARED / "raw" / "processbench_gsm8k.json", "--first-error-column",
                    "label", "--json"))
    s = out["step_level"]
    assert out["processbench_f1"] is not None and s["n_error"] > 0 and s["n_correct"] > 0
    assert s["rows"] == 400 and s["length_mismatch"] == 0 and s["out_of_range"] == 0
    assert out["positives"] == 193 and out["auroc"] is not None  # 193 records with label -1
    assert_every_null_has_a_note(out)


@needs_shared
def test_real_processbench_sample_is_mixed(cli):
    # The converted file lists its erroneous samples first: --limit 200 has no correct one.
    path = SHARED / "real" / "processbench.parquet"
    first = _json(cli("eval", path, "--encoder", "none", "--limit", "200", "--json"))
    assert first["positives"] == 0
    out = _json(cli("eval", path, "--encoder", "none", "--sample", "200", "--seed", "1",
                    "--json"))
    assert 0 < out["positives"] < 200 and out["auroc"] is not None
    assert_every_null_has_a_note(out)
