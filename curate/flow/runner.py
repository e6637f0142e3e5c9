"""``curate.run(config)``: the whole flow from one config, resumable stage by stage.

The config (a TOML path or a dict of the same shape, see ``config``) is checked completely
before any stage runs: sections, keys, types, the stage order, and every stage's options as
the stage itself checks them. Then each stage is planned (its folder ``OUT/<stage>``, its input
folder, its fingerprint: ``state``), decided (skip, resume or run) and run by calling
``run_stage`` directly, so a stage in a run does exactly what its stand-alone command does;
its manifest records that command. The report ends every run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..io import folder as F
from ..io.chunked import has_partial
from ..stage import QUIET, Reporter, run_stage
from . import config as C
from .state import Decision, RunState, basis, fingerprint, input_stats, locked, path_stats


class StageFailed(Exception):
    """A stage of the run failed; the stages before it are done. ``error`` is its own error,
    ``exit_code`` what its stand-alone command would have exited with."""

    def __init__(self, stage: str, error: BaseException, exit_code: int, first: bool = False):
        self.stage = stage
        self.error = error
        self.exit_code = exit_code
        if exit_code == 130:
            what = f"interrupted in stage {stage}" + (
                "; a rerun starts it again" if first else
                "; the stages before it are done, and a rerun skips them and resumes this one")
        else:
            what = f"stage {stage} failed (exit {exit_code})" + (
                "; nothing was done" if first else
                "; the stages before it are done and a rerun skips them")
        super().__init__(f"curate run: {what}")


@dataclass
class Step:
    """One stage of a planned run."""

    stage: str
    spec: C.StageSpec
    options: object        # the stage's Options
    values: dict           # the config values, defaults filled in (what the fingerprint sees)
    inputs: list[str]
    folder: Path | None
    basis: dict
    fp: str
    command: str


def plan(cfg: C.RunConfig, specs: dict[str, C.StageSpec]) -> list[Step]:
    """Every stage's options built (the stages' own checks), folders and fingerprints."""
    steps: list[Step] = []
    out = cfg.out
    prev_folder, prev_fp, fps, folders = None, None, {}, {}
    for name in cfg.stages:
        spec = specs[name]
        cls = spec.stage
        values = dict(cfg.options[name])
        values = cls.in_run(values, folders)
        try:
            opts = C.build_options(spec, values)
        except InputError as e:
            raise InputError(f"{cfg.origin(name)}: [{name}] {e}") from None
        folder = out / name if cls.writes is not None else None
        upstream = prev_fp
        if cls.takes == "files":
            inputs = list(values["inputs"])
            try:
                files = input_stats(inputs, **cls().source_args(opts))
            except InputError as e:
                raise InputError(f"{cfg.path}: [{name}] inputs: {e}") from None
        else:
            inputs = {"traces": [str(prev_folder)], "run": [str(out)],
                      "export": [str(folders.get("export"))]}[cls.takes]
            files = path_stats(values, out)
            if cls.takes == "export":
                upstream = "+".join(fps[s] for s in ("export", "read") if s in fps)
        b = basis(values, upstream, files)
        fp = fingerprint(name, b)
        fps[name] = fp
        command = C.command_line(spec, inputs, folder, values)
        steps.append(Step(name, spec, opts, values, inputs, folder, b, fp, command))
        if folder is not None:
            folders[name] = folder
            prev_folder, prev_fp = folder, fp
    return steps


def decide(steps: list[Step], state: RunState, start: str | None) -> list[Decision]:
    """Skip, resume or run for each stage; once one runs, everything after it runs too."""
    out, ran_before, forced = [], False, False
    for step in steps:
        forced = forced or step.stage == start
        cls = step.spec.stage
        if cls.takes == "run":
            d = Decision(step.stage, "run", "always runs last", False)
        else:
            resumable = cls.resumable and step.folder is not None and has_partial(step.folder)
            d = state.decide(step.stage, step.fp, step.basis, step.folder,
                             force="--from" if forced else
                             ("the stage before it ran" if ran_before else None),
                             resumable=resumable)
        out.append(d)
        ran_before = ran_before or d.action != "skip"
    return out


def run(config: str | Path | dict, *, dry_run: bool = False, start: str | None = None,
        overrides: list[str] | None = None, reporter: Reporter = QUIET) -> dict:
    """Run the flow a config describes (see the module text) and return what happened:
    ``{"config", "out", "dry_run", "exit_code", "stages": [{stage, action, reason, seconds,
    command, exit_code, summary}]}``. Bad config: InputError before anything runs. A stage that
    fails: ``StageFailed`` (the stages before it stay done; a rerun skips them)."""
    specs = C.stage_specs()
    cfg = C.load(config, specs, overrides)
    if start is not None and start not in cfg.stages:
        raise InputError(f"--from {start}: not a stage of this run (its stages: "
                         f"{', '.join(cfg.stages)})")
    for note in cfg.notes:
        reporter.note(f"note: {note}")
    steps = plan(cfg, specs)
    doc = {"config": str(cfg.path), "out": str(cfg.out), "dry_run": dry_run, "exit_code": 0,
           "stages": []}
    if dry_run:
        for step, d in zip(steps, decide(steps, RunState(cfg.out), start), strict=True):
            doc["stages"].append({"stage": step.stage, "action": d.action,
                                  "reason": d.reason, "command": step.command})
        return doc
    with locked(cfg.out):
        state = RunState(cfg.out)
        state.set_order(cfg.stages)
        for k, (step, d) in enumerate(zip(steps, decide(steps, state, start), strict=True)):
            doc["stages"].append(_run_step(step, d, state, reporter, first=k == 0))
            code = doc["stages"][-1]["exit_code"]
            doc["exit_code"] = doc["exit_code"] or code
    return doc


def _run_step(step: Step, d: Decision, state: RunState, reporter: Reporter,
              first: bool = False) -> dict:
    entry = {"stage": step.stage, "action": d.action, "reason": d.reason, "seconds": 0.0,
             "command": step.command, "exit_code": 0, "summary": None}
    if d.action == "skip":
        e = state.entry(step.stage) or {}
        entry["summary"] = e.get("summary") or (
            F.read_manifest(step.folder).get("summary") if step.folder is not None else None)
        return entry
    reporter.note(f"{step.stage}: {d.action} ({d.reason})")
    state.started(step.stage, step.fp, step.basis, step.command)
    t0 = time.perf_counter()
    try:
        result = run_stage(step.spec.stage, step.inputs, step.folder, step.options,
                           overwrite=d.overwrite, command=step.command, reporter=reporter)
    except InputError as e:
        raise StageFailed(step.stage, e, 2, first) from e
    except KeyboardInterrupt as e:
        raise StageFailed(step.stage, e, 130, first) from e
    except Exception as e:  # noqa: BLE001 - a bug: the run says which stage hit it
        raise StageFailed(step.stage, e, 1, first) from e
    seconds = time.perf_counter() - t0
    entry.update(seconds=round(seconds, 3), exit_code=result.exit_code, summary=dict(result))
    reporter.result(step.stage, dict(result))
    if step.spec.stage.takes != "run":
        state.finished(step.stage, seconds, step.folder, dict(result), result.exit_code)
    return entry
