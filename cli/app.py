"""The Typer app: parse options, call the library, render. No pipeline logic lives here."""

from __future__ import annotations

from typing import Annotated

import typer

from curate import __version__

from . import (
    decontam_cmd,
    dedup_cmd,
    eval_cmd,
    export_cmd,
    filter_cmd,
    read_cmd,
    report_cmd,
    run_cmd,
    score_cmd,
    validate_cmd,
)

app = typer.Typer(
    name="curate",
    help="Turn reasoning traces into ranked, clean SFT shards, scored step by step with a "
    "process reward model.\n\nFlow: read → score → filter → dedup → decontam → export → "
    "validate → report (or `curate run CONFIG.toml` for all of it). Every stage reads what "
    "`curate read` reads, including another stage's output folder.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool):
    if value:
        typer.echo(f"curate {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
):
    """curate: distillation-set curation with process reward models."""


app.command("read", help=read_cmd.HELP, short_help=read_cmd.SHORT)(read_cmd.read)
app.command("score", help=score_cmd.HELP, short_help=score_cmd.SHORT)(score_cmd.score)
app.command("eval", help=eval_cmd.HELP, short_help=eval_cmd.SHORT)(eval_cmd.eval_)
app.command("filter", help=filter_cmd.HELP, short_help=filter_cmd.SHORT)(filter_cmd.filter_)
app.command("dedup", help=dedup_cmd.HELP, short_help=dedup_cmd.SHORT)(dedup_cmd.dedup)
app.command("decontam", help=decontam_cmd.HELP,
            short_help=decontam_cmd.SHORT)(decontam_cmd.decontam)
app.command("export", help=export_cmd.HELP, short_help=export_cmd.SHORT)(export_cmd.export)
app.command("report", help=report_cmd.HELP, short_help=report_cmd.SHORT)(report_cmd.report)
app.command("validate", help=validate_cmd.HELP,
            short_help=validate_cmd.SHORT)(validate_cmd.validate)
app.command("run", help=run_cmd.HELP, short_help=run_cmd.SHORT)(run_cmd.run)

def main() -> None:
    """Console entry point: like ``app()``, but usage errors are one line, as all errors are."""
    import sys

    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        sys.stderr.write("error: interrupted\n")
        sys.exit(130)
    except Exception as e:
        # Typer's usage errors (bad option value, missing argument, unknown command) are not
        # public names; they all carry format_message() and exit_code, which is what we need.
        if not (hasattr(e, "format_message") and hasattr(e, "exit_code")):
            raise
        ctx = getattr(e, "ctx", None)
        cmd = ctx.command_path if ctx is not None else "curate"
        sys.stderr.write(f"error: {cmd}: {e.format_message()} (see `{cmd} --help`)\n")
        sys.exit(e.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
