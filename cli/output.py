"""Consoles, logging verbosity and the error → exit-code policy shared by every command.

stdout carries results only (a rich summary, or with --json exactly one JSON object, on success
and on failure); progress, notes and errors go to stderr. Exit codes: 0 ok, 2 bad input, usage or
environment (disk full, permissions), 1 internal error, 130 interrupted, 141 stdout closed.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from dataclasses import dataclass

import typer
from rich.console import Console

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT, EXIT_PIPE = 0, 1, 2, 141


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
        """A command's result: the one JSON object (--json) or ``render(ui, summary)``."""
        if self.json:
            self.emit_json(summary)
        elif not self.quiet:
            render(self, summary)

    def progress_enabled(self) -> bool:
        return not self.quiet and self.err.is_terminal


def fail(ui: Ui, message: str, code: int) -> typer.Exit:
    """Print the one error line (stderr) and, with --json, the one JSON object stdout holds
    on failure too: {"error": message, "exit_code": code}. ``message`` is plain text."""
    from rich.markup import escape

    ui.err.print(f"[bold red]error:[/bold red] {escape(message)}", markup=True,
                 highlight=False, soft_wrap=True, emoji=False)
    if ui.json:
        try:
            ui.emit_json({"error": message, "exit_code": code})
        except (BrokenPipeError, OSError):
            pass
    return typer.Exit(code)


@contextlib.contextmanager
def handled(ui: Ui):
    """Turn exceptions into one-line messages and exit codes (no tracebacks for users).

    The user's environment is not a bug: a full disk, a read-only folder or a missing
    permission is exit 2 with the path and the system's reason; a reader that closed the pipe
    we write to (`curate export -o - | head`) ends the command quietly with 141 (128 + SIGPIPE,
    as a shell reports a process killed by it) and no success line."""
    from curate.errors import InputError
    from curate.io.writer import ENVIRONMENT_ERRNOS, os_error_message

    try:
        yield
    except typer.Exit:
        raise
    except InputError as e:
        raise fail(ui, str(e), EXIT_INPUT) from None
    except BrokenPipeError:
        quiet_stdout()
        raise typer.Exit(EXIT_PIPE) from None
    except KeyboardInterrupt:
        raise fail(ui, "interrupted; nothing was committed", 130) from None
    except OSError as e:
        if e.errno in ENVIRONMENT_ERRNOS:
            raise fail(ui, os_error_message(e), EXIT_INPUT) from None
        raise fail(ui, _internal(ui, e), EXIT_INTERNAL) from None
    except Exception as e:  # noqa: BLE001 - the last line of defence
        raise fail(ui, _internal(ui, e), EXIT_INTERNAL) from None


def _internal(ui: Ui, e: BaseException) -> str:
    if ui.verbose:
        ui.err.print(traceback.format_exc(), markup=False)
    first = str(e).splitlines()[0] if str(e) else ""
    return (f"internal error: {type(e).__name__}: {first} (this is a bug in curate; rerun "
            "with --verbose for the traceback)")


def quiet_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush into a closed pipe
    prints nothing."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


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


def command_line(name: str) -> str | None:
    """The command as the user typed it, for the manifest; None when not run from the shell
    (tests, library use), where sys.argv belongs to someone else."""
    import shlex

    if len(sys.argv) > 1 and sys.argv[1] == name:
        return "curate " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    return None


class RichReporter:
    """The library's progress and notes (``curate.stage.Reporter``) on this terminal: bars on
    stderr when it is a terminal, nothing with --quiet."""

    def __init__(self, ui: Ui, prefix: str = ""):
        self.ui = ui
        self.prefix = prefix

    def task(self, label: str, total: int | None):
        return progress_bar(self.ui, self.prefix + label, total)

    def lazy(self, label: str):
        return lazy_progress(self.ui, self.prefix + label)

    def note(self, message: str) -> None:
        from rich.markup import escape

        self.ui.note(escape(message))

    def result(self, stage: str, summary: dict) -> None:
        """A stage of a run finished (shown by `curate run`'s reporter)."""


def print_notes(ui: Ui, notes: list[str]) -> None:
    """Notes on stderr: warnings always, the rest unless --json holds them already."""
    if ui.quiet:
        return
    for note in notes:
        style = "bold red" if note.startswith("WARNING") else "yellow"
        if ui.json and style == "yellow":
            continue
        from rich.markup import escape

        ui.err.print(f"[{style}]{escape(note)}[/{style}]", markup=True, highlight=False)
