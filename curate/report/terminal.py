"""Render a collected report with rich: funnel, score histograms, examples, timings."""

from __future__ import annotations

from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

BAR_WIDTH = 40
# Step rewards are probabilities that a step is correct: below LOW reads as a likely error.
LOW, HIGH = 0.4, 0.7
SPARK = "▁▂▃▄▅▆▇█"


# An input row that gives several traces: a conversation with several assistant turns, or a row
# of several generations (read says which in its presets).
SPLIT_NOTE = "input rows that gave several traces (turns or generations)"


def split_rows(stage: dict) -> int:
    """Traces beyond one per input row (read turns a row with N solutions into N traces), so
    that a stage's rows out exceeding its rows in is explained, not a 112% "kept"."""
    rin, rout = stage["rows_in"], stage["rows_out"]
    if rin is None or rout is None:
        return 0
    return max(0, rout - (rin - sum(stage["dropped"].values())))


def reward_style(value: float | None) -> str:
    """green / yellow / red for a per-step reward (shared with the HTML page)."""
    if value is None:
        return "dim"
    return "green" if value >= HIGH else "yellow" if value >= LOW else "red"


def render(report: dict, console: Console) -> None:
    for part in renderables(report):
        console.print(part)
        console.print()


def renderables(report: dict) -> list:
    out = [_funnel(report), _timings(report)]
    score = report.get("score")
    if score and score["counts"]:
        out.append(_histograms(score))
        out.append(_examples(score))
    elif score is None:
        out.append(Text("no score column in this run's data: run `curate score` for the score "
                        "distribution and examples", style="dim"))
    if report.get("verification"):
        out.append(_verification(report["verification"]))
    out.append(_too_long(report))
    v = (report.get("run") or {}).get("validate")
    if v:
        out.append(_validate(v))
    return out


def _validate(v: dict) -> Table:
    t = Table(title="quick SFT (curate validate)", title_justify="left", show_header=False)
    t.add_column(style="bold")
    t.add_column()
    t.add_row("verdict", "[green]ok[/green]" if v["ok"] else "[bold red]FAILED[/bold red]")
    t.add_row("student", escape(str(v["student"])))
    faults = ", ".join(f"{k}: {n:,}" for k, n in v["faults"].items()) or "none"
    t.add_row("format checks", f"{_n(v['rows'])} rows, faults: {escape(faults)}")
    for name, r in v["train"].items():
        t.add_row(f"SFT {name}", train_line(r))
    d = v.get("selected_minus_random")
    if d is not None:
        t.add_row("selected − random", f"{d:+.4f} held-out loss "
                                       f"({'selected better' if d < 0 else 'random better'})")
    return t


def train_line(r: dict) -> str:
    """One SFT run in words (shared with the HTML page)."""
    def f(x):
        return f"{x:.4f}" if isinstance(x, (int, float)) else "–"
    return (f"{_n(r.get('rows'))} rows, {r.get('steps')} steps, loss {f(r.get('loss_start'))} → "
            f"{f(r.get('loss_end'))}, held-out {f(r.get('heldout_loss'))}"
            + (", NaN!" if r.get("nan") else ""))


def _funnel(r: dict) -> Table:
    f = r["funnel"]
    t = Table(title=f"funnel — {escape(r['dir'])}", title_justify="left")
    t.add_column("stage", style="bold")
    t.add_column("folder", style="cyan", overflow="fold")
    t.add_column("rows in", justify="right")
    t.add_column("dropped", justify="right")
    t.add_column("rows out", justify="right")
    t.add_column("kept", justify="right")
    for s in r["stages"]:
        dropped = sum(s["dropped"].values())
        kept = f"{s['rows_out'] / s['rows_in']:.1%}" if s["rows_in"] else "–"
        t.add_row(s["stage"], escape(s["folder"]), _n(s["rows_in"]),
                  f"[red]{dropped:,}[/red]" if dropped else "0", _n(s["rows_out"]), kept)
        for reason, n in s["dropped"].items():
            t.add_row("", f"  [dim]└ {escape(reason)}[/dim]", "", f"[red]{n:,}[/red]", "", "")
        if extra := split_rows(s):
            t.add_row("", f"  [dim]└ {SPLIT_NOTE}[/dim]", "", "", f"+{extra:,}", "")
    share = f"{f['kept_share']:.1%}" if f["kept_share"] is not None else "–"
    t.add_section()
    t.add_row("total", "", _n(f["rows_in"]), "", _n(f["rows_out"]), share)
    if not f["connected"]:
        for b in f["breaks"]:
            t.caption = (t.caption or "") + (
                f"[yellow]{b['before']} reads {_n(b['rows_in'])} rows but {b['after']} wrote "
                f"{_n(b['rows_out'])}: these folders are not one chain[/yellow] ")
    return t


