"""`curate export`: records per format and think style, ranking, metadata, shards, the test
split, the card, both `datasets.load_dataset` routes, JSON Lines on stdout, spilling, bad input."""

from __future__ import annotations

import io
import json
import math
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import manifest, read_dropped
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curate.errors import InputError
from curate.export import formats as F
from curate.export import rowstore
from curate.export import stage as E
from curate.stage import run_stage

SYS = "You are a careful solver."
TYPES = {"score": pa.float32(), "step_rewards": pa.list_(pa.float32()),
         "answer_correct": pa.bool_(), "length_tokens": pa.int32(),
         "trajectory_steps": pa.list_(pa.string())}


@pytest.fixture
def ecli(cli):
    return cli


def write_rows(path: Path, rows: list[dict]) -> Path:
    names = list(dict.fromkeys(k for r in rows for k in r))
    pq.write_table(pa.table({k: pa.array([r.get(k) for r in rows], TYPES.get(k))
                             for k in names}), path)
    return path


def shards(folder: Path, split: str = "train") -> list[Path]:
    return sorted((Path(folder) / "data").glob(f"{split}-*.parquet"))


def read_split(folder: Path, split: str = "train") -> list[dict]:
    files = shards(folder, split)
    return pa.concat_tables([pq.read_table(f) for f in files]).to_pylist() if files else []


def stream(inputs, opts: E.ExportOptions) -> list[dict]:
    buf = io.BytesIO()
    run_stage("export", [str(i) for i in inputs], "-", opts, stdout=buf)
    return [json.loads(line) for line in buf.getvalue().decode().splitlines()]


def assert_only_output(folder: Path) -> None:
    assert sorted(p.name for p in folder.iterdir()) == ["_README.md", "_dropped", "_manifest.json",
                                                       "data"]
    assert not list(folder.parent.glob(f".{folder.name}.curate-*"))


# --- records: every format × think style, written out ---------------------------------------------

TWO = [
    {"id": "t1", "question": "What is 2+2?", "trajectory": "2+2 is 4.\n\nCheck: yes.",
     "response": "The answer is \\boxed{4}.", "score": 0.9},
    {"id": "t2", "question": "Name a prime.", "trajectory": "  \n", "response": "2", "score": 0.5},
]

# The assistant text of t1 (has thinking) and t2 (blank thinking: no thinking block).
ASSISTANT = {
    "r1": ("<think>\n2+2 is 4.\n\nCheck: yes.\n</think>\n\nThe answer is \\boxed{4}.", "2"),
    "openthoughts": ("<|begin_of_thought|>\n\n2+2 is 4.\n\nCheck: yes.\n\n<|end_of_thought|>\n\n"
                     "<|begin_of_solution|>\n\nThe answer is \\boxed{4}.\n\n<|end_of_solution|>",
                     "<|begin_of_solution|>\n\n2\n\n<|end_of_solution|>"),
    "s1": ("<|im_start|>think\n2+2 is 4.\n\nCheck: yes.\n<|im_start|>answer\n"
           "The answer is \\boxed{4}.", "<|im_start|>answer\n2"),
    "none": ("The answer is \\boxed{4}.", "2"),
}


def expected_record(fmt: str, question: str, answer: str, system: str | None) -> dict:
    if fmt == "messages":
        msgs = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        return {"messages": msgs}
    if fmt == "sharegpt":
        rec = {"conversations": [{"from": "human", "value": question},
                                 {"from": "gpt", "value": answer}]}
        if system:
            rec["system"] = system
        return rec
    prompt = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": question}]
    return {"prompt": prompt, "completion": [{"role": "assistant", "content": answer}]}


