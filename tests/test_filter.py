"""`curate filter`: each option, the order of application, selections against slow references,
independence of row order and batch size, dry-run funnel, bad input.

Inputs are small synthetic Parquet files written in tmp_path; one test reads the real
Qwen2.5-Math reward-model set (8 samples per question) from ../shared.
"""

from __future__ import annotations

import json
import math
import random
import tempfile
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SHARED, manifest, needs_shared, read_dropped, read_output
from hypothesis import given, settings
from hypothesis import strategies as st

from curate.select import filter as F
from curate.select.filter import FilterOptions
from curate.select.normalize import text_key
from curate.stage import run_stage

# --- helpers ------------------------------------------------------------------------------------


@pytest.fixture
def fcli(cli):
    """`curate filter …` through the real app."""

    def invoke(*args):
        return cli("filter", *args)

    return invoke


def write(path: Path, rows: dict) -> Path:
    cols = dict(rows)
    if "score" in cols:  # float32, as `curate score` writes it
        cols["score"] = pa.array(cols["score"], pa.float32())
    pq.write_table(pa.table(cols), path)
    return path


def traces(n: int, questions: int = 1, **extra) -> dict:
    rows = {"id": [f"r{i:03d}" for i in range(n)],
            "question": [f"Question {i % questions}?" for i in range(n)],
            "trajectory": ["think " * (i % 4) for i in range(n)],
            "response": [f"The answer is {i}." for i in range(n)]}
    rows.update(extra)
    return rows


def ids(table: pa.Table | None) -> list[str]:
    return [] if table is None else table.column("id").to_pylist()


def drops(folder: Path) -> dict[str, tuple[str, str]]:
    d = read_dropped(folder)
    if d is None:
        return {}
    return {i: (r, v) for i, r, v in zip(d.column("id").to_pylist(),
                                        d.column("drop_reason").to_pylist(),
                                        d.column("drop_value").to_pylist(), strict=True)}


def run_json(fcli, *args) -> dict:
    r = fcli(*args, "--json")
    assert r.exit_code == 0, (r.stdout, r.stderr)
    return json.loads(r.stdout)


def rank_key(score, id_):
    """The ranking convention, written out slowly: score desc, None last, then id asc."""
    return (score is None, -(score or 0.0), id_)


def assert_bad_input(r, out: Path, *needles: str) -> None:
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ") and "internal error" not in lines[0], lines[0]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.curate-*"))


# --- each option --------------------------------------------------------------------------------

def test_where_sql_conditions_all_must_hold(fcli, tmp_path):
    src = write(tmp_path / "in.parquet", traces(6, source=["aime", "gsm", "aime", None,
                                                            "aime", "aime"],
                                                score=[0.1, 0.9, 0.8, 0.7, None, 0.95]))
    out = tmp_path / "out"
    s = run_json(fcli, src, "-o", out, "--where", "source = 'aime'", "--where", "score > 0.5")
    assert ids(read_output(out)) == ["r002", "r005"]
    d = drops(out)
    # The first failing condition decides; a null condition (source null, score null) drops.
    assert d["r001"] == ("where", "source = 'aime'")
    assert d["r003"] == ("where", "source = 'aime'")
    assert d["r000"] == ("where", "score > 0.5")
    assert d["r004"] == ("where", "score > 0.5")
    assert [(f["option"], f["removed"]) for f in s["funnel"]] == [
        ("--where \"source = 'aime'\"", 2), ("--where 'score > 0.5'", 2)]


def test_where_constant_true_keeps_everything(fcli, tmp_path):
    src = write(tmp_path / "in.parquet", traces(5))
    out = tmp_path / "out"
    run_json(fcli, src, "-o", out, "--where", "TRUE")
    assert ids(read_output(out)) == ids(pq.read_table(src))


def test_tokens_use_length_tokens_when_present(fcli, tmp_path):
    src = write(tmp_path / "in.parquet", traces(4, length_tokens=pa.array([5, 50, 500, None],
                                                                          pa.int32())))
    out = tmp_path / "out"
    s = run_json(fcli, src, "-o", out, "--min-tokens", "10", "--max-tokens", "100")
    # r003's null length falls back to its word count: "think " * 3 + "The answer is 3." = 7.
    assert ids(read_output(out)) == ["r001"]
    d = drops(out)
    assert d["r000"] == ("min_tokens", "5")
    assert d["r002"] == ("max_tokens", "500")
    assert d["r003"] == ("min_tokens", "7")
    assert s["tokens_measure"] == ["length_tokens", F.WORDS_MEASURE]


