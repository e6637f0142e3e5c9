"""`curate dedup`: exact and near duplicates, the kept row of each cluster, LSH parameters,
shingle hashing against a plain-Python reference, and bad input."""

from __future__ import annotations

import math
import random
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import manifest, read_dropped, read_output
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curate.errors import InputError
from curate.select import dedup as D
from curate.select import minhash as mh
from curate.select.normalize import normalize_text, text_key
from curate.stage import run_stage

# --- helpers ------------------------------------------------------------------------------


@pytest.fixture
def dcli(cli):
    return cli


def write_rows(path: Path, rows: list[dict]) -> Path:
    cols = {k: [r.get(k) for r in rows] for k in rows[0]}
    types = {"score": pa.float32()}
    pq.write_table(pa.table({k: pa.array(v, types.get(k)) for k, v in cols.items()}), path)
    return path


def run(tmp: Path, rows: list[dict], name: str = "out", **opts) -> dict:
    inp = write_rows(tmp / f"{name}.parquet", rows)
    return run_stage("dedup", [str(inp)], str(tmp / name), D.DedupOptions(**opts))


def outcome(folder: Path) -> tuple[set, dict]:
    """(ids kept, {dropped id: (reason, dup_of, dup_cluster, dup_jaccard)})"""
    kept = set(read_output(folder).column("id").to_pylist())
    dropped = read_dropped(folder)
    drops = {}
    if dropped is not None:
        for r in dropped.to_pylist():
            drops[r["id"]] = (r["drop_reason"], r["dup_of"], r["dup_cluster"], r["dup_jaccard"])
    return kept, drops


def rank_key(row: dict):
    s = row.get("score")
    null = s is None or (isinstance(s, float) and math.isnan(s))
    return (null, 0.0 if null else -s, row["id"])


def word_shingles(text: str, n: int) -> set:
    w = normalize_text(text).split()
    if not w:
        return set()
    return {tuple(w)} if len(w) < n else {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


VOCAB = ("the sum of x and y is 3 4 12 so we get therefore step check divide by 7 "
         "area = 2 ^ + - triangle circle radius equals hence answer").split()


def text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(n))


# --- exact --------------------------------------------------------------------------------


def test_exact_variants_collapse_numbers_do_not(tmp_path):
    base = "Step 1: the sum is 12.\n\nStep 2: so x = 3 and the ANSWER is 15."
    rows = [
        {"id": "a", "question": "q", "response": base, "score": 0.5},
        {"id": "b", "question": "q", "response": "  step 1:  the SUM is 12.\nstep 2: so x = 3 "
                                                  "and the answer is 15.  ", "score": 0.9},
        # NFKC: full-width digits and a ligature fold to the plain forms
        {"id": "c", "question": "q", "response": base.replace("12", "１２").replace(
            "Step 2: so", "Step 2: ﬁne, so").replace("ﬁne, ", ""), "score": 0.1},
        {"id": "d", "question": "q", "response": base.replace("12", "13"), "score": 0.2},
        {"id": "e", "question": "q", "response": base.replace("15", "16"), "score": 0.3},
    ]
    run(tmp_path, rows, mode="exact", on="response")
    kept, drops = outcome(tmp_path / "out")
    assert kept == {"b", "d", "e"}  # b has the best score of the a/b/c group
    assert drops == {"a": ("exact_duplicate", "b", "b", 1.0),
                     "c": ("exact_duplicate", "b", "b", 1.0)}
    dropped = read_dropped(tmp_path / "out")
    assert dropped.column("drop_value").to_pylist() == ["exact"] * 2
    assert dropped.column("input_row").to_pylist() == [0, 2]  # a and c: rows 0 and 2 of INPUT
    assert dropped.column("input_file").to_pylist() == [str(tmp_path / "out.parquet")] * 2


def test_rows_dropped_by_the_read_pass_through(tmp_path):
    rows = [{"id": "a", "question": "q", "response": "same text", "score": 1.0},
            {"id": "b", "question": "q", "response": "  ", "score": 1.0},
            {"id": "c", "question": "q", "response": "SAME text", "score": 0.0}]
    s = run(tmp_path, rows, on="response")
    assert s["dropped"] == {"empty_response": 1, "exact_duplicate": 1}
    assert (s["rows_in"], s["rows_out"]) == (2, 1)
    d = {r["id"]: r for r in read_dropped(tmp_path / "out").to_pylist()}
    assert d["b"]["drop_reason"] == "empty_response" and d["b"]["dup_of"] is None
    assert d["c"]["dup_of"] == "a"
    # one schema for both kinds of drops, in every part
    parts = sorted((tmp_path / "out" / "_dropped").glob("part-*.parquet"))
    assert len({str(pq.read_schema(p)) for p in parts}) == 1