@pytest.mark.parametrize("style", F.THINK_STYLES)
@pytest.mark.parametrize("fmt", F.FORMATS)
def test_records_per_format_and_style(tmp_path, fmt, style):
    inp = write_rows(tmp_path / "in.parquet", TWO)
    out = tmp_path / "out"
    run_stage("export", [str(inp)], str(out), E.ExportOptions(format=fmt, think_style=style,
                                                         system=SYS))
    rows = read_split(out)
    cols = F.record_columns(fmt, SYS)
    got = [{c: r[c] for c in cols} for r in rows]
    want = [expected_record(fmt, TWO[0]["question"], ASSISTANT[style][0], SYS),
            expected_record(fmt, TWO[1]["question"], ASSISTANT[style][1], SYS)]
    assert got == want
    assert [r["id"] for r in rows] == ["t1", "t2"] and [r["rank"] for r in rows] == [1, 2]


@pytest.mark.parametrize("fmt", F.FORMATS)
def test_records_without_system(tmp_path, fmt):
    inp = write_rows(tmp_path / "in.parquet", TWO[:1])
    got = stream([inp], E.ExportOptions(format=fmt))
    want = expected_record(fmt, TWO[0]["question"], ASSISTANT["r1"][0], None)
    assert {k: got[0][k] for k in want} == want
    assert "system" not in got[0]  # sharegpt: no system column without --system


def test_null_trajectory_gets_no_think_block():
    table = pa.table({"question": ["q"], "trajectory": pa.array([None], pa.string()),
                      "response": ["r"]})
    for style, want in (("r1", "r"), ("s1", "<|im_start|>answer\nr")):
        rec = F.build_records(table, "messages", style, None)["messages"].to_pylist()
        assert rec[0][-1] == {"role": "assistant", "content": want}


# --- ranking --------------------------------------------------------------------------------------

RANKED = [  # (id, score): expected order c, a, b, e, then the null/NaN scores by id: d, f
    ("b", 0.5), ("d", None), ("c", 0.9), ("a", 0.5), ("f", float("nan")), ("e", 0.1)]


def ranked_rows(pairs=RANKED) -> list[dict]:
    return [{"id": i, "question": f"Q {i}?", "trajectory": f"think {i}", "response": f"ans {i}",
             "score": s} for i, s in pairs]


def test_rank_order_ties_and_nulls(tmp_path):
    inp = write_rows(tmp_path / "in.parquet", ranked_rows())
    rows = stream([inp], E.ExportOptions())
    assert [r["id"] for r in rows] == ["c", "a", "b", "e", "d", "f"]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5, 6]


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.permutations(range(len(RANKED))), st.integers(1, 4))
def test_rank_never_depends_on_row_order_or_batches(tmp_path, perm, batch_rows):
    inp = write_rows(tmp_path / "perm.parquet", [ranked_rows()[i] for i in perm])
    rows = stream([inp], E.ExportOptions(batch_rows=batch_rows))
    assert [r["id"] for r in rows] == ["c", "a", "b", "e", "d", "f"]


def test_no_score_ranks_by_id(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "score"} for r in ranked_rows()]
    inp = write_rows(tmp_path / "in.parquet", rows)
    assert [r["id"] for r in stream([inp], E.ExportOptions())] == ["a", "b", "c", "d", "e", "f"]


def test_order_by_and_ascending(tmp_path):
    rows = ranked_rows()
    for r, n in zip(rows, [30, 10, 20, 10, None, 5], strict=True):
        r["length_tokens"] = n
    inp = write_rows(tmp_path / "in.parquet", rows)
    asc = stream([inp], E.ExportOptions(order_by="length_tokens", ascending=True))
    assert [r["id"] for r in asc] == ["e", "a", "d", "c", "b", "f"]  # ties 10: a < d; null last
    desc = stream([inp], E.ExportOptions(order_by="length_tokens"))
    assert [r["id"] for r in desc] == ["b", "c", "a", "d", "e", "f"]
    up = stream([inp], E.ExportOptions(ascending=True))  # score ascending, nulls still last
    assert [r["id"] for r in up] == ["e", "a", "b", "c", "d", "f"]


# --- metadata -------------------------------------------------------------------------------------