def test_tokens_fall_back_to_whitespace_words(fcli, tmp_path):
    rows = traces(3)
    rows["trajectory"] = ["one\u00a0two\tthree\n\nfour", None, ""]
    rows["response"] = ["five six", "a b c d e f g h i j k l", "x"]
    src = write(tmp_path / "in.parquet", rows)
    out = tmp_path / "out"
    s = run_json(fcli, src, "-o", out, "--min-tokens", "2", "--max-tokens", "10")
    assert ids(read_output(out)) == ["r000"]  # 6 words, as len(str.split()) counts them
    assert drops(out) == {"r001": ("max_tokens", "12"), "r002": ("min_tokens", "1")}
    assert s["tokens_measure"] == [F.WORDS_MEASURE]


def test_require_answer_has_answer_then_answer_column(fcli, tmp_path):
    src = write(tmp_path / "a.parquet", traces(3, has_answer=[True, False, None]))
    out = tmp_path / "out"
    run_json(fcli, src, "-o", out, "--require-answer")
    assert ids(read_output(out)) == ["r000"]
    assert drops(out) == {"r001": ("require_answer", "false"),
                          "r002": ("require_answer", "null")}

    src = write(tmp_path / "b.parquet", traces(3, answer=["42", "  ", None]))
    out2 = tmp_path / "out2"
    run_json(fcli, src, "-o", out2, "--require-answer")
    assert ids(read_output(out2)) == ["r000"]
    assert drops(out2) == {"r001": ("require_answer", "blank"),
                           "r002": ("require_answer", "null")}


def test_require_answer_without_signals_is_bad_input(fcli, tmp_path):
    src = write(tmp_path / "in.parquet", traces(3))
    out = tmp_path / "out"
    assert_bad_input(fcli(src, "-o", out, "--require-answer"), out, "--require-answer",
                     "curate score")


def test_answer_correct_uses_the_column(fcli, tmp_path):
    src = write(tmp_path / "in.parquet", traces(4, answer_correct=[True, False, None, None],
                                                reference_answer=["1", "2", None, "4"]))
    out = tmp_path / "out"
    run_json(fcli, src, "-o", out, "--answer-correct")
    assert ids(read_output(out)) == ["r000"]
    assert drops(out) == {"r001": ("answer_correct", "false"),
                          "r002": ("answer_correct", "no reference"),
                          "r003": ("answer_correct", "null")}


def test_answer_correct_checks_answers_itself(fcli, tmp_path):
    rows = traces(4, reference_answer=["\\frac{1}{2}", "7", None, "x"])
    rows["response"] = ["So the answer is $\\boxed{0.5}$.", "The answer is \\boxed{8}.",
                        "The answer is \\boxed{3}.", "no idea"]
    src = write(tmp_path / "in.parquet", rows)
    out = tmp_path / "out"
    run_json(fcli, src, "-o", out, "--answer-correct")
    assert ids(read_output(out)) == ["r000"]  # 0.5 == 1/2 by math-verify
    assert drops(out) == {"r001": ("answer_correct", "false"),
                          "r002": ("answer_correct", "no reference"),
                          "r003": ("answer_correct", "false")}


def test_max_repetition_column_and_computed(fcli, tmp_path):
    loop = " ".join(["we add the two numbers and check the sum again"] * 6)
    rows = traces(3, repetition=pa.array([0.05, 0.6, None], pa.float32()))
    rows["trajectory"] = ["short", "short", loop]
    src = write(tmp_path / "in.parquet", rows)
    out = tmp_path / "out"
    run_json(fcli, src, "-o", out, "--max-repetition", "0.3")
    assert ids(read_output(out)) == ["r000"]
    d = drops(out)
    assert d["r001"] == ("max_repetition", "0.6")
    assert d["r002"][0] == "max_repetition" and float(d["r002"][1]) > 0.5

    src2 = write(tmp_path / "b.parquet", {k: v for k, v in rows.items() if k != "repetition"})
    out2 = tmp_path / "out2"
    run_json(fcli, src2, "-o", out2, "--max-repetition", "0.3")
    assert ids(read_output(out2)) == ["r000", "r001"]


