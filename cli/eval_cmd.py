"""`curate eval`: measure a scorer on traces whose quality is known."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import Json, Quiet, Verbose
from .output import RichReporter, Ui, handled, progress_bar, summary_table

SHORT = "Measure a scorer on labelled traces (AUROC, top-1 per question, ProcessBench F1)."
HELP = """Measure how well a scorer ranks traces whose quality is known, before trusting it for selection.

INPUT is a scored folder (from `curate score`) or any input `curate read` accepts, which is then scored in memory: by the offline signals scorer, or by --model.

[bold]Trace level[/bold]: AUROC (with a bootstrap 95% interval) and average precision of score, and of every signal column, against the label; per question with several samples, how often the top-scored sample is correct, against random choice, the longest, the shortest and any --baseline-column.

[bold]Step level[/bold] (when step labels exist): the ProcessBench protocol on the source's own steps: the predicted first error is the first step whose reward is below a threshold; F1 of the accuracies on erroneous and on correct samples. The threshold is chosen on one half of the rows (by a hash of the id) and reported on the other half, unless --threshold fixes it. The first wrong step comes from --first-error-column (a 0-based step index; -1 or null: no error, as in ProcessBench's raw `label`), else from the first 0 in the step labels; a value outside the row's steps leaves the row out, with a note.

A figure that cannot be computed (one class, no step labels, no question with several samples …) is shown as — with a note saying why (`notes` in --json). --sample N --seed S evaluates a seeded random N rows, the same whatever the input order; --limit N the first N.

