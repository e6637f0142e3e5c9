"""How `curate export` shows its summary."""

from __future__ import annotations

from ..output import Ui, print_notes, summary_table


def render(ui: Ui, s: dict) -> None:
    to_stdout = s.get("output") == "-"
    target = "stdout (JSON Lines)" if to_stdout else s["output"]
    t = summary_table(f"curate export → {target}")
    t.add_row("rows in", f"{s['rows_in']:,}")
    t.add_row("exported", f"{s['rows_out']:,}")
    for reason, n in s["dropped"].items():
        t.add_row(f"left out: {reason}", f"{n:,}")
    if not to_stdout:
        t.add_row("splits", ", ".join(f"{k} {v:,} rows in {s['shards'].get(k, 0)} shard(s)"
                                      for k, v in s["splits"].items()))
    t.add_row("format", f"{s['format']}, think style {s['think_style']}")
    t.add_row("ranking", s["ranking"])
    if s.get("score"):
        sc = s["score"]
        t.add_row("score", f"min {sc['min']:.4f}, median {sc['median']:.4f}, max {sc['max']:.4f}")
    if s.get("tokens"):
        tk = s["tokens"]
        t.add_row("tokens", f"median {tk['median']:,}, p90 {tk['p90']:,}, max {tk['max']:,}; "
                            f"{tk['over']:,} over {tk['max_seq_len']:,}")
    t.add_row("time", f"{s['seconds']:.2f} s ({s['rows_per_s']:,} rows/s, "
                      f"{s['text_mb_per_s']} MB/s of text)" if s["rows_per_s"]
              else f"{s['seconds']:.2f} s")
    console = ui.err if to_stdout else ui.out  # stdout holds only records with -o -
    console.print(t)
    print_notes(ui, s.get("notes") or [])

