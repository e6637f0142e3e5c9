"""`curate score`: exact rewards (engine vs the model card's literal computation), Eq. 11,
long traces, row faults, rescore, kill-and-resume, bad input."""

import json
import math
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SAMPLE, manifest, read_dropped, read_output, rows_by_id, score_json

torch = pytest.importorskip("torch", reason="scoring needs torch (scripts/test.sh installs it)")
pytest.importorskip("transformers", reason="scoring needs transformers")

from curate.scoring.reference import reference_seq_reward, reference_step_rewards  # noqa: E402
from curate.stage import run_stage  # noqa: E402
from curate.steps import segment_trace  # noqa: E402


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    """Real traces from sample_data in canonical form (short enough for the tiny models)."""
    from curate.read.traces import ReadOptions

    out = tmp_path_factory.mktemp("traces") / "read"
    run_stage("read", [str(SAMPLE)], str(out), ReadOptions())
    table = read_output(out)
    return out, table


def test_step_rewards_match_the_model_card_computation(cli, tmp_path, traces, tiny_step_prm):
    folder, table = traces
    s = score_json(cli, folder, "-o", tmp_path / "s", "--model", tiny_step_prm, "--limit", "120",
               "--batch-tokens", "3000", "--chunk-rows", "50")
    assert s["rows_out"] > 40
    rows = rows_by_id(tmp_path / "s")
    checked = 0
    for row in list(rows.values())[:40]:
        t_steps, r_steps = segment_trace(row["trajectory"], row["response"],
                                         row.get("trajectory_steps"), row.get("response_steps"))
        ref = reference_step_rewards(tiny_step_prm, row["question"],
                                     [x.strip() for x in t_steps + r_steps])
        got = row["step_rewards"] + row["response_step_rewards"]
        assert len(got) == len(ref) == len(t_steps) + len(r_steps)
        assert max(abs(a - b) for a, b in zip(got, ref, strict=True)) <= 1e-5
        assert len(row["step_rewards"]) == len(t_steps)
        # trajectory reward: thinking and response joined by a blank line, one step
        whole = (row["trajectory"].strip() + "\n\n" + row["response"].strip()) \
            if row["trajectory"].strip() else row["response"].strip()
        traj_ref = reference_step_rewards(tiny_step_prm, row["question"], [whole])
        assert abs(row["trajectory_reward"] - traj_ref[0]) <= 1e-5
        # ReasonFlux Eq. 11 with alpha 1: mean of the thinking steps' rewards (the response
        # steps' when there is no thinking) plus the trajectory reward
        part = row["step_rewards"] or row["response_step_rewards"]
        assert math.isclose(row["score"], sum(part) / len(part) + row["trajectory_reward"],
                            rel_tol=1e-6)
        checked += 1
    assert checked == 40
    assert any(r["step_rewards"] for r in rows.values())  # thinking traces were among them
    rewards = [x for r in rows.values() for x in r["response_step_rewards"]]
    assert 0 < min(rewards) and max(rewards) < 1 and max(rewards) - min(rewards) > 0.1


def test_alpha_zero_and_aggregations(cli, tmp_path, traces, tiny_step_prm):
    folder, _ = traces
    base = ["--model", tiny_step_prm, "--limit", "30"]
    s = score_json(cli, folder, "-o", tmp_path / "a0", *base, "--alpha", "0", "--agg", "min")
    assert "half" in s["note"]
    for row in rows_by_id(tmp_path / "a0").values():
        part = row["step_rewards"] or row["response_step_rewards"]
        assert row["trajectory_reward"] is None
        assert row["score"] == pytest.approx(min(part), abs=1e-7)
    score_json(cli, folder, "-o", tmp_path / "a5", *base, "--alpha", "0.5", "--agg", "last")
    for row in rows_by_id(tmp_path / "a5").values():
        part = row["step_rewards"] or row["response_step_rewards"]
        assert row["score"] == pytest.approx(part[-1] + 0.5 * row["trajectory_reward"],
                                             rel=1e-6)
    assert manifest(tmp_path / "a5")["config"]["agg"] == "last"


