"""`curate run CONFIG.toml`: config ↔ option parity, bad configs, the whole flow, resume."""

from __future__ import annotations

import functools
import json
import re
import tomllib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from conftest import ROOT
from curate_cli import stage_cmd
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from curate.flow import config as flow_config

SPECS = flow_config.stage_specs()
SAMPLE_VALUE = {"int": 7, "float": 0.25, "str": "some-value", "list": ["a", "b c"],
                "bool": True}


# --- parity: every option of every stage command is a config key, and means the same ----------

def _probe(stage: str):
    """A Typer app whose `stage` command has the real command's signature and records what
    Typer parsed into each parameter."""
    fn = stage_cmd.command(SPECS[stage].stage)
    seen: dict = {}

    @functools.wraps(fn)
    def record(*args, **kwargs):
        seen.update(kwargs)

    app = typer.Typer()
    app.command(stage)(record)
    app.command("unused")(lambda: None)  # two commands, so the stage name is a sub-command
    return app, seen


@pytest.mark.parametrize("stage", list(SPECS))
def test_every_config_key_reaches_its_parameter_through_the_commands_parser(stage):
    spec = SPECS[stage]
    values = {k: SAMPLE_VALUE[o.kind] for k, o in spec.options.items()}
    opts = flow_config.stage_argv(spec, values)
    app, seen = _probe(stage)
    extra = list(values["inputs"]) if stage == "read" else ["x"]  # the input …
    if spec.stage.writes is not None:
        extra += ["-o", "out"]  # … and the output
    r = CliRunner().invoke(app, [stage, *extra, *opts])
    assert r.exit_code == 0, r.output
    for key, opt in spec.options.items():
        assert seen[opt.param] == values[key], key


@pytest.mark.parametrize("stage", list(SPECS))
def test_the_help_lists_exactly_the_config_keys_and_the_run_managed_ones(stage, cli):
    help_text = cli(stage, "--help", env={"COLUMNS": "200"}).stdout
    flags = set(re.findall(r"(?<![\w-])--([a-z][a-z0-9-]*)", help_text)) - {"help"}
    spec = SPECS[stage]
    named = {k for k in spec.options if k != "inputs"} | set(spec.managed)
    assert flags <= named, f"options with no config key: {sorted(flags - named)}"
    options = {k for k in spec.options if k != "inputs"}
    assert options <= flags, f"config keys that are no option: {sorted(options - flags)}"


def test_the_example_config_names_every_option_with_the_commands_default(cli):
    text = cli("run", "--example").stdout
    doc = tomllib.loads(text)  # valid TOML as printed
    cfg = flow_config.parse(doc, ROOT / "curate.toml", SPECS)
    assert cfg.stages == ["read", "score", "filter", "dedup", "decontam", "export", "report"]
    section, listed = None, {}
    for line in text.splitlines():
        if m := re.match(r"^(?:# )?\[(\w+)\]$", line):
            section = m.group(1)
            listed[section] = {}
        elif section and (m := re.match(r"^(?:# )?([a-z][a-z0-9-]*) = (.*)$", line)):
            listed[section][m.group(1)] = m.group(2)
    for stage, spec in SPECS.items():
        assert set(listed[stage]) == set(spec.options), stage
        for key, opt in spec.options.items():
            shown = listed[stage][key]
            if opt.default is not None and f"{key} = {shown}" in text.replace("# ", ""):
                if not shown.startswith(("<", '"<', '["<')) and key not in (
                        flow_config.EXAMPLE.get(stage) or {}):
                    assert tomllib.loads(f"v = {shown}")["v"] == opt.default, (stage, key)


def test_demo_config_is_valid_and_runs_the_flow_offline():
    cfg = flow_config.load(ROOT / "sample_data" / "demo.toml", SPECS)
    assert cfg.stages == ["read", "score", "filter", "dedup", "decontam", "export", "report"]
    assert cfg.options["score"]["model"] is None  # the offline signals scorer


# --- bad configs: one line naming the file, section and key; exit 2; nothing written ----------

def _bad(cli, tmp_path, text: str):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    r = cli("run", path)
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and r.stdout == "" and len(lines) == 1, (r.exit_code, r.stderr)
    assert "bad.toml" in lines[0] and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()
    return lines[0]


