"""Real-input shapes and the messages users tripped over: one row of many generations, list
columns, per-file maps, invisible and control characters, hub configs, and clearer errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from conftest import SAMPLE, manifest, read_dropped, read_output
from hypothesis import given, settings
from hypothesis import strategies as st

from curate.io import presets


def _ok(cli, *args) -> dict:
    r = cli("read", *args, "--json")
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


def _one_line(r) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1, r.stderr
    return lines[0]


# --- one row, many generations (OpenR1-Math / OpenThoughts pools) -------------------------------

def openr1_rows() -> list[dict]:
    """The columns of open-r1/OpenR1-Math-220k's default split (messages included)."""
    def row(uuid, problem, answer, gens, correct, finish):
        return {"problem": problem, "solution": f"... so the answer is {answer}.",
                "answer": answer, "problem_type": "Algebra", "question_type": "math-word-problem",
                "source": "olympiads", "uuid": uuid, "is_reasoning_complete": [
                    f == "stop" for f in finish],
                "generations": gens, "correctness_math_verify": correct,
                "correctness_llama": None, "finish_reasons": finish,
                "correctness_count": sum(correct),
                "messages": [{"role": "user", "content": problem},
                             {"role": "assistant", "content": gens[0]}]}
    return [
        row("u1", "What is 1+1?", "2",
            ["<think>\nOne plus one.\n</think>\n\nThe answer is $\\boxed{2}$.",
             "<think>\nMaybe three.\n</think>\n\n$\\boxed{3}$"], [True, False], ["stop", "stop"]),
        row("u2", "What is 2+2?", "4",
            ["<think>two and two</think>\n$\\boxed{4}$", "<think>4</think> 4",
             "<think>cut off mid-thought"], [True, True, False], ["stop", "stop", "length"]),
        row("u3", "Broken row?", "0", ["<think>a</think> b"], [True, False], ["stop"]),
    ]


def test_many_generations_are_one_trace_each(cli, tmp_path):
    src = tmp_path / "openr1.parquet"
    pq.write_table(pa.Table.from_pylist(openr1_rows()), src)
    s = _ok(cli, src, "-o", tmp_path / "out")
    assert list(s["presets"].values()) == ["generations"]
    rows = read_output(tmp_path / "out").to_pylist()
    got = [(r["question"], r["generation_index"], r["trajectory"], r["response"],
            r["reference_answer"], r["is_correct"], r["finish_reasons"]) for r in rows]
    assert got == [
        ("What is 1+1?", 0, "One plus one.", "The answer is $\\boxed{2}$.", "2", True, "stop"),
        ("What is 1+1?", 1, "Maybe three.", "$\\boxed{3}$", "2", False, "stop"),
        ("What is 2+2?", 0, "two and two", "$\\boxed{4}$", "4", True, "stop"),
        ("What is 2+2?", 1, "4", "4", "4", True, "stop")]
    assert len({r["id"] for r in rows}) == 4
    d = {(x["drop_reason"], x["input_row"]): x["drop_value"]
         for x in read_dropped(tmp_path / "out").to_pylist()}
    # the cut generation, and the row whose lists disagree
    assert d[("unclosed_thinking", 1)].startswith("generation 2:")
    assert "generations: 1" in d[("list_lengths_differ", 2)]
    assert "correctness_math_verify: 2" in d[("list_lengths_differ", 2)]
    m = manifest(tmp_path / "out")
    assert m["mappings"][str(src)]["is_correct"] == "correctness_math_verify"


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.text("ab c", min_size=1, max_size=5), max_size=4), min_size=1,
                max_size=5))
def test_explode_keeps_every_element_in_order(lists):
    table = pa.table({"q": [f"q{i}" for i in range(len(lists))],
                      "g": pa.array(lists, pa.list_(pa.string())),
                      "c": pa.array([[len(x) for x in xs] for xs in lists],
                                    pa.list_(pa.int64()))})
    out, index, drops = presets.explode(table, ["g", "c"], "t")
    assert out.column("g").to_pylist() == [x for xs in lists for x in xs]
    assert out.column("c").to_pylist() == [len(x) for xs in lists for x in xs]
    assert out.column("q").to_pylist() == [f"q{i}" for i, xs in enumerate(lists) for _ in xs]
    assert out.column("generation_index").to_pylist() == [k for xs in lists
                                                          for k in range(len(xs))]
    assert index.to_pylist() == [i for i, xs in enumerate(lists) for _ in xs]
    assert [i for i, r, _ in drops] == [i for i, xs in enumerate(lists) if not xs]


