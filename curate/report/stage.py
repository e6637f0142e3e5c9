"""The report stage: what happened at each stage of a run (``collect``), for the terminal,
as HTML or as JSON. It ends every `curate run`."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from ..options import StageOptions, option
from ..stage import Stage, StageContext


@dataclass
class ReportOptions(StageOptions):
    html: str | None = option(help="Also write the report as one self-contained HTML page to "
                              "this path.")
    bins: int = option(20, help="Bins of the score histograms.")

    def __post_init__(self):
        if not 1 <= self.bins <= 200:
            raise InputError(f"--bins {self.bins}: expected 1 to 200")


class ReportStage(Stage):
    name = "report"
    progress = "reporting"
    Options = ReportOptions
    takes = "run"
    writes = None
    help = "Render what happened at each stage in the terminal (or HTML / JSON)."
    doc = """Read the manifests of one run (a folder holding stage folders, e.g. out/ with out/read, out/scored, out/filtered …) or of one stage folder, and show the funnel (rows in/out and drop reasons per stage, in flow order), score histograms overall and per source, the top and bottom examples with their step rewards coloured, timings and throughput, and too-long counts.

[bold]Examples[/bold]

  curate report out/
  curate report out/filtered
  curate report out/ --html report.html
  curate report out/ --json | jq .funnel

Nothing in DIR is changed. A DIR with no curate output is an error (exit 2)."""  # noqa: E501

    def run(self, ctx: StageContext, opts: ReportOptions) -> dict:
        from .collect import collect

        data = collect(ctx.inputs[0], bins=opts.bins)
        if opts.html:
            from .html import write_html

            write_html(data, opts.html)
            ctx.note(f"wrote {opts.html}")
        return data