def meta_rows() -> list[dict]:
    return [{"id": f"m{i}", "question": f"Q{i}", "trajectory": f"T{i}", "response": f"R{i}",
             "trajectory_steps": [f"T{i}"], "score": 0.1 * i, "answer_correct": i % 2 == 0,
             "step_rewards": [0.5, 0.25 * i], "source": "math", "prompt": f"orig{i}"}
            for i in range(3)]


def test_metadata_kept_renamed_and_stripped(tmp_path):
    inp = write_rows(tmp_path / "in.parquet", meta_rows())
    out = tmp_path / "kept"
    s = run_stage("export", [str(inp)], str(out), E.ExportOptions())
    cols = pq.read_schema(shards(out)[0]).names
    assert cols[:3] == ["messages", "id", "rank"]
    for c in ("score", "answer_correct", "step_rewards", "source", "input_prompt"):
        assert c in cols
    # the record's texts are not repeated; a trainer-reserved name is renamed, not kept as is
    for c in ("question", "trajectory", "response", "trajectory_steps", "prompt"):
        assert c not in cols
    top = read_split(out)[0]
    assert top["id"] == "m2" and top["step_rewards"] == [0.5, 0.5]
    assert top["input_prompt"] == "orig2" and top["answer_correct"] is True
    assert any("prompt → input_prompt" in n for n in s["notes"])

    stripped = tmp_path / "stripped"
    run_stage("export", [str(inp)], str(stripped), E.ExportOptions(strip_meta=True))
    assert pq.read_schema(shards(stripped)[0]).names == ["messages", "id", "rank"]


def test_metadata_schemas_unified_across_inputs(tmp_path):
    a = write_rows(tmp_path / "a.parquet", [{"id": "a", "question": "q", "trajectory": "t",
                                              "response": "r", "score": 0.2}])
    b = write_rows(tmp_path / "b.parquet", [{"id": "b", "question": "q2", "trajectory": "t",
                                              "response": "r", "score": 0.8, "extra": 7}])
    out = tmp_path / "out"
    run_stage("export", [str(a), str(b)], str(out), E.ExportOptions())
    rows = read_split(out)
    assert [(r["id"], r["extra"]) for r in rows] == [("b", 7), ("a", None)]


# --- think markers already in the text: a row fault -----------------------------------------------

def test_rows_with_think_markers_are_left_out_and_listed(tmp_path):
    rows = ranked_rows()
    rows[0]["trajectory"] = "I think </think> too early"  # id b
    rows[2]["response"] = "done <|end_of_solution|>"  # id c: an openthoughts marker only
    inp = write_rows(tmp_path / "in.parquet", rows)
    out = tmp_path / "out"
    s = run_stage("export", [str(inp)], str(out), E.ExportOptions(think_style="r1"))
    assert [r["id"] for r in read_split(out)] == ["c", "a", "e", "d", "f"]
    assert [r["rank"] for r in read_split(out)] == [1, 2, 3, 4, 5]
    assert s["dropped"] == {"contains_think_marker": 1}
    assert read_dropped(out).to_pylist() == [{"id": "b", "drop_reason": "contains_think_marker",
                                              "drop_value": "trajectory: </think>",
                                              "input_file": str(inp), "input_row": 0}]
    assert manifest(out)["counts"]["dropped"] == {"contains_think_marker": 1}
    assert any("think markers" in n for n in s["notes"])
    assert_only_output(out)
    # Under another style the same rows are fine, and c is the faulty one.
    ids = [r["id"] for r in stream([inp], E.ExportOptions(think_style="openthoughts"))]
    assert ids == ["a", "b", "e", "d", "f"]


PIECES = ["a", " ", "\n", "think", "<think>", "</think>", "<|im_start|>", "think\n", "answer",
          "<|begin_of_thought|>", "<|end_of_solution|>", "<|", "|>", "_of_"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.sampled_from(PIECES), max_size=6).map("".join), min_size=3,
                max_size=3), st.sampled_from(F.THINK_STYLES))