def test_explode_option_reads_a_list_column_with_a_map(cli, tmp_path):
    rows = [{"prompt_text": "Q1", "samples": ["<think>t1</think>a1", "<think>t2</think>a2"]},
            {"prompt_text": "Q2", "samples": ["<think>t3</think>a3"]}]
    src = tmp_path / "x.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    _ok(cli, src, "-o", tmp_path / "out", "--explode", "samples", "--map",
        "question=prompt_text", "--map", "response=samples")
    got = [(r["question"], r["trajectory"], r["response"], r["generation_index"])
           for r in read_output(tmp_path / "out").to_pylist()]
    assert got == [("Q1", "t1", "a1", 0), ("Q1", "t2", "a2", 1), ("Q2", "t3", "a3", 0)]


def test_the_hint_no_longer_leads_to_rows_without_their_text(cli, tmp_path):
    # The old hint for this shape was --map response=answer: exit 0, every generation lost.
    rows = [{"problem": "P", "answer": "", "outputs": ["<think>t</think>a"]}]
    src = tmp_path / "p.jsonl"
    src.write_text(json.dumps(rows[0]) + "\n")
    r = cli("read", src, "-o", tmp_path / "o")
    line = _one_line(r)
    assert "--explode COL --map response=COL" in line
    # following a map to a column that holds no text stops, naming it
    r = cli("read", src, "-o", tmp_path / "o2", "--map", "question=problem", "--map",
            "response=answer")
    line = _one_line(r)
    assert "every response is empty after mapping (--map response=answer)" in line
    assert not (tmp_path / "o2").exists()


def test_per_file_maps_read_a_folder_of_two_shapes(cli, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "a.jsonl").write_text(json.dumps({"problem": "PA", "output": "RA"}) + "\n")
    (folder / "b.jsonl").write_text(json.dumps({"prompt_x": "PB", "answer_x": "RB"}) + "\n")
    _ok(cli, folder, "-o", tmp_path / "out", "--map", "a.jsonl:question=problem",
        "--map", "a.jsonl:response=output", "--map", "b*.jsonl:question=prompt_x",
        "--map", "b*.jsonl:response=answer_x")
    got = sorted((r["question"], r["response"]) for r in read_output(tmp_path / "out")
                 .to_pylist())
    assert got == [("PA", "RA"), ("PB", "RB")]


# --- invisible and control characters ----------------------------------------------------------

def test_invisible_and_control_characters_drop_the_row(cli, tmp_path):
    rows = [{"id": "ok", "question": "Q", "trajectory": "", "response": "tab\tnl\nCRLF\r\n"},
            {"id": "zw", "question": "\u200b\u200b", "trajectory": "", "response": "R"},
            {"id": "nul", "question": "Q", "trajectory": "", "response": "a\x00b"},
            {"id": "esc", "question": "Q", "trajectory": "\x1b[31m", "response": "R"},
            {"id": "bom", "question": "\ufeff", "trajectory": "", "response": "R"}]
    src = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(rows), src)
    _ok(cli, src, "-o", tmp_path / "out")
    assert read_output(tmp_path / "out").column("id").to_pylist() == ["ok"]
    d = {x["id"]: (x["drop_reason"], x["drop_value"])
         for x in read_dropped(tmp_path / "out").to_pylist()}
    assert d == {"zw": ("empty_question", "no visible character"),
                 "nul": ("control_character", "response: U+0000 at 1"),
                 "esc": ("control_character", "trajectory: U+001B at 0"),
                 "bom": ("empty_question", "no visible character")}


# --- hub datasets: --config and --revision ------------------------------------------------------

