"""`curate validate`: format checks and a quick SFT (selected vs random) on exported shards."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from .common import Json, Quiet, Verbose
from .output import Ui, handled, preflight, progress_bar, summary_table

EXIT_FAULTS = 3  # the run worked, but rows fail the checks or a loss was NaN

SHORT = "Check exported shards under the student's template and run a quick SFT on them."
HELP = """Prove that exported shards load, fit and train before a long job.

Format checks (every row of EXPORTED, under the --student tokenizer's chat template): the row renders; the assistant part keeps at least one token after prompt masking and --max-seq-len truncation; think markers are balanced; the token-length distribution and the rows over --max-seq-len.

Quick SFT (TRL SFTTrainer, completion-only loss, --lora for PEFT LoRA): --steps on the export's train split, and the same on an equal-size random sample of the pre-selection input (--baseline). Both are evaluated on one held-out set neither trained on: --eval-data, or the baseline rows left over (ids and questions of both training sets removed); never a slice of the export. Reports loss at start and end, NaNs, tokens/s and the held-out loss of selected vs random.

Exit codes: 0 ok, 2 bad input (e.g. a tokenizer without a chat template), 3 rows fail the checks or a loss was NaN (the summary says which).

[bold]Examples[/bold]

  curate validate out/sft --student Qwen/Qwen2.5-0.5B-Instruct --steps 0      # checks only
  curate validate out/sft --student Qwen/Qwen2.5-0.5B-Instruct --baseline out/read
  curate validate out/sft --student ./my-student --lora --steps 50 --max-seq-len 16384
  curate validate out/sft --student ./my-student --baseline raw.jsonl --eval-data bench.jsonl --json"""  # noqa: E501


def validate(
    exported: Annotated[str, typer.Argument(
        help="A `curate export` folder.", show_default=False, metavar="EXPORTED")],
    student: Annotated[str, typer.Option(
        help="The student model (folder or hub id): its tokenizer and chat template, and the "
             "checkpoint the quick SFT starts from.", show_default=False)],
    steps: Annotated[int, typer.Option(
        help="Optimizer steps per SFT run; 0 runs the format checks alone.")] = 20,
    batch_size: Annotated[int, typer.Option(help="Rows per step.")] = 4,
    lr: Annotated[float, typer.Option(help="Learning rate (constant, no warmup).")] = 1e-4,
    lora: Annotated[bool, typer.Option(
        "--lora", help="Train LoRA adapters (PEFT, r=16, all linear layers) instead of all "
                       "weights.")] = False,
    max_seq_len: Annotated[int, typer.Option(
        help="Token limit (TRL's max_length): rows over it are counted and truncated.")] = 1024,
    baseline: Annotated[str | None, typer.Option(
        help="The pre-selection input (anything curate reads, or an export folder): the random "
             "run's sample and, without --eval-data, the held-out rows.",
        show_default=False)] = None,
    eval_data: Annotated[str | None, typer.Option(
        help="Held-out rows to evaluate both runs on (anything curate reads, or an export "
             "folder).", show_default=False)] = None,
    eval_rows: Annotated[int, typer.Option(help="At most this many held-out rows.")] = 64,
    seed: Annotated[int, typer.Option(help="Seed of the samples and of training.")] = 0,
    quiet: Quiet = False,
    verbose: Verbose = False,
    json_out: Json = False,
):
    ui = Ui(quiet=quiet, verbose=verbose, json=json_out)
    with handled(ui):
        from curate.validate.sft import ValidateOptions, validate_stage

        opts = ValidateOptions(steps=steps, batch_size=batch_size, lr=lr, lora=lora,
                               max_seq_len=max_seq_len, eval_rows=eval_rows, seed=seed)
        if preflight():
            return
        runs = 0 if steps == 0 else (2 if baseline else 1)
        with progress_bar(ui, "training", runs or None) as advance:
            summary = validate_stage(exported, student, opts, baseline=baseline,
                                     eval_data=eval_data, progress=advance)
        ui.result(summary, _render)
        if not quiet:
            for note in summary["notes"]:
                style = "bold red" if note.startswith("WARNING") else "yellow"
                ui.err.print(f"[{style}]{escape(note)}[/{style}]", markup=True,
                             highlight=False)
    if not summary["ok"]:
        raise typer.Exit(EXIT_FAULTS)


def _render(ui: Ui, s: dict) -> None:
    t = summary_table(f"curate validate {s['exported']} (student {s['student']})")
    c = s["checks"]
    t.add_row("rows checked", f"{c['rows']:,} ({c['ok_rows']:,} ok)")
    for kind, n in c["faults"].items():
        if n:
            t.add_row(f"fault: {kind}", f"{n:,} (e.g. {escape(c['fault_ids'][kind][0])})")
    tk = c["tokens"]
    if "median" in tk:
        t.add_row("tokens", f"median {tk['median']:,}, p90 {tk['p90']:,}, max {tk['max']:,}; "
                            f"{tk['over']:,} over {tk['max_seq_len']:,}")
    for name, r in s["train"].items():
        loss = (f"loss {r['loss_start']:.4f} → {r['loss_end']:.4f}"
                if r["loss_start"] is not None else "no loss logged")
        held = f", held-out {r['heldout_loss']:.4f}" if r["heldout_loss"] is not None else ""
        t.add_row(f"SFT {name}", f"{r['rows']:,} rows, {r['steps']} steps, {loss}{held}, "
                                 f"{r['tokens_per_s'] or 0:,.0f} tokens/s"
                                 + (", NaN!" if r["nan"] else ""))
    if s.get("heldout"):
        h = s["heldout"]
        t.add_row("held-out set", f"{h['rows']:,} rows from {h['source']}")
    if s.get("comparison") and s["comparison"]["selected_minus_random"] is not None:
        d = s["comparison"]["selected_minus_random"]
        t.add_row("selected − random", f"{d:+.4f} held-out loss "
                                       f"({'selected better' if d < 0 else 'random better'})")
    t.add_row("verdict", "ok" if s["ok"] else "FAILED")
    t.add_row("time", f"{s['seconds']:.1f} s")
    ui.out.print(t)