def test_ligature_and_fullwidth_forms_are_exact_duplicates(tmp_path):
    rows = [{"id": "p", "question": "q", "response": "ﬁnd ＡＢＣ in Ⅻ", "score": None},
            {"id": "o", "question": "q", "response": "find abc in xii", "score": None}]
    run(tmp_path, rows, mode="exact", on="response")
    kept, drops = outcome(tmp_path / "out")
    assert kept == {"o"} and drops["p"][1] == "o"  # no score: the smaller id is kept


def test_ties_go_to_smaller_id_and_null_scores_rank_last(tmp_path):
    r = "the same response text"
    rows = [{"id": "k2", "question": "q", "response": r, "score": 0.7},
            {"id": "k1", "question": "q", "response": r, "score": 0.7},
            {"id": "a0", "question": "q", "response": r, "score": None},
            {"id": "a1", "question": "q", "response": r, "score": float("nan")}]
    run(tmp_path, rows, on="response")
    kept, drops = outcome(tmp_path / "out")
    assert kept == {"k1"}
    assert {k: v[1] for k, v in drops.items()} == {"k2": "k1", "a0": "k1", "a1": "k1"}


def test_exact_key_is_text_key():
    for t in ["", "Ab  c\n\nd", "ＡＢ ﬁ 12", "x\u00a0y", "\ud800 lone surrogate"]:
        assert D.exact_key(normalize_text(t)) == int(text_key(t), 16)


def test_on_question_keeps_one_trace_per_question(tmp_path):
    rows = [{"id": f"r{i}", "question": f"What is {i % 3} + 1?", "response": f"answer {i}",
             "score": float(i)} for i in range(9)]
    s = run(tmp_path, rows, on="question", mode="exact")
    kept, _ = outcome(tmp_path / "out")
    assert kept == {"r6", "r7", "r8"}  # the best score of each question
    assert s["cluster_sizes"] == {"2": 0, "3-4": 3, "5-8": 0, "9+": 0}


# --- near ---------------------------------------------------------------------------------


def test_near_duplicates_found_and_justified(tmp_path):
    rng = random.Random(3)
    rows, planted = [], {}
    for i in range(40):
        words = text(rng, 300).split()
        rows.append({"id": f"o{i:02d}", "question": "q", "trajectory": " ".join(words[:150]),
                     "response": " ".join(words[150:]), "score": 0.5})
        w = list(words)
        del w[rng.randrange(len(w))]  # one word removed: J ≈ 0.97 on word 5-grams
        rows.append({"id": f"v{i:02d}", "question": "q", "trajectory": " ".join(w[:150]),
                     "response": " ".join(w[150:]), "score": 0.9})
        planted[f"o{i:02d}"] = f"v{i:02d}"
    s = run(tmp_path, rows)
    kept, drops = outcome(tmp_path / "out")
    assert set(drops) == set(planted)  # every original dropped for its better-scored variant
    for orig, var in planted.items():
        reason, dup_of, cluster, jac = drops[orig]
        assert (reason, dup_of, cluster) == ("near_duplicate", var, var)
        trace = {r["id"]: r["trajectory"] + "\n\n" + r["response"] for r in rows}
        assert jac == pytest.approx(jaccard(word_shingles(trace[orig], 5),
                                            word_shingles(trace[var], 5)), abs=1e-9)
        assert jac >= 0.8
    assert s["near_duplicates"] == 40 and s["verified_pairs"] >= 40
    assert s["lsh"]["bands"] * s["lsh"]["rows"] <= 128
    m = manifest(tmp_path / "out")
    assert m["curate"]["stage"] == "dedup" and m["summary"]["candidate_pairs"] >= 40


def test_mode_exact_leaves_near_duplicates_and_mode_near_catches_exact(tmp_path):
    rng = random.Random(5)
    a = text(rng, 120)
    b = a.rsplit(" ", 1)[0] + " different"
    rows = [{"id": "a", "question": "q", "response": a, "score": 1.0},
            {"id": "b", "question": "q", "response": b, "score": 0.5},
            {"id": "c", "question": "q", "response": a.upper(), "score": 0.1}]
    run(tmp_path, rows, name="ex", mode="exact", on="response")
    assert outcome(tmp_path / "ex")[0] == {"a", "b"}
    run(tmp_path, rows, name="nr", mode="near", on="response")
    kept, drops = outcome(tmp_path / "nr")
    assert kept == {"a"}
    assert drops["c"][0] == "near_duplicate" and drops["c"][3] == 1.0


