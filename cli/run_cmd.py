"""`curate run CONFIG.toml`: every stage of the flow in one process, resumable stage by stage.

The config's sections are the stage commands and its keys their options, read from the
commands' own signatures (``stage_specs``): a new option is a new config key, with nothing to
keep in step by hand. Each stage runs the very same command function, in this process, with the
argument list the config spells, so a stage in a run does exactly what its stand-alone command
does; its manifest records that command.
"""

from __future__ import annotations

import inspect
import shlex
import textwrap
import time
import types
import typing
from typing import Annotated

import typer
from rich.markup import escape

from . import (
    decontam_cmd,
    dedup_cmd,
    export_cmd,
    filter_cmd,
    read_cmd,
    report_cmd,
    score_cmd,
    validate_cmd,
)
from .common import Json, Quiet, Verbose
from .output import Ui, fail, handled, run_stage, summary_table

SHORT = "Run the whole flow (read → score → … → report) from one TOML config, resumably."
HELP = """Run the flow read → score → filter → dedup → decontam → export → validate → report in one process, from a TOML config whose sections are the stages and whose keys are the stage commands' own options (`per-question = 4` in \\[filter] is `curate filter --per-question 4`).

Each stage writes OUT/<stage> (\\[run] out, default out/<config name>) and reads the one before it. A rerun skips every stage that completed with the same options and input, resumes one that was interrupted (score continues from its last chunk), and reruns a changed stage and everything after it; OUT/run.json remembers. The run ends with the report.

[bold]Examples[/bold]

  curate run --example > curate.toml          # an annotated config: every option of every stage
  curate run sample_data/demo.toml            # the bundled demo: offline, CPU, signals scorer
  curate run curate.toml --dry-run            # which stages would run, skip or resume, and why
  curate run curate.toml --from filter        # rerun filter and everything after it
  curate run curate.toml --set filter.per-question=2   # one key changed for this run

Paths in the config are relative to the current folder, as on the command line. A config error (unknown section or key, wrong type, a stage order that cannot work) stops before any stage runs (exit 2); a stage that fails stops the run with its exit code, and the stages before it stay done."""  # noqa: E501

# The stage commands, and the argument each one takes positionally.
COMMANDS = {
    "read": (read_cmd.read, read_cmd.SHORT),
    "score": (score_cmd.score, score_cmd.SHORT),
    "filter": (filter_cmd.filter_, filter_cmd.SHORT),
    "dedup": (dedup_cmd.dedup, dedup_cmd.SHORT),
    "decontam": (decontam_cmd.decontam, decontam_cmd.SHORT),
    "export": (export_cmd.export, export_cmd.SHORT),
    "validate": (validate_cmd.validate, validate_cmd.SHORT),
    "report": (report_cmd.report, report_cmd.SHORT),
}
# Stages that write a folder of their own (OUT/<stage>); validate and report only read.
WRITES_FOLDER = ("read", "score", "filter", "dedup", "decontam", "export")
_GLOBAL = {"quiet": "pass --quiet to `curate run`", "verbose": "pass --verbose to `curate run`",
           "json": "pass --json to `curate run`",
           "overwrite": "the run replaces only the stage folders it wrote itself",
           "output": "the run writes each stage to OUT/<stage> ([run] out sets OUT)",
           "dry-run": "use `curate run --dry-run`"}
# Why the run fills in a stage's positional argument (read's inputs come from the config).
_POSITIONAL_WHY = {"validate": "validate checks the export of this run",
                   "report": "report reads this run's folder"}
# Values `curate run --example` writes as active lines (the rest are commented out).
EXAMPLE = {"run": {"out": "out/curate"},
           "read": {"inputs": ["traces/*.parquet"]},
           "filter": {"per-question": 4},
           "decontam": {"against": ["math500", "gsm8k", "aime24", "aime25"]},
           "export": {"format": "messages", "think-style": "r1"}}

_ARGUMENT_INFO = type(typer.Argument())
_OPTION_INFO = type(typer.Option())


def stage_specs():
    """One StageSpec per stage, from the stage command's signature and its typer metadata."""
    from curate.flow.config import OptionSpec, StageSpec

    specs = {}
    for stage, (fn, _) in COMMANDS.items():
        hints = typing.get_type_hints(fn, include_extras=True)
        options, managed = {}, dict(_GLOBAL)
        for name, param in inspect.signature(fn).parameters.items():
            base, info = _unwrap(hints[name])
            positional = isinstance(info, _ARGUMENT_INFO)
            key = _key(name, info)
            if positional and stage != "read":
                managed[key] = _POSITIONAL_WHY.get(
                    stage, f"{stage} reads the output of the stage before it")
                continue
            if key in _GLOBAL:
                continue
            required = param.default is inspect.Parameter.empty
            options[key] = OptionSpec(
                key=key, flag=f"--{key}", kind=_kind(base), param=name,
                default=None if required else param.default, required=required,
                positional=positional, help=" ".join((getattr(info, "help", None) or "").split()))
        specs[stage] = StageSpec(stage, options, managed)
    return specs


