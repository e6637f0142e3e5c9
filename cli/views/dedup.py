"""How `curate dedup` shows its summary."""

from __future__ import annotations

from ..output import Ui, summary_table


def render(ui: Ui, s: dict) -> None:
    t = summary_table(f"curate dedup → {s['output']}")
    t.add_row("traces in", f"{s['rows_in']:,}")
    t.add_row("traces kept", f"{s['rows_out']:,}")
    t.add_row("duplicates", f"exact {s['exact_duplicates']:,}, near {s['near_duplicates']:,} "
                            f"(on {s['on']}, mode {s['mode']})")
    other = {k: v for k, v in s["dropped"].items()
             if k not in ("exact_duplicate", "near_duplicate")}
    if other:
        t.add_row("dropped reading", ", ".join(f"{k}: {v:,}" for k, v in sorted(other.items())))
    lsh = s.get("lsh")
    if lsh:
        probs = ", ".join(f"P(J={k}) {v}" for k, v in lsh["collision_probability"].items())
        t.add_row("near", f"{s['shingle']}, Jaccard ≥ {s['threshold']}; LSH {lsh['bands']} "
                          f"bands × {lsh['rows']} rows of {lsh['num_perm']} permutations, "
                          f"{probs}")
        t.add_row("pairs", f"{s['candidate_pairs']:,} candidates, {s['verified_pairs']:,} "
                           "verified")
    sizes = ", ".join(f"{k}: {v:,}" for k, v in s["cluster_sizes"].items())
    t.add_row("clusters", f"{s['clusters']:,} (sizes {sizes})")
    t.add_row("time", f"{s['seconds']:.2f} s ({s['rows_per_s']:,} traces/s)")
    ui.out.print(t)
