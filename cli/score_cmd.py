"""`curate score`: rewards per step and one selection score per trace."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import Json, Quiet, Verbose
from .output import (
    Ui,
    command_line,
    handled,
    lazy_progress,
    preflight,
    progress_bar,
    summary_table,
)

SHORT = "Score every step with a process reward model, or offline on CPU with the signals scorer."
HELP = """Score every trace with a process reward model: a reward per thinking step (`step_rewards`) and per response step (`response_step_rewards`), a trajectory reward, and the selection score of ReasonFlux-PRM Eq. 11: score = agg(step rewards) + alpha × trajectory_reward.

Without --model, the offline [bold]signals[/bold] scorer runs on CPU: the answer checked against reference_answer by math-verify (answer_correct), step↔response alignment and step coherence from sentence embeddings (alignment, coherence; step rewards), and hygiene (ends_cleanly, has_answer, repetition, length_tokens), one column each; score = 0.6 × answer + 0.4 × quality (see docs/DESIGN.md).

[bold]Examples[/bold]

  curate score out/read -o out/scored                      # signals scorer, offline, CPU
  curate score out/read -o out/scored --model Gen-Verse/ReasonFlux-PRM-7B
  curate score out/read -o out/scored --model ./tiny-prm --alpha 0 --agg min
  curate score out/scored -o out/rescored --rescore --alpha 0.5   # no model needed

Traces longer than the model's context are never truncated: they go to dropped/ as too_long with their token count. A killed run, rerun with the same command, continues from its last committed chunk."""  # noqa: E501


def score(
    inputs: Annotated[list[str], typer.Argument(
        help="Traces: anything `curate read` accepts, or its output folder.",
        show_default=False, metavar="INPUT")],
    output: Annotated[str | None, typer.Option(
        "--output", "-o", help="Output folder (not needed with --dry-run).",
        show_default=False)] = None,
    model: Annotated[str | None, typer.Option(
        help="Reward model: a local checkpoint folder or a hub id.", show_default=False)] = None,
    scorer: Annotated[str, typer.Option(
        help="auto (signals without --model, else from the checkpoint), signals (offline, "
             "no model), step-prm (separator head, e.g. ReasonFlux-PRM-7B), seq-prm (sequence "
             "head, e.g. ReasonFlux-PRM-1.5B).")] = "auto",
    encoder: Annotated[str, typer.Option(
        help="Sentence encoder of the signals scorer: minilm-static (static embeddings "
             "distilled once from all-MiniLM-L6-v2, fast on CPU), minilm (the full model), "
             "none (answer and hygiene signals only), or a sentence-transformers id or path."
             )] = "minilm-static",
    engine: Annotated[str, typer.Option(help="auto, hf (transformers) or vllm.")] = "auto",
    alpha: Annotated[float, typer.Option(
        help="Weight of the trajectory reward in the score; 0 skips the trajectory pass "
             "(about half the compute).")] = 1.0,
    agg: Annotated[str, typer.Option(
        help="Step part of the score: mean (Eq. 11), min (Math-Shepherd), last, prod.")
                   ] = "mean",
    system: Annotated[str | None, typer.Option(
        help="System prompt of the step-PRM input (default: the model card's).",
        show_default=False)] = None,
    rescore: Annotated[bool, typer.Option(
        "--rescore", help="Recompute score from the rewards stored in a scored INPUT with "
                          "another --alpha / --agg; loads no model.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 …")] = "auto",
    devices: Annotated[str | None, typer.Option(
        help="One engine per GPU on this machine, e.g. 0,1,2,3 (data parallel: every batch "
             "is split across them by tokens).", show_default=False)] = None,
    dtype: Annotated[str, typer.Option(
        help="auto (bfloat16 on GPU, float32 on CPU), float32, bfloat16, float16.")] = "auto",
    batch_tokens: Annotated[int, typer.Option(
        help="Token budget of one padded batch (hf engine).")] = 16384,
    max_model_len: Annotated[int | None, typer.Option(
        help="Context limit (default: the model's max_position_embeddings).",
        show_default=False)] = None,
    gpu_memory_utilization: Annotated[float | None, typer.Option(
        help="Share of GPU memory vLLM may take for weights and KV cache (vllm engine; "
             "default: vLLM's own, 0.2 on CPU).", show_default=False)] = None,
    tensor_parallel_size: Annotated[int, typer.Option(
        help="GPUs to split the model across (vllm engine).")] = 1,
    long: Annotated[str, typer.Option(
        help="Traces longer than the context: drop (to dropped/ with their token count) or "
             "window (steps scored in consecutive windows that fit, each prefixed by the "
             "question and as many earlier steps as fit; the trajectory pass takes the longest "
             "tail that fits).")] = "drop",
    chunk_rows: Annotated[int, typer.Option(
        help="Traces per committed chunk (the unit a rerun resumes from).")] = 1024,
    revision: Annotated[str | None, typer.Option(help="Hub revision of --model.",
                                                 show_default=False)] = None,
    trust_remote_code: Annotated[bool, typer.Option(
        "--trust-remote-code", help="Allow the checkpoint's own code (opt-in).")] = False,
    limit: Annotated[int | None, typer.Option(help="Score only the first N input rows.",
                                              show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Tokenize only: print the token count, the share too long for the "
                          "model and the GPU hours it would take; writes nothing.")] = False,
    assume_tokens_per_s: Annotated[float, typer.Option(
        help="Throughput for the --dry-run estimate (default: a 7B PRM on one H100, "
             "estimated).")] = 30_000,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace an output folder of another stage, or discard an "
                            "interrupted run with other settings.")] = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
    json_out: Json = False,
):
    ui = Ui(quiet=quiet, verbose=verbose, json=json_out)
    with handled(ui):
        from curate.scoring.stage import ScoreOptions, rescore_stage, score_stage

        command = command_line("score")
        from curate.errors import InputError

        if output is None and not dry_run:
            raise InputError("-o/--output is required (the folder to write the scores to)")
        opts = None if rescore else ScoreOptions(
            model=model, scorer=scorer, engine=engine, alpha=alpha, agg=agg, system=system,
            dtype=dtype, device=device, batch_tokens=batch_tokens, max_model_len=max_model_len,
            long=long, chunk_rows=chunk_rows, revision=revision,
            trust_remote_code=trust_remote_code, limit=limit, devices=devices,
            gpu_memory_utilization=gpu_memory_utilization,
            tensor_parallel_size=tensor_parallel_size, encoder=encoder)
        if preflight():
            return
        if opts is None:
            summary = rescore_stage(inputs, output, alpha, agg, overwrite=overwrite,
                                    command=command)
        elif dry_run:
            from curate.scoring.stage import dry_run as plan

            summary = plan(inputs, opts, assume_tokens_per_s)
        else:
            with lazy_progress(ui, "distilling static embeddings from all-MiniLM-L6-v2 "
                                   "(once; cached)") as distill, \
                    progress_bar(ui, "scoring") as advance:
                summary = score_stage(inputs, output, opts, overwrite=overwrite,
                                      progress=advance, command=command,
                                      encoder_progress=distill)
        ui.result(summary, _render)