def test_hub_config_and_revision_reach_datasets(cli, tmp_path, monkeypatch):
    import datasets

    seen = {}

    def fake(path, name=None, split=None, revision=None, streaming=False):
        seen.update(path=path, name=name, split=split, revision=revision)
        return datasets.Dataset.from_list([{"question": "Q", "response": "R"}]
                                          ).to_iterable_dataset()

    monkeypatch.setattr(datasets, "load_dataset", fake)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _ok(cli, "open-r1/OpenR1-Math-220k", "-o", tmp_path / "out", "--config", "default",
        "--revision", "abc123", "--split", "train")
    assert seen == {"path": "open-r1/OpenR1-Math-220k", "name": "default", "split": "train",
                    "revision": "abc123"}
    m = manifest(tmp_path / "out")
    assert m["inputs"][0]["config"] == "default" and m["inputs"][0]["revision"] == "abc123"


# --- messages users tripped over ----------------------------------------------------------------

def test_flags_show_no_bool_value_in_help(cli):
    for command in ("read", "filter", "export", "run"):
        text = cli(command, "--help", env={"COLUMNS": "200"}).stdout
        flags = [ln for ln in text.splitlines() if "<bool>" in ln and "--help" not in ln]
        assert flags == [], command


def test_a_value_after_a_flag_is_explained(cli, tmp_path):
    line = _one_line(cli("read", SAMPLE / "processbench.parquet", "-o", tmp_path / "o",
                         "--dedupe-ids", "true"))
    assert "true: no such file or folder (a flag such as --dedupe-ids takes no value" in line


def test_filter_on_unscored_input_names_allow_unscored(cli, tmp_path):
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"question": ["a", "b"], "response": ["x", "y"]}), src)
    line = _one_line(cli("filter", src, "-o", tmp_path / "o", "--top-k", "1"))
    assert "--allow-unscored" in line


def test_a_missing_student_is_named_as_a_missing_folder(cli, tmp_path):
    from curate.stage import run_stage

    run_stage("export", [str(SAMPLE / "processbench.parquet")], tmp_path / "sft")
    line = _one_line(cli("validate", tmp_path / "sft", "--student",
                         str(tmp_path / "no-such-model")))
    assert "no such folder" in line and "Repo id" not in line


def test_set_errors_name_the_set_not_the_file(cli, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[run]\nout = "{tmp_path / "o"}"\n[read]\ninputs = ["{SAMPLE}"]\n'
                   '[export]\n')
    line = _one_line(cli("run", cfg, "--set", "export.shards=many"))
    assert line.startswith("error: --set export.shards=many: [export] shards must be an integer")
    line = _one_line(cli("run", cfg, "--set", "export.format=alpaca"))
    assert "with --set export.format=alpaca: [export] --format 'alpaca'" in line


def test_a_failing_first_stage_does_not_claim_stages_before_it(cli, tmp_path):
    cfg = tmp_path / "c.toml"
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    cfg.write_text(f'[run]\nout = "{tmp_path / "o"}"\n[read]\ninputs = ["{bad}"]\n')
    r = cli("run", cfg)
    assert r.exit_code == 2
    assert "stage read failed (exit 2); nothing was done" in r.stderr
    assert "the stages before it" not in r.stderr


def test_one_row_note_is_singular(tmp_path):
    from curate.stage import run_stage

    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "question": ["What does </think> mean?", "Q2"],
                             "response": ["a marker", "fine"]}), src)
    s = run_stage("export", [str(src)], tmp_path / "sft")
    assert any(n.startswith("1 row already holds r1 think markers") for n in s["notes"])


def test_the_report_names_turns_and_generations_not_solutions(cli, tmp_path):
    from curate.stage import run_stage

    run_stage("read", [str(SAMPLE / "llamafactory_reason_tool_use.jsonl")], tmp_path / "read")
    text = cli("report", tmp_path / "read", env={"COLUMNS": "200"}).stdout
    assert "several traces (turns or generations)" in text and "solutions" not in text


def test_step_too_long_is_documented():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert re.search(r"`step_too_long`", readme)


def test_the_signals_scorer_drops_the_step_separator_as_the_prms_do(cli, tmp_path):
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "question": ["Q", "Q2"],
                             "response": ["uses <extra_0> inside", "fine"]}), src)
    r = cli("score", src, "-o", tmp_path / "s", "--encoder", "none", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["dropped"] == {"contains_separator": 1}
    assert read_output(tmp_path / "s").column("id").to_pylist() == ["b"]
    d = read_dropped(tmp_path / "s").to_pylist()
    assert (d[0]["id"], d[0]["drop_reason"]) == ("a", "contains_separator")
