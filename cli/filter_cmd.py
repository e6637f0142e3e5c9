"""`curate filter`: keep the traces that pass the checks and the best-ranked selections."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import Json, Overwrite, Quiet, Verbose
from .output import Ui, command_line, handled, input_rows, preflight, progress_bar, summary_table

SHORT = "Keep the best traces: min score, global top-K, best K per question, SQL filters."
HELP = """Keep the traces that pass per-row checks, then the best-ranked ones, and write a dataset folder (part-*.parquet, dropped/ with the reason and deciding value of every removed row, manifest.json).

Filters apply in this order, each to the rows the earlier ones kept (the funnel in the summary shows it): --where → --min-tokens/--max-tokens → --require-answer → --answer-correct → --max-repetition → --min-score → --per-question → --top-k/--top-frac.

Ranking (for --per-question, --top-k, --top-frac): score descending, null scores last, ties by id ascending, so the result never depends on row order. The output keeps input order.

[bold]Examples[/bold]

  curate filter out/scored -o out/filtered --per-question 2
  curate filter out/scored -o out/filtered --top-k 1000          # the paper's selection
  curate filter out/scored -o out/filtered --answer-correct --max-repetition 0.2 --top-frac 0.5
  curate filter out/scored -o out/filtered --where "source = 'aime'" --where "length(response) < 4000"
  curate filter out/scored --min-score 0.6 --dry-run              # the funnel only; writes nothing

--where takes a SQL expression (polars SQL) over the columns; a null result drops the row."""  # noqa: E501


def filter_(
    inputs: Annotated[list[str], typer.Argument(
        help="A scored folder (from `curate score`), or anything `curate read` accepts.",
        show_default=False, metavar="INPUT")],
    output: Annotated[str | None, typer.Option(
        "--output", "-o", help="Output folder (not needed with --dry-run).",
        show_default=False)] = None,
    where: Annotated[list[str] | None, typer.Option(
        "--where", help="Keep rows where this SQL condition is true, e.g. \"source = 'aime' "
                        "AND length_tokens < 8000\" (repeatable; all must hold).",
        show_default=False)] = None,
    min_tokens: Annotated[int | None, typer.Option(
        help="Drop traces shorter than N tokens (length_tokens if present, else whitespace "
             "words of trajectory + response).", show_default=False)] = None,
    max_tokens: Annotated[int | None, typer.Option(
        help="Drop traces longer than N tokens (same count as --min-tokens).",
        show_default=False)] = None,
    require_answer: Annotated[bool, typer.Option(
        "--require-answer", help="Drop traces with no final answer (has_answer, else a "
                                 "non-empty answer column).")] = False,
    answer_correct: Annotated[bool, typer.Option(
        "--answer-correct", help="Keep only traces whose answer matches reference_answer "
                                 "(the answer_correct column, else checked by math-verify); "
                                 "rows without a reference are dropped.")] = False,
    max_repetition: Annotated[float | None, typer.Option(
        help="Drop traces whose repetition (share of repeated word 10-grams) is above F.",
        show_default=False)] = None,
    min_score: Annotated[float | None, typer.Option(
        help="Drop traces with score below F (null scores are dropped).",
        show_default=False)] = None,
    per_question: Annotated[int | None, typer.Option(
        help="Keep the best K samples of each question.", show_default=False)] = None,
    question_key: Annotated[str | None, typer.Option(
        help="Column that identifies a question for --per-question (default: a hash of the "
             "normalised question text).", show_default=False)] = None,
    top_k: Annotated[int | None, typer.Option(
        help="Keep the best N traces overall (after the other filters).",
        show_default=False)] = None,
    top_frac: Annotated[float | None, typer.Option(
        help="Keep the best share F (0 < F <= 1) of the rows the other filters kept "
             "(rounded down, at least 1).", show_default=False)] = None,
    allow_unscored: Annotated[bool, typer.Option(
        "--allow-unscored", help="Let --per-question/--top-k/--top-frac run on an input "
                                 "without score, ranking by id alone.")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the funnel (rows removed by each filter, in order) and "
                          "write nothing.")] = False,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
    json_out: Json = False,
):
    ui = Ui(quiet=quiet, verbose=verbose, json=json_out)
    with handled(ui):
        from curate.select.filter import FilterOptions, filter_stage

        opts = FilterOptions(
            min_score=min_score, top_k=top_k, top_frac=top_frac, per_question=per_question,
            question_key=question_key, min_tokens=min_tokens, max_tokens=max_tokens,
            require_answer=require_answer, answer_correct=answer_correct,
            max_repetition=max_repetition, where=list(where or []),
            allow_unscored=allow_unscored)
        if preflight():
            return
        command = command_line("filter")
        total = input_rows(ui, inputs, opts.passes(dry_run))
        with progress_bar(ui, "filtering", total) as advance:
            summary = filter_stage(inputs, output, opts, dry_run=dry_run, overwrite=overwrite,
                                   progress=advance, command=command)
        ui.result(summary, _render)


def _render(ui: Ui, s: dict) -> None:
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
