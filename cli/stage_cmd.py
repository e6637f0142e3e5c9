"""`curate <stage>`: one command per registered stage, built from the stage's declaration.

The flags are the stage's ``Options`` fields (``curate.options``), so the command line, the
``curate run`` config and the Python API can never disagree on a name, a type or a default.
The command parses, calls ``curate.stage.run_stage``, and renders the summary with the stage's
view (``cli.views``); nothing else happens here.
"""

from __future__ import annotations

import inspect
import json
import sys
from typing import Annotated

import typer

from .common import Json, Overwrite, Quiet, Verbose
from .output import RichReporter, Ui, command_line, handled, print_notes

# The positional argument of each kind of stage input: (parameter, metavar, type, help).
POSITIONAL = {
    "files": ("inputs", "INPUT", list[str],
              "Files, folders, globs, saved datasets folders or hub dataset ids."),
    "traces": ("inputs", "INPUT", list[str],
               "Traces: anything `curate read` accepts, or a stage's output folder."),
    "export": ("exported", "EXPORTED", str, "A folder written by `curate export`."),
    "run": ("folder", "DIR", str, "A run folder holding stage folders, or one stage folder."),
}
COMMON = ("output", "dry_run", "overwrite", "quiet", "verbose", "json_out")
_TYPES = {"bool": bool, "int": int, "float": float, "str": str, "list": list[str]}


def _option_param(spec) -> inspect.Parameter:
    base = _TYPES[spec.kind]
    hint = base if spec.kind == "bool" or (spec.default is not None and spec.kind != "list") \
        else base | None
    decls = [spec.flag] + ([spec.short] if spec.short else [])
    # a flag takes no value: no `<bool>` in the help (it read as if `--flag true` were needed)
    metavar = "" if spec.kind == "bool" and spec.metavar is None else spec.metavar
    info = typer.Option(*decls, help=spec.help, metavar=metavar,
                        show_default=spec.default not in (None, False))
    return inspect.Parameter(spec.param, inspect.Parameter.KEYWORD_ONLY,
                             default=spec.default, annotation=Annotated[hint, info])


def _param(name: str, hint, default=inspect.Parameter.empty) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=hint)


def signature(stage) -> inspect.Signature:
    """The command's parameters: INPUT, -o, the options, then the common flags."""
    params = []
    name, metavar, kind, help_ = POSITIONAL[stage.takes]
    params.append(_param(name, Annotated[kind, typer.Argument(
        help=help_, show_default=False, metavar=metavar)]))
    if stage.writes is not None:
        optional = stage.dry_run is not None
        o_help = "Output folder" + (" (not needed with --dry-run)." if optional else ".")
        if stage.name == "export":
            o_help = "Output folder, or - for JSON Lines on stdout."
        params.append(_param("output", Annotated[str | None if optional else str, typer.Option(
            "--output", "-o", help=o_help, show_default=False)],
            None if optional else inspect.Parameter.empty))
    taken = {p.name for p in params} | set(COMMON)
    for spec in stage.Options.specs().values():
        if spec.param in taken:
            raise TypeError(f"stage {stage.name}: option {spec.param} clashes with a "
                            "parameter every command has")
        params.append(_option_param(spec))
    if stage.dry_run is not None:
        params.append(_param("dry_run", Annotated[bool, typer.Option(
            "--dry-run", metavar="", help="Show what a run would do (counts, the funnel, the "
                                          "cost) and write nothing.")], False))
    if stage.writes is not None:
        params.append(_param("overwrite", Overwrite, False))
    params += [_param("quiet", Quiet, False), _param("verbose", Verbose, False),
               _param("json_out", Json, False)]
    return inspect.Signature(params)


def command(stage_cls):
    """The Typer command function of a stage class."""
    sig = signature(stage_cls)
    option_params = [s.param for s in stage_cls.Options.specs().values()]
    positional = POSITIONAL[stage_cls.takes][0]

    def run(**kw):
        ui = Ui(quiet=kw["quiet"], verbose=kw["verbose"], json=kw["json_out"])
        with handled(ui):
            from curate.stage import run_stage

            from .views import render_for

            out = kw.get("output")
            opts = stage_cls.Options.build({p: kw[p] for p in option_params
                                            if kw[p] is not None})
            result = run_stage(stage_cls, kw[positional], out, opts,
                               overwrite=kw.get("overwrite", False),
                               dry_run=kw.get("dry_run", False),
                               command=command_line(stage_cls.name),
                               reporter=RichReporter(ui))
            if out == "-" and ui.json:
                # stdout holds the records: the one JSON object goes to stderr instead
                ui.note("note: --json with -o -: the records are on stdout, the summary "
                        "(JSON) on stderr")
                sys.stderr.write(json.dumps(dict(result), default=str) + "\n")
            else:
                ui.result(dict(result), render_for(stage_cls.name))
            if ui.json:  # the loud notes reach people even when stdout is one JSON object
                print_notes(ui, result.get("notes") or [])
        if result.exit_code:
            raise typer.Exit(result.exit_code)

    run.__name__ = stage_cls.name
    run.__signature__ = sig
    run.__annotations__ = {p.name: p.annotation for p in sig.parameters.values()}
    run.__doc__ = stage_cls.doc or stage_cls.help
    return run


def register(app: typer.Typer, stage_cls) -> None:
    app.command(stage_cls.name, help=stage_cls.doc or stage_cls.help,
                short_help=stage_cls.help)(command(stage_cls))
