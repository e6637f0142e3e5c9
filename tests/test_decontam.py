"""`curate decontam`: n-gram, short-item and exact matching; the stage through the CLI; bad input;
the bundled benchmarks; recall on the real data's known overlaps (../shared/data)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SHARED, manifest, needs_shared, read_dropped, read_output
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_bad_input import assert_bad_input, assert_nothing_written

from curate.select import decontam as D
from curate.select.decontam import Benchmark, BenchmarkIndex, words

REAL = SHARED / "real"


def bench(name: str, *texts: str, ids: list[str] | None = None) -> Benchmark:
    return Benchmark(name, "test", "question", ids or [f"{name}{i}" for i in range(len(texts))],
                     list(texts), len(texts))


def flagged(index: BenchmarkIndex, *questions: str, min_overlap: int = 1):
    return index.match([list(questions)], True, min_overlap)


LONG = ("Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes "
        "muffins for her friends every day with four.")


# --- words ---------------------------------------------------------------------------------------


def test_words_fold_case_unicode_whitespace_and_edge_punctuation_only():
    assert words("  “Janet’s  DUCKS”\tlay\n16 eggs, (per) day?!") == \
        ["janet’s", "ducks", "lay", "16", "eggs", "per", "day"]
    # inner punctuation is content; a word of punctuation only disappears
    assert words("$2+3$ = $\\frac{1}{2}$ — ok") == ["2+3", "frac{1}{2", "ok"]
    assert words("the $x$-axis, \\(x\\)") == words("the x-axis, x")  # TeX delimiters go
    assert words("ＦＵＬＬ width") == ["full", "width"]  # NFKC
    assert words(None) == [] and words("  ... ") == []


# --- n-gram property tests ----------------------------------------------------------------------

ITEM_WORD = st.from_regex(r"[a-m]{2,7}", fullmatch=True)
FILLER_WORD = st.from_regex(r"[n-z]{2,7}", fullmatch=True)  # never equal to an item word
SPACE = st.sampled_from([" ", "  ", "\n", "\t", " \n\n "])
CASE = st.sampled_from([str.lower, str.upper, str.title])
EDGE = st.sampled_from(["", "", ",", ".", "?", '"', "(", ")"])


@st.composite
def disguised(draw, tokens: list[str]) -> str:
    """The words with random case, whitespace and edge punctuation."""
    out = []
    for w in tokens:
        out.append(draw(EDGE) + draw(CASE)(w) + draw(EDGE))
        out.append(draw(SPACE))
    return "".join(out)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), item=st.lists(ITEM_WORD, min_size=13, max_size=30),
       before=st.lists(FILLER_WORD, max_size=15), after=st.lists(FILLER_WORD, max_size=15))
def test_any_13_word_window_of_an_item_is_flagged(data, item, before, after):
    index = BenchmarkIndex([bench("b", "x y", " ".join(item))])
    start = data.draw(st.integers(0, len(item) - 13))
    window = item[start:start + 13]
    row = " ".join(before) + " " + data.draw(disguised(window)) + " ".join(after)
    (m,) = flagged(index, row)
    assert m is not None
    assert index.label(m.by) == "b:b1"
    if m.ngram == D.EXACT:  # the row is the whole item, as written
        assert words(row) == item
    else:
        assert m.ngram == " ".join(window)
    assert m.count >= 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), item=st.lists(ITEM_WORD, min_size=13, max_size=30),
       filler=st.lists(FILLER_WORD, min_size=1, max_size=10))
def test_sharing_only_12_consecutive_words_is_not_flagged(data, item, filler):
    index = BenchmarkIndex([bench("b", " ".join(item))])
    a = data.draw(st.integers(0, len(item) - 12))
    b = data.draw(st.integers(0, len(item) - 12))
    # two 12-word windows, even overlapping ones, kept apart by words of no item
    row = data.draw(disguised(item[a:a + 12])) + " ".join(filler) + " " + \
        data.draw(disguised(item[b:b + 12]))
    assert flagged(index, row) == [None]
    # ...and the 13th word makes it contaminated
    row13 = " ".join(filler) + " " + " ".join(item[a:a + 13] if a + 13 <= len(item)
                                               else item[a - 1:a + 12])
    assert flagged(index, row13)[0] is not None


def test_hash_collisions_never_drop_a_row(monkeypatch):
    """Every word hashing to 0 makes every window of every row a hash hit: only the word-by-word
    check stands between that and dropping everything; true matches must still be found."""
    texts = [LONG, "Compute $\\dbinom{31}{28}$.", "What is the smallest prime number "
             "that is greater than one hundred and also less than two hundred?"]
    rows = [LONG.upper(), "please compute $\\dbinom{31}{28}$ now", "a smallest prime number "
            "that is greater than one hundred and also less", "unrelated " * 30]  # 12 words
    expected = flagged(BenchmarkIndex([bench("b", *texts)]), *rows)
    monkeypatch.setattr(D, "word_hashes", lambda toks: D.np.zeros(len(toks), D.np.uint64))
    got = flagged(BenchmarkIndex([bench("b", *texts)]), *rows)
    assert [m and (m.by, m.ngram) for m in got] == [m and (m.by, m.ngram) for m in expected]
    assert [m is not None for m in got] == [True, True, False, False]


# --- rules ------------------------------------------------------------------------------------


def test_short_items_match_whole_and_one_word_items_only_exactly():
    index = BenchmarkIndex([bench("m", "Compute $\\dbinom{31}{28}$.", "Simplify $\\sqrt{242}$.",
                                  "Photosynthesis?")])
    wrapped, partial, exact, word, one = flagged(
        index, "Return your answer in \\boxed{}. COMPUTE \\dbinom{31}{28}  please",
        "Compute the value of \\dbinom{31}{28}", "  simplify $\\sqrt{242}$.  ",
        "Explain photosynthesis in plants.", "photosynthesis?")
    assert wrapped.ngram == "compute dbinom{31}{28" and index.label(wrapped.by) == "m:m0"
    assert partial is None  # the words must be consecutive
    assert exact.ngram == D.EXACT and index.label(exact.by) == "m:m1"
    assert word is None  # a one-word item would flag every row holding the word
    assert one.ngram == D.EXACT and index.label(one.by) == "m:m2"
    assert index.short_items[0] == 2 and index.exact_only[0] == 1


def test_exact_match_needs_the_question_and_beats_ngrams():
    index = BenchmarkIndex([bench("b", LONG + " How much?", LONG)])
    (m,) = flagged(index, "  " + LONG.lower().replace(" ", "\n") + " ")
    assert m.ngram == D.EXACT and index.label(m.by) == "b:b1"  # b0 shares n-grams, b1 is equal
    assert m.count == len(words(LONG)) - 12
    # --on trace: the exact key is not computed, the n-grams still are
    (t,) = index.match([[LONG]], False)
    assert t.ngram != D.EXACT and index.label(t.by) == "b:b0"


def test_min_overlap_counts_distinct_ngrams_per_benchmark():
    index = BenchmarkIndex([bench("b", LONG)])
    first14 = " ".join(words(LONG)[:14])  # two 13-grams
    row = f"{first14} {first14} zz"  # repeated: still two distinct n-grams
    assert flagged(index, row, min_overlap=2)[0].count == 2
    assert flagged(index, row, min_overlap=3) == [None]
    assert flagged(index, LONG, min_overlap=100)[0].ngram == D.EXACT  # exact always counts


def test_first_item_in_item_order_names_the_match():
    shared = "the quick brown fox jumps over the lazy dog near the old river"  # 13 words
    a, b = bench("a", "zzz " + shared, "yyy " + shared), bench("b", shared + " www")
    (m,) = flagged(BenchmarkIndex([a, b]), "x " + shared + " q")
    assert m.ngram == shared and m.benches == [0, 1]
    assert BenchmarkIndex([a, b]).label(m.by) == "a:a0"
    (m,) = flagged(BenchmarkIndex([b, a]), "x " + shared + " q")
    assert BenchmarkIndex([b, a]).label(m.by) == "b:b0"


def test_fields_are_checked_apart():
    index = BenchmarkIndex([bench("b", LONG)])
    w = words(LONG)
    # 7 words at the end of the question + 6 at the start of the thinking: no 13-gram
    assert index.match([[" ".join(w[:7])], [" ".join(w[7:13])]], False) == [None]
    assert index.match([["q"], ["thinking " + LONG]], False)[0] is not None


def test_word_budget_chunks_give_the_same_answer(monkeypatch):
    """Long batches are looked up in chunks of WORD_BUDGET words; matches and the reported
    first n-gram must not depend on where the chunks fall."""
    index = BenchmarkIndex([bench("b", LONG, "Compute $\\dbinom{31}{28}$.")])
    qs = ["clean question here", "x " + LONG, "compute \\dbinom{31}{28} twice", "y"]
    thinking = ["no", "also " + LONG, "nothing", "so: " + LONG + " and compute \\dbinom{31}{28}"]

    def run():
        return [m and (m.by, m.ngram, m.count) for m in index.match([qs, thinking], True)]

    whole = run()
    monkeypatch.setattr(D, "WORD_BUDGET", 3)
    assert run() == whole
    assert [m is not None for m in whole] == [False, True, True, True]
    # every 13-gram of LONG, plus the short item's whole text: both of benchmark b
    assert whole[3] == (0, " ".join(words(LONG)[:13]), len(words(LONG)) - 12 + 1)


# --- the stage through the CLI --------------------------------------------------------------------

GSM = pq.read_table(D.BUNDLED_DIR / "gsm8k.parquet").to_pylist()


def traces(tmp_path: Path) -> Path:
    rows = [
        {"id": "leak-exact", "question": GSM[3]["question"], "trajectory": "", "response": "7"},
        {"id": "clean-1", "question": "What is 2 + 2?", "trajectory": "",
         "response": "4 " + GSM[5]["question"]},  # in the response only
        {"id": "leak-ngram", "question": "Answer this: " + " ".join(
            GSM[10]["question"].split()[:14]), "trajectory": "", "response": "ok"},
        {"id": "clean-2", "question": "Name a prime.", "trajectory": "", "response": "2"},
        {"id": "no-response", "question": "Q?", "trajectory": "", "response": ""},
    ]
    path = tmp_path / "in.parquet"
    t = pa.Table.from_pylist(rows)
    pq.write_table(t.append_column("score", pa.array([0.1, 0.2, 0.3, 0.4, 0.5], pa.float32())),
                   path)
    return path


def test_stage_keeps_clean_rows_and_records_each_drop(cli, tmp_path):
    out = tmp_path / "out"
    r = cli("decontam", traces(tmp_path), "-o", out, "--against", "gsm8k,aime24", "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    kept = read_output(out)
    assert kept.column("id").to_pylist() == ["clean-1", "clean-2"]
    assert kept.column("score").type == pa.float32()  # other columns pass through
    d = {x["id"]: x for x in read_dropped(out).to_pylist()}
    assert d["leak-exact"]["drop_reason"] == "contaminated"
    assert d["leak-exact"]["contaminated_by"] == d["leak-exact"]["drop_value"] == \
        f"gsm8k:{GSM[3]['id']}"
    assert d["leak-exact"]["overlap_ngram"] == "exact match"
    assert d["leak-ngram"]["contaminated_by"] == f"gsm8k:{GSM[10]['id']}"
    assert d["leak-ngram"]["overlap_ngram"] == " ".join(words(GSM[10]["question"])[:13])
    assert d["leak-ngram"]["overlap_count"] == 2
    assert d["no-response"]["drop_reason"] == "empty_response"  # the reader's drop, kept
    assert d["no-response"]["contaminated_by"] is None
    assert s["rows_in"] == 5 and s["traces_read"] == 4 and s["rows_out"] == 2
    assert s["contaminated"] == 2 and s["contaminated_share"] == 0.5
    assert s["contaminated_per_benchmark"] == {"gsm8k": 2, "aime24": 0}
    assert s["benchmark_items"] == {"gsm8k": 1319, "aime24": 30}
    assert s["ngram"] == 13 and s["rows_per_s"] > 0
    m = manifest(out)
    assert m["curate"]["stage"] == "decontam"
    assert m["benchmarks"]["gsm8k"]["origin"] == "bundled"
    assert m["benchmarks"]["gsm8k"]["items"] == 1319
    assert m["counts"] == {"rows_in": 5, "rows_out": 2,
                           "dropped": {"empty_response": 1, "contaminated": 2}}

    # --on all also reads the response; a stage folder is a valid INPUT
    out2 = tmp_path / "out2"
    r = cli("decontam", out, "-o", out2, "--against", "gsm8k", "--on", "all", "--json")
    assert r.exit_code == 0, r.output
    assert read_output(out2).column("id").to_pylist() == ["clean-2"]


def test_benchmark_file_without_responses_and_bench_column(cli, tmp_path):
    """A benchmark of bare questions: the trace reader would drop every row (no response)."""
    bench_file = tmp_path / "my_eval.jsonl"
    bench_file.write_text(json.dumps({"prompt": "Name a prime.", "other": 1}) + "\n")
    out = tmp_path / "out"
    r = cli("decontam", traces(tmp_path), "-o", out, "--against", bench_file,
            "--bench-column", "prompt", "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["contaminated_per_benchmark"] == {"my_eval": 1}
    assert read_dropped(out).to_pylist()[-1]["contaminated_by"] == "my_eval:0"  # row number


@pytest.mark.parametrize("args, needles", [
    (["--against", "math5000"], ["'math5000'", "math500, gsm8k, aime24, aime25"]),
    ([], ["--against", "math500"]),
    (["--against", "gsm8k", "--ngram", "0"], ["--ngram 0"]),
    (["--against", "gsm8k", "--min-overlap", "0"], ["--min-overlap 0"]),
    (["--against", "gsm8k", "--on", "answer"], ["--on 'answer'", "question, trace, all"]),
    (["--against", "{notext}"], ["notext.parquet", "no text column", "--bench-column"]),
    (["--against", "{notext}", "--bench-column", "nope"], ["no column 'nope'"]),
    (["--against", "{numbers}"], ["numbers.parquet", "'question' holds int64, not text"]),
    (["--against", "{blank}"], ["'", "blank.parquet", "empty benchmark"]),
    (["--against", "{norows}"], ["--against", "norows.parquet", "no rows"]),
])
def test_bad_input(cli, tmp_path, args, needles):
    files = {
        "notext": pa.table({"id": ["a"], "text": ["What is 2 + 2?"]}),
        "numbers": pa.table({"question": [1, 2]}),
        "blank": pa.table({"question": ["  ", None]}, schema=pa.schema([("question",
                                                                            pa.string())])),
        "norows": pa.table({"question": pa.array([], pa.string())}),
    }
    for name, t in files.items():
        pq.write_table(t, tmp_path / f"{name}.parquet")
    args = [a.format(**{k: tmp_path / f"{k}.parquet" for k in files}) for a in args]
    out = tmp_path / "out"
    r = cli("decontam", traces(tmp_path), "-o", out, *args)
    assert_bad_input(r, out, *needles)
    assert_nothing_written(out)


def test_bundled_benchmarks_carry_license_and_attribution():
    readme = (D.BUNDLED_DIR / "README.md").read_text()
    expected = {"math500": ("MIT", 500), "gsm8k": ("MIT", 1319), "aime24": ("Apache-2.0", 30),
                "aime25": ("Apache-2.0", 30)}
    assert set(D.BUNDLED) == set(expected)
    for name, (lic, rows) in expected.items():
        line = next(x for x in readme.splitlines() if x.startswith(f"| {name} |"))
        assert f"{name}.parquet" in line and line.rstrip(" |").endswith(lic), line
        assert re.search(r"@ [0-9a-f]{8}", line), f"{name}: no origin commit in {line}"
        t = pq.read_table(D.BUNDLED_DIR / f"{name}.parquet")
        assert t.num_rows == rows and {"id", "question"} <= set(t.column_names)
    assert "Permission is hereby granted" in readme  # the MIT notice travels with the files
    assert "Copyright (c) 2021 OpenAI" in readme and "apache.org/licenses" in readme


# --- the real data's known overlaps (../shared/data/README.md) -----------------------------------

KNOWN = {  # file → {source: (benchmark, rows known to be in it)}; None = every row of the file
    "processbench.parquet": {"processbench/gsm8k": ("gsm8k", 400),
                             "processbench/math": ("math500", 112)},
    "prmbench_target400.parquet": {None: ("math500", 277)},
    "prmbench_qwq.parquet": {None: ("math500", 174)},
    # "40 of the 100 questions": 40 rows, i.e. 5 questions x 8 samples
    "qwen25math_rm_maj.parquet": {None: ("math500", 40)},
    "gsm8k_model_solutions.parquet": {None: ("gsm8k", 5276)},
}


def _ws(text):
    return " ".join((text or "").split())


def _known_rows() -> dict[str, str]:
    """id → benchmark, found independently: questions equal after whitespace normalisation."""
    refs = {"gsm8k": {_ws(q) for q in pq.read_table(REAL / "ref_gsm8k_test.parquet")
                      .column("question").to_pylist()},
            "math500": {_ws(q) for q in pq.read_table(REAL / "ref_math500.parquet")
                        .column("question").to_pylist()}}
    known = {}
    for file, groups in KNOWN.items():
        t = pq.read_table(REAL / file, columns=["id", "source", "question"]).to_pylist()
        for source, (name, count) in groups.items():
            rows = [r["id"] for r in t if (source is None or r["source"] == source)
                    and _ws(r["question"]) in refs[name]]
            assert len(rows) == count, (file, source, len(rows))
            known.update(dict.fromkeys(rows, name))
    return known


@needs_shared
@pytest.mark.parametrize("how", ["bundled", "path"])
def test_recall_on_known_overlaps_is_total(cli, tmp_path, how):
    against = ["gsm8k,math500"] if how == "bundled" else \
        [REAL / "ref_gsm8k_test.parquet", "--against", REAL / "ref_math500.parquet"]
    names = {"gsm8k": "gsm8k", "math500": "math500"} if how == "bundled" else \
        {"gsm8k": "ref_gsm8k_test", "math500": "ref_math500"}
    out = tmp_path / "out"
    r = cli("decontam", *[REAL / f for f in KNOWN], "-o", out, "--against", *against, "--json")
    assert r.exit_code == 0, r.output
    dropped = {d["id"]: d for d in read_dropped(out).to_pylist()}
    known = _known_rows()
    missed = [i for i in known if i not in dropped]
    assert not missed, f"{len(missed)} known overlaps kept, e.g. {missed[:3]}"
    for i, name in known.items():
        assert dropped[i]["contaminated_by"].startswith(names[name] + ":"), dropped[i]
        assert dropped[i]["overlap_ngram"] == "exact match"
    # the named item is the one the question equals
    items = {f"{names['gsm8k']}:{r['id']}": _ws(r["question"]) for r in
             pq.read_table(REAL / "ref_gsm8k_test.parquet").to_pylist()}
    sols = pq.read_table(REAL / "gsm8k_model_solutions.parquet").to_pylist()
    assert all(items[dropped[r["id"]]["contaminated_by"]] == _ws(r["question"]) for r in sols)
    # false positives: GSM8K shares no 13-gram with olympiad problems
    pb = pq.read_table(REAL / "processbench.parquet", columns=["id", "source"]).to_pylist()
    olympiad = [r["id"] for r in pb if r["source"] == "processbench/olympiadbench"]
    assert sum(1 for i in olympiad if dropped.get(i, {}).get("contaminated_by", "")
               .startswith(names["gsm8k"])) == 0
    s = json.loads(r.stdout)
    assert s["contaminated_per_benchmark"][names["gsm8k"]] == 5676  # 400 + 5276, no more