[bold]Examples[/bold]

  curate eval ../shared/data/real/gsm8k_model_solutions.parquet
  curate eval qwen25math_rm_maj.parquet --baseline-column extra_json.rm_score
  curate eval processbench.parquet --model ./my-prm --json
  curate eval processbench.parquet --model launch/ThinkPRM-1.5B --scorer thinkprm --score-option verify-max-tokens=4096
  curate eval processbench_gsm8k.json --first-error-column label --sample 200 --seed 1"""  # noqa: E501


def eval_(
    inputs: Annotated[list[str], typer.Argument(
        help="A scored folder, or labelled traces in any form `curate read` accepts.",
        show_default=False, metavar="SCORED_OR_INPUT")],
    label_column: Annotated[str, typer.Option(
        help="Trace label: boolean or 0/1, 1 = correct. Where it is absent or null and step "
             "labels exist, a trace with no marked error counts as correct.")] = "is_correct",
    step_labels_column: Annotated[str, typer.Option(
        help="Per-step labels (list of 1 good / 0 bad / -1 unknown), aligned with the "
             "source's own steps.")] = "step_labels",
    first_error_column: Annotated[str, typer.Option(
        help="Index of the first wrong step, 0-based (-1 or null: none, e.g. ProcessBench's "
             "raw `label`); else the first 0 in the step labels.")] = "first_error_step",
    question_key: Annotated[str | None, typer.Option(
        help="Column that identifies a question for top-1 (default: a hash of the "
             "normalised question text).", show_default=False)] = None,
    baseline_column: Annotated[list[str] | None, typer.Option(
        help="An existing score to compare with (repeatable); COL.FIELD reads a field of a "
             "JSON string column, e.g. extra_json.rm_score.", show_default=False)] = None,
    threshold: Annotated[float | None, typer.Option(
        help="Fixed step-reward threshold for the ProcessBench protocol (default: chosen on "
             "a calibration half).", show_default=False)] = None,
    model: Annotated[str | None, typer.Option(
        help="Score unscored INPUT with this reward model (default: the signals scorer).",
        show_default=False)] = None,
    scorer: Annotated[str, typer.Option(
        help="Scorer for --model, as for curate score: auto, step-prm, seq-prm, thinkprm "
             "(a generative verifier: its ProcessBench F1 comes from the first step its "
             "critique judges incorrect, no threshold).")] = "auto",
    score_option: Annotated[list[str] | None, typer.Option(
        help="Any other `curate score` option for in-memory scoring, KEY=VALUE (repeatable), "
             "e.g. verify-max-tokens=1024.", show_default=False)] = None,
    encoder: Annotated[str, typer.Option(
        help="Sentence encoder of the signals scorer (see `curate score --help`).")
                       ] = "minilm-static",
    device: Annotated[str, typer.Option(help="Device for --model: auto, cpu, cuda …")] = "auto",
    engine: Annotated[str, typer.Option(help="Engine for --model: auto, hf (transformers) or "
                                             "vllm, as for curate score.")] = "auto",
    limit: Annotated[int | None, typer.Option(help="Evaluate only the first N rows.",
                                              show_default=False)] = None,
    sample: Annotated[int | None, typer.Option(
        help="Evaluate a uniform random sample of N rows, chosen by a seeded hash of the id "
             "(the same rows whatever the input order; not with --limit).",
        show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="Seed for --sample.")] = 0,
    quiet: Quiet = False,
    verbose: Verbose = False,
    json_out: Json = False,
):
    ui = Ui(quiet=quiet, verbose=verbose, json=json_out)
    with handled(ui):
        from curate.evaluation.stage import EvalOptions, eval_stage
        from curate.scoring.stage import ScoreOptions

        score_opts = ScoreOptions.build(
            {"model": model, "encoder": encoder, "device": device, "engine": engine,
             "scorer": scorer, **parse_score_options(score_option or [])})
        opts = EvalOptions(label_column=label_column, step_labels_column=step_labels_column,
                           first_error_column=first_error_column, question_key=question_key,
                           baseline_columns=list(baseline_column or []), threshold=threshold,
                           limit=limit, sample=sample, seed=seed, score_options=score_opts)
        with progress_bar(ui, "reading") as advance:
            result = eval_stage(inputs, opts, progress=advance, reporter=RichReporter(ui))
        ui.result(result, render)


def parse_score_options(items: list[str]) -> dict:
    """``KEY=VALUE`` items; VALUE read as a TOML value (`2`, `true`, `"x"`), else as text."""
    import tomllib

    from curate.errors import InputError

    out = {}
    for item in items:
        key, eq, raw = item.partition("=")
        if not eq or not key.strip():
            raise InputError(f"--score-option '{item}': expected KEY=VALUE, e.g. "
                             "verify-max-tokens=1024")
        try:
            out[key.strip()] = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = raw.strip()
    return out


def _f(v, digits: int = 3) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def render(ui: Ui, r: dict) -> None:
    from rich.table import Table

    t = summary_table(f"curate eval — {', '.join(r['input'])}")
    t.add_row("scored by", f"{r.get('scored_by')}" + (" (scored now, in memory)"
                                                      if r.get("scored_here") else ""))
    sample = r.get("sample")
    t.add_row("rows", f"{r['rows']:,} ({r['labelled_rows']:,} labelled, "
                      f"{r.get('positives', 0):,} correct)"
              + ("" if not sample else
                 f"; a random sample of {sample['of']:,} (--seed {sample['seed']})"
                 if sample["rows"] < sample["of"] else
                 f"; --sample {sample['requested']:,} covers every row"))
    ci = r.get("auroc_ci95")
    t.add_row("AUROC", _f(r["auroc"]) + (f"  (95% CI {ci[0]:.3f}–{ci[1]:.3f})" if ci else ""))
    t.add_row("average precision", _f(r["average_precision"]))
    t.add_row("top-1 per question", f"{_f(r['top1_accuracy'])} over {r['questions']:,} "
                                    f"questions (oracle {_f(r.get('oracle_top1'))})"
              if r.get("questions") else _f(r["top1_accuracy"]))
    s = r.get("step_level")
    if r.get("processbench_f1") is not None and s.get("predictions"):
        t.add_row("ProcessBench F1", f"{_f(r['processbench_f1'])} (the verifier's verdicts, "
                                     f"{s['rows']} rows)")
    elif r.get("processbench_f1") is not None:
        t.add_row("ProcessBench F1", f"{_f(r['processbench_f1'])} (threshold "
                                     f"{s.get('threshold')}, {s.get('test_rows', s['rows'])} "
                                     "rows)")
    else:
        t.add_row("ProcessBench F1", _f(None))
    # Every figure shown as — has a note that names it and says why.
    for note in r.get("notes", []):
        t.add_row("note", note)
    ui.out.print(t)
    if r.get("baselines"):
        b = Table(title="trace ranking: score vs baselines and signals", title_justify="left")
        for c in ("", "AUROC", "avg precision", "top-1"):
            b.add_column(c, justify="right" if c else "left")
        b.add_row("[bold]score[/bold]", _f(r["auroc"]), _f(r["average_precision"]),
                  _f(r["top1_accuracy"]))
        # — is a figure that is null (a note says why); blank is one not reported for that row.
        for kind, rows in (("baseline", r["baselines"]), ("signal", r.get("signals", {}))):
            for name, v in rows.items():
                b.add_row(f"{kind}: {name}", *(_f(v[k]) if k in v else "" for k in (
                    "auroc", "average_precision", "top1_accuracy")))
        ui.out.print(b)
    s = r.get("step_level")
    if s:
        st = summary_table("step level (ProcessBench protocol)")
        st.add_row("steps", s["split_rule"])
        st.add_row("rows", f"{s['rows']:,} used; {s['length_mismatch']:,} with a label count "
                           f"≠ step count; {s['unlabelled']:,} unlabelled"
                   + "".join(f"; {s[k]:,} {what}" for k, what in (
                       ("out_of_range", "with a first error outside the steps"),
                       ("unscored", "without verdicts" if s.get("predictions")
                        else "without step rewards")) if s.get(k)))
        if s.get("first_error_source"):
            st.add_row("first error from", s["first_error_source"])
        if s.get("predictions"):
            st.add_row("prediction", s["predictions"])
        if s.get("threshold") is not None:
            st.add_row("threshold", f"{s['threshold']} (chosen on {s.get('calibration_rows')} "
                                    "calibration rows)" if s.get("calibration_rows") else
                       f"{s['threshold']} (fixed)")
        st.add_row("accuracy, erroneous", _f(s.get("acc_error")))
        st.add_row("accuracy, correct", _f(s.get("acc_correct")))
        st.add_row("F1", _f(s.get("f1")))
        ui.out.print(st)
    h = r.get("histogram")
    if h and h.get("edges"):
        ui.out.print(histogram_text(h))


def histogram_text(h: dict, width: int = 30) -> str:
    """Score histogram, correct vs wrong side by side, one line per bin."""
    edges, good, bad = h["edges"], h["correct"], h["wrong"]
    top = max(max(good, default=0), max(bad, default=0), 1)
    lines = [f"score histogram{'':12}[green]correct[/green]{'':{width - 1}}[red]wrong[/red]"]
    for i in range(len(good)):
        g = "█" * round(width * good[i] / top)
        w = "█" * round(width * bad[i] / top)
        lines.append(f"{edges[i]:8.3f} – {edges[i + 1]:<8.3f} [green]{g:<{width}}[/green] "
                     f"{good[i]:>6}  [red]{w:<{width}}[/red] {bad[i]:>6}")
    return "\n".join(lines)