def test_chained_exact_copy_points_at_kept_row(tmp_path):
    rng = random.Random(11)
    a = text(rng, 200)
    b = a.rsplit(" ", 1)[0] + " changed"
    rows = [{"id": "best", "question": "q", "response": a, "score": 0.9},
            {"id": "mid", "question": "q", "response": b, "score": 0.5},
            {"id": "copy", "question": "q", "response": "  " + b.upper(), "score": 0.1}]
    run(tmp_path, rows, on="response")
    kept, drops = outcome(tmp_path / "out")
    assert kept == {"best"}
    assert drops["copy"][:3] == ("near_duplicate", "best", "best")
    assert drops["copy"][3] == drops["mid"][3] >= 0.8


def test_transitive_member_far_from_kept_row_stays(tmp_path):
    # A~B and B~C at Jaccard ≥ 0.5, A and C below it: C must not be dropped for A.
    words = [f"w{i}" for i in range(90)]
    a, b, c = words[:60], words[15:75], words[30:90]
    rows = [{"id": "A", "question": "q", "response": " ".join(a), "score": 0.9},
            {"id": "B", "question": "q", "response": " ".join(b), "score": 0.5},
            {"id": "C", "question": "q", "response": " ".join(c), "score": 0.1}]
    sa, sb, sc = (word_shingles(" ".join(x), 1) for x in (a, b, c))
    t = 0.5
    assert jaccard(sa, sb) >= t and jaccard(sb, sc) >= t and jaccard(sa, sc) < t
    run(tmp_path, rows, on="response", shingle="word", ngram=1, threshold=t)
    kept, drops = outcome(tmp_path / "out")
    assert "A" in kept and "C" in kept and drops["B"][1] == "A"


def test_spilled_arrays_give_the_same_result(tmp_path, monkeypatch):
    rng = random.Random(8)
    rows = []
    for i in range(30):
        t = text(rng, 80)
        rows.append({"id": f"x{i}", "question": "q", "response": t, "score": float(i % 4)})
        rows.append({"id": f"y{i}", "question": "q", "response": t + " extra", "score": 0.0})
    run(tmp_path, rows, name="mem", on="response")
    monkeypatch.setattr(D, "SPILL_BYTES", 64)
    run(tmp_path, rows, name="spill", on="response")
    assert outcome(tmp_path / "mem") == outcome(tmp_path / "spill")
    assert len(outcome(tmp_path / "mem")[1]) >= 25


def test_worker_pool_gives_the_same_result(tmp_path, monkeypatch):
    rng = random.Random(9)
    rows = []
    for i in range(24):
        t = text(rng, 60)
        rows.append({"id": f"x{i}", "question": "q", "response": t, "score": float(i % 3)})
        rows.append({"id": f"y{i}", "question": "q", "response": t.upper(), "score": 0.5})
        rows.append({"id": f"z{i}", "question": "q", "response": t + " more", "score": 2.0})
    run(tmp_path, rows, name="one", on="response", batch_rows=8, workers=1)
    monkeypatch.setattr(D, "POOL_AFTER_ROWS", 0)
    s = run(tmp_path, rows, name="pool", on="response", batch_rows=8, workers=2)
    assert s["workers"] == 2
    assert outcome(tmp_path / "one") == outcome(tmp_path / "pool")
    assert len(outcome(tmp_path / "one")[1]) == 48


def test_broken_pool_falls_back_to_this_process(tmp_path, monkeypatch):
    import concurrent.futures as cf
    from concurrent.futures.process import BrokenProcessPool

    class Broken:  # what a script without a __main__ guard gets from a spawned pool
        def __init__(self, *a, **k):
            pass

        def submit(self, *a, **k):
            f = cf.Future()
            f.set_exception(BrokenProcessPool("child failed to start"))
            return f

        def shutdown(self, **k):
            pass

    rng = random.Random(12)
    rows = [{"id": f"r{i}", "question": "q", "response": text(rng, 30), "score": 1.0}
            for i in range(10)]
    rows += [dict(r, id=r["id"] + "c", score=0.0) for r in rows]
    monkeypatch.setattr(D, "POOL_AFTER_ROWS", 0)
    monkeypatch.setattr(cf, "ProcessPoolExecutor", Broken)
    s = run(tmp_path, rows, on="response", batch_rows=3, workers=2)
    assert s["workers"] == 1 and s["exact_duplicates"] == 10
    kept, drops = outcome(tmp_path / "out")
    assert kept == {f"r{i}" for i in range(10)}


# --- properties ---------------------------------------------------------------------------


