"""`curate export`: ranked SFT shards (messages / ShareGPT / prompt-completion) and a card."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from rich.markup import escape

from .common import Json, Overwrite, Quiet, Verbose
from .output import Ui, command_line, handled, input_rows, preflight, progress_bar, summary_table

SHORT = "Write ranked SFT shards (messages / ShareGPT / prompt-completion) and a card."
HELP = """Write the kept traces as SFT records, ranked best first, into hub-style shards a trainer reads with no glue: OUT/data/train-00000-of-0000N.parquet (+ test-* with --split-test), OUT/README.md (a dataset card whose YAML header `datasets` understands: configs, features) and OUT/manifest.json. Both load_dataset("parquet", data_dir=OUT) and load_dataset(OUT) read it.

Every row of INPUT is exported (select with filter / dedup / decontam first), except rows whose text already holds the chosen think markers: they are left out and listed in manifest.json (reason contains_think_marker).

Ranking: score descending, null scores last, ties by id ascending (or --order-by COL); a `rank` column (1-based, over all splits) and the score columns are kept as metadata unless --strip-meta.

[bold]Examples[/bold]

  curate export out/kept -o out/sft                                   # TRL messages, <think> blocks
  curate export out/kept -o out/sft --format sharegpt --think-style openthoughts
  curate export out/kept -o out/sft --format prompt-completion --system "Reason step by step."
  curate export out/kept -o out/sft --shards 8 --split-test 0.02
  curate export out/kept -o out/sft --tokenizer Qwen/Qwen2.5-1.5B-Instruct --max-seq-len 16384
  curate export out/kept -o - | my_sft_job                             # JSON Lines on stdout

