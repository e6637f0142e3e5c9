"""Consoles, logging verbosity and the error → exit-code policy shared by every command.

stdout carries results only (a rich summary, or with --json exactly one JSON object); progress,
notes and errors go to stderr. Exit codes: 0 ok, 2 bad input or usage, 1 internal error.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import sys
import traceback
from dataclasses import dataclass

import typer
from rich.console import Console

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT = 0, 1, 2


@dataclass
class Ui:
    quiet: bool = False
    verbose: bool = False
    json: bool = False

    def __post_init__(self):
        self.out = Console(highlight=False, soft_wrap=True)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)

    def note(self, message: str) -> None:
        """A progress note for people (stderr; hidden by --quiet)."""
        if not self.quiet:
            self.err.print(message)

    def debug(self, message: str) -> None:
        if self.verbose:
            self.err.print(f"[dim]{message}[/dim]")

    def emit_json(self, obj: dict) -> None:
        sys.stdout.write(json.dumps(obj, default=str) + "\n")
        sys.stdout.flush()

    def result(self, summary: dict, render) -> None:
        """A command's result: handed to `curate run` when it runs the command as a stage,
        then printed as the one JSON object (--json) or by ``render(ui, summary)``."""
        publish(summary)
        if self.json:
            self.emit_json(summary)
        elif not self.quiet:
            render(self, summary)

    def progress_enabled(self) -> bool:
        return not self.quiet and self.err.is_terminal


def fail(ui: Ui, message: str, code: int) -> typer.Exit:
    ui.err.print(f"[bold red]error:[/bold red] {message}", markup=True, highlight=False,
                 soft_wrap=True, emoji=False)
    return typer.Exit(code)


@contextlib.contextmanager
def handled(ui: Ui):
    """Turn exceptions into one-line messages and exit codes (no tracebacks for users)."""
    from curate.errors import InputError

    try:
        yield
    except typer.Exit:
        raise
    except InputError as e:
        if preflight():
            raise  # `curate run` names the config section before it prints the line
        raise fail(ui, _escape(str(e)), EXIT_INPUT) from None
    except KeyboardInterrupt:
        raise fail(ui, "interrupted; nothing was committed", 130) from None
    except Exception as e:  # noqa: BLE001 - the last line of defence
        if ui.verbose:
            ui.err.print(traceback.format_exc(), markup=False)
        first = str(e).splitlines()[0] if str(e) else ""
        raise fail(ui, _escape(f"internal error: {type(e).__name__}: {first} (this is a bug in "
                               "curate; rerun with --verbose for the traceback)"),
                   EXIT_INTERNAL) from None


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


@contextlib.contextmanager
def progress_bar(ui: Ui, label: str, total: int | None = None):
    """A transient rich progress bar on stderr (a terminal only); yields ``advance(n)`` or None."""
    if not ui.progress_enabled():
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(),
                   TimeRemainingColumn(), console=ui.err, transient=True)
    with bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def summary_table(title: str):
    """The two-column table every command's human summary uses."""
    from rich.table import Table

    t = Table(title=title, show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    return t


@contextlib.contextmanager
def lazy_progress(ui: Ui, label: str):
    """Yields ``update(done, total)``; a bar appears only if the work it tracks happens at all
    (e.g. the one-time distillation of the static encoder)."""
    state: dict = {}

    def update(done: int, total: int) -> None:
        if not ui.progress_enabled():
            if "noted" not in state:
                state["noted"] = True
                ui.note(label)
            return
        if "bar" not in state:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(),
                           console=ui.err, transient=True)
            bar.start()
            state["bar"], state["task"] = bar, bar.add_task(label, total=total)
        state["bar"].update(state["task"], completed=done, total=total)

    try:
        yield update
    finally:
        if "bar" in state:
            state["bar"].stop()


# Set by `curate run` while it runs one stage in-process: the equivalent stand-alone command
# (for that stage's manifest), a list that receives the stage's summary, and whether this is
# only the options check `curate run` makes of every stage before the first one runs.
_RUN_STAGE: contextvars.ContextVar[tuple[str, list, bool] | None] = contextvars.ContextVar(
    "curate_run_stage", default=None)


@contextlib.contextmanager
def run_stage(command: str, check: bool = False):
    """Run a sub-command as a stage of `curate run`: yields the list its summary lands in.
    With ``check``, the command stops once its options are parsed and built (``preflight``),
    and an InputError propagates to the run instead of being printed."""
    sink: list = []
    token = _RUN_STAGE.set((command, sink, check))
    try:
        yield sink
    finally:
        _RUN_STAGE.reset(token)


def preflight() -> bool:
    """True when `curate run` only checks this stage's options: the command returns as soon
    as it has built them, before it touches any data."""
    current = _RUN_STAGE.get()
    return current is not None and current[2]


def publish(summary: dict) -> None:
    """Hand a command's summary to `curate run` when it runs the command as a stage."""
    current = _RUN_STAGE.get()
    if current is not None:
        current[1].append(summary)


def command_line(name: str) -> str | None:
    """The command as the user typed it, for the manifest; None when not run from the shell
    (tests, library use), where sys.argv belongs to someone else. Inside `curate run`, the
    stand-alone command that does what the stage did."""
    import shlex

    current = _RUN_STAGE.get()
    if current is not None:
        return current[0]
    if len(sys.argv) > 1 and sys.argv[1] == name:
        return "curate " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    return None


def input_rows(ui: Ui, inputs: list[str], passes: int = 1, sources=None) -> int | None:
    """Progress-bar total: the input rows times the passes a stage makes over them, or None
    when no bar is shown or a source cannot tell its row count without reading it."""
    if not ui.progress_enabled():
        return None
    from curate.io.sources import resolve_inputs

    counts = [s.total_rows() for s in (sources or resolve_inputs(inputs))]
    return None if None in counts else passes * sum(counts)
