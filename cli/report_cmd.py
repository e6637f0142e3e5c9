"""`curate report`: what happened at each stage, in the terminal, as HTML or as JSON."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import Json, Quiet, Verbose
from .output import Ui, handled, preflight

SHORT = "Render what happened at each stage in the terminal (or HTML / JSON)."
HELP = """Read the manifests of one run (a folder holding stage folders, e.g. out/ with out/read, out/scored, out/filtered …) or of one stage folder, and show the funnel (rows in/out and drop reasons per stage, in flow order), score histograms overall and per source, the top and bottom examples with their step rewards coloured, timings and throughput, and too-long counts.

[bold]Examples[/bold]

  curate report out/
  curate report out/filtered
  curate report out/ --html report.html
  curate report out/ --json | jq .funnel

Nothing in DIR is changed. A DIR with no curate output is an error (exit 2)."""  # noqa: E501


def report(
    folder: Annotated[str, typer.Argument(
        help="A run folder holding stage folders, or one stage folder.", show_default=False,
        metavar="DIR")],
    html_out: Annotated[str | None, typer.Option(
        "--html", help="Also write the report as one self-contained HTML page to this path.",
        show_default=False)] = None,
    bins: Annotated[int, typer.Option(help="Bins of the score histograms.", min=1, max=200)
                    ] = 20,
    quiet: Quiet = False,
    verbose: Verbose = False,
    json_out: Json = False,
):
    ui = Ui(quiet=quiet, verbose=verbose, json=json_out)
    with handled(ui):
        if preflight():
            return
        from curate.report import collect

        data = collect(folder, bins=bins)
        if html_out:
            from curate.report.html import write_html

            write_html(data, html_out)
            ui.note(f"wrote [cyan]{html_out}[/cyan]")
        ui.result(data, _render)


def _render(ui: Ui, data: dict) -> None:
    from curate.report.terminal import render

    render(data, ui.out)
