"""How `curate decontam` shows its summary."""

from __future__ import annotations

from ..output import Ui, summary_table


def render(ui: Ui, s: dict) -> None:
    t = summary_table(f"curate decontam → {s['output']}")
    t.add_row("input rows", f"{s['rows_in']:,}")
    t.add_row("traces read", f"{s['traces_read']:,}")
    t.add_row("traces kept", f"{s['rows_out']:,}")
    t.add_row("contaminated", f"{s['contaminated']:,} ({s['contaminated_share']:.2%})")
    for name, n in s["contaminated_per_benchmark"].items():
        t.add_row(f"  {name}", f"{n:,} traces overlap ({s['benchmark_items'][name]:,} items)")
    other = {k: v for k, v in s["dropped"].items() if k != "contaminated"}
    if other:
        t.add_row("dropped on reading", ", ".join(f"{k}: {v:,}" for k, v in sorted(other.items())))
    t.add_row("matching", f"{s['ngram']}-grams of the {s['on']} text, min overlap "
                          f"{s['min_overlap']}; shorter items whole"
                          + ("" if s["on"] == "trace" else "; questions exactly"))
    t.add_row("time", f"{s['seconds']:.2f} s ({s['rows_per_s']:,} input rows/s)")
    ui.out.print(t)