def _unwrap(hint):
    info = None
    if typing.get_origin(hint) is Annotated:
        hint, *meta = typing.get_args(hint)
        info = next((m for m in meta if isinstance(m, (_ARGUMENT_INFO, _OPTION_INFO))), None)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = args[0]
    return hint, info


def _kind(base) -> str:
    if typing.get_origin(base) is list:
        return "list"
    return {bool: "bool", int: "int", float: "float", str: "str"}.get(base, "str")


def _key(name: str, info) -> str:
    # In the Annotated form, typer keeps the first declaration (`typer.Option("--json")`) in
    # `default` and the rest in `param_decls`.
    decls = [getattr(info, "default", None), *(getattr(info, "param_decls", None) or ())]
    for decl in decls:
        if isinstance(decl, str) and decl.startswith("--"):
            return decl[2:].split("/")[0]
    return name.rstrip("_").replace("_", "-")


def stage_argv(spec, values: dict) -> tuple[list[str], list[str]]:
    """The positional arguments and the options that give the stage command these values."""
    pos, opts = [], []
    for key, opt in spec.options.items():
        v = values.get(key, opt.default)
        if opt.positional:
            pos.extend(v if isinstance(v, list) else [v])
        elif v is None or v == opt.default:
            continue
        elif opt.kind == "bool":
            opts.append(opt.flag if v else f"--no-{key}")
        elif opt.kind == "list":
            for item in v:
                opts += [opt.flag, str(item)]
        else:
            opts += [opt.flag, repr(v) if isinstance(v, float) else str(v)]
    return pos, opts


def example_config(specs) -> str:
    """The annotated config `curate run --example` prints: every option of every stage, with
    its help and default; the EXAMPLE values active, the rest commented out."""
    lines = [
        "# curate run config: `curate run THIS_FILE`. Sections are stages; keys are the stage",
        "# command's options without the leading dashes (`per-question = 4` in [filter] is",
        "# `curate filter --per-question 4`); see `curate <stage> --help`. A stage runs when its",
        "# section is present (an empty section runs it with the defaults), in flow order, and",
        "# the report always ends the run. Paths are relative to the folder you run from.",
        "",
        "[run]",
        "# Folder of the run: each stage writes OUT/<stage>, and OUT/run.json remembers what",
        "# is done, so a rerun skips the stages whose options and input did not change.",
        f'out = "{EXAMPLE["run"]["out"]}"',
        "# Stage order, when not the flow order (filter, dedup and decontam may be reordered;",
        "# e.g. dedup before score saves scoring duplicates).",
        '# stages = ["read", "score", "filter", "dedup", "decontam", "export", "report"]',
    ]
    for stage, spec in specs.items():
        commented = stage == "validate"  # needs a student model: opt in
        c = "# " if commented else ""
        lines += ["", f"{c}[{stage}]", f"# {COMMANDS[stage][1]}"]
        if commented:
            lines.append("# Uncomment to run a quick SFT on the export (needs student). In a run,")
            lines.append("# baseline defaults to the run's read stage (the pre-selection pool);")
            lines.append('# baseline = "" trains on the export alone.')
        for key, opt in spec.options.items():
            for h in textwrap.wrap(opt.help, 94, break_on_hyphens=False,
                                   break_long_words=False):
                lines.append(f"# {h}")
            active = EXAMPLE.get(stage, {})
            if key in active and not commented:
                lines.append(f"{key} = {_toml(active[key])}")
            elif opt.default is None:
                lines.append(f"# {key} = {_placeholder(opt)}")
            else:
                lines.append(f"# {key} = {_toml(opt.default)}")
    return "\n".join(lines) + "\n"


def _toml(v) -> str:
    import json

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(v, ensure_ascii=False)  # str and list of str: TOML in JSON spelling


def _placeholder(opt) -> str:
    return {"int": "<integer>", "float": "<number>", "str": '"<text>"', "list": '["<text>"]',
            "bool": "false"}[opt.kind] + ("   (required)" if opt.required else "   (unset)")


