"""Write a collected report as one self-contained HTML page.

Everything is inline (CSS, histograms as SVG drawn here), with no external URL, so the file can
be mailed or attached to a ticket and opens offline. All text from the data is HTML-escaped.
"""

from __future__ import annotations

import html
from pathlib import Path

from ..errors import InputError
from .terminal import SPLIT_NOTE, reward_style, split_rows

_COLOURS = {"green": "#1a7f37", "yellow": "#b08800", "red": "#cf222e", "dim": "#888"}
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1100px;
color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:.25em .7em;border-bottom:1px solid
#eee;text-align:left;vertical-align:top}th{background:#f6f8fa}td.n{text-align:right;
font-variant-numeric:tabular-nums}tr.reason td{color:#666;font-size:.92em}.drop{color:#cf222e}
.warn{color:#9a6700}.dim{color:#888}.hists{display:flex;flex-wrap:wrap;gap:1.5em}
figure{margin:0}figcaption{font-size:.9em;color:#444}code{font-size:.9em}
"""


def write_html(report: dict, path: str | Path) -> Path:
    """Write the page; InputError when PATH cannot be written (a one-line user error)."""
    out = Path(path)
    try:
        out.write_text(render_html(report), encoding="utf-8")
    except OSError as e:
        raise InputError(f"--html '{path}': cannot write it ({e.strerror or e})") from None
    return out


def render_html(r: dict) -> str:
    e = html.escape
    body = [f"<h1>curate report — <code>{e(r['dir'])}</code></h1>", _funnel(r), _timings(r)]
    score = r.get("score")
    if score and score["counts"]:
        body += [_histograms(score), _examples(score)]
    elif score is None:
        body.append('<p class="dim">No score column in this run\'s data: run '
                    "<code>curate score</code> for the score distribution and examples.</p>")
    if r.get("verification"):
        body.append(_verification(r["verification"]))
    body.append(_too_long(r))
    v = (r.get("run") or {}).get("validate")
    if v:
        body.append(_validate(v))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>curate report — {e(r['dir'])}</title><style>{_CSS}</style></head>"
            "<body>\n" + "\n".join(body) + "\n</body></html>\n")


def _validate(v: dict) -> str:
    from .terminal import train_line

    e = html.escape
    verdict = "ok" if v["ok"] else "<span class=drop>FAILED</span>"
    faults = ", ".join(f"{k}: {n:,}" for k, n in v["faults"].items()) or "none"
    rows = [("verdict", verdict), ("student", f"<code>{e(str(v['student']))}</code>"),
            ("format checks", e(f"{_n(v['rows'])} rows, faults: {faults}"))]
    rows += [(f"SFT {e(name)}", e(train_line(t))) for name, t in v["train"].items()]
    d = v.get("selected_minus_random")
    if d is not None:
        rows.append(("selected − random", e(f"{d:+.4f} held-out loss ("
                                            f"{'selected better' if d < 0 else 'random better'})")))
    return ("<h2>Quick SFT (curate validate)</h2><table>"
            + "".join(f"<tr><td><b>{k}</b></td><td>{val}</td></tr>" for k, val in rows)
            + "</table>")


def _n(v) -> str:
    return f"{v:,}" if isinstance(v, int) else "–"


def _funnel(r: dict) -> str:
    e = html.escape
    rows = []
    for s in r["stages"]:
        dropped = sum(s["dropped"].values())
        kept = f"{s['rows_out'] / s['rows_in']:.1%}" if s["rows_in"] else "–"
        rows.append(f"<tr><td><b>{e(s['stage'])}</b></td><td><code>{e(s['folder'])}</code></td>"
                    f"<td class=n>{_n(s['rows_in'])}</td>"
                    f"<td class=\"n{' drop' if dropped else ''}\">{dropped:,}</td>"
                    f"<td class=n>{_n(s['rows_out'])}</td><td class=n>{kept}</td></tr>")
        for reason, n in s["dropped"].items():
            rows.append(f"<tr class=reason><td></td><td>└ {e(reason)}</td><td></td>"
                        f"<td class=\"n drop\">{n:,}</td><td></td><td></td></tr>")
        if extra := split_rows(s):
            rows.append(f"<tr class=reason><td></td><td>└ {SPLIT_NOTE}</td><td></td><td></td>"
                        f"<td class=n>+{extra:,}</td><td></td></tr>")
    f = r["funnel"]
    share = f"{f['kept_share']:.1%}" if f["kept_share"] is not None else "–"
    rows.append(f"<tr><th>total</th><th></th><th class=n>{_n(f['rows_in'])}</th><th></th>"
                f"<th class=n>{_n(f['rows_out'])}</th><th class=n>{share}</th></tr>")
    warn = "".join(
        f"<p class=warn>{e(b['before'])} reads {_n(b['rows_in'])} rows but {e(b['after'])} "
        f"wrote {_n(b['rows_out'])}: these folders are not one chain.</p>" for b in f["breaks"])
    return ("<h2>Funnel</h2><table><tr><th>stage</th><th>folder</th><th>rows in</th>"
            "<th>dropped</th><th>rows out</th><th>kept</th></tr>" + "".join(rows)
            + "</table>" + warn)


def _timings(r: dict) -> str:
    e = html.escape
    rows = []
    for s in r["stages"]:
        detail = ", ".join(f"{k} {v}" for k, v in s["timings"].items()
                           if isinstance(v, (int, float)))
        secs = f"{s['seconds']:.2f}" if s["seconds"] is not None else "–"
        rate = f"{s['rows_per_s']:,.1f}" if s["rows_per_s"] else "–"
        rows.append(f"<tr><td><b>{e(s['stage'])}</b></td><td class=n>{secs}</td>"
                    f"<td class=n>{rate}</td><td class=dim>{e(detail)}</td></tr>")
    total = sum(s["seconds"] or 0.0 for s in r["stages"])
    rows.append(f"<tr><th>total</th><th class=n>{total:.2f}</th><th></th><th></th></tr>")
    return ("<h2>Timings and throughput</h2><table><tr><th>stage</th><th>seconds</th>"
            "<th>rows/s</th><th>detail</th></tr>" + "".join(rows) + "</table>")


def svg_histogram(edges: list, counts: list[int], width: int = 480, height: int = 160) -> str:
    """Vertical bars with the bin range on the x axis and the peak count on the y axis."""
    pad_l, pad_b, pad_t = 36, 22, 8
    plot_w, plot_h = width - pad_l - 6, height - pad_b - pad_t
    peak = max(counts) if counts else 0
    bw = plot_w / max(1, len(counts))
    bars = []
    for i, c in enumerate(counts):
        h = (c / peak * plot_h) if peak else 0
        x, y = pad_l + i * bw, pad_t + plot_h - h
        bars.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(bw - 1, 1):.1f}" '
                    f'height="{h:.1f}" fill="#8250df"><title>{edges[i]:.4g}–{edges[i + 1]:.4g}: '
                    f"{c:,}</title></rect>")
    axis_y = pad_t + plot_h
    return (f'<svg width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img">'
            f'<line x1="{pad_l}" y1="{axis_y}" x2="{width - 6}" y2="{axis_y}" stroke="#999"/>'
            + "".join(bars)
            + f'<text x="{pad_l - 4}" y="{pad_t + 9}" font-size="10" text-anchor="end">'
            f"{peak:,}</text>"
            f'<text x="{pad_l - 4}" y="{axis_y}" font-size="10" text-anchor="end">0</text>'
            f'<text x="{pad_l}" y="{height - 6}" font-size="10">{edges[0]:.4g}</text>'
            f'<text x="{width - 6}" y="{height - 6}" font-size="10" text-anchor="end">'
            f"{edges[-1]:.4g}</text></svg>")


def _histograms(score: dict) -> str:
    e = html.escape
    figs = [f"<figure>{svg_histogram(score['edges'], score['counts'])}<figcaption>all rows: "
            f"n={score['n']:,}, nulls {score['nulls']:,}, mean {score['mean']}, median "
            f"{score['median']}</figcaption></figure>"]
    for src, s in score["per_source"].items():
        figs.append(f"<figure>{svg_histogram(score['edges'], s['counts'], 320, 130)}"
                    f"<figcaption>{e(src)}: n={s['n']:,}, mean {s['mean']}</figcaption></figure>")
    more = (f"<p class=dim>Top {len(score['per_source'])} of {score['sources_total']} sources "
            "shown.</p>" if score["sources_total"] > len(score["per_source"]) else "")
    return (f"<h2>Score distribution</h2><p class=dim>From <code>{e(score['folder'])}</code>; "
            "every histogram uses the same bins.</p><div class=hists>" + "".join(figs)
            + "</div>" + more)


def _examples(score: dict) -> str:
    e = html.escape
    rows = []
    for label, exs in (("top", score["top"]), ("bottom", score["bottom"])):
        for i, ex in enumerate(exs):
            steps = " ".join(
                f'<span style="color:{_COLOURS[reward_style(v)]}">'
                f"{f'{v:.2f}' if v is not None else '–'}</span>" for v in ex["step_rewards"]
            ) or '<span class=dim>–</span>'
            rows.append(f"<tr><td><b>{label if i == 0 else ''}</b></td>"
                        f"<td><code>{e(str(ex['id']))}</code></td>"
                        f"<td class=n>{ex['score']:.4f}</td><td>{e(ex['question'])}</td>"
                        f"<td>{steps}</td></tr>")
    return ("<h2>Top and bottom examples</h2><p class=dim>By score, ties by id; step rewards "
            "green ≥ 0.7, yellow ≥ 0.4, red below.</p><table><tr><th></th><th>id</th>"
            "<th>score</th><th>question</th><th>step rewards</th></tr>" + "".join(rows)
            + "</table>")


def _verification(v: dict) -> str:
    e = html.escape
    rows = [("step verdicts", f"{v['steps_correct']:,} correct, {v['steps_incorrect']:,} "
                              "incorrect"),
            ("traces", f"{v['traces_all_correct']:,} judged correct throughout, "
                       f"{v['traces_with_error']:,} with a first error, "
                       f"{v['traces_without_verdicts']:,} without verdicts"),
            ("first error at", ", ".join(f"{k}: {n:,}" for k, n in
                                         v["first_error_at"].items()) or "–"),
            ("verdict count ≠ steps", f"{v['verdict_count_mismatch']:,} traces"),
            ("generated", f"{v['generated_tokens']:,} tokens, {v['generated_per_trace']} per "
                          "trace")]
    return ("<h2>Verification (generative verifier)</h2><table>"
            + "".join(f"<tr><td>{e(k)}</td><td>{e(str(x))}</td></tr>" for k, x in rows)
            + "</table>")


def _too_long(r: dict) -> str:
    tl = r["too_long"]
    return ("<h2>Too long</h2><table>"
            f"<tr><td>flagged by the scorer (longer than its context)</td>"
            f"<td class=n>{_n(tl['flagged_by_scorer'])}</td></tr>"
            f"<tr><td>dropped by the scorer (too_long)</td>"
            f"<td class=n>{_n(tl['dropped_by_scorer'])}</td></tr>"
            f"<tr><td>dropped by filter --max-tokens</td>"
            f"<td class=n>{_n(tl['dropped_max_tokens'])}</td></tr></table>")