@st.composite
def datasets(draw):
    """Rows with planted exact copies (case/space variants), near copies (a word dropped or
    replaced) and distinct texts; scores with ties and nulls."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    n_base = draw(st.integers(1, 6))
    rows = []
    for _ in range(n_base):
        words = text(rng, rng.randint(8, 40)).split()
        for _ in range(draw(st.integers(1, 4))):
            w = list(words)
            kind = rng.choice(["same", "upper", "drop", "swap", "other"])
            if kind == "drop" and len(w) > 1:
                del w[rng.randrange(len(w))]
            elif kind == "swap":
                w[rng.randrange(len(w))] = rng.choice(VOCAB)
            elif kind == "other":
                w = text(rng, len(w)).split()
            t = " ".join(w)
            rows.append({"question": "q", "response": t.upper() if kind == "upper" else t})
    score = st.one_of(st.none(), st.sampled_from([0.0, 0.25, 0.5, 1.0]))
    for k, r in enumerate(rows):
        r["id"] = f"id{draw(st.integers(0, 99)):02d}-{k}"
        r["score"] = draw(score)
    return rows


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=datasets(), threshold=st.sampled_from([0.5, 0.8]), perm=st.randoms())
def test_properties(rows, threshold, perm):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run(tmp, rows, name="a", on="response", threshold=threshold, ngram=2)
        kept, drops = outcome(tmp / "a")
        by_id = {r["id"]: r for r in rows}
        assert kept | set(drops) == set(by_id) and not kept & set(drops)
        for rid, (reason, dup_of, cluster, jac) in drops.items():
            # (1) every drop names a kept row
            assert dup_of in kept and cluster == dup_of
            # (2) the kept row ranks above every row dropped for it
            assert rank_key(by_id[dup_of]) < rank_key(by_id[rid])
            a, b = by_id[rid]["response"], by_id[dup_of]["response"]
            if reason == "exact_duplicate":
                assert normalize_text(a) == normalize_text(b) and jac == 1.0
            else:
                # (3) a near drop is justified by its own exact Jaccard with the kept row
                true = jaccard(word_shingles(a, 2), word_shingles(b, 2))
                assert true >= threshold and jac == pytest.approx(true, abs=1e-9)
        # (4) input order does not matter
        shuffled = list(rows)
        perm.shuffle(shuffled)
        run(tmp, shuffled, name="b", on="response", threshold=threshold, ngram=2)
        assert outcome(tmp / "b") == (kept, drops)


# --- LSH parameters and shingles ----------------------------------------------------------


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0])
@pytest.mark.parametrize("num_perm", [64, 128, 256])
def test_lsh_params_meet_the_recall_rule_with_fewest_false_candidates(threshold, num_perm):
    p = mh.lsh_params(threshold, num_perm)
    s_hi = threshold + 0.05 if threshold <= 0.9 else (1 + threshold) / 2
    assert p.s_hi == pytest.approx(s_hi)
    assert p.bands * p.rows <= num_perm
    assert mh.collision_probability(s_hi, p.bands, p.rows) >= 0.98
    area = mh._fp_area(threshold, p.bands, p.rows)
    for r in range(1, num_perm + 1):  # brute force: nothing that meets the rule beats it
        for b in range(1, num_perm // r + 1):
            if mh.collision_probability(s_hi, b, r) >= 0.98:
                assert mh._fp_area(threshold, b, r) >= area - 1e-12
                break


def test_lsh_params_at_the_default():
    p = mh.lsh_params(0.8, 128)
    assert (p.bands, p.rows) == (13, 8)
    assert p.p_hi >= 0.98 and 0.85 < p.p_threshold < 0.95


@pytest.mark.parametrize("shingle,n", [("word", 1), ("word", 3), ("word", 5), ("char", 1),
                                       ("char", 5)])
def test_shingle_hashes_match_a_python_reference(shingle, n, monkeypatch):
    monkeypatch.setattr(mh, "CHUNK", 50)  # several hashing groups, as on a big batch
    rng = random.Random(n)
    pool = ["a", "b", "12", "x=3", "é", "ß", "日本"]
    texts = [normalize_text(" ".join(rng.choice(pool) for _ in range(rng.randint(0, 9))))
             for _ in range(200)]

    def ref(t):
        units = t.split() if shingle == "word" else list(t)
        if not units:
            return set()
        return {tuple(units)} if len(units) < n else \
            {tuple(units[i:i + n]) for i in range(len(units) - n + 1)}

    refs = [ref(t) for t in texts]
    values, sizes = mh.shingle_sets(*mh.shingle_hashes(texts, shingle, n))
    assert sizes.tolist() == [len(r) for r in refs]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    a = np.array([rng.randrange(200) for _ in range(500)])
    b = np.array([rng.randrange(200) for _ in range(500)])
    got = mh.pair_jaccard(values, offsets, a, b, block=64)
    want = [jaccard(refs[i], refs[j]) for i, j in zip(a, b, strict=True)]
    assert got.tolist() == pytest.approx(want, abs=1e-12)


def test_minhash_estimate_tracks_exact_jaccard():
    rng = random.Random(4)
    base = [text(rng, 300) for _ in range(60)]
    var = []
    for t in base:
        w = t.split()
        k = rng.choice([0.05, 0.15, 0.3])
        var.append(" ".join(x for x in w if rng.random() > k))
    h, c = mh.shingle_hashes(base + var, "word", 3)
    sig = mh.signatures(h, c, 128, D.SEED)
    values, sizes = mh.shingle_sets(h, c)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    i = np.arange(60)
    exact = mh.pair_jaccard(values, offsets, i, i + 60)
    est = (sig[i] == sig[i + 60]).mean(axis=1)
    assert abs(float(np.mean(est - exact))) < 0.02
    assert float(np.sqrt(np.mean((est - exact) ** 2))) < 0.06  # ~ sqrt(J(1-J)/128)


def test_components_union_find():
    lab = mh.components(7, np.array([0, 4, 5, 2]), np.array([3, 5, 1, 2]))
    assert lab.tolist() == [0, 1, 2, 0, 1, 1, 6]


def test_bucket_pairs_star_and_window():
    keys = np.array([7, 7, 7, 1, 9, 7], dtype=np.uint64)
    codes = mh.bucket_pairs(keys, window=1)
    pairs = {(int(c) >> 32, int(c) & 0xFFFFFFFF) for c in codes}
    # bucket 7 = rows 0,1,2,5: star from 0, plus each next neighbour
    assert pairs == {(0, 1), (0, 2), (0, 5), (1, 2), (2, 5)}


# --- bad input ----------------------------------------------------------------------------


def assert_bad(r, out: Path, *needles: str) -> None:
    assert r.exit_code == 2, (r.exit_code, r.output)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "internal error" not in lines[0]
    for n in needles:
        assert n in lines[0], lines[0]
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.curate-*"))


@pytest.mark.parametrize("args,needles", [
    (["--on", "thinking"], ["--on", "thinking"]),
    (["--threshold", "0"], ["--threshold", "(0, 1]"]),
    (["--threshold", "1.5"], ["--threshold"]),
    (["--threshold", "nan"], ["--threshold"]),
    (["--ngram", "0"], ["--ngram"]),
    (["--mode", "fuzzy"], ["--mode"]),
    (["--shingle", "token"], ["--shingle"]),
    (["--workers", "-1"], ["--workers"]),
    (["--num-perm", "2", "--threshold", "0.3"], ["--num-perm"]),
])
def test_bad_options(dcli, tmp_path, args, needles):
    inp = write_rows(tmp_path / "in.parquet", [{"id": "a", "question": "q", "response": "r"}])
    out = tmp_path / "out"
    assert_bad(dcli("dedup", inp, "-o", out, *args), out, *needles)


def test_bad_score_column(dcli, tmp_path):
    inp = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": ["a"], "question": ["q"], "response": ["r"],
                             "score": ["high"]}), inp)
    out = tmp_path / "out"
    assert_bad(dcli("dedup", inp, "-o", out), out, "score")


def test_on_column_missing():
    table = pa.table({"id": ["a"], "question": ["q"], "trajectory": ["t"]})
    with pytest.raises(InputError, match="--on trace needs column 'response'"):
        D.texts_of(table, "trace", "in.parquet")


def test_cli_end_to_end_json(dcli, tmp_path):
    import json

    rows = [{"id": f"r{i}", "question": "q", "response": "same words here " * 20,
             "score": float(i)} for i in range(3)]
    inp = write_rows(tmp_path / "in.parquet", rows)
    r = dcli("dedup", inp, "-o", tmp_path / "out", "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert (s["rows_in"], s["rows_out"], s["exact_duplicates"]) == (3, 1, 2)
    assert s["lsh"]["collision_probability"] == {"0.8": pytest.approx(0.9081, abs=1e-4),
                                                 "0.85": pytest.approx(0.984, abs=1e-4)}
    assert read_output(tmp_path / "out").column("id").to_pylist() == ["r2"]
    r = dcli("dedup", inp, "-o", tmp_path / "out2")
    assert r.exit_code == 0 and "exact 2, near 0" in r.stdout