def test_min_score_inclusive_nulls_and_nan_dropped(fcli, tmp_path):
    src = write(tmp_path / "in.parquet", traces(5, score=[0.5, 0.49, None, float("nan"), 0.9]))
    out = tmp_path / "out"
    run_json(fcli, src, "-o", out, "--min-score", "0.5")
    assert ids(read_output(out)) == ["r000", "r004"]
    assert drops(out) == {"r001": ("min_score", "0.49"), "r002": ("min_score", "null"),
                          "r003": ("min_score", "null")}


def test_min_score_without_score_is_bad_input(fcli, tmp_path):
    src = write(tmp_path / "in.parquet", traces(3))
    out = tmp_path / "out"
    assert_bad_input(fcli(src, "-o", out, "--min-score", "0.5"), out, "no score column",
                     "curate score")


def test_top_k_keeps_best_in_input_order(fcli, tmp_path):
    src = write(tmp_path / "in.parquet", traces(6, score=[0.2, 0.9, 0.5, 0.9, None, 0.7]))
    out = tmp_path / "out"
    run_json(fcli, src, "-o", out, "--top-k", "3")
    assert ids(read_output(out)) == ["r001", "r003", "r005"]  # input order, not rank order
    assert drops(out) == {"r000": ("top_k", "0.2"), "r002": ("top_k", "0.5"),
                          "r004": ("top_k", "null")}


@pytest.mark.parametrize(("frac", "kept"), [(0.25, 2), (0.5, 5), (1.0, 10), (0.01, 1)])
def test_top_frac_rounds_down_at_least_one(fcli, tmp_path, frac, kept):
    scores = [i / 10 for i in range(12)]
    src = write(tmp_path / "in.parquet", traces(12, score=scores))
    out = tmp_path / "out"
    # 2 rows fail --where first: the share is of the 10 that survive.
    s = run_json(fcli, src, "-o", out, "--where", "score >= 0.2", "--top-frac", str(frac))
    got = ids(read_output(out))
    assert len(got) == kept == s["rows_out"]
    assert got == [f"r{i:03d}" for i in range(12 - kept, 12)]
    assert s["funnel"][-1]["filter"] == "top_frac"


def test_top_frac_counts_the_share_as_typed(tmp_path):
    src = write(tmp_path / "in.parquet", traces(100, score=[i / 100 for i in range(100)]))
    s = run_stage("filter", [str(src)], None, FilterOptions(top_frac=0.29), dry_run=True)
    assert s["rows_out"] == 29  # 0.29 * 100 == 28.999999999999996 in binary floating point


