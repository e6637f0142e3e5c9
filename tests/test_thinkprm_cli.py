"""`curate score --scorer thinkprm` as a user runs it: the README's tour command, what it writes
and reports, kill-and-resume, reuse by trace content, --dry-run, `curate eval`, bad input."""

import json
import os
import subprocess
import sys

import pyarrow as pa
import pytest
from conftest import SAMPLE, manifest, read_output, rows_by_id, score_json

pytest.importorskip("torch", reason="the tiny verifier needs torch")
pytest.importorskip("transformers", reason="the tiny verifier needs transformers")

from curate.evaluation.stage import EvalOptions, evaluate  # noqa: E402
from curate.scoring import verification as V  # noqa: E402

TOUR = ("--scorer", "thinkprm", "--verify-max-tokens", "16")


@pytest.fixture(scope="module")
def scored(tmp_path_factory, tiny_thinkprm):
    """The README's tour command on the bundled sample (limited), scored once."""
    from curate_cli.app import app
    from typer.testing import CliRunner

    out = tmp_path_factory.mktemp("tp") / "scored"
    r = CliRunner().invoke(app, ["score", str(SAMPLE), "-o", str(out), "--model",
                                 str(tiny_thinkprm), *TOUR, "--limit", "24", "--json"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return out, json.loads(r.stdout)


def test_the_tour_command_writes_verifier_columns(scored):
    out, s = scored
    assert s["family"] == "thinkprm" and s["engine"] == "hf" and s["rows_out"] > 15
    rows = read_output(out)
    schema = rows.schema
    assert schema.field("verifier_score").type == pa.float32()
    assert schema.field("step_verdicts").type == pa.list_(pa.int8())
    assert schema.field("predicted_first_error").type == pa.int32()
    assert "first_error_step" in schema.names  # the sample's own labels are untouched
    for r in rows.to_pylist():
        assert r["score"] == r["verifier_score"] == r["chain_scores"][0]
        assert 0 < r["score"] < 1 and 0 < r["generated_tokens"] <= 16
        assert isinstance(r["critique"], str)
    v = s["verification"]
    assert v["generated_tokens"] == sum(r["generated_tokens"] for r in rows.to_pylist())
    assert v["verdict_count_mismatch"] == sum(r["verdict_count_mismatch"]
                                              for r in rows.to_pylist())
    m = manifest(out)
    tokens = m["scorer"]["verdict_tokens"]
    assert tokens["yes"] == " Yes" and "fallback" not in tokens
    assert m["score_key"]["verify_max_tokens"] == 16


def test_every_parquet_tool_reads_it(scored):
    import pandas as pd
    import polars as pl
    import pyarrow.dataset as ds
    from datasets import load_dataset

    out, s = scored
    n = s["rows_out"]
    assert pl.read_parquet(out / "data").height == n
    assert len(pd.read_parquet(out / "data")) == n
    assert ds.dataset(out).count_rows() == n
    d = load_dataset("parquet", data_dir=str(out / "data"), split="train")
    assert d.num_rows == n and "critique" in d.column_names


def test_the_report_shows_the_verdicts(cli, scored):
    out, s = scored
    r = cli("report", out, "--json")
    assert r.exit_code == 0, r.output
    v = json.loads(r.stdout)["verification"]
    assert v["traces"] == s["rows_out"]
    assert v["verdict_count_mismatch"] == s["verification"]["verdict_count_mismatch"]
    assert v["traces_all_correct"] + v["traces_with_error"] + v["traces_without_verdicts"] == \
        s["rows_out"]
    text = cli("report", out)
    assert "verification (generative verifier)" in text.stdout


def test_rescore_is_refused_on_a_verifier_score(cli, tmp_path, scored):
    r = cli("score", scored[0], "-o", tmp_path / "r", "--rescore")
    assert r.exit_code == 2 and "thinkprm" in r.stderr and r.stderr.count("\n") == 1


def _cmd(out, model, *extra):
    exe = os.path.join(os.path.dirname(sys.executable), "curate")
    return [exe, "score", str(SAMPLE), "-o", str(out), "--model", str(model), *TOUR,
            "--limit", "32", "--chunk-rows", "8", "--json", *extra]


def test_kill_and_resume_gives_the_uninterrupted_rows(tmp_path, tiny_thinkprm):
    full = subprocess.run(_cmd(tmp_path / "full", tiny_thinkprm), capture_output=True,
                          text=True)
    assert full.returncode == 0, full.stderr
    env = {**os.environ, "CURATE_TEST_ABORT_AFTER_CHUNKS": "2"}
    killed = subprocess.run(_cmd(tmp_path / "out", tiny_thinkprm), capture_output=True,
                            text=True, env=env)
    assert killed.returncode == 137 and not (tmp_path / "out").exists()
    other = subprocess.run(_cmd(tmp_path / "out", tiny_thinkprm, "--verify-k", "2"),
                           capture_output=True, text=True)
    assert other.returncode == 2 and "--overwrite" in other.stderr
    resumed = subprocess.run(_cmd(tmp_path / "out", tiny_thinkprm), capture_output=True,
                             text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["chunks_resumed"] == 2
    a, b = read_output(tmp_path / "full"), read_output(tmp_path / "out")
    for col in ("id", "score", "critique", "step_verdicts", "chain_scores"):
        assert a.column(col).to_pylist() == b.column(col).to_pylist(), col


def test_new_traces_only_reach_the_model(cli, tmp_path, tiny_thinkprm):
    args = (SAMPLE, "-o", tmp_path / "s", "--model", tiny_thinkprm, *TOUR)
    first = score_json(cli, *args, "--limit", "10")
    before = rows_by_id(tmp_path / "s")
    grown = score_json(cli, *args, "--limit", "16")
    new = grown["rows_out"] - grown["reused"]
    assert grown["reused"] == first["rows_out"] and new > 0
    # each new trace: one prompt generated from, one verdict read
    assert grown["engine_stats"]["sequences"] == 2 * new
    after = rows_by_id(tmp_path / "s")
    for i, row in before.items():
        assert after[i]["critique"] == row["critique"] and after[i]["score"] == row["score"]
    other = score_json(cli, *args, "--limit", "16", "--verify-max-tokens", "12")
    assert other["reused"] == 0  # other verification settings never reuse


def test_dry_run_estimates_generation(cli, tmp_path, tiny_thinkprm):
    plan = score_json(cli, SAMPLE, "--dry-run", "--model", tiny_thinkprm, *TOUR, "--limit",
                      "20", "--verify-rounds", "3", "--assume-decode-tokens-per-s", "10")
    fits = 20 - plan["too_long"] - sum(v for k, v in plan["dropped"].items()
                                       if k != "too_long")
    # the budget bounds a chain, rounds included: 16 tokens each, not 3 x 16
    assert plan["generated_tokens_max"] == 16 * fits
    assert plan["sequences"] == 2 * fits  # a prompt and a verdict each
    assert plan["estimated_gpu_hours"] == pytest.approx(
        (plan["tokens"] / plan["assumed_tokens_per_s"] + 16 * fits / 10) / 3600, abs=1e-3)


def test_verdict_token_fallback_is_said_and_recorded(cli, tmp_path, tiny_thinkprm, monkeypatch):
    monkeypatch.setattr(V, "NO", " Nope, wrong")
    r = cli("score", SAMPLE, "-o", tmp_path / "s", "--model", tiny_thinkprm, *TOUR, "--limit",
            "3")
    assert r.exit_code == 0, r.output
    assert "first token" in r.stderr
    assert "first token" in manifest(tmp_path / "s")["scorer"]["verdict_tokens"]["fallback"]


# --- eval ---------------------------------------------------------------------------------------

def test_eval_processbench_f1_from_the_verifiers_first_errors():
    # truth: first_error_step (-1: none); prediction: predicted_first_error
    truth = [-1, -1, 2, 0, 1, -1]
    pred = [-1, 1, 2, 0, 0, None]  # the last critique gave no verdict: left out
    t = pa.table({"id": [str(i) for i in range(6)], "question": ["q"] * 6,
                  "response": ["a\n\nb\n\nc"] * 6, "score": [0.5] * 6,
                  "first_error_step": truth, "predicted_first_error": pa.array(pred, pa.int32()),
                  "verdict_count_mismatch": [False, True, False, False, False, False]})
    r = evaluate(t, EvalOptions())
    s = r["step_level"]
    # erroneous: 2 of 3 right (2, 0 hit; 1 predicted 0); correct: 1 of 2 (-1 hit, 1 missed)
    acc_e, acc_c = 2 / 3, 1 / 2
    assert s["acc_error"] == pytest.approx(acc_e) and s["acc_correct"] == pytest.approx(acc_c)
    assert r["processbench_f1"] == pytest.approx(2 * acc_e * acc_c / (acc_e + acc_c))
    assert s["rows"] == 5 and s["unscored"] == 1 and s["verdict_count_mismatch"] == 1
    assert s["threshold"] is None


@pytest.mark.usefixtures("tiny_thinkprm")
def test_eval_scores_with_the_verifier_in_memory(cli, tiny_thinkprm):
    from conftest import SHARED

    if not (SHARED / "real" / "processbench.parquet").is_file():
        pytest.skip("../shared/data is absent")
    r = cli("eval", SHARED / "real" / "processbench.parquet", "--model", tiny_thinkprm,
            "--scorer", "thinkprm", "--score-option", "verify-max-tokens=16", "--sample", "12",
            "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["step_level"]["predictions"].startswith("the first step the critique")
    # random weights write no \boxed verdicts: no F1, and a note that says so
    if out["processbench_f1"] is None:
        assert any("processbench_f1" in n for n in out["notes"])


# --- bad input ----------------------------------------------------------------------------------

def _bad(cli, *args, needles=()):
    r = cli("score", *args)
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    for n in needles:
        assert n in r.stderr, r.stderr


def test_reward_models_are_not_verifiers(cli, tmp_path, tiny_step_prm, tiny_seq_prm,
                                         tiny_thinkprm):
    out = tmp_path / "o"
    _bad(cli, SAMPLE, "-o", out, "--model", tiny_step_prm, "--scorer", "thinkprm",
         needles=("step PRM", "--scorer step-prm"))
    _bad(cli, SAMPLE, "-o", out, "--model", tiny_seq_prm, "--scorer", "thinkprm",
         needles=("sequence PRM", "reward_head.pt"))
    # a causal LM is never taken for a reward model silently
    _bad(cli, SAMPLE, "-o", out, "--model", tiny_thinkprm, needles=("--scorer thinkprm",))
    assert not out.exists()


@pytest.mark.parametrize("args,needle", [
    (["--verify-max-tokens", "0"], "--verify-max-tokens"),
    (["--verify-max-tokens", "4096"], "context is 2048"),
    (["--verify-k", "0"], "--verify-k"),
    (["--verify-rounds", "0"], "--verify-rounds"),
    (["--verify-part", "thinking"], "--verify-part"),
    (["--verify-k", "2", "--verify-temperature", "0"], "greedy"),
])
def test_bad_options(cli, tmp_path, tiny_thinkprm, args, needle):
    _bad(cli, SAMPLE, "-o", tmp_path / "o", "--model", tiny_thinkprm, "--scorer", "thinkprm",
         *args, needles=(needle,))


def test_tokenizer_without_chat_template(cli, tmp_path, tiny_thinkprm):
    import shutil

    model = tmp_path / "m"
    shutil.copytree(tiny_thinkprm, model)
    cfg = json.loads((model / "tokenizer_config.json").read_text())
    del cfg["chat_template"]
    (model / "tokenizer_config.json").write_text(json.dumps(cfg))
    _bad(cli, SAMPLE, "-o", tmp_path / "o", "--model", model, "--scorer", "thinkprm",
         needles=("chat template",))
