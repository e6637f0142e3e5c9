"""`curate validate`: format checks, the three sets, and a 3-step TRL run on a tiny student."""

from __future__ import annotations

import glob
import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SAMPLE
from hypothesis import given, settings
from hypothesis import strategies as st

from curate.errors import InputError
from curate.stage import run_stage
from curate.validate import checks as C
from curate.validate import sft
from curate.validate.checks import Example

SHARED_TEXT = st.text(alphabet="ab <>/|_think", max_size=12)


# --- the CLI, registered on a local app (cli/app.py registers it for real) ------------------------

@pytest.fixture
def validate_cli(cli):
    return lambda *a: cli("validate", *a)


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """The pre-selection pool (100 ProcessBench rows) and an export of 12 of them."""
    from curate.export.stage import ExportOptions
    from curate.read.traces import ReadOptions, iter_traces

    root = tmp_path_factory.mktemp("validate")
    table = pa.concat_tables(
        b.table for b in iter_traces([str(SAMPLE / "processbench.parquet")], ReadOptions()))
    pq.write_table(table, root / "pool.parquet")
    pq.write_table(table.slice(0, 12), root / "selected.parquet")
    run_stage("export", [str(root / "selected.parquet")], str(root / "export"), ExportOptions())
    return root


def _ex(i, q, a="ok"):
    return Example(str(i), [{"role": "user", "content": q}], [{"role": "assistant", "content": a}])


# --- think markers --------------------------------------------------------------------------------

@given(st.lists(SHARED_TEXT.filter(lambda s: "<think>" not in s and "</think>" not in s
                                   and "<|" not in s), min_size=1, max_size=4))
def test_balanced_think_blocks_pass_and_a_missing_close_fails(parts):
    text = "".join(f"<think>{p}</think>{p}" for p in parts)
    assert C.unbalanced_think(text) is None
    assert C.unbalanced_think(text + "<think>tail") == "<think>"
    assert C.unbalanced_think("</think>" + text) == "</think>"
    assert C.unbalanced_think("<think><think>" + text) == "<think>"


def test_other_styles_markers_are_checked():
    assert C.unbalanced_think("<|begin_of_thought|>x<|end_of_thought|>y") is None
    assert C.unbalanced_think("<|begin_of_thought|>x") == "<|begin_of_thought|>"
    assert C.unbalanced_think("<|im_start|>answer\nno thought") == "<|im_start|>answer"


# --- the three sets -------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(st.integers(0, 30), st.integers(1, 60), st.integers(0, 2**31), st.integers(1, 40))
def test_heldout_is_disjoint_from_both_training_sets(n_sel, n_pool, seed, n_eval):
    # Questions repeat across ids (several samples of one problem): a held-out row must share
    # neither an id nor a question with either training set.
    pool = sorted((_ex(f"p{i:03d}", f"question {i % 7}") for i in range(n_pool)),
                  key=lambda e: e.id)
    selected = [_ex(f"s{i}", f"question {i % 11}") for i in range(n_sel)]
    try:
        sets = sft.plan_sets(selected, {e.id for e in selected}, pool, None, n_eval, seed)
    except InputError as e:
        assert "held-out" in str(e)
        return
    trained = selected + sets.random
    assert len(sets.random) == min(n_sel, n_pool)
    assert len({e.id for e in sets.random}) == len(sets.random)
    assert 1 <= len(sets.heldout) <= n_eval
    assert not {e.id for e in sets.heldout} & {e.id for e in trained}
    assert not {e.question_key for e in sets.heldout} & {e.question_key for e in trained}
    again = sft.plan_sets(selected, {e.id for e in selected}, pool, None, n_eval, seed)
    assert [e.id for e in again.heldout] == [e.id for e in sets.heldout]  # seeded


def test_eval_data_overlap_with_training_is_removed():
    selected = [_ex("a", "q1"), _ex("b", "q2")]
    evals = [_ex("a", "other"), _ex("x", "Q1 "), _ex("y", "q3")]  # same id; same question (NFKC)
    sets = sft.plan_sets(selected, {"a", "b"}, None, evals, 10, 0)
    assert [e.id for e in sets.heldout] == ["y"] and sets.overlap_removed == 2
    assert sets.random is None


# --- format checks under the student's template ---------------------------------------------------