def test_rescore_without_a_model(cli, tmp_path, traces, tiny_step_prm):
    folder, _ = traces
    score_json(cli, folder, "-o", tmp_path / "s", "--model", tiny_step_prm, "--limit", "30")
    r = score_json(cli, tmp_path / "s", "-o", tmp_path / "r", "--rescore", "--alpha", "0.5",
               "--agg", "prod")
    assert r["rescored"] and r["rows_out"] == 30
    before, after = rows_by_id(tmp_path / "s"), rows_by_id(tmp_path / "r")
    for i, row in after.items():
        part = row["step_rewards"] or row["response_step_rewards"]
        assert row["step_rewards"] == before[i]["step_rewards"]
        assert row["score"] == pytest.approx(math.prod(part) + 0.5 * row["trajectory_reward"],
                                             rel=1e-6)
    # the same settings give back the stored score exactly
    score_json(cli, tmp_path / "r", "-o", tmp_path / "back", "--rescore")
    assert {i: r["score"] for i, r in rows_by_id(tmp_path / "back").items()} == \
        {i: r["score"] for i, r in before.items()}
    # rewards scored with alpha 0 cannot be weighted later
    score_json(cli, folder, "-o", tmp_path / "z", "--model", tiny_step_prm, "--limit", "5",
           "--alpha", "0")
    bad = cli("score", tmp_path / "z", "-o", tmp_path / "zz", "--rescore", "--alpha", "1")
    assert bad.exit_code == 2 and "alpha 0" in bad.stderr
    bad = cli("score", folder, "-o", tmp_path / "zz", "--rescore")
    assert bad.exit_code == 2 and "not a scored folder" in bad.stderr


def test_sequence_prm_matches_reference(cli, tmp_path, traces, tiny_seq_prm):
    folder, _ = traces
    s = score_json(cli, folder, "-o", tmp_path / "s", "--model", tiny_seq_prm, "--limit", "25")
    assert s["family"] == "seq-prm"
    from curate.scoring.seq_prm import SeqPRMScorer

    for row in rows_by_id(tmp_path / "s").values():
        text = SeqPRMScorer.build(row["question"], row["trajectory"], row["response"])
        ref = reference_seq_reward(tiny_seq_prm, text)
        assert abs(row["trajectory_reward"] - ref) <= 1e-5
        assert row["score"] == pytest.approx(row["trajectory_reward"])
        assert row["step_rewards"] == []


def test_long_traces_are_dropped_never_truncated(cli, tmp_path, traces, tiny_step_prm):
    folder, _ = traces
    s = score_json(cli, folder, "-o", tmp_path / "s", "--model", tiny_step_prm, "--limit", "60",
               "--max-model-len", "300")
    assert s["too_long"] > 0 and s["rows_out"] + s["too_long"] == 60
    dropped = [d for d in read_dropped(tmp_path / "s").to_pylist()
               if d["drop_reason"] == "too_long"]
    assert len(dropped) == s["too_long"]
    assert all(int(d["drop_value"].split()[0]) > 300 for d in dropped)
    assert all(r["n_tokens"] <= 300 for r in rows_by_id(tmp_path / "s").values())


