"""How `curate score` shows its summary."""

from __future__ import annotations

from ..output import Ui, summary_table


def render(ui: Ui, s: dict) -> None:
    if s.get("dry_run"):
        t = summary_table("curate score --dry-run (nothing written)")
        t.add_row("traces", f"{s['rows_in']:,}")
        t.add_row("tokens to process", f"{s['tokens']:,} in {s['sequences']:,} sequences"
                  + (" (prompts, then verdicts)" if "generated_tokens_max" in s else
                     " (step pass + trajectory pass)" if s["alpha"] else ""))
        t.add_row("too long", f"{s['too_long']:,} ({s['too_long_share']:.1%}) over "
                              f"{s['max_len']:,} tokens")
        if "generated_tokens_max" in s:
            t.add_row("generation", f"at most {s['generated_tokens_max']:,} tokens (the "
                                    "budget of every chain and round)")
        t.add_row("estimate", f"{s['estimated_gpu_hours']} GPU-hours at "
                              f"{s['assumed_tokens_per_s']:,.0f} tokens/s"
                  + (f" read and {s['assumed_decode_tokens_per_s']:,.0f} generated"
                     if "generated_tokens_max" in s else ""))
        ui.out.print(t)
        return

    t = summary_table(f"curate score → {s['output']}")
    t.add_row("traces in", f"{s['rows_in']:,}")
    t.add_row("traces scored", f"{s['rows_out']:,}")
    d = s.get("dropped") or {}
    t.add_row("dropped", ", ".join(f"{k}: {v:,}" for k, v in sorted(d.items())) or "0")
    if s.get("windowed"):
        t.add_row("windowed", f"{s['windowed']:,} long traces scored in windows (too_long, "
                              "windows > 1)")
    if s.get("family") == "signals":
        t.add_row("scorer", f"{s['scorer']} (offline, no reward model)")
    elif not s.get("rescored"):
        t.add_row("model", f"{s['model']} ({s['family']}, engine {s['engine']} on "
                           f"{s['device']})")
        if s.get("chunks_resumed"):
            t.add_row("resumed", f"{s['chunks_resumed']} of {s['chunks']} chunks were done")
    v = s.get("verification")
    if v:
        how = (f"verifier P(yes), mean of {v['verify_k']} chain"
               f"{'s' if v['verify_k'] > 1 else ''}")
        t.add_row("verdicts", f"{v['verdicts_correct']:,} steps judged correct, "
                              f"{v['verdicts_incorrect']:,} incorrect; "
                              f"{v['predicted_error']:,} traces with a first error")
        if v["verdict_count_mismatch"] or v["no_verdicts"]:
            t.add_row("mismatch", f"{v['verdict_count_mismatch']:,} traces whose critique "
                                  f"judged another number of steps ({v['no_verdicts']:,} none "
                                  "at all); kept, flagged in verdict_count_mismatch")
    elif s.get("family") == "signals":
        how = "0.6 × answer + 0.4 × quality"
    else:
        how = f"alpha {s['alpha']}, agg {s['agg']}"
    t.add_row("score", f"{how}: " + ", ".join(f"{k} {v}" for k, v in s.get("score",
                                                                              {}).items()))
    eng = s.get("engine_stats")
    if s.get("family") == "signals":
        t.add_row("throughput", f"{s['traces_per_s']} traces/s")
        if s.get("scorer_load_seconds", 0) >= 5:
            t.add_row("scorer load", f"{s['scorer_load_seconds']:.1f} s (the first run distils "
                                     "the encoder; later runs load it from the cache)")
    if eng and eng.get("generated_tokens"):
        t.add_row("throughput", f"{s['traces_per_s']} traces/s, "
                                f"{eng['generated_tokens']:,} tokens generated "
                                f"({eng['generated_tokens_per_s']} tokens/s)")
    elif eng:
        t.add_row("throughput", f"{s['traces_per_s']} traces/s, {eng['tokens_per_s']} "
                                f"tokens/s, padding {eng['padding_waste']:.1%}")
    t.add_row("time", f"{s['seconds']:.2f} s")
    if s.get("note"):
        t.add_row("note", s["note"])
    ui.out.print(t)