def test_per_question_uses_normalised_question_text(fcli, tmp_path):
    rows = traces(6, score=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    # Same question up to case, width and spacing; a different number is another question.
    rows["question"] = ["What is 2+2?", "WHAT  is 2+2? ", "what is ２+２?", "What is 2+3?",
                        "What is 2+3?", "What is 2+3?"]
    src = write(tmp_path / "in.parquet", rows)
    out = tmp_path / "out"
    run_json(fcli, src, "-o", out, "--per-question", "1")
    assert ids(read_output(out)) == ["r002", "r005"]
    d = drops(out)
    assert d["r000"] == ("per_question", "rank>1, score 0.1")
    assert {i for i, (r, _) in d.items() if r == "per_question"} == {"r000", "r001", "r003",
                                                                      "r004"}


def test_per_question_with_question_key(fcli, tmp_path):
    src = write(tmp_path / "in.parquet", traces(6, questions=6, problem_id=[1, 1, 1, 2, 2, 3],
                                                score=[0.3, 0.2, 0.1, 0.5, 0.5, 0.0]))
    out = tmp_path / "out"
    run_json(fcli, src, "-o", out, "--per-question", "2", "--question-key", "problem_id")
    # problem 2 is a tie broken by id; every question text differs, so the key decides.
    assert ids(read_output(out)) == ["r000", "r001", "r003", "r004", "r005"]
    assert drops(out)["r002"][0] == "per_question"


def test_selection_needs_scores_unless_allowed(fcli, tmp_path):
    src = write(tmp_path / "in.parquet", traces(5, questions=2))
    out = tmp_path / "out"
    assert_bad_input(fcli(src, "-o", out, "--top-k", "2"), out, "--top-k", "curate score")
    assert_bad_input(fcli(src, "-o", out, "--per-question", "1"), out, "--per-question",
                     "curate score")
    run_json(fcli, src, "-o", out, "--top-k", "2", "--allow-unscored")
    assert ids(read_output(out)) == ["r000", "r001"]  # id order
    out2 = tmp_path / "out2"
    run_json(fcli, src, "-o", out2, "--per-question", "1", "--allow-unscored")
    assert ids(read_output(out2)) == ["r000", "r001"]


def test_reader_drops_are_kept_and_input_rows_recorded(fcli, tmp_path):
    rows = traces(5, score=[0.9, 0.1, 0.8, 0.2, 0.7])
    rows["response"][3] = "  "  # the reader drops it (empty_response)
    src = write(tmp_path / "in.parquet", rows)
    out = tmp_path / "out"
    s = run_json(fcli, src, "-o", out, "--min-score", "0.5")
    assert s["rows_in"] == 5 and s["traces"] == 4 and s["rows_out"] == 3
    assert list(s["dropped"]) == ["empty_response", "min_score"]
    d = read_dropped(out)
    assert d.column("drop_reason").to_pylist() == ["empty_response", "min_score"]
    assert d.column("input_row").to_pylist()[0] == 3

    clean = write(tmp_path / "clean.parquet", traces(5, score=[0.9, 0.1, 0.8, 0.2, 0.7]))
    run_json(fcli, clean, "-o", tmp_path / "out2", "--min-score", "0.5", "--top-k", "1")
    d = read_dropped(tmp_path / "out2")
    rows_of = dict(zip(d.column("id").to_pylist(), d.column("input_row").to_pylist(),
                       strict=True))
    assert rows_of == {"r001": 1, "r003": 3, "r002": 2, "r004": 4}
    assert set(d.column("input_file").to_pylist()) == {str(clean)}


# --- order of application -----------------------------------------------------------------------

def test_order_of_application(fcli, tmp_path):
    # Question A: four strong samples; question B: two weak ones. r002 fails both --where and
    # --min-score: the earlier filter names it.
    rows = traces(6, score=[0.95, 0.9, 0.1, 0.85, 0.4, 0.35],
                  length_tokens=pa.array([100, 100, 1, 100, 100, 100], pa.int32()))
    rows["question"] = ["A", "A", "A", "A", "B", "B"]
    src = write(tmp_path / "in.parquet", rows)
    out = tmp_path / "out"
    s = run_json(fcli, src, "-o", out, "--top-k", "2", "--per-question", "1",
                 "--min-score", "0.36", "--min-tokens", "10", "--where", "length_tokens > 5")
    # per-question runs before top-k: top-k chooses among one per question (r000, r004), not
    # the two best overall (r000, r001); min-score runs before per-question, so B's best
    # surviving sample is r004 and r005 never reaches per-question.
    assert ids(read_output(out)) == ["r000", "r004"]
    d = drops(out)
    assert d["r002"] == ("where", "length_tokens > 5")
    assert d["r005"] == ("min_score", "0.35")
    assert d["r001"][0] == d["r003"][0] == "per_question"
    assert [f["filter"] for f in s["funnel"]] == ["where", "min_tokens", "min_score",
                                                  "per_question", "top_k"]
    assert [f["removed"] for f in s["funnel"]] == [1, 0, 1, 2, 0]
    assert list(s["dropped"]) == ["where", "min_score", "per_question"]


# --- selections against slow references ---------------------------------------------------------

SCORES = st.one_of(st.none(), st.sampled_from([0.0, 0.25, 0.5, 1.0]),
                   st.floats(-1, 1, allow_nan=False, width=32))


def _library_run(rows: dict, opts: FilterOptions) -> tuple[list[str], dict]:
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        # Prune after every batch, so the bounded buffers are what is being tested.
        mp.setattr(F, "MIN_PRUNE_ROWS", 1)
        src = write(Path(tmp) / "in.parquet", rows)
        run_stage("filter", [str(src)], str(Path(tmp) / "out"), opts)
        return ids(read_output(Path(tmp) / "out")), drops(Path(tmp) / "out")


@settings(max_examples=40, deadline=None)
@given(scores=st.lists(SCORES, min_size=1, max_size=40), k=st.integers(1, 45),
       batch=st.integers(1, 9), seed=st.integers(0, 10**6))
def test_top_k_matches_a_full_sort(scores, k, batch, seed):
    n = len(scores)
    order = list(range(n))
    random.Random(seed).shuffle(order)  # ids out of input order
    rows = traces(n, score=scores)
    rows["id"] = [f"t{order[i]:02d}" for i in range(n)]
    got, dropped = _library_run(rows, FilterOptions(top_k=k, batch_rows=batch))
    slow = sorted(zip(scores, rows["id"], strict=True), key=lambda p: rank_key(*p))[:k]
    chosen = {i for _, i in slow}
    assert got == [i for i in rows["id"] if i in chosen]  # input order
    assert set(dropped) == set(rows["id"]) - chosen
    assert all(r == "top_k" for r, _ in dropped.values())


@settings(max_examples=40, deadline=None)
@given(data=st.lists(st.tuples(st.integers(0, 4), SCORES), min_size=1, max_size=40),
       k=st.integers(1, 4), batch=st.integers(1, 9))
def test_per_question_matches_slow_grouping(data, k, batch):
    rows = traces(len(data))
    rows["question"] = [f"q{q}" for q, _ in data]
    rows["score"] = [s for _, s in data]
    got, dropped = _library_run(rows, FilterOptions(per_question=k, batch_rows=batch))
    groups: dict[str, list] = {}
    for q, s, i in zip(rows["question"], rows["score"], rows["id"], strict=True):
        groups.setdefault(q, []).append((s, i))
    chosen = {i for g in groups.values() for _, i in sorted(g, key=lambda p: rank_key(*p))[:k]}
    assert got == [i for i in rows["id"] if i in chosen]
    assert set(dropped) == set(rows["id"]) - chosen
    assert all(r == "per_question" and v.startswith(f"rank>{k}, ")
               for r, v in dropped.values())


def test_buffers_stay_bounded(tmp_path, monkeypatch):
    """The first pass never holds more than about 2×K candidates (+ one batch)."""
    monkeypatch.setattr(F, "MIN_PRUNE_ROWS", 1)
    peak = []
    add = F._Selector.add

    def spy(self, keys):
        add(self, keys)
        peak.append(self.rows)

    monkeypatch.setattr(F._Selector, "add", spy)
    n, k, batch = 300, 5, 7
    rng = random.Random(1)
    src = write(tmp_path / "in.parquet", traces(n, questions=10,
                                                score=[rng.random() for _ in range(n)]))
    run_stage("filter", [str(src)], str(tmp_path / "a"), FilterOptions(top_k=k, batch_rows=batch))
    assert max(peak) <= 2 * k + batch
    peak.clear()
    run_stage("filter", [str(src)], str(tmp_path / "b"), FilterOptions(per_question=2,
                                                                batch_rows=batch))
    assert max(peak) <= 2 * 10 * 2 + batch
    assert len(read_output(tmp_path / "b")) == 20


@pytest.mark.parametrize("options", [
    {"top_k": 7}, {"per_question": 2}, {"top_frac": 0.3},
    {"per_question": 2, "top_k": 5, "min_score": 0.2, "where": ["length(response) > 16"]},
])
def test_output_independent_of_row_order_and_batch_size(tmp_path, options):
    rng = random.Random(7)
    n = 60
    rows = traces(n, questions=9, score=[rng.choice([None, 0.5, round(rng.random(), 2)])
                                         for _ in range(n)])
    perm = list(range(n))
    rng.shuffle(perm)
    shuffled = {k: [v[i] for i in perm] for k, v in rows.items()}
    results = []
    for name, data, batch in (("a", rows, 2048), ("b", rows, 1), ("c", shuffled, 4),
                              ("d", shuffled, 13)):
        src = write(tmp_path / f"{name}.parquet", data)
        run_stage("filter", [str(src)], str(tmp_path / f"out-{name}"),
                     FilterOptions(batch_rows=batch, **options))
        kept = ids(read_output(tmp_path / f"out-{name}"))
        assert kept == [i for i in data["id"] if i in set(kept)]  # input order
        results.append((sorted(kept), drops(tmp_path / f"out-{name}")))
    assert all(r == results[0] for r in results[1:])
    assert results[0][0]


# --- dry run ------------------------------------------------------------------------------------

def test_dry_run_funnel_equals_real_run_and_writes_nothing(fcli, tmp_path):
    rng = random.Random(3)
    n = 50
    src = write(tmp_path / "in.parquet", traces(
        n, questions=7, score=[rng.choice([None, rng.random()]) for _ in range(n)],
        has_answer=[rng.random() > 0.2 for _ in range(n)]))
    args = ["--where", "length(trajectory) > 0", "--require-answer", "--min-score", "0.1",
            "--per-question", "3", "--top-frac", "0.6"]
    out = tmp_path / "out"
    dry = run_json(fcli, src, "-o", out, *args, "--dry-run")
    assert not out.exists()
    real = run_json(fcli, src, "-o", out, *args)
    assert dry["funnel"] == real["funnel"]
    assert dry["dropped"] == real["dropped"]
    assert dry["rows_out"] == real["rows_out"] == len(read_output(out))
    assert sum(real["dropped"].values()) == len(read_dropped(out))
    assert all(f["removed"] > 0 for f in real["funnel"])
    m = manifest(out)
    assert m["curate"]["stage"] == "filter"
    assert m["summary"]["funnel"] == real["funnel"]
    assert m["config"]["per_question"] == 3


def test_human_summary_shows_the_funnel(fcli, tmp_path):
    src = write(tmp_path / "in.parquet", traces(8, score=[i / 8 for i in range(8)]))
    r = fcli(src, "--dry-run", "--min-score", "0.5", "--top-k", "2")
    assert r.exit_code == 0, r.stderr
    assert "--min-score 0.5" in r.stdout and "-4 → 4" in r.stdout
    assert "--top-k 2" in r.stdout and "-2 → 2" in r.stdout
    assert "rows/s" in r.stdout


# --- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "needles"), [
    (["--top-k", "0"], ["--top-k 0"]),
    (["--top-k", "-3"], ["--top-k -3"]),
    (["--top-frac", "0"], ["--top-frac 0"]),
    (["--top-frac", "1.5"], ["--top-frac 1.5"]),
    (["--top-k", "2", "--top-frac", "0.5"], ["choose one"]),
    (["--per-question", "0"], ["--per-question 0"]),
    (["--where", "nosuch > 1"], ["--where", "nosuch", "valid columns"]),
    (["--where", "score >"], ["--where 'score >'"]),
    (["--where", "question + 1 > 2"], ["--where", "str"]),
    (["--where", "score + 1"], ["not a true/false condition"]),
    (["--where", "score > avg(score)"], ["aggregates"]),
    (["--per-question", "1", "--question-key", "nosuch"], ["--question-key nosuch"]),
    (["--min-tokens", "9", "--max-tokens", "3"], ["--min-tokens 9", "--max-tokens 3"]),
    ([], ["-o/--output"]),
])
def test_bad_input(fcli, tmp_path, args, needles):
    src = write(tmp_path / "in.parquet", traces(4, score=[0.1, 0.2, 0.3, 0.4]))
    out = tmp_path / "out"
    cmd = [src, *args] if not args else [src, "-o", out, *args]
    assert_bad_input(fcli(*cmd), out, *needles)