def test_separator_in_text_is_a_row_fault(cli, tmp_path, tiny_step_prm):
    rows = [{"id": "ok", "question": "Q", "response": "a\n\nb"},
            {"id": "bad", "question": "Q", "response": "a<extra_0>b"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet")
    s = score_json(cli, tmp_path / "in.parquet", "-o", tmp_path / "s", "--model", tiny_step_prm)
    assert s["rows_out"] == 1 and s["dropped"] == {"contains_separator": 1}
    assert read_dropped(tmp_path / "s").column("id").to_pylist() == ["bad"]


def _score_cmd(folder, out, model, *extra):
    exe = os.path.join(os.path.dirname(sys.executable), "curate")
    return [exe, "score", str(folder), "-o", str(out), "--model", str(model), "--limit", "80",
            "--chunk-rows", "16", "--json", *extra]


def test_kill_and_resume_gives_the_uninterrupted_rows(tmp_path, traces, tiny_step_prm):
    folder, _ = traces
    full = subprocess.run(_score_cmd(folder, tmp_path / "full", tiny_step_prm),
                          capture_output=True, text=True)
    assert full.returncode == 0, full.stderr
    env = {**os.environ, "CURATE_TEST_ABORT_AFTER_CHUNKS": "2"}
    killed = subprocess.run(_score_cmd(folder, tmp_path / "out", tiny_step_prm),
                            capture_output=True, text=True, env=env)
    assert killed.returncode == 137
    assert not (tmp_path / "out").exists()  # nothing that looks complete
    assert (tmp_path / ".out.curate-partial" / "progress.json").is_file()
    # other settings refuse to resume into it, and say why
    other = subprocess.run(_score_cmd(folder, tmp_path / "out", tiny_step_prm, "--alpha", "0"),
                           capture_output=True, text=True)
    assert other.returncode == 2 and "alpha" in other.stderr and "--overwrite" in other.stderr
    resumed = subprocess.run(_score_cmd(folder, tmp_path / "out", tiny_step_prm),
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["chunks_resumed"] == 2
    a, b = read_output(tmp_path / "full"), read_output(tmp_path / "out")
    assert a.column("id").to_pylist() == b.column("id").to_pylist()
    assert a.column("score").to_pylist() == b.column("score").to_pylist()
    assert a.column("step_rewards").to_pylist() == b.column("step_rewards").to_pylist()
    assert not (tmp_path / ".out.curate-partial").exists()


# --- bad input ----------------------------------------------------------------------------------


def _bad(cli, tmp_path, *args, needles=()):
    r = cli("score", *args)
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1
    for n in needles:
        assert n in r.stderr, r.stderr
    return r


def test_bad_models(cli, tmp_path, traces, tiny_causal_lm, tiny_prm_bad_head,
                    tiny_prm_unknown_arch):
    folder, _ = traces
    out = tmp_path / "o"
    _bad(cli, tmp_path, folder, "-o", out, "--model", tmp_path / "nope",
         needles=("--model", "no such folder"))
    _bad(cli, tmp_path, folder, "-o", out, "--model", tiny_causal_lm,
         needles=("Qwen2ForCausalLM", "vocabulary-sized"))
    _bad(cli, tmp_path, folder, "-o", out, "--model", tiny_prm_bad_head,
         needles=("3 outputs", "expected 2"))
    _bad(cli, tmp_path, folder, "-o", out, "--model", tiny_prm_unknown_arch,
         needles=("Qwen2ForSomethingElse", "--scorer step-prm"))
    _bad(cli, tmp_path, folder, "-o", out, "--model", tiny_prm_unknown_arch,
         "--scorer", "seq-prm", needles=("reward_head.pt",))
    assert not out.exists()


def test_tokenizer_without_separator(cli, tmp_path, traces, tiny_step_prm):
    import shutil

    folder, _ = traces
    model = tmp_path / "m"
    shutil.copytree(tiny_step_prm, model)
    for f in model.glob("*.json"):  # the tokenizer now knows <extra_9> instead
        if f.name != "config.json":
            f.write_text(f.read_text().replace("<extra_0>", "<extra_9>"))
    _bad(cli, tmp_path, folder, "-o", tmp_path / "o", "--model", model,
         needles=("<extra_0>",))


@pytest.mark.parametrize("args,needle", [
    (["--alpha", "-1"], "--alpha"),
    (["--agg", "median"], "--agg"),
    (["--engine", "tpu"], "--engine"),
    (["--long", "wrap"], "--long"),
    (["--batch-tokens", "0"], "--batch-tokens"),
])
def test_bad_options(cli, tmp_path, traces, tiny_step_prm, args, needle):
    folder, _ = traces
    _bad(cli, tmp_path, folder, "-o", tmp_path / "o", "--model", tiny_step_prm, *args,
         needles=(needle,))


def test_output_of_another_stage_is_not_overwritten(cli, tmp_path, traces, tiny_step_prm):
    folder, _ = traces
    r = _bad(cli, tmp_path, folder, "-o", folder, "--model", tiny_step_prm,
             needles=("curate read", "--overwrite"))
    assert "score" in r.stderr
    assert manifest(folder)["curate"]["stage"] == "read"


def test_incremental_scoring_scores_only_new_traces(cli, tmp_path, traces, tiny_step_prm):
    folder, _ = traces
    first = score_json(cli, folder, "-o", tmp_path / "s", "--model", tiny_step_prm, "--limit", "30")
    assert first["reused"] == 0
    before = rows_by_id(tmp_path / "s")
    # the same input grew: only the new traces reach the model
    grown = score_json(cli, folder, "-o", tmp_path / "s", "--model", tiny_step_prm, "--limit", "50",
                   "--alpha", "0.5")
    assert grown["reused"] == first["rows_out"] and grown["rows_out"] == 50 - grown["too_long"]
    # the model saw only the new traces that fit its context: step pass + trajectory pass
    assert grown["engine_stats"]["sequences"] == 2 * (grown["rows_out"] - grown["reused"])
    after = rows_by_id(tmp_path / "s")
    for i, row in before.items():
        assert after[i]["step_rewards"] == row["step_rewards"]
        assert after[i]["score"] == pytest.approx(
            (sum(p := (row["step_rewards"] or row["response_step_rewards"])) / len(p))
            + 0.5 * row["trajectory_reward"], rel=1e-6)
    # nothing new: no model forward pass at all
    again = score_json(cli, folder, "-o", tmp_path / "s", "--model", tiny_step_prm, "--limit", "50")
    assert again["reused"] == 50 - again["too_long"] and "engine_stats" not in again
    # other settings (here: no trajectory pass) never reuse
    other = score_json(cli, folder, "-o", tmp_path / "s", "--model", tiny_step_prm, "--limit", "50",
                   "--alpha", "0")
    assert other["reused"] == 0


def test_dry_run_counts_what_a_real_run_processes(cli, tmp_path, traces, tiny_step_prm):
    folder, _ = traces
    real = score_json(cli, folder, "-o", tmp_path / "s", "--model", tiny_step_prm, "--limit", "60")
    plan = score_json(cli, folder, "--dry-run", "--model", tiny_step_prm, "--limit", "60",
                  "--assume-tokens-per-s", "1000")
    assert plan["tokens"] == real["engine_stats"]["tokens"]
    assert plan["sequences"] == real["engine_stats"]["sequences"]
    assert plan["too_long"] == real["too_long"] > 0
    assert plan["estimated_gpu_hours"] == pytest.approx(plan["tokens"] / 1000 / 3600, abs=1e-3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # the dry run wrote nothing
    r = cli("score", folder, "--model", tiny_step_prm)
    assert r.exit_code == 2 and "-o/--output" in r.stderr


def test_long_traces_in_windows(cli, tmp_path, traces, tiny_step_prm):
    folder, _ = traces
    args = ["--model", tiny_step_prm, "--limit", "60"]
    full = rows_by_id(tmp_path / "full") if score_json(
        cli, folder, "-o", tmp_path / "full", *args) else None
    s = score_json(cli, folder, "-o", tmp_path / "w", *args, "--max-model-len", "300",
               "--long", "window")
    assert s["windowed"] > 0 and s.get("too_long", 0) == 0
    rows = rows_by_id(tmp_path / "w")
    windowed = [r for r in rows.values() if r["windows"] > 1]
    assert len(windowed) == s["windowed"]
    compared = 0
    for r in windowed:
        if r["id"] not in full:  # too long for the fixture's own 1,024 context as well
            continue
        compared += 1
        f = full[r["id"]]
        got = r["step_rewards"] + r["response_step_rewards"]
        ref = f["step_rewards"] + f["response_step_rewards"]
        # every step scored once, none lost or repeated
        assert len(got) == len(ref) and len(r["step_rewards"]) == len(f["step_rewards"])
        assert r["too_long"] and r["n_tokens"] > 300
        # causal attention: the first window is the start of the full pass, so its steps get
        # the same rewards as without windows
        assert abs(got[0] - ref[0]) <= 1e-5
        assert r["trajectory_reward"] is not None
    assert compared >= 3
    for r in rows.values():
        if r["windows"] == 1:
            assert r["score"] == pytest.approx(full[r["id"]]["score"], abs=1e-6)


def test_every_window_matches_the_model_card_on_its_own_text(tiny_step_prm):
    """Later windows: the rewards of the steps a window scores equal the model card's rewards
    for that window's text (question + context steps + new steps)."""
    from curate.scoring.checkpoint import inspect
    from curate.scoring.engine_hf import HFEngine
    from curate.scoring.step_prm import StepPRMScorer, load_tokenizer

    ckpt = inspect(str(tiny_step_prm))
    scorer = StepPRMScorer(ckpt, load_tokenizer(ckpt), alpha=1.0, max_len=120, long="window")
    steps = [f"Step {k}: we add {k} and {k + 1} to get {2 * k + 1}, then check it." for k in
             range(14)]
    table = pa.table({"question": ["Sum the numbers."], "trajectory": ["\n\n".join(steps[:9])],
                      "response": ["\n\n".join(steps[9:])]})
    scored = scorer.rewards(table, HFEngine(ckpt))
    assert scored.windows[0] > 2 and not scored.drops
    got = scored.step_rewards[0] + scored.response_step_rewards[0]
    assert len(scored.step_rewards[0]) == 9 and len(got) == 14
    start = 0
    for ids, first, count in scorer._windows("Sum the numbers.", steps):
        assert len(ids) <= 120
        begin = start - first
        ref = reference_step_rewards(tiny_step_prm, "Sum the numbers.", steps[begin:start + count])
        assert max(abs(a - b) for a, b in zip(got[start:start + count], ref[first:],
                                              strict=True)) <= 1e-5
        start += count
    assert start == 14


def test_devices_split_the_work_and_agree(cli, tmp_path, traces, tiny_step_prm):
    folder, _ = traces
    args = ["--model", tiny_step_prm, "--limit", "40", "--chunk-rows", "20"]
    one = score_json(cli, folder, "-o", tmp_path / "one", *args)
    two = score_json(cli, folder, "-o", tmp_path / "two", *args, "--devices", "cpu,cpu")
    assert two["device"] == "cpu,cpu"
    assert two["engine_stats"]["sequences"] == one["engine_stats"]["sequences"]
    a, b = rows_by_id(tmp_path / "one"), rows_by_id(tmp_path / "two")
    assert a.keys() == b.keys()
    for i in a:
        ra = a[i]["step_rewards"] + a[i]["response_step_rewards"] + [a[i]["trajectory_reward"]]
        rb = b[i]["step_rewards"] + b[i]["response_step_rewards"] + [b[i]["trajectory_reward"]]
        assert max(abs(x - y) for x, y in zip(ra, rb, strict=True)) <= 1e-5
    bad = cli("score", folder, "-o", tmp_path / "x", "--model", tiny_step_prm,
              "--devices", "0,gpu1")
    assert bad.exit_code == 2 and "--devices" in bad.stderr