GOOD_HEAD = 'run = {out = "OUT"}\nread = {inputs = ["x.parquet"]}\n'


@pytest.mark.parametrize("text, needles", [
    ('[run]\nout = "OUT"\n[read]\ninputs = ["in"]\n[filtre]\n', ["unknown section [filtre]",
                                                                 "did you mean 'filter'",
                                                                 "[dedup]"]),
    ('[run]\nout = "OUT"\n[read]\ninputs = ["in"]\n[filter]\nper_qestion = 2\n',
     ["[filter] unknown key 'per_qestion'", "did you mean 'per-question'", "top-k"]),
    ('[run]\nout = "OUT"\nworkers = 2\n[read]\ninputs = ["in"]\n',
     ["[run] unknown key 'workers'", "valid: out, stages"]),
    ('[run]\nout = "OUT"\n[read]\ninputs = ["in"]\n[filter]\noutput = "x"\n',
     ["[filter] output", "OUT/<stage>"]),
    ('[run]\nout = "OUT"\n[read]\ninputs = ["in"]\n[filter]\ninputs = ["x"]\n',
     ["[filter] inputs", "stage before it"]),
    ('[run]\nout = "OUT"\n[read]\ninputs = ["in"]\n[filter]\nper-question = "four"\n',
     ["[filter] per-question must be an integer", "a string 'four'"]),
    ('[run]\nout = "OUT"\n[read]\ninputs = ["in"]\n[filter]\nanswer-correct = 1\n',
     ["[filter] answer-correct must be true or false"]),
    ('[run]\nout = "OUT"\n[read]\ninputs = ["in"]\n[decontam]\nagainst = [1, 2]\n',
     ["[decontam] against must be a list of strings"]),
    ('[run]\nout = "OUT"\n[read]\ninputs = ["in"]\n[filter]\nper-question = 2\n',
     ["[filter] per-question ranks by score", "no score stage"]),
    ('[run]\nout = "OUT"\n[read]\ninputs = ["in"]\n[validate]\nstudent = "s"\n',
     ["validate checks the export", "export must run before it"]),
    ('[run]\nout = "OUT"\nstages = ["read", "export", "score"]\n[read]\ninputs = ["in"]\n',
     ["score comes after export"]),
    ('[run]\nout = "OUT"\nstages = ["read", "report", "export"]\n[read]\ninputs = ["in"]\n',
     ["report", "must be the last stage"]),
    ('[run]\nout = "OUT"\nstages = ["score", "read"]\n[read]\ninputs = ["in"]\n',
     ["the first stage must be read"]),
    ('[run]\nout = "OUT"\nstages = ["read", "dedup", "dedup"]\n[read]\ninputs = ["in"]\n',
     ["'dedup' appears 2 times"]),
    ('[run]\nout = "OUT"\nstages = ["read", "sc0re"]\n[read]\ninputs = ["in"]\n',
     ["unknown stage 'sc0re'", "did you mean 'score'"]),
    ('[run]\nout = "OUT"\n[read]\ninputs = ["in"]\n[export]\n[validate]\n',
     ["[validate] needs student"]),
    ('[run]\nout = "OUT"\n[read]\n', ["[read] needs inputs"]),
    ('out = "OUT"\n[read]\ninputs = ["in"]\n', ["'out' must be a section key", "under [run]"]),
    ('[run]\nout = "OUT\n', ["not valid TOML", "line 2"]),
])
def test_bad_config_is_one_line_exit_2(cli, tmp_path, text, needles):
    line = _bad(cli, tmp_path, text.replace("OUT", str(tmp_path / "out")))
    for needle in needles:
        assert needle in line, (needle, line)


def test_missing_config_and_missing_input(cli, tmp_path):
    r = cli("run", tmp_path / "nope.toml")
    assert r.exit_code == 2 and "nope.toml: no such config file" in r.stderr
    assert "curate run --example" in r.stderr
    line = _bad(cli, tmp_path, f'[run]\nout = "{tmp_path / "out"}"\n[read]\n'
                               f'inputs = ["{tmp_path / "missing.parquet"}"]\n')
    assert "missing.parquet" in line


