"""The Typer app: parse options, call the library, render. No pipeline logic lives here."""

from __future__ import annotations

from typing import Annotated

import click
import typer
from typer.core import TyperGroup

from curate import __version__

from . import eval_cmd, run_cmd, stage_cmd


class StageCommands(TyperGroup):
    """The app's command group: a command per registered stage, built when it is used.

    `curate --help` lists the stages from the registry's one-line help, so listing them
    imports no stage (each pulls in pyarrow or polars); `curate filter …` builds only the
    filter command, from the stage's declaration (``cli.stage_cmd``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._built: dict[str, click.Command] = {}
        self._listing = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        from curate.registry import stage_names

        return [*stage_names(), *super().list_commands(ctx)]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        from curate.registry import stage_help, stage_names

        if name not in stage_names():
            return super().get_command(ctx, name)
        if self._listing:  # a stand-in that only says what the command does
            return click.Command(name, short_help=stage_help(name), help=stage_help(name))
        if name not in self._built:
            from curate.registry import get_stage

            one = typer.Typer(rich_markup_mode="rich", pretty_exceptions_enable=False,
                              add_completion=False,
                              context_settings={"help_option_names": ["-h", "--help"]})
            stage_cmd.register(one, get_stage(name))
            self._built[name] = typer.main.get_command(one)
        return self._built[name]

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


app = typer.Typer(
    cls=StageCommands,
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
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, metavar="",
                                          help="Print the version and exit.")] = False,
):
    """curate: distillation-set curation with process reward models."""




app.command("eval", help=eval_cmd.HELP, short_help=eval_cmd.SHORT)(eval_cmd.eval_)
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