def test_nothing_survives_is_bad_input(fcli, tmp_path):
    src = write(tmp_path / "in.parquet", traces(4, score=[0.1, 0.2, 0.3, 0.4]))
    out = tmp_path / "out"
    assert_bad_input(fcli(src, "-o", out, "--min-score", "0.9"), out, "no row survived",
                     "min_score -4")


# --- real data ----------------------------------------------------------------------------------

@needs_shared
def test_real_per_question_two_of_eight(fcli, tmp_path):
    """Qwen2.5-Math outcome-RM samples, 8 per question, scored by their rm_score."""
    df = pl.read_parquet(SHARED / "real" / "qwen25math_rm_maj.parquet")
    df = df.with_columns(score=pl.col("extra_json").str.json_path_match("$.rm_score")
                         .cast(pl.Float32))
    # read drops the one sample with a control character in its text (a corrupt generation)
    corrupt = df.filter(pl.col("response").str.contains(r"[\x00-\x08\x0b\x0c\x0e-\x1f]"))
    assert corrupt.height == 1
    df = df.filter(~pl.col("id").is_in(corrupt["id"].to_list()))
    pl.concat([df, corrupt]).write_parquet(tmp_path / "with-corrupt.parquet")
    src = tmp_path / "with-corrupt.parquet"
    out = tmp_path / "out"
    s = run_json(fcli, src, "-o", out, "--per-question", "2")
    kept = pl.from_arrow(read_output(out))
    assert s["rows_out"] == kept.height == 2 * df["question"].n_unique()
    per_q = kept.group_by(pl.col("question").map_elements(text_key, return_dtype=pl.String))
    assert set(per_q.len()["len"].to_list()) == {2}
    best = (df.sort(["score", "id"], descending=[True, False]).group_by("question",
                                                                         maintain_order=True)
            .head(2))
    assert sorted(kept["id"].to_list()) == sorted(best["id"].to_list())
    assert s["dropped"] == {"control_character": 1,
                            "per_question": df.height - 2 * df["question"].n_unique()}
    assert not math.isnan(kept["score"].min())
