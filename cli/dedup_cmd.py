"""`curate dedup`: drop exact and near-duplicate traces, keeping the best-scored of each."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import Json, Overwrite, Quiet, Verbose
from .output import Ui, command_line, handled, input_rows, preflight, progress_bar, summary_table

SHORT = "Remove exact and near-duplicate traces, keeping the best-scored of each cluster."
HELP = """Remove exact duplicates (same text after Unicode NFKC, case folding and whitespace collapse; numbers untouched) and near duplicates (MinHash LSH candidates, each verified by its exact Jaccard on word or character n-gram shingles). From each cluster the best-ranked trace is kept: highest `score` first (null scores last), ties and unscored inputs by smallest `id`. Dropped rows go to dropped/ with `dup_of` (the kept row's id), `dup_cluster` and `dup_jaccard`; every near-dropped row's Jaccard with its kept row is at least --threshold.

[bold]Examples[/bold]

  curate dedup out/scored -o out/dedup                        # exact, then near at Jaccard 0.8
  curate dedup out/scored -o out/dedup --on question --mode exact   # one trace per question
  curate dedup out/scored -o out/dedup --threshold 0.7 --shingle char --ngram 5

The summary gives the LSH bands × rows chosen (a pair at Jaccard threshold + 0.05 is found with probability ≥ 0.98), candidate and verified pairs, and cluster sizes. INPUT is read twice; on large inputs normalising and hashing run in --workers processes."""  # noqa: E501


def dedup(
    inputs: Annotated[list[str], typer.Argument(
        help="Traces: anything `curate read` accepts, or another stage's output folder.",
        show_default=False, metavar="INPUT")],
    output: Annotated[str, typer.Option("--output", "-o", help="Output folder.",
                                        show_default=False)],
    on: Annotated[str, typer.Option(
        help="Text to compare: question, response, or trace (trajectory + response).")
                  ] = "trace",
    mode: Annotated[str, typer.Option(
        help="exact, near, or both (exact first, then near on what is left).")] = "both",
    shingle: Annotated[str, typer.Option(help="Near-duplicate shingles: word or char n-grams.")
                       ] = "word",
    ngram: Annotated[int, typer.Option(help="Shingle length n (words or characters).")] = 5,
    threshold: Annotated[float, typer.Option(
        help="Jaccard similarity at or above which two texts are near duplicates, in (0, 1].")
                         ] = 0.8,
    num_perm: Annotated[int, typer.Option(
        help="MinHash permutations (signature length); bands × rows are chosen from it.")
                        ] = 128,
    batch_rows: Annotated[int, typer.Option(help="Rows per record batch (bounds memory).")
                          ] = 2048,
    workers: Annotated[int, typer.Option(
        help="Processes that normalise and hash on large inputs; 0 = one per CPU, at most 8.")
                       ] = 0,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
    json_out: Json = False,
):
    ui = Ui(quiet=quiet, verbose=verbose, json=json_out)
    with handled(ui):
        from curate.io.sources import resolve_inputs
        from curate.select.dedup import DedupOptions, dedup_stage

        opts = DedupOptions(on=on, mode=mode, shingle=shingle, ngram=ngram,
                            threshold=threshold, num_perm=num_perm, batch_rows=batch_rows,
                            workers=workers)
        if preflight():
            return
        command = command_line("dedup")
        sources = resolve_inputs(inputs)
        total = input_rows(ui, inputs, 2, sources)  # sketched, then written
        with progress_bar(ui, "dedup (2 passes)", total) as advance:
            summary = dedup_stage(inputs, output, opts, overwrite=overwrite, progress=advance,
                                  command=command, sources=sources)
        ui.result(summary, _render)


def _render(ui: Ui, s: dict) -> None:
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