class _Plan:
    """The run's stages with their folders, argument lists and fingerprints."""

    def __init__(self, cfg, specs):
        from curate.errors import InputError
        from curate.flow.state import basis, fingerprint, input_stats, path_stats

        self.steps = []
        out = cfg.out
        prev_folder, prev_fp, fps = None, None, {}
        for stage in cfg.stages:
            spec = specs[stage]
            values = dict(cfg.options[stage])
            folder = out / stage if stage in WRITES_FOLDER else None
            pos: list[str] = []
            upstream, inputs = prev_fp, None
            if stage == "read":
                try:
                    inputs = input_stats(values["inputs"], values.get("split") or "train")
                except InputError as e:
                    raise InputError(f"{cfg.path}: [read] inputs: {e}") from None
            elif stage == "validate":
                pos = [str(out / "export")]
                if values.get("baseline") is None and "read" in fps:
                    values["baseline"] = str(out / "read")  # the pre-selection pool
                elif values.get("baseline") == "":
                    values["baseline"] = None  # "" = train on the export alone
                upstream = "+".join(fps[s] for s in ("export", "read") if s in fps)
            elif stage == "report":
                pos = [str(out)]
            else:
                pos = [str(prev_folder)]
            if stage != "read":
                inputs = path_stats(values, out)
            own_pos, opts = stage_argv(spec, values)
            argv = [stage, *pos, *own_pos,
                    *(["-o", str(folder)] if stage in WRITES_FOLDER else []), *opts]
            b = basis(values, upstream, inputs)
            fp = fingerprint(stage, b)
            fps[stage] = fp
            self.steps.append({"stage": stage, "folder": folder, "argv": argv, "basis": b,
                               "fp": fp, "command": "curate " + shlex.join(argv)})
            if folder is not None:
                prev_folder, prev_fp = folder, fp


def decisions(plan: _Plan, state, start: str | None):
    """Skip, resume or run for each stage; once one runs, everything after it runs too."""
    out, ran_before, forced = [], False, False
    for step in plan.steps:
        stage = step["stage"]
        forced = forced or stage == start
        if stage == "report":
            from curate.flow.state import Decision

            d = Decision(stage, "run", "always runs last", False)
        else:
            d = state.decide(stage, step["fp"], step["basis"], step["folder"],
                             force="--from" if forced else
                             ("the stage before it ran" if ran_before else None))
        out.append(d)
        ran_before = ran_before or d.action != "skip"
    return out


def run(
    config: Annotated[str | None, typer.Argument(
        help="The run's TOML config (see --example).", show_default=False,
        metavar="CONFIG")] = None,
    example: Annotated[bool, typer.Option(
        "--example", help="Print an annotated config with every option of every stage, and "
                          "exit.")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print which stages would run, skip or resume and why, with the "
                          "equivalent commands; run nothing.")] = False,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override one config key for this run: SECTION.KEY=VALUE, e.g. --set "
                      "filter.per-question=2 (repeatable; VALUE is read as TOML, else as text).",
        show_default=False)] = None,
    from_: Annotated[str | None, typer.Option(
        "--from", help="Rerun this stage and every stage after it, even if complete.",
        show_default=False)] = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
    json_out: Json = False,
):
    ui = Ui(quiet=quiet, verbose=verbose, json=json_out)
    with handled(ui):
        from curate.errors import InputError
        from curate.flow import config as flow_config
        from curate.flow.state import RunState, locked

        specs = stage_specs()
        if example:
            typer.echo(example_config(specs), nl=False)
            return
        if config is None:
            raise InputError("CONFIG is missing: `curate run CONFIG.toml` (write one with "
                             "`curate run --example > curate.toml`)")
        cfg = flow_config.load(config, specs, set_)
        if from_ is not None and from_ not in cfg.stages:
            raise InputError(f"--from {from_}: not a stage of this run (its stages: "
                             f"{', '.join(cfg.stages)})")
        for note in cfg.notes:
            ui.note(f"[yellow]note:[/yellow] {escape(note)}")
        plan = _Plan(cfg, specs)
        _check_options(cfg, plan)
        if dry_run:
            _render_plan(ui, cfg, plan, decisions(plan, RunState(cfg.out), from_))
            return
        with locked(cfg.out):
            state = RunState(cfg.out)
            results = _execute(ui, cfg, plan, decisions(plan, state, from_), state)
    failed = next((r for r in results if r["exit_code"] not in (0, None)), None)
    if json_out:
        ui.emit_json({"config": str(cfg.path), "out": str(cfg.out), "stages": results,
                      "ok": failed is None})
    if failed is not None:
        raise typer.Exit(failed["exit_code"])


