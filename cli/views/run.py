"""How `curate run` shows a run: each stage's summary as it finishes, then the run's table
(or, with --dry-run, the plan)."""

from __future__ import annotations

from rich.markup import escape

from ..output import RichReporter, Ui, summary_table


class RunReporter(RichReporter):
    """Bars and notes as for one command, and each stage's summary, rendered by its view, as
    soon as the stage finishes."""

    def result(self, stage: str, summary: dict) -> None:
        from . import render_for

        if not self.ui.quiet and not self.ui.json:
            render_for(stage)(self.ui, summary)


def render(ui: Ui, doc: dict) -> None:
    if doc["dry_run"]:
        _render_plan(ui, doc)
    else:
        _render_run(ui, doc)


def _render_plan(ui: Ui, doc: dict) -> None:
    from rich.table import Table

    t = Table(title=f"curate run {doc['config']} --dry-run (nothing runs)",
              title_justify="left")
    for col in ("stage", "action", "why", "command"):
        t.add_column(col)
    for s in doc["stages"]:
        style = {"skip": "dim", "resume": "yellow", "run": "bold"}[s["action"]]
        t.add_row(s["stage"], f"[{style}]{s['action']}[/{style}]", escape(s["reason"]),
                  escape(s["command"]))
    ui.out.print(t)


def _render_run(ui: Ui, doc: dict) -> None:
    t = summary_table(f"curate run {doc['config']} → {doc['out']}")
    total = 0.0
    for r in doc["stages"]:
        total += r["seconds"]
        what = "skipped (done)" if r["action"] == "skip" else \
            f"{r['action']}, {r['seconds']:.2f} s" + \
            (f", exit {r['exit_code']}" if r["exit_code"] else "")
        t.add_row(r["stage"], what)
    t.add_row("stages", f"{sum(r['action'] != 'skip' for r in doc['stages'])} ran, "
                        f"{sum(r['action'] == 'skip' for r in doc['stages'])} skipped, "
                        f"{total:.2f} s")
    ui.out.print(t)
