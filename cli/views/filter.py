"""How `curate filter` shows its summary."""

from __future__ import annotations

from ..output import Ui, summary_table


def render(ui: Ui, s: dict) -> None:
    title = "curate filter --dry-run (nothing written)" if s["dry_run"] else \
        f"curate filter → {s['output']}"
    t = summary_table(title)
    t.add_row("rows in", f"{s['rows_in']:,}")
    if s["traces"] != s["rows_in"]:
        t.add_row("traces after reading", f"{s['traces']:,}")
    for step in s["funnel"]:
        t.add_row(step["option"], f"-{step['removed']:,} → {step['remaining']:,}")
    t.add_row("kept", f"{s['rows_out']:,}")
    d = s["dropped"]
    t.add_row("dropped", ", ".join(f"{k}: {v:,}" for k, v in d.items()) or "0")
    if s.get("tokens_measure"):
        t.add_row("tokens", " and ".join(s["tokens_measure"]))
    t.add_row("time", f"{s['seconds']:.2f} s ({s['rows_per_s']:,} rows/s)"
              if s["rows_per_s"] else f"{s['seconds']:.2f} s")
    ui.out.print(t)