def _execute(ui: Ui, cfg, plan: _Plan, chosen, state) -> list[dict]:
    state.set_order(cfg.stages)
    results = []
    n = len(plan.steps)
    for i, (step, d) in enumerate(zip(plan.steps, chosen, strict=True), 1):
        stage = step["stage"]
        where = f" → {step['folder']}" if step["folder"] is not None else ""
        if stage == "report" and not ui.json:
            _render_run(ui, cfg, results)
        if d.action == "skip":
            ui.note(f"[dim][{i}/{n}] {stage}: skipped ({d.reason}){escape(where)}[/dim]")
            e = state.entry(stage) or {}
            results.append({"stage": stage, "action": "skip", "reason": d.reason,
                            "seconds": 0.0, "command": step["command"], "exit_code": 0,
                            "summary": e.get("summary")})
            continue
        ui.note(f"[bold][{i}/{n}] {stage}[/bold]: {d.action} ({escape(d.reason)})"
                f"{escape(where)}")
        argv = list(step["argv"])
        if d.overwrite and stage in WRITES_FOLDER:
            argv.append("--overwrite")
        if ui.quiet or ui.json:
            argv.append("--quiet")
        if ui.verbose:
            argv.append("--verbose")
        if stage != "report":
            state.started(stage, step["fp"], step["basis"], step["command"])
        t0 = time.perf_counter()
        code, summary = _invoke(ui, argv, step["command"])
        seconds = time.perf_counter() - t0
        results.append({"stage": stage, "action": d.action, "reason": d.reason,
                        "seconds": round(seconds, 3), "command": step["command"],
                        "exit_code": code, "summary": summary if ui.json else None})
        # validate exits 3 when rows fail its checks: the stage ran and the report shows its
        # verdict (the run still exits 3); any other non-zero code stops the run here.
        done = (0, validate_cmd.EXIT_FAULTS) if stage == "validate" else (0,)
        if code == 130:
            raise fail(ui, f"curate run: interrupted in stage {stage}; the stages before it are "
                           "done, and a rerun skips them and resumes this one", code)
        if code not in done:
            raise fail(ui, f"curate run: stage {stage} failed (exit {code}); the stages before "
                           "it are done and a rerun skips them", code)
        if stage != "report":
            state.finished(stage, seconds, step["folder"], summary, code)
    return results


def _check_options(cfg, plan: _Plan) -> None:
    """Before the first stage runs: let every stage parse and build its options (its own
    checks: a format name, a size, a range …) and stop there, so a typo in [export] fails now,
    not after hours of scoring. Nothing is read or written. Raises InputError naming the
    section."""
    from curate.errors import InputError

    for step in plan.steps:
        try:
            _invoke(None, step["argv"] + ["--quiet"], step["command"], check=True)
        except InputError as e:
            raise InputError(f"{cfg.path}: [{step['stage']}] {e}") from None


def _invoke(ui: Ui | None, argv: list[str], command: str,
            check: bool = False) -> tuple[int, dict | None]:
    """Run one stage command in this process; its exit code and its summary. With ``check``,
    only its options are built (see cli.output.preflight) and a refusal raises InputError."""
    from curate.errors import InputError

    from .app import app

    with run_stage(command, check=check) as sink:
        try:
            code = app(args=argv, prog_name="curate", standalone_mode=False)
        except Exception as e:
            # A usage error (the config gave a value the command's parser refuses).
            if not (hasattr(e, "format_message") and hasattr(e, "exit_code")):
                raise
            if check or ui is None:
                raise InputError(e.format_message()) from None
            ui.err.print(f"[bold red]error:[/bold red] curate {argv[0]}: "
                         f"{escape(e.format_message())}")
            code = e.exit_code
    return (code if isinstance(code, int) else 0), (sink[-1] if sink else None)


def _render_plan(ui: Ui, cfg, plan: _Plan, chosen) -> None:
    from rich.table import Table

    t = Table(title=f"curate run {cfg.path} --dry-run (nothing runs)", title_justify="left")
    for col in ("stage", "action", "why", "command"):
        t.add_column(col)
    for step, d in zip(plan.steps, chosen, strict=True):
        style = {"skip": "dim", "resume": "yellow", "run": "bold"}[d.action]
        t.add_row(step["stage"], f"[{style}]{d.action}[/{style}]", escape(d.reason),
                  escape(step["command"]))
    if ui.json:
        ui.emit_json({"config": str(cfg.path), "out": str(cfg.out), "dry_run": True,
                      "stages": [{"stage": s["stage"], "action": d.action, "reason": d.reason,
                                  "command": s["command"]}
                                 for s, d in zip(plan.steps, chosen, strict=True)]})
    elif not ui.quiet:
        ui.out.print(t)


def _render_run(ui: Ui, cfg, results: list[dict]) -> None:
    if ui.quiet:
        return
    t = summary_table(f"curate run {cfg.path} → {cfg.out}")
    total = 0.0
    for r in results:
        total += r["seconds"]
        what = "skipped (done)" if r["action"] == "skip" else \
            f"{r['action']}, {r['seconds']:.2f} s" + \
            (f", exit {r['exit_code']}" if r["exit_code"] else "")
        t.add_row(r["stage"], what)
    t.add_row("stages", f"{sum(r['action'] != 'skip' for r in results)} ran, "
                        f"{sum(r['action'] == 'skip' for r in results)} skipped, "
                        f"{total:.2f} s")
    ui.out.print(t)
