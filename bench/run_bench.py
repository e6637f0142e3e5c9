#!/usr/bin/env python
"""Benchmark of ``curate run`` against the same stages run one command at a time (a script, not
a test).

For each input it writes a config (read → score with the offline signals scorer → filter
--per-question 4 → dedup → decontam against the bundled benchmarks, GSM8K's own test set left
out for the GSM8K input → export → report), then times, with a fresh output folder each time
so that no stage is skipped:

* ``run``: ``curate run CONFIG`` (one process: the stages share one interpreter and its
  imports);
* ``separate``: the seven stand-alone commands ``curate run`` records for its stages
  (``curate read …``, ``curate score …`` …), each in its own process, one after the other, as
  a shell script would run them. The figure is the sum of their wall times;
* ``noop``: ``curate run CONFIG`` again on the finished folder: every stage is skipped and only
  the report runs (what a rerun costs when nothing changed).

Variants are interleaved; medians of ``--repeats`` runs (default 3). Inputs: the bundled
``sample_data/`` (315 traces) and the first ``--rows`` rows (default 4,000) of the real
``../shared/data/real/gsm8k_model_solutions.parquet`` when it is there.

    .venv/bin/python bench/run_bench.py
    .venv/bin/python bench/run_bench.py --rows 1000 --repeats 1     # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / "_work" / "run"
CURATE = [sys.executable, "-m", "curate_cli"]
GSM8K = ROOT.parent / "shared" / "data" / "real" / "gsm8k_model_solutions.parquet"

CONFIG = """[run]
out = "{out}"
[read]
inputs = ["{inputs}"]
{limit}
[score]
[filter]
per-question = 4
[dedup]
[decontam]
against = {against}
[export]
[report]
"""


def _config(name: str, inputs: str, limit: int | None, against: list[str]
            ) -> tuple[Path, Path]:
    out = WORK / name / "out"
    path = WORK / name / "run.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(CONFIG.format(out=out, inputs=inputs, against=json.dumps(against),
                                  limit=f"limit = {limit}" if limit else ""))
    return path, out


def _timed(argv: list[str]) -> float:
    return _timed_out(argv)[0]


def _timed_out(argv: list[str]) -> tuple[float, str]:
    env = dict(os.environ, POLARS_MAX_THREADS="2", RAYON_NUM_THREADS="2", OMP_NUM_THREADS="2")
    t = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    elapsed = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{shlex.join(argv)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return elapsed, p.stdout


def _stage_commands(out: Path) -> list[list[str]]:
    """The stand-alone commands of the run's stages, as run.json recorded them."""
    state = json.loads((out / "run.json").read_text())
    cmds = []
    for stage in state["order"]:
        if stage == "report":
            cmds.append(["report", str(out), "--quiet"])
        else:
            cmds.append(shlex.split(state["stages"][stage]["command"])[1:] + ["--quiet"])
    return cmds


def bench(name: str, inputs: str, limit: int | None, against: list[str], repeats: int) -> dict:
    config, out = _config(name, inputs, limit, against)
    sep_root = out.parent / "sep"
    shutil.rmtree(out, ignore_errors=True)
    _timed([*CURATE, "run", str(config), "--quiet"])  # warm the caches (encoder, page cache)
    cmds = _stage_commands(out)
    runs, seps, noops, inside = [], [], [], []
    for _ in range(repeats):
        shutil.rmtree(out, ignore_errors=True)
        seconds, stdout = _timed_out([*CURATE, "run", str(config), "--json"])
        runs.append(seconds)
        inside.append(sum(s["seconds"] for s in json.loads(stdout)["stages"]))
        noops.append(_timed([*CURATE, "run", str(config), "--quiet"]))
        shutil.rmtree(sep_root, ignore_errors=True)
        total = 0.0
        for argv in cmds:
            argv = [a.replace(str(out), str(sep_root)) for a in argv]
            total += _timed([*CURATE, *argv])
        seps.append(total)
    rows = json.loads((out / "read" / "_manifest.json").read_text())["counts"]["rows_out"]
    return {"name": name, "traces": rows, "run": statistics.median(runs),
            "separate": statistics.median(seps), "noop": statistics.median(noops),
            "inside": statistics.median(inside), "runs": runs, "seps": seps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=4000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    cases = [("sample_data", str(ROOT / "sample_data"), None,
              ["math500", "gsm8k", "aime24", "aime25"])]
    if GSM8K.is_file():
        # GSM8K test questions: decontaminated against the others only (all would go).
        cases.append((f"gsm8k-{args.rows}", str(GSM8K), args.rows,
                      ["math500", "aime24", "aime25"]))
    else:
        print(f"note: {GSM8K} is absent; the sample data only")
    print(f"curate run vs the same 7 stages as separate commands; medians of {args.repeats}, "
          f"2 threads, signals scorer (minilm-static)")
    for name, inputs, limit, against in cases:
        r = bench(name, inputs, limit, against, args.repeats)
        print(f"{r['name']} ({r['traces']:,} traces): run {r['run']:.2f} s, separate commands "
              f"{r['separate']:.2f} s (sum of 7) → run / separate = "
              f"{r['run'] / r['separate']:.2f}x ({r['separate'] - r['run']:+.2f} s saved); "
              f"stages inside the run {r['inside']:.2f} s, so the run's own cost (interpreter "
              f"start-up, config, fingerprints, run.json) is {r['run'] - r['inside']:.2f} s; "
              f"rerun with nothing to do {r['noop']:.2f} s")
        print(f"  runs {[round(x, 2) for x in r['runs']]}, separate "
              f"{[round(x, 2) for x in r['seps']]}")


if __name__ == "__main__":
    main()