@settings(max_examples=60, deadline=None)
@given(st.permutations(["filter", "dedup", "decontam"]), st.booleans())
def test_selection_stages_take_any_order_after_read(order, score_first):
    stages = ["read", *(["score"] if score_first else []), *order, "export", "report"]
    doc = {"run": {"out": "o", "stages": stages}, "read": {"inputs": ["x"]},
           "decontam": {"against": ["math500"]}}
    cfg = flow_config.parse(doc, ROOT / "c.toml", SPECS)
    assert cfg.stages == stages


# --- the whole flow ------------------------------------------------------------------------------

@pytest.fixture
def traces(tmp_path):
    """6 questions × 4 samples (one exact duplicate), reference answers, and a benchmark file
    holding one of the questions."""
    rows = []
    for q in range(6):
        question = f"Question {q}: what is {q} plus {q}?"
        for s in range(4):
            answer = 2 * q if s % 2 == 0 else 2 * q + 1
            rows.append({"id": f"q{q}-s{s}", "question": question,
                         "trajectory": f"We add {q} and {q}.\n\nSample {s} thinks {'hard ' * s}"
                                       f"about it.\n\nSo the sum is {answer}.",
                         "response": f"The answer is $\\boxed{{{answer}}}$.",
                         "reference_answer": str(2 * q)})
    rows.append({**rows[0], "id": "q0-copy"})
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "traces.parquet")
    pq.write_table(pa.Table.from_pylist([{"question": rows[20]["question"]}]),
                   tmp_path / "bench.parquet")
    held = [{"id": f"h{i}", "question": f"Held-out {i}: name a prime above {i}.",
             "response": f"{i + 1 if i % 2 else i + 3} is one."} for i in range(1, 5)]
    pq.write_table(pa.Table.from_pylist(held), tmp_path / "heldout.parquet")
    return tmp_path


def _config(root, filter_opts='per-question = 2', extra=""):
    text = f"""
[run]
out = "{root / 'out'}"
[read]
inputs = ["{root / 'traces.parquet'}"]
[score]
encoder = "none"
[filter]
{filter_opts}
[dedup]
[decontam]
against = ["{root / 'bench.parquet'}"]
[export]
split-test = 0.0
{extra}
"""
    path = root / "run.toml"
    path.write_text(text)
    return path


def _run(cli, path, *args):
    r = cli("run", path, "--json", *args)
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


def _rows(folder):
    return sorted(pq.read_table(sorted(folder.glob("data/*.parquet"))).to_pylist(),
                  key=lambda r: r["rank"])


def test_the_run_does_what_the_stand_alone_commands_do(cli, traces):
    path = _config(traces)
    doc = _run(cli, path)
    assert [s["stage"] for s in doc["stages"]] == ["read", "score", "filter", "dedup",
                                                   "decontam", "export", "report"]
    assert all(s["action"] == "run" and s["exit_code"] == 0 for s in doc["stages"])
    out = traces / "out"
    by = {s["stage"]: s for s in doc["stages"]}
    # 2 per question: for question 0 the copy and its original (correct, tied, first by id)
    assert by["filter"]["summary"]["rows_out"] == 12
    assert by["dedup"]["summary"]["rows_out"] == 11  # one of that pair goes
    assert by["decontam"]["summary"]["rows_out"] == 9  # question 5 is in the benchmark
    assert by["report"]["summary"]["funnel"]["rows_out"] == 9

    # The same commands, one by one, give the same shards.
    sep = traces / "sep"
    for stage in ("read", "score", "filter", "dedup", "decontam", "export"):
        argv = by[stage]["command"].split()[1:]
        argv = [a.replace(str(out), str(sep)) for a in argv]
        assert cli(*argv, "--quiet").exit_code == 0, argv
    assert _rows(out / "export") == _rows(sep / "export")
    # Each stage's manifest records the stand-alone command.
    m = json.loads((out / "filter" / "_manifest.json").read_text())
    assert m["command"] == f"curate filter {out / 'score'} -o {out / 'filter'} --per-question 2"
    state = json.loads((out / "run.json").read_text())
    assert state["order"][-1] == "report" and state["stages"]["export"]["status"] == "complete"