def _render(ui: Ui, s: dict) -> None:
    if s.get("dry_run"):
        t = summary_table("curate score --dry-run (nothing written)")
        t.add_row("traces", f"{s['rows_in']:,}")
        t.add_row("tokens to process", f"{s['tokens']:,} in {s['sequences']:,} sequences"
                  + (" (step pass + trajectory pass)" if s["alpha"] else ""))
        t.add_row("too long", f"{s['too_long']:,} ({s['too_long_share']:.1%}) over "
                              f"{s['max_len']:,} tokens")
        t.add_row("estimate", f"{s['estimated_gpu_hours']} GPU-hours at "
                              f"{s['assumed_tokens_per_s']:,.0f} tokens/s")
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
    how = "0.6 × answer + 0.4 × quality" if s.get("family") == "signals" else \
        f"alpha {s['alpha']}, agg {s['agg']}"
    t.add_row("score", f"{how}: " + ", ".join(f"{k} {v}" for k, v in s.get("score",
                                                                              {}).items()))
    eng = s.get("engine_stats")
    if s.get("family") == "signals":
        t.add_row("throughput", f"{s['traces_per_s']} traces/s")
        if s.get("scorer_load_seconds", 0) >= 5:
            t.add_row("scorer load", f"{s['scorer_load_seconds']:.1f} s (the first run distils "
                                     "the encoder; later runs load it from the cache)")
    if eng:
        t.add_row("throughput", f"{s['traces_per_s']} traces/s, {eng['tokens_per_s']} "
                                f"tokens/s, padding {eng['padding_waste']:.1%}")
    t.add_row("time", f"{s['seconds']:.2f} s")
    if s.get("note"):
        t.add_row("note", s["note"])
    ui.out.print(t)