def _timings(r: dict) -> Table:
    t = Table(title="timings", title_justify="left")
    t.add_column("stage", style="bold")
    t.add_column("seconds", justify="right")
    t.add_column("rows/s", justify="right")
    t.add_column("detail", style="dim")
    total = 0.0
    for s in r["stages"]:
        total += s["seconds"] or 0.0
        detail = ", ".join(f"{k} {v}" for k, v in s["timings"].items()
                           if isinstance(v, (int, float)))
        t.add_row(s["stage"], f"{s['seconds']:.2f}" if s["seconds"] is not None else "–",
                  f"{s['rows_per_s']:,.1f}" if s["rows_per_s"] else "–", detail)
    t.add_section()
    t.add_row("total", f"{total:.2f}", "", "")
    return t


def bars(counts: list[int], width: int = BAR_WIDTH) -> list[str]:
    """Text bars scaled to the largest count; a non-zero count always shows at least one cell."""
    peak = max(counts) if counts else 0
    return [("█" * max(1, round(c / peak * width)) if c else "") if peak else "" for c in counts]


def _histograms(score: dict) -> Group:
    parts = [_hist_table("score distribution — all rows "
                         f"(n={score['n']:,}, nulls {score['nulls']:,}, mean {score['mean']}, "
                         f"median {score['median']}; from {score['folder']})",
                         score["edges"], score["counts"])]
    if score["per_source"]:
        # One sparkline per source on the same bins: comparable at a glance, five lines long.
        t = Table(title=f"per source (same bins, {score['edges'][0]:.4g} → "
                        f"{score['edges'][-1]:.4g})", title_justify="left")
        t.add_column("source", style="bold", overflow="fold")
        t.add_column("rows", justify="right")
        t.add_column("mean", justify="right")
        t.add_column("distribution", style="magenta", no_wrap=True)
        for src, s in score["per_source"].items():
            t.add_row(escape(src), f"{s['n']:,}", f"{s['mean']}", sparkline(s["counts"]))
        if score["sources_total"] > len(score["per_source"]):
            t.caption = (f"top {len(score['per_source'])} of {score['sources_total']} sources "
                         "by rows")
        parts.append(t)
    return Group(*parts)


def sparkline(counts: list[int]) -> str:
    """One character per bin, its height relative to the largest bin (a space for zero)."""
    peak = max(counts) if counts else 0
    if not peak:
        return ""
    return "".join(" " if c == 0 else SPARK[min(len(SPARK) - 1, int(c / peak * len(SPARK)))]
                   for c in counts)


def _hist_table(title: str, edges: list, counts: list[int], width: int = BAR_WIDTH) -> Table:
    t = Table(title=escape(title), title_justify="left", show_header=False, box=None,
              padding=(0, 1))
    t.add_column(justify="right", style="dim")
    t.add_column(style="magenta")
    t.add_column(justify="right")
    for i, (bar, c) in enumerate(zip(bars(counts, width), counts, strict=True)):
        t.add_row(f"{edges[i]:.4g}–{edges[i + 1]:.4g}", bar, f"{c:,}")
    return t


def _examples(score: dict) -> Table:
    t = Table(title="top and bottom examples (by score, ties by id)", title_justify="left")
    t.add_column("", style="bold")
    t.add_column("id", style="cyan", overflow="fold")
    t.add_column("score", justify="right")
    t.add_column("question", overflow="fold")
    t.add_column("step rewards", overflow="fold")
    for label, rows in (("top", score["top"]), ("bottom", score["bottom"])):
        for i, ex in enumerate(rows):
            steps = Text()
            for j, v in enumerate(ex["step_rewards"]):
                if j:
                    steps.append(" ")
                steps.append(f"{v:.2f}" if v is not None else "–", style=reward_style(v))
            t.add_row(label if i == 0 else "", escape(str(ex["id"])), f"{ex['score']:.4f}",
                      escape(ex["question"]), steps if ex["step_rewards"] else Text("–", "dim"))
        if label == "top":
            t.add_section()
    return t


def _verification(v: dict) -> Table:
    t = Table(title="verification (generative verifier)", title_justify="left",
              show_header=False)
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    t.add_row("step verdicts", f"{v['steps_correct']:,} correct, {v['steps_incorrect']:,} "
                               "incorrect")
    t.add_row("traces", f"{v['traces_all_correct']:,} judged correct throughout, "
                        f"{v['traces_with_error']:,} with a first error, "
                        f"{v['traces_without_verdicts']:,} without verdicts")
    if v["first_error_at"]:
        t.add_row("first error at", ", ".join(f"{k}: {n:,}" for k, n in
                                              v["first_error_at"].items()))
    t.add_row("verdict count ≠ steps", f"{v['verdict_count_mismatch']:,} traces (kept, "
                                       "flagged in verdict_count_mismatch)")
    t.add_row("generated", f"{v['generated_tokens']:,} tokens, {v['generated_per_trace']} "
                           "per trace")
    return t


def _too_long(r: dict) -> Table:
    tl = r["too_long"]
    t = Table(title="too long", title_justify="left", show_header=False)
    t.add_column(style="bold")
    t.add_column(justify="right")
    t.add_row("flagged by the scorer (longer than its context)", _n(tl["flagged_by_scorer"]))
    t.add_row("dropped by the scorer (too_long)", _n(tl["dropped_by_scorer"]))
    t.add_row("dropped by filter --max-tokens", _n(tl["dropped_max_tokens"]))
    return t


def _n(v) -> str:
    return f"{v:,}" if isinstance(v, int) else "–"