Think styles: r1 = <think>\\n…\\n</think>\\n\\n answer; openthoughts = <|begin_of_thought|> … <|end_of_solution|>; s1 = <|im_start|>think\\n…\\n<|im_start|>answer\\n answer; none = the answer alone."""  # noqa: E501


def export(
    inputs: Annotated[list[str], typer.Argument(
        help="The selected traces (a curate stage folder), or anything `curate read` accepts.",
        show_default=False, metavar="INPUT")],
    output: Annotated[str, typer.Option(
        "--output", "-o", help="Output folder, or - for JSON Lines on stdout.",
        show_default=False)],
    format_: Annotated[str, typer.Option(
        "--format", help="Record format: messages (TRL conversational), sharegpt "
                         "(LLaMA-Factory), prompt-completion (TRL, conversational).")
    ] = "messages",
    think_style: Annotated[str, typer.Option(
        help="Markers around the thinking: r1, openthoughts, s1, none (thinking dropped).")
    ] = "r1",
    system: Annotated[str | None, typer.Option(
        help="A system prompt added to every record.", show_default=False)] = None,
    order_by: Annotated[str | None, typer.Option(
        help="Rank by this column instead of score (descending; nulls last; ties by id).",
        show_default=False)] = None,
    ascending: Annotated[bool, typer.Option(
        "--ascending", help="Rank the --order-by / score column ascending.")] = False,
    strip_meta: Annotated[bool, typer.Option(
        "--strip-meta", help="Keep only the record, id and rank (drop score and other "
                             "metadata columns).")] = False,
    shards: Annotated[int | None, typer.Option(
        help="Number of train shards (equal row counts).", show_default=False)] = None,
    shard_size: Annotated[str | None, typer.Option(
        help="Shard size by uncompressed text, e.g. 500MB (the default, like push_to_hub).",
        show_default=False)] = None,
    split_test: Annotated[float, typer.Option(
        help="Share of rows (0 <= F < 1) for a test split, chosen by a hash of --split-key.")
    ] = 0.0,
    split_key: Annotated[str, typer.Option(
        help="What the test split hashes: question (samples of one problem stay together) "
             "or id.")] = "question",
    tokenizer: Annotated[str | None, typer.Option(
        help="The student's tokenizer: count tokens under its chat template and report the "
             "examples longer than --max-seq-len.", show_default=False)] = None,
    max_seq_len: Annotated[int | None, typer.Option(
        help="Token limit for the --tokenizer check (default: TRL's max_length, 1024).",
        show_default=False)] = None,
    buffer: Annotated[str, typer.Option(
        help="Rows held in memory while ranking; past it they are spilled to disk.")
    ] = "1GiB",
    overwrite: Overwrite = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
    json_out: Json = False,
):
    ui = Ui(quiet=quiet, verbose=verbose, json=json_out)
    with handled(ui):
        from curate.errors import InputError
        from curate.export.stage import ExportOptions, export_stage
        from curate.io.writer import parse_size

        to_stdout = output == "-"
        if to_stdout and json_out:
            raise InputError("--json with -o -: stdout carries the JSON Lines records; the "
                             "summary goes to stderr")
        opts = ExportOptions(
            format=format_, think_style=think_style, system=system, order_by=order_by,
            ascending=ascending, strip_meta=strip_meta, shards=shards,
            shard_size=parse_size(shard_size) if shard_size is not None else None,
            split_test=split_test, split_key=split_key, tokenizer=tokenizer,
            max_seq_len=max_seq_len, buffer_bytes=parse_size(buffer, "--buffer"))
        if preflight():
            return
        command = command_line("export")
        total = input_rows(ui, inputs, 2)  # the read pass, then the rank-ordered write
        with progress_bar(ui, "exporting", total) as advance:
            try:
                summary = export_stage(inputs, output, opts, overwrite=overwrite,
                                       progress=advance, command=command,
                                       stream=sys.stdout.buffer if to_stdout else None)
            except BrokenPipeError:
                # The reader of `-o -` stopped early (`| head`): not an error of ours. Point
                # stdout at /dev/null so that the interpreter's final flush stays quiet.
                try:
                    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                except (OSError, ValueError, AttributeError):
                    pass
                raise typer.Exit(141) from None
        ui.result(summary, lambda ui, s: _render(ui, s, to_stdout))
        if not quiet:
            for note in summary["notes"]:
                style = "bold red" if note.startswith("WARNING") else "yellow"
                if json_out and style == "yellow":
                    continue  # in the JSON already; only the loud ones repeat on stderr
                ui.err.print(f"[{style}]{escape(note)}[/{style}]", markup=True,
                             highlight=False)


def _render(ui: Ui, s: dict, to_stdout: bool) -> None:
    target = "stdout (JSON Lines)" if to_stdout else s["output"]
    t = summary_table(f"curate export → {target}")
    t.add_row("rows in", f"{s['rows_in']:,}")
    t.add_row("exported", f"{s['rows_out']:,}")
    for reason, n in s["dropped"].items():
        t.add_row(f"left out: {reason}", f"{n:,}")
    if not to_stdout:
        t.add_row("splits", ", ".join(f"{k} {v:,} rows in {s['shards'].get(k, 0)} shard(s)"
                                      for k, v in s["splits"].items()))
    t.add_row("format", f"{s['format']}, think style {s['think_style']}")
    t.add_row("ranking", s["ranking"])
    if s.get("score"):
        sc = s["score"]
        t.add_row("score", f"min {sc['min']:.4f}, median {sc['median']:.4f}, max {sc['max']:.4f}")
    if s.get("tokens"):
        tk = s["tokens"]
        t.add_row("tokens", f"median {tk['median']:,}, p90 {tk['p90']:,}, max {tk['max']:,}; "
                            f"{tk['over']:,} over {tk['max_seq_len']:,}")
    t.add_row("time", f"{s['seconds']:.2f} s ({s['rows_per_s']:,} rows/s, "
                      f"{s['text_mb_per_s']} MB/s of text)" if s["rows_per_s"]
              else f"{s['seconds']:.2f} s")
    console = ui.err if to_stdout else ui.out  # stdout holds only records with -o -
    console.print(t)