def test_rerun_skips_what_is_done_and_reruns_what_changed(cli, traces):
    path = _config(traces)
    _run(cli, path)
    out = traces / "out"
    stamp = {s: (out / s / "_manifest.json").stat().st_mtime_ns
             for s in ("read", "score", "filter", "dedup", "decontam", "export")}

    doc = _run(cli, path)
    assert [s["action"] for s in doc["stages"]] == ["skip"] * 6 + ["run"]
    assert all((out / s / "_manifest.json").stat().st_mtime_ns == t for s, t in stamp.items())

    _config(traces, filter_opts="per-question = 1")
    doc = _run(cli, path)
    acts = {s["stage"]: (s["action"], s["reason"]) for s in doc["stages"]}
    assert acts["read"][0] == acts["score"][0] == "skip"
    assert acts["filter"] == ("run", "config changed: per-question 2 → 1")
    assert acts["dedup"][0] == acts["decontam"][0] == acts["export"][0] == "run"
    assert len(_rows(out / "export")) == 5  # 1 per question, question 5 contaminated

    doc = _run(cli, path, "--from", "decontam")
    assert [s["action"] for s in doc["stages"]] == ["skip"] * 4 + ["run"] * 3

    # A file an option names changed (same options): that stage reruns, and those after it.
    pq.write_table(pa.Table.from_pylist([{"question": "Question 4: what is 4 plus 4?"}]),
                   traces / "bench.parquet")
    doc = _run(cli, path)
    assert [s["action"] for s in doc["stages"]] == ["skip"] * 4 + ["run"] * 3
    assert doc["stages"][4]["reason"] == "its input files changed"
    assert len(_rows(out / "export")) == 5  # question 5 is back, question 4 went

    # A stage folder changed behind the run's back is rerun, and so is everything after it.
    (out / "dedup" / "_manifest.json").write_text(
        (out / "dedup" / "_manifest.json").read_text().replace('"created"', '"created" '))
    doc = _run(cli, path)
    assert [s["action"] for s in doc["stages"]] == ["skip"] * 3 + ["run"] * 4
    assert "changed or is gone" in doc["stages"][3]["reason"]


def test_a_failed_stage_stops_the_run_and_the_fixed_rerun_starts_there(cli, traces):
    path = _config(traces)
    text = path.read_text().replace(str(traces / "bench.parquet"), str(traces / "nope.parquet"))
    path.write_text(text)
    r = cli("run", path)
    assert r.exit_code == 2
    assert "nope.parquet" in r.stderr and "stage decontam failed (exit 2)" in r.stderr
    state = json.loads((traces / "out" / "run.json").read_text())["stages"]
    assert {s: e["status"] for s, e in state.items()} == {
        "read": "complete", "score": "complete", "filter": "complete", "dedup": "complete",
        "decontam": "started"}
    assert not (traces / "out" / "decontam").exists() and not (traces / "out" / "export").exists()
    _config(traces)
    doc = _run(cli, path)
    assert [s["action"] for s in doc["stages"]] == ["skip"] * 4 + ["run"] * 3
    assert doc["stages"][4]["reason"].startswith("config changed: against")


def test_dry_run_plans_and_writes_nothing(cli, traces):
    path = _config(traces)
    r = cli("run", path, "--dry-run", "--json")
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["dry_run"] is True
    assert [s["action"] for s in doc["stages"]] == ["run"] * 7
    assert doc["stages"][2]["command"].endswith("--per-question 2")
    assert not (traces / "out").exists()


def test_the_run_refuses_a_stage_folder_it_did_not_write(cli, traces):
    (traces / "out" / "read").mkdir(parents=True)
    (traces / "out" / "read" / "mine.txt").write_text("keep me")
    r = cli("run", _config(traces))
    assert r.exit_code == 2 and "stage read failed" in r.stderr
    assert (traces / "out" / "read" / "mine.txt").read_text() == "keep me"