def test_marker_faults_match_a_plain_search(texts, style):
    table = pa.table({"question": [texts[0]], "trajectory": [texts[1]], "response": [texts[2]]})
    bad, values = F.marker_faults(table, style)
    want = [f"{name}: {m}" for name, t in zip(F.CHECKED, texts, strict=True)
            for m in F.MARKERS[style] if m in t]
    assert bool(bad[0]) == bool(want)
    assert values == want[:1]  # the first field, and its first marker in MARKERS order


def test_reader_drops_are_listed(tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text("\n".join(json.dumps(r) for r in [
        {"id": "x", "question": "q", "response": "r"},
        {"id": "y", "question": "q2", "response": "   "}]) + "\n")
    out = tmp_path / "out"
    s = run_stage("export", [str(inp)], str(out), E.ExportOptions())
    assert s["dropped"] == {"empty_response": 1} and s["rows_out"] == 1
    dropped = read_dropped(out).to_pylist()
    assert [(d["id"], d["drop_reason"], d["input_row"]) for d in dropped] == [
        ("y", "empty_response", 1)]


def test_every_dropped_row_is_in_dropped_not_only_the_first_thousand(tmp_path):
    # 1,200 rows that hold the markers: the manifest used to list only the first 1,000 ids.
    rows = [{"id": f"m{i:05d}", "question": f"q{i}", "trajectory": "a </think> b",
             "response": "r"} for i in range(1200)] + ranked_rows()
    inp = write_rows(tmp_path / "in.parquet", rows)
    out = tmp_path / "out"
    s = run_stage("export", [str(inp)], str(out), E.ExportOptions())
    assert s["dropped"] == {"contains_think_marker": 1200}
    dropped = read_dropped(out)
    assert dropped.num_rows == 1200
    assert sorted(dropped.column("id").to_pylist()) == [f"m{i:05d}" for i in range(1200)]
    assert dropped.column("input_row").to_pylist() == list(range(1200))


# --- shards and the test split --------------------------------------------------------------------

def many_rows(n: int, per_question: int = 1, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [{"id": f"r{i:04d}", "question": f"Problem {i // per_question}: x = ?",
             "trajectory": "step " * rng.randint(1, 40), "response": f"x = {i}",
             "score": round(rng.random(), 3)} for i in range(n)]


def test_shards_by_count(tmp_path):
    inp = write_rows(tmp_path / "in.parquet", many_rows(10))
    out = tmp_path / "out"
    run_stage("export", [str(inp)], str(out), E.ExportOptions(shards=3))
    files = shards(out)
    assert [f.name for f in files] == [f"train-0000{i}-of-00003.parquet" for i in range(3)]
    assert [pq.ParquetFile(f).metadata.num_rows for f in files] == [4, 3, 3]
    ranks = [r["rank"] for r in read_split(out)]
    assert ranks == list(range(1, 11))  # shard 0 holds the best rows
    assert_only_output(out)


def test_more_shards_than_rows(tmp_path):
    inp = write_rows(tmp_path / "in.parquet", many_rows(4))
    out = tmp_path / "out"
    s = run_stage("export", [str(inp)], str(out), E.ExportOptions(shards=9))
    assert [f.name for f in shards(out)] == [f"train-0000{i}-of-00004.parquet" for i in range(4)]
    assert any("--shards 9" in n for n in s["notes"])


def test_shards_by_size(tmp_path):
    rows = many_rows(60)
    inp = write_rows(tmp_path / "in.parquet", rows)
    out = tmp_path / "out"
    text = sum(len(r["question"]) + len(r["trajectory"]) + len(r["response"]) for r in rows)
    run_stage("export", [str(inp)], str(out), E.ExportOptions(shard_size=text // 3))
    files = shards(out)
    assert len(files) in (4, 5)  # the text plus per-row overhead, cut at a third of the text
    n = len(files)
    assert [f.name for f in files] == [f"train-{i:05d}-of-{n:05d}.parquet" for i in range(n)]
    counts = [pq.ParquetFile(f).metadata.num_rows for f in files]
    assert sum(counts) == 60 and min(counts) >= 1


@given(st.lists(st.integers(1, 500), min_size=1, max_size=60), st.integers(50, 5000))
@settings(max_examples=60, deadline=None)
def test_shard_counts_cover_every_row(sizes, limit):
    counts = E.shard_counts(np.array(sizes), None, limit)
    assert sum(counts) == len(sizes) and min(counts) >= 1
    assert len(counts) == min(len(sizes), max(1, math.ceil(sum(sizes) / limit)))


def test_split_test_by_question_is_order_free_and_keeps_problems_together(tmp_path):
    rows = many_rows(240, per_question=4)
    inp = write_rows(tmp_path / "in.parquet", rows)
    out = tmp_path / "out"
    s = run_stage("export", [str(inp)], str(out), E.ExportOptions(split_test=0.25, shards=2))
    test, train = read_split(out, "test"), read_split(out, "train")
    assert len(test) + len(train) == 240 and 20 < len(test) < 100
    assert [f.name for f in shards(out, "test")][0].startswith("test-00000-of-")
    # samples of one problem never straddle the splits
    qs = {r["messages"][0]["content"] for r in test}
    assert not qs & {r["messages"][0]["content"] for r in train}
    # ranks are global: each split is in rank order, together they are 1..N
    for part in (train, test):
        assert [r["rank"] for r in part] == sorted(r["rank"] for r in part)
    assert sorted(r["rank"] for r in train + test) == list(range(1, 241))
    assert s["splits"] == {"train": len(train), "test": len(test)}

    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    inp2 = write_rows(tmp_path / "shuffled.parquet", shuffled)
    out2 = tmp_path / "out2"
    run_stage("export", [str(inp2)], str(out2), E.ExportOptions(split_test=0.25, batch_rows=7))
    assert {r["id"] for r in read_split(out2, "test")} == {r["id"] for r in test}


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.randoms(use_true_random=False))
def test_split_test_by_id_depends_on_the_row_alone(tmp_path, rnd):
    rows = many_rows(80)
    subset = rnd.sample(rows, 50)  # other rows present or not, any order
    table = pa.table({"id": [r["id"] for r in subset], "question": [r["question"] for r in subset]})
    opts = E.ExportOptions(split_test=0.3, split_key="id")
    full = pa.table({"id": [r["id"] for r in rows], "question": [r["question"] for r in rows]})
    whole = dict(zip(full.column("id").to_pylist(), E._split_test(full, opts), strict=True))
    part = dict(zip(table.column("id").to_pylist(), E._split_test(table, opts), strict=True))
    assert all(whole[i] == v for i, v in part.items())


# --- spilled to disk, or in memory in many blocks: the same rows as in one block ------------------

@pytest.mark.parametrize("buffer_bytes, block_bytes", [(1, None), (700, None), (5000, None),
                                                      (10**9, 1), (10**9, 3000)])
def test_spilled_export_equals_in_memory(tmp_path, monkeypatch, buffer_bytes, block_bytes):
    rows = many_rows(150)
    rows[3]["extra"] = 1  # a second metadata schema part-way through
    inp = write_rows(tmp_path / "in.parquet", rows)
    mem = stream([inp], E.ExportOptions(batch_rows=16, split_test=0.0))
    if block_bytes is not None:  # in memory, in many blocks
        monkeypatch.setattr(rowstore, "BLOCK_BYTES", block_bytes)
    spilled = stream([inp], E.ExportOptions(batch_rows=16, buffer_bytes=buffer_bytes))
    assert spilled == mem
    assert [r["rank"] for r in mem] == list(range(1, 151))
    scores = [r["score"] for r in mem]
    assert scores == sorted(scores, reverse=True)


def test_spill_is_used_and_cleaned(tmp_path, monkeypatch):
    inp = write_rows(tmp_path / "in.parquet", many_rows(40))
    seen = {}
    orig = rowstore.RowStore._start_spill

    def spy(self):
        seen["folder"] = self.folder
        return orig(self)

    monkeypatch.setattr(rowstore.RowStore, "_start_spill", spy)
    out = tmp_path / "out"
    run_stage("export", [str(inp)], str(out), E.ExportOptions(buffer_bytes=2000, batch_rows=8))
    assert "folder" in seen and not seen["folder"].exists()
    assert len(read_split(out)) == 40
    assert_only_output(out)


# --- the card and both load_dataset routes --------------------------------------------------------

def card_header(folder: Path) -> dict:
    text = (folder / "_README.md").read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_load_dataset_both_ways(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    rows = many_rows(60, per_question=2)
    rows[0]["step_rewards"] = [0.25, 0.5]
    inp = write_rows(tmp_path / "in.parquet", rows)
    out = tmp_path / "sft"
    run_stage("export", [str(inp)], str(out), E.ExportOptions(split_test=0.2, shards=3))
    header = card_header(out)
    assert header["configs"][0]["data_files"] == [{"split": "train", "path": "data/train-*"},
                                                  {"split": "test", "path": "data/test-*"}]
    names = [f["name"] for f in header["dataset_info"]["features"]]
    assert names == pq.read_schema(shards(out)[0]).names
    want = {s: read_split(out, s) for s in ("train", "test")}
    for ds in (datasets.load_dataset("parquet", data_dir=str(out),
                                     cache_dir=str(tmp_path / "c1")),
               datasets.load_dataset(str(out), cache_dir=str(tmp_path / "c2"))):
        assert set(ds) == {"train", "test"}
        for split in ("train", "test"):
            assert ds[split].to_list() == want[split]
    sizes = {s["name"]: s["num_examples"] for s in header["dataset_info"]["splits"]}
    assert sizes == {"train": len(want["train"]), "test": len(want["test"])}


def test_card_reads_the_selection_chain(tmp_path, monkeypatch):
    from curate.read.traces import ReadOptions
    from curate.select.filter import FilterOptions

    monkeypatch.chdir(tmp_path)
    rows = many_rows(12)
    for r in rows:
        r["source"] = "openr1" if int(r["id"][1:]) % 3 else "limo"
    write_rows(tmp_path / "raw.parquet", rows)
    run_stage("read", ["raw.parquet"], "read", ReadOptions())
    run_stage("filter", ["read"], "kept", FilterOptions(top_k=5))
    s = run_stage("export", ["kept"], "sft", E.ExportOptions(format="sharegpt", system=SYS))
    text = (tmp_path / "sft" / "_README.md").read_text()
    assert "`curate read`" in text and "`curate filter`" in text and "top_k=5" in text
    assert text.index("`curate read`") < text.index("`curate filter`")
    assert "`raw.parquet`" in text  # the original input, with its fingerprint
    assert "inherits the licenses of the source traces" in text
    kept_sources = {r["source"] for r in read_split(tmp_path / "sft")}
    for src in kept_sources:
        assert f"`{src}`" in text
    assert '"formatting": "sharegpt"' in text and '"system": "system"' in text
    assert f"max {s['score']['max']:.4f}" in text
    m = json.loads((tmp_path / "sft" / "_manifest.json").read_text())
    assert [st["stage"] for st in m["selection"]] == ["read", "filter"]
    assert m["curate"]["stage"] == "export" and m["counts"]["rows_out"] == 5
    assert [p["file"] for p in m["parts"]] == ["data/train-00000-of-00001.parquet"]


def test_rerun_replaces_and_other_stage_needs_overwrite(tmp_path):
    inp = write_rows(tmp_path / "in.parquet", many_rows(5))
    out = tmp_path / "out"
    run_stage("export", [str(inp)], str(out), E.ExportOptions(shards=2))
    run_stage("export", [str(inp)], str(out), E.ExportOptions(shards=1))
    assert [f.name for f in shards(out)] == ["train-00000-of-00001.parquet"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="--overwrite"):
        run_stage("export", [str(inp)], str(other), E.ExportOptions())
    assert (other / "notes.txt").read_text() == "mine"


# --- the CLI: JSON Lines on stdout, summaries, bad input ------------------------------------------

def test_cli_streams_jsonl_to_stdout(ecli, tmp_path):
    inp = write_rows(tmp_path / "in.parquet", ranked_rows())
    r = ecli("export", inp, "-o", "-", "--format", "prompt-completion")
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 6
    recs = [json.loads(line) for line in lines]
    assert [x["id"] for x in recs] == ["c", "a", "b", "e", "d", "f"]
    assert recs[0]["completion"] == [{"role": "assistant",
                                      "content": "<think>\nthink c\n</think>\n\nans c"}]
    assert "curate export" in r.stderr  # the summary goes to stderr
    assert not list(tmp_path.glob("*-")) and not (Path.cwd() / "-").exists()


def test_stdout_spill_is_removed(tmp_path, monkeypatch):
    import tempfile

    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    inp = write_rows(tmp_path / "in.parquet", many_rows(30))
    rows = stream([inp], E.ExportOptions(buffer_bytes=500, batch_rows=4))
    assert [r["rank"] for r in rows] == list(range(1, 31))
    assert list(scratch.iterdir()) == []


def test_cli_folder_json_summary(ecli, tmp_path):
    inp = write_rows(tmp_path / "in.parquet", many_rows(20))
    out = tmp_path / "out"
    r = ecli("export", inp, "-o", out, "--shards", "2", "--shard-size", "1MB", "--json")
    assert r.exit_code == 2 and "choose one" in r.stderr and not out.exists()
    r = ecli("export", inp, "-o", out, "--shards", "2", "--split-test", "0.1", "--json")
    assert r.exit_code == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["rows_out"] == 20 and summary["shards"]["train"] == 2
    assert summary["output"] == str(out)
    assert_only_output(out)


@pytest.mark.parametrize("args, needle", [
    (["--format", "alpaca"], "--format 'alpaca'"),
    (["--think-style", "qwq"], "--think-style 'qwq'"),
    (["--order-by", "nope"], "--order-by nope"),
    (["--order-by", "step_rewards"], "--order-by step_rewards"),
    (["--split-test", "1.0"], "--split-test 1.0"),
    (["--split-test", "-0.1"], "--split-test -0.1"),
    (["--split-test", "nan"], "--split-test nan"),
    (["--shards", "0"], "--shards 0"),
    (["--split-key", "source"], "--split-key 'source'"),
    (["--shard-size", "huge"], "--shard-size 'huge'"),
    (["--max-seq-len", "4096"], "--max-seq-len needs --tokenizer"),
    (["--system", "use <think> tags"], "--system"),
])
def test_bad_input(ecli, tmp_path, args, needle):
    rows = ranked_rows()
    rows[0]["step_rewards"] = [0.5]
    inp = write_rows(tmp_path / "in.parquet", rows)
    out = tmp_path / "out"
    r = ecli("export", inp, "-o", out, *args)
    assert r.exit_code == 2
    assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".out.curate-*"))


@pytest.mark.parametrize("args", [["--split-test", "0.1"], ["--shards", "2"]])
def test_bad_input_with_stdout(ecli, tmp_path, args):
    inp = write_rows(tmp_path / "in.parquet", ranked_rows())
    r = ecli("export", inp, "-o", "-", *args)
    assert len(r.stderr.strip().splitlines()) == 1
    assert r.exit_code == 2 and r.stdout == ""


def test_json_with_stdout_records_puts_the_summary_on_stderr(ecli, tmp_path):
    # It used to be refused; now the records stay alone on stdout and a note says where the
    # summary went.
    inp = write_rows(tmp_path / "in.parquet", ranked_rows())
    r = ecli("export", inp, "-o", "-", "--json")
    assert r.exit_code == 0, r.stderr
    records = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["rank"] for x in records] == list(range(1, len(records) + 1))
    note, summary = r.stderr.strip().splitlines()[-2:]
    assert "the summary (JSON) on stderr" in note
    assert json.loads(summary)["rows_out"] == len(records)


def test_all_rows_faulty_writes_nothing(ecli, tmp_path):
    inp = write_rows(tmp_path / "in.parquet", [{"id": "a", "question": "q", "trajectory": "t",
                                                 "response": "<think>x</think> y"}])
    out = tmp_path / "out"
    r = ecli("export", inp, "-o", out)
    assert r.exit_code == 2 and "no row to export" in r.stderr and not out.exists()


# --- the student's tokenizer ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_tokenizer(tmp_path_factory) -> Path:
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    from curate.testing.tiny_models import build_tokenizer

    return build_tokenizer(tmp_path_factory.mktemp("tok"))


def test_tokenizer_counts_and_warns(tmp_path, tiny_tokenizer):
    from transformers import AutoTokenizer

    rows = many_rows(6)
    rows[0]["trajectory"] = "step " * 400  # long under any tokenizer
    inp = write_rows(tmp_path / "in.parquet", rows)
    s = run_stage("export", [str(inp)], str(tmp_path / "out"),
                       E.ExportOptions(tokenizer=str(tiny_tokenizer), max_seq_len=100))
    tok = AutoTokenizer.from_pretrained(tiny_tokenizer)
    table = pq.read_table(inp)
    lens = [len(tok(tok.apply_chat_template(m, tokenize=False), add_special_tokens=False)
                ["input_ids"]) for m in F.chat_messages(table, "r1", None)]
    assert s["tokens"]["max"] == max(lens)
    assert s["tokens"]["over"] == sum(n > 100 for n in lens) >= 1
    assert any(n.startswith("WARNING") and "100 tokens" in n for n in s["notes"])
    default = stream([inp], E.ExportOptions(tokenizer=str(tiny_tokenizer)))
    assert len(default) == 6


def test_tokenizer_without_chat_template(ecli, tmp_path, tiny_tokenizer):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(tiny_tokenizer, bare)
    cfg = json.loads((bare / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(cfg))
    for extra in bare.glob("chat_template.*"):
        extra.unlink()
    inp = write_rows(tmp_path / "in.parquet", TWO)
    out = tmp_path / "out"
    r = ecli("export", inp, "-o", out, "--tokenizer", bare)
    assert r.exit_code == 2 and "no chat template" in r.stderr and not out.exists()
    r = ecli("export", inp, "-o", out, "--tokenizer", tmp_path / "missing")
    assert r.exit_code == 2 and "--tokenizer" in r.stderr and not out.exists()


# --- TRL reads the shards as SFT data -------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["messages", "prompt-completion"])
def test_trl_prepares_the_exported_shards(tmp_path, fmt, tiny_causal_lm):
    """SFTTrainer's own dataset preparation (chat template, tokens, masks) accepts the shards as
    loaded by `datasets`; the one-step training run is the validate stage's test. (ShareGPT is
    LLaMA-Factory's format: TRL 1.16 renames from/value but keeps the human/gpt roles and ignores
    the system column, so it is not offered to TRL.)"""
    pytest.importorskip("trl")
    datasets = pytest.importorskip("datasets")
    from trl import SFTConfig, SFTTrainer
    from trl.data_utils import is_conversational

    out = tmp_path / "sft"
    inp = write_rows(tmp_path / "in.parquet", TWO)
    run_stage("export", [str(inp)], str(out), E.ExportOptions(format=fmt, system=SYS))
    ds = datasets.load_dataset(str(out), cache_dir=str(tmp_path / "c"))["train"]
    assert is_conversational(ds[0])
    cfg = SFTConfig(output_dir=str(tmp_path / "o"), report_to=[], bf16=False, use_cpu=True,
                    max_length=4096)
    trainer = SFTTrainer(model=str(tiny_causal_lm), train_dataset=ds, args=cfg)
    tok = trainer.processing_class
    row = trainer.train_dataset[0]
    text = tok.decode(row["input_ids"])
    assert SYS in text and "What is 2+2?" in text
    assert "<think>\n2+2 is 4.\n\nCheck: yes.\n</think>\n\nThe answer is" in text
    if fmt == "prompt-completion":  # completion-only loss: the question is not learned
        learned = [t for t in row["labels"] if t != -100]
        assert "<think>" in tok.decode(learned) and "What is 2+2?" not in tok.decode(learned)
