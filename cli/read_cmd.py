"""`curate read`: ingest traces into a canonical dataset folder."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import Json, Quiet, Verbose
from .output import Ui, command_line, handled, preflight, progress_bar, summary_table

SHORT = "Read traces from any supported input into a canonical dataset folder."
HELP = """Read traces from Parquet, JSON/JSONL, a saved `datasets` folder or a hub dataset id, map them to the canonical columns and write a dataset folder (part-*.parquet, dropped/, manifest.json) that every later stage reads.

[bold]Examples[/bold]

  curate read sample_data/ -o out/read
  curate read 'traces/*.parquet' -o out/read --preset s1k-1.1
  curate read gen.jsonl -o out/read --map question=prompt --map response=completion
  curate read marco.json -o out/read --preset tags --think-tags '<Thought>,</Thought>,<Output>,</Output>'

Rows with an empty question or response, or an unclosed thinking marker, go to dropped/ with a reason; a broken file, column or option stops the run (exit 2) and writes nothing."""  # noqa: E501


def read(
    inputs: Annotated[list[str], typer.Argument(
        help="Files, folders, globs, saved datasets folders or hub dataset ids.",
        show_default=False, metavar="INPUT")],
    output: Annotated[str, typer.Option("--output", "-o", help="Output folder.",
                                        show_default=False)],
    preset: Annotated[str, typer.Option(
        help="Input shape: auto, canonical, s1k, s1k-1.1, openthoughts, r1, tags, steps. "
             "auto detects it per file and says which it used.")] = "auto",
    map_: Annotated[list[str] | None, typer.Option(
        "--map", help="Rename an input column to a canonical one: CANONICAL=COLUMN "
                      "(repeatable), e.g. --map trajectory=thinking_trajectories.",
        show_default=False)] = None,
    think_tags: Annotated[str | None, typer.Option(
        help="Thinking markers OPEN,CLOSE[,ANSWER_OPEN,ANSWER_CLOSE] for the tags/r1 presets, "
             "e.g. '<Thought>,</Thought>,<Output>,</Output>'.", show_default=False)] = None,
    split: Annotated[str, typer.Option(help="Split of a hub dataset or saved DatasetDict.")
                     ] = "train",
    limit: Annotated[int | None, typer.Option(help="Read only the first N input rows.",
                                              show_default=False)] = None,
    sample: Annotated[int | None, typer.Option(
        help="Read a uniform random sample of N input rows (see --seed).",
        show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="Seed for --sample.")] = 0,
    dedupe_ids: Annotated[bool, typer.Option(
        "--dedupe-ids", help="Keep the first row of each repeated id and drop the rest "
                             "(default: a repeated id is an error).")] = False,
    keep_dropped_rows: Annotated[bool, typer.Option(
        "--keep-dropped-rows", help="Copy whole input rows into dropped/, not only the id, "
                                    "reason and deciding value.")] = False,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace an existing output folder that curate did not write, "
                            "or the output of another stage.")] = False,
    shard_size: Annotated[str, typer.Option(help="Size cap of each part file.")] = "256MB",
    batch_rows: Annotated[int, typer.Option(help="Rows per record batch (bounds memory).")
                          ] = 2048,
    quiet: Quiet = False,
    verbose: Verbose = False,
    json_out: Json = False,
):
    ui = Ui(quiet=quiet, verbose=verbose, json=json_out)
    with handled(ui):
        from curate.ingest import ReadOptions, read_stage
        from curate.io.presets import Tags, parse_map
        from curate.io.sources import resolve_inputs
        from curate.io.writer import parse_size

        opts = ReadOptions(
            preset=preset, maps=parse_map(map_),
            think_tags=Tags.parse(think_tags) if think_tags else None, split=split,
            limit=limit, sample=sample, seed=seed, dedupe_ids=dedupe_ids,
            keep_dropped_rows=keep_dropped_rows, batch_rows=batch_rows)
        shard_bytes = parse_size(shard_size)
        if preflight():
            return
        sources = resolve_inputs(inputs, split=split)
        command = command_line("read")
        total = _known_rows(sources, limit or sample)
        with progress_bar(ui, "reading", total) as advance:
            summary = read_stage(inputs, output, opts, overwrite=overwrite,
                                 shard_bytes=shard_bytes, progress=advance, command=command,
                                 sources=sources)
        ui.result(summary, _render)


def _known_rows(sources, cap: int | None) -> int | None:
    """Input rows when every source knows its count cheaply (Parquet metadata), else None."""
    total = 0
    for s in sources:
        n = s.total_rows()
        if n is None:
            return None
        total += n
    return min(total, cap) if cap is not None else total


def _render(ui: Ui, s: dict) -> None:
    for path, preset in s["presets"].items():
        ui.note(f"[cyan]{path}[/cyan]: preset [bold]{preset}[/bold]")
    t = summary_table(f"curate read → {s['output']}")
    t.add_row("input rows read", f"{s['rows_in']:,}")
    t.add_row("traces written", f"{s['rows_out']:,}")
    dropped = s["dropped"]
    t.add_row("rows dropped", ", ".join(f"{k}: {v:,}" for k, v in sorted(dropped.items()))
              if dropped else "0")
    t.add_row("with thinking", f"{s['rows_with_thinking']:,}")
    t.add_row("with the source's own steps", f"{s['rows_with_source_steps']:,}")
    st = s["steps_per_trace"]
    t.add_row("steps per trace", f"median {st['median']}, p90 {st['p90']}, max {st['max']}")
    t.add_row("time", f"{s['seconds']:.2f} s ({s['rows_per_s']:,} rows/s, "
                      f"{s['input_mb_per_s']} MB/s)")
    ui.out.print(t)
