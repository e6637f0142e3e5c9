"""How `curate validate` shows its summary."""

from __future__ import annotations

from rich.markup import escape

from ..output import Ui, print_notes, summary_table


def render(ui: Ui, s: dict) -> None:
    t = summary_table(f"curate validate {s['exported']} (student {s['student']})")
    c = s["checks"]
    t.add_row("rows checked", f"{c['rows']:,} ({c['ok_rows']:,} ok)")
    for kind, n in c["faults"].items():
        if n:
            t.add_row(f"fault: {kind}", f"{n:,} (e.g. {escape(c['fault_ids'][kind][0])})")
    tk = c["tokens"]
    if "median" in tk:
        t.add_row("tokens", f"median {tk['median']:,}, p90 {tk['p90']:,}, max {tk['max']:,}; "
                            f"{tk['over']:,} over {tk['max_seq_len']:,}")
    for name, r in s["train"].items():
        loss = (f"loss {r['loss_start']:.4f} → {r['loss_end']:.4f}"
                if r["loss_start"] is not None else "no loss logged")
        held = f", held-out {r['heldout_loss']:.4f}" if r["heldout_loss"] is not None else ""
        t.add_row(f"SFT {name}", f"{r['rows']:,} rows, {r['steps']} steps, {loss}{held}, "
                                 f"{r['tokens_per_s'] or 0:,.0f} tokens/s"
                                 + (", NaN!" if r["nan"] else ""))
    if s.get("heldout"):
        h = s["heldout"]
        t.add_row("held-out set", f"{h['rows']:,} rows from {h['source']}")
    if s.get("comparison") and s["comparison"]["selected_minus_random"] is not None:
        d = s["comparison"]["selected_minus_random"]
        t.add_row("selected − random", f"{d:+.4f} held-out loss "
                                       f"({'selected better' if d < 0 else 'random better'})")
    t.add_row("verdict", "ok" if s["ok"] else "FAILED")
    t.add_row("time", f"{s['seconds']:.1f} s")
    ui.out.print(t)
    print_notes(ui, s.get("notes") or [])