def test_format_checks_report_unbalanced_rows(pool, tiny_causal_lm, tmp_path, validate_cli):
    exp = tmp_path / "export"
    shutil.copytree(pool / "export", exp)
    shard = glob.glob(str(exp / "data" / "train-*.parquet"))[0]
    rows = pq.read_table(shard).to_pylist()
    bad_id = rows[3]["id"]
    rows[3]["messages"][-1]["content"] = "<think>\nnever closed\n\nanswer"
    pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(shard)), shard)

    r = validate_cli(exp, "--student", tiny_causal_lm, "--steps", 0, "--max-seq-len", 256,
                     "--json")
    assert r.exit_code == 3, r.stderr
    s = json.loads(r.stdout)
    assert s["ok"] is False and s["train"] == {}
    c = s["checks"]
    assert c["faults"]["unbalanced_think"] == 1 and c["ok_rows"] == c["rows"] - 1 == 11
    assert c["fault_ids"]["unbalanced_think"] == [f"{bad_id}: '<think>'"]
    # ProcessBench answers are hundreds of tokens: over 256, counted, and a loud warning
    assert c["tokens"]["over"] == 11  # all but the tampered row, now a short one
    assert "longer than --max-seq-len 256" in r.stderr


def test_prompt_filling_the_window_leaves_empty_assistant(tiny_causal_lm):
    tok = C.load_student_tokenizer(str(tiny_causal_lm))
    rows = [_ex("long", "word " * 200, "short answer"), _ex("fine", "hi", "an answer"),
            _ex("blank", "hi", "   ")]
    ok, s = C.check_examples(rows, tok, max_seq_len=64)
    assert ok == [False, True, False]
    assert s["faults"]["empty_assistant"] == 2
    assert s["tokens"]["over"] == 1


def test_tokenizer_without_chat_template_is_one_line_exit_2(pool, tiny_causal_lm, tmp_path,
                                                            validate_cli):
    student = tmp_path / "student"
    shutil.copytree(tiny_causal_lm, student)
    cfg = json.loads((student / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (student / "tokenizer_config.json").write_text(json.dumps(cfg))
    for f in student.glob("chat_template*"):
        f.unlink()
    r = validate_cli(pool / "export", "--student", student, "--steps", 0)
    assert r.exit_code == 2
    assert r.stdout == ""
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--student" in lines[0] and "chat template" in lines[0]


@pytest.mark.parametrize("args, needle", [
    (["--steps", -1], "--steps"),
    (["--batch-size", 0], "--batch-size"),
    (["--lr", "nan"], "--lr"),
])
def test_bad_options_exit_2(pool, tiny_causal_lm, validate_cli, args, needle):
    r = validate_cli(pool / "export", "--student", tiny_causal_lm, *args)
    assert r.exit_code == 2 and needle in r.stderr


def test_not_an_export_folder_exit_2(pool, tiny_causal_lm, validate_cli):
    r = validate_cli(pool / "pool.parquet", "--student", tiny_causal_lm)
    assert r.exit_code == 2 and "not a curate export folder" in r.stderr


# --- the quick SFT --------------------------------------------------------------------------------

def test_quick_sft_selected_vs_random(pool, tiny_causal_lm, validate_cli, monkeypatch):
    pytest.importorskip("trl")
    pytest.importorskip("peft")
    seen = {}
    real = sft.train_once

    def spy(student, tok, train, heldout, opts, workdir, eval_before):
        seen[workdir.name] = ({e.id for e in train}, {e.id for e in heldout or []})
        return real(student, tok, train, heldout, opts, workdir, eval_before)

    monkeypatch.setattr(sft, "train_once", spy)
    r = validate_cli(pool / "export", "--student", tiny_causal_lm, "--steps", 3,
                     "--batch-size", 2, "--max-seq-len", 256, "--eval-rows", 6,
                     "--baseline", pool / "pool.parquet", "--lora", "--json")
    assert r.exit_code == 0, r.stderr
    s = json.loads(r.stdout)  # stdout is exactly one JSON object, TRL's logs went elsewhere
    assert s["ok"] is True
    assert set(s["train"]) == {"selected", "random"}
    for run in s["train"].values():
        assert run["steps"] == 3 and run["rows"] == 12 and not run["nan"]
        for k in ("loss_start", "loss_end", "heldout_loss"):
            assert 0 < run[k] < 50  # finite: a random 1k-token vocabulary starts near ln(V)
        assert run["tokens"] > 0 and run["tokens_per_s"] > 0
    assert s["heldout"] == {"rows": 6, "source": "baseline pool", "overlap_removed": 0}
    cmp_ = s["comparison"]
    assert cmp_["selected_minus_random"] == pytest.approx(
        cmp_["heldout_loss_selected"] - cmp_["heldout_loss_random"])

    sel_ids, held = seen["selected"]
    rnd_ids, held2 = seen["random"]
    exported = {r["id"] for f in glob.glob(str(pool / "export" / "data" / "*.parquet"))
                for r in pq.read_table(f, columns=["id"]).to_pylist()}
    assert sel_ids == exported  # the export's train split (no test split here), all rows ok
    assert held == held2 and len(held) == 6
    assert not held & sel_ids and not held & rnd_ids
    assert len(rnd_ids) == len(sel_ids)