def test_validate_in_a_run_records_its_verdict_and_is_skipped_when_done(cli, traces,
                                                                         tiny_causal_lm):
    path = _config(traces, extra=f'[validate]\nstudent = "{tiny_causal_lm}"\nsteps = 1\n'
                                 f'batch-size = 2\nmax-seq-len = 256\n'
                                 f'eval-data = "{traces / "heldout.parquet"}"\n')
    doc = _run(cli, path)
    v = next(s for s in doc["stages"] if s["stage"] == "validate")
    assert v["exit_code"] == 0 and v["summary"]["ok"] is True
    assert set(v["summary"]["train"]) == {"selected", "random"}  # baseline = the read stage
    doc = _run(cli, path)
    v = next(s for s in doc["stages"] if s["stage"] == "validate")
    assert v["action"] == "skip" and v["summary"]["ok"] is True, v["reason"]
    # The report shows the verdict (validate writes no folder; run.json holds it).
    report = doc["stages"][-1]["summary"]
    assert report["run"]["validate"]["ok"] is True
    assert set(report["run"]["validate"]["train"]) == {"selected", "random"}
    r = cli("report", traces / "out", "--html", traces / "r.html")
    assert "quick SFT (curate validate)" in r.stdout and "SFT selected" in r.stdout
    assert "Quick SFT (curate validate)" in (traces / "r.html").read_text()


def test_the_readme_config_is_valid():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```toml\n(.*?)```", text, re.S).group(1)
    cfg = flow_config.parse(tomllib.loads(block), ROOT / "README.md", SPECS)
    assert cfg.options["filter"]["per-question"] == 4 and cfg.stages[-1] == "report"


def test_report_follows_the_runs_stage_order(cli, traces):
    path = _config(traces)
    text = path.read_text().replace("[run]\n", '[run]\nstages = ["read", "dedup", "score", '
                                               '"decontam", "filter", "export", "report"]\n')
    path.write_text(text)
    doc = _run(cli, path)
    assert [s["stage"] for s in doc["stages"]][:5] == ["read", "dedup", "score", "decontam",
                                                       "filter"]
    report = doc["stages"][-1]["summary"]
    assert [s["stage"] for s in report["stages"]] == ["read", "dedup", "score", "decontam",
                                                      "filter", "export"]
    assert report["funnel"]["connected"] is True
    # dedup before score: score never sees the copy
    assert report["stages"][2]["rows_in"] == 24


def test_run_state_decisions(tmp_path):
    from curate.flow.state import RunState, basis, fingerprint

    out = tmp_path / "out"
    folder = out / "filter"
    folder.mkdir(parents=True)
    (folder / "_manifest.json").write_text('{"curate": {"stage": "filter"}}')
    b1, b2 = basis({"top-k": 5}, "up1", None), basis({"top-k": 6}, "up1", None)
    b3 = basis({"top-k": 5}, "up2", None)
    fp1, fp2, fp3 = (fingerprint("filter", b) for b in (b1, b2, b3))
    assert len({fp1, fp2, fp3}) == 3 and fingerprint("dedup", b1) != fp1

    state = RunState(out)
    d = state.decide("filter", fp1, b1, folder)
    assert (d.action, d.overwrite) == ("run", False)  # not ours yet: the command decides
    state.started("filter", fp1, b1, "curate filter …")
    state = RunState(out)  # what a rerun after a crash reads back
    d = state.decide("filter", fp1, b1, folder, resumable=True)
    assert (d.action, d.overwrite) == ("resume", False)
    # A stage that cannot resume says that it starts over (it used to say "resume").
    d = state.decide("filter", fp1, b1, folder)
    assert (d.action, d.reason) == ("run", "interrupted; starts over (this stage does not "
                                           "resume)")
    d = state.decide("filter", fp2, b2, folder)
    assert (d.action, d.overwrite, d.reason) == ("run", True,
                                                 "config changed: top-k 5 → 6")
    state.finished("filter", 1.0, folder, None, 0)
    state = RunState(out)
    assert state.decide("filter", fp1, b1, folder).action == "skip"
    assert state.decide("filter", fp3, b3, folder).reason == "the stage before it changed"
    d = state.decide("filter", fp1, b1, folder, force="the stage before it ran")
    assert (d.action, d.overwrite) == ("run", True)
    assert state.decide("filter", fp1, b1, folder, force="--from").action == "run"
    (folder / "_manifest.json").write_text('{"curate": {"stage": "filter"}, "x": 1}')
    assert "changed or is gone" in state.decide("filter", fp1, b1, folder).reason
    (out / "run.json").write_text("{not json")
    assert RunState(out).decide("filter", fp1, b1, folder).action == "run"  # damaged: rerun


