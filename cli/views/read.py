"""How `curate read` shows its summary."""

from __future__ import annotations

from ..output import Ui, summary_table


def render(ui: Ui, s: dict) -> None:
    for path, preset in s["presets"].items():
        ui.note(f"[cyan]{path}[/cyan]: preset [bold]{preset}[/bold]")
    t = summary_table(f"curate read → {s['output']}")
    t.add_row("input rows read", f"{s['rows_in']:,}")
    t.add_row("traces written", f"{s['rows_out']:,}")
    dropped = s["dropped"]
    t.add_row("rows dropped", ", ".join(f"{k}: {v:,}" for k, v in sorted(dropped.items()))
              if dropped else "0")
    t.add_row("with thinking", f"{s['rows_with_thinking']:,}")
    t.add_row("with the source's own steps", f"{s['rows_with_source_steps']:,}")
    st = s["steps_per_trace"]
    t.add_row("steps per trace", f"median {st['median']}, p90 {st['p90']}, max {st['max']}")
    t.add_row("time", f"{s['seconds']:.2f} s ({s['rows_per_s']:,} rows/s, "
                      f"{s['input_mb_per_s']} MB/s)")
    ui.out.print(t)
