"""`curate decontam`: drop traces that overlap a benchmark."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import Json, Overwrite, Quiet, Verbose
from .output import Ui, command_line, handled, input_rows, preflight, progress_bar, summary_table

SHORT = "Drop traces that overlap a benchmark (n-gram and exact match)."
HELP = """Drop every trace whose question overlaps a benchmark: it shares a 13-word n-gram with a benchmark item (after case, Unicode and whitespace normalisation, punctuation stripped from word edges), contains the whole of a benchmark item shorter than 13 words, or equals one exactly. Kept rows go to OUT unchanged; contaminated rows go to dropped/ with drop_reason contaminated, contaminated_by (BENCHMARK:ITEM_ID), overlap_ngram and overlap_count.

--against takes a bundled benchmark, usable offline: [bold]math500[/bold], [bold]gsm8k[/bold] (test), [bold]aime24[/bold], [bold]aime25[/bold]; or any file, folder or dataset `curate read` accepts, of which only a text column is read (--bench-column; default question, else problem).

[bold]Examples[/bold]

  curate decontam out/scored -o out/clean --against math500,gsm8k,aime24,aime25
  curate decontam out/scored -o out/clean --against ../shared/data/real/ref_math500.parquet
  curate decontam out/scored -o out/clean --against my_eval.jsonl --bench-column prompt
  curate decontam out/scored -o out/clean --against math500 --on all --min-overlap 3

--on question (the default, as s1 did) checks the question only; trace checks thinking and response; all checks the three."""  # noqa: E501


def decontam(
    inputs: Annotated[list[str], typer.Argument(
        help="Traces: anything `curate read` accepts, or another stage's output folder.",
        show_default=False, metavar="INPUT")],
    output: Annotated[str, typer.Option("--output", "-o", help="Output folder.",
                                        show_default=False)],
    against: Annotated[list[str] | None, typer.Option(
        help="Benchmark to decontaminate against (repeatable, or comma-separated): math500, "
             "gsm8k, aime24, aime25 (bundled), or a file/folder of questions.",
        show_default=False)] = None,
    bench_column: Annotated[str | None, typer.Option(
        help="Text column of benchmark files (default: question, else problem).",
        show_default=False)] = None,
    ngram: Annotated[int, typer.Option(help="Words per n-gram.")] = 13,
    on: Annotated[str, typer.Option(
        help="What to check: question, trace (thinking + response) or all.")] = "question",
    min_overlap: Annotated[int, typer.Option(
        help="Distinct n-grams a row must share with one benchmark to be contaminated "
             "(a whole benchmark item or an exact question match always is).")] = 1,
    batch_rows: Annotated[int, typer.Option(help="Rows per batch (bounds memory).")] = 2048,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
    json_out: Json = False,
):
    ui = Ui(quiet=quiet, verbose=verbose, json=json_out)
    with handled(ui):
        from curate.select.decontam import DecontamOptions, decontam_stage

        opts = DecontamOptions(against=against or [], ngram=ngram, on=on,
                               min_overlap=min_overlap, bench_column=bench_column,
                               batch_rows=batch_rows)
        if preflight():
            return
        command = command_line("decontam")
        with progress_bar(ui, "decontaminating", input_rows(ui, inputs)) as advance:
            summary = decontam_stage(inputs, output, opts, overwrite=overwrite,
                                     progress=advance, command=command)
        ui.result(summary, _render)


def _render(ui: Ui, s: dict) -> None:
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