def test_a_second_run_on_the_same_folder_is_refused_while_the_first_lives(cli, traces):
    import os
    import subprocess
    import sys

    path = _config(traces)
    (traces / "out").mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (traces / "out" / ".run.lock").write_text(str(sleeper.pid))
        r = cli("run", path)
        assert r.exit_code == 2 and f"another curate run (pid {sleeper.pid})" in r.stderr
        assert not (traces / "out" / "read").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    # The lock of a run that is gone is taken over, and released at the end.
    assert cli("run", path, "--quiet").exit_code == 0
    assert not (traces / "out" / ".run.lock").exists() and os.path.isdir(traces / "out" / "read")


@pytest.mark.parametrize("section, needles", [
    ('[export]\nformat = "alpaca"\n', ["[export] --format 'alpaca'", "messages"]),
    ('[export]\nshard-size = "lots"\n', ["[export] --shard-size"]),
    ('[report]\nbins = 500\n', ["[report]", "--bins"]),
    ('[score]\nagg = "median"\n', ["[score] --agg"]),
    ('[dedup]\nthreshold = 1.5\n', ["[dedup] --threshold"]),
    ('[read]\nmap = ["question"]\n', ["[read] --map"]),
])
def test_option_values_a_command_refuses_stop_the_run_before_any_stage(cli, traces, section,
                                                                        needles):
    text = _config(traces).read_text()
    head, _, _ = section.partition("\n")
    if head in text:  # replace that section's body
        text = text.replace(head + "\n", section, 1)
    else:
        text += section
    path = traces / "bad.toml"
    path.write_text(text)
    r = cli("run", path)
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and r.stdout == "" and len(lines) == 1, r.stderr
    assert lines[0].startswith(f"error: {path}: ")
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert not (traces / "out").exists()  # nothing ran, nothing was written
    assert cli("run", path, "--dry-run").exit_code == 2  # the plan checks them too


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(["filter", "dedup", "export"]),
       st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True),
       st.one_of(st.integers(-10**6, 10**6), st.booleans(),
                 st.floats(allow_nan=False, allow_infinity=False, width=32),
                 st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")),
                         max_size=20),
                 st.lists(st.text(alphabet="abc ,=.", max_size=5), max_size=3)))
def test_set_override_reads_values_as_toml_else_as_text(section, key, value):
    import json as _json

    doc = {"run": {"out": "o"}}
    spelled = (("true" if value else "false") if isinstance(value, bool)
               else _json.dumps(value, ensure_ascii=False) if isinstance(value, (list, str))
               else repr(value))
    flow_config.apply_override(doc, f"{section}.{key}={spelled}")
    assert doc[section][key] == value
    if isinstance(value, str) and value.strip() == value and value and "\\" not in value:
        # A bare word that is not TOML is taken as the text itself (--set score.model=./prm).
        try:
            tomllib.loads(f"v = {value}")
        except tomllib.TOMLDecodeError:
            flow_config.apply_override(doc, f"{section}.{key}={value}")
            assert doc[section][key] == value


def test_set_overrides_a_key_for_one_run(cli, traces):
    path = _config(traces)
    _run(cli, path)
    doc = _run(cli, path, "--set", "filter.per-question=1", "--set", "export.split-test=0.0")
    acts = {s["stage"]: (s["action"], s["reason"]) for s in doc["stages"]}
    assert acts["score"][0] == "skip" and acts["filter"] == ("run",
                                                             "config changed: per-question 2 → 1")
    assert len(_rows(traces / "out" / "export")) == 5
    r = cli("run", path, "--set", "filter.per-question=one")
    assert r.exit_code == 2 and "[filter] per-question must be an integer" in r.stderr
    r = cli("run", path, "--set", "per-question=1")
    assert r.exit_code == 2 and "expected SECTION.KEY=VALUE" in r.stderr
