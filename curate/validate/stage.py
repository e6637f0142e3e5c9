"""The validate stage: format checks under the student's template and a quick SFT (``sft``)."""

from __future__ import annotations

from pathlib import Path

from ..stage import Stage, StageContext
from .sft import ValidateOptions, validate_stage

EXIT_FAULTS = 3  # the run worked, but rows fail the checks or a loss was NaN


class ValidateStage(Stage):
    name = "validate"
    progress = "validating"
    Options = ValidateOptions
    takes = "export"
    writes = None
    soft_exit = EXIT_FAULTS
    help = "Check exported shards under the student's template and run a quick SFT on them."
    doc = """Prove that exported shards load, fit and train before a long job.

Format checks (every row of EXPORTED, under the --student tokenizer's chat template): the row renders; the assistant part keeps at least one token after prompt masking and --max-seq-len truncation; think markers are balanced; the token-length distribution and the rows over --max-seq-len.

Quick SFT (TRL SFTTrainer, completion-only loss, --lora for PEFT LoRA): --steps on the export's train split, and the same on an equal-size random sample of the pre-selection input (--baseline). Both are evaluated on one held-out set neither trained on: --eval-data, or the baseline rows left over (ids and questions of both training sets removed); never a slice of the export. Reports loss at start and end, NaNs, tokens/s and the held-out loss of selected vs random.

Exit codes: 0 ok, 2 bad input (e.g. a tokenizer without a chat template), 3 rows fail the checks or a loss was NaN (the summary says which).

[bold]Examples[/bold]

  curate validate out/sft --student Qwen/Qwen2.5-0.5B-Instruct --steps 0      # checks only
  curate validate out/sft --student Qwen/Qwen2.5-0.5B-Instruct --baseline out/read
  curate validate out/sft --student ./my-student --lora --steps 50 --max-seq-len 16384
  curate validate out/sft --student ./my-student --baseline raw.jsonl --eval-data bench.jsonl --json"""  # noqa: E501
    run_notes = ("In a run, baseline defaults to the run's read stage (the pre-selection pool);",
                 'baseline = "" trains on the export alone.')

    @classmethod
    def in_run(cls, values: dict, folders: dict[str, Path]) -> dict:
        values = dict(values)
        if values.get("baseline") is None and "read" in folders:
            values["baseline"] = str(folders["read"])  # the pre-selection pool
        elif values.get("baseline") == "":
            values["baseline"] = None  # "" = train on the export alone
        return values

    def run(self, ctx: StageContext, opts: ValidateOptions) -> dict:
        runs = 0 if opts.steps == 0 else (2 if opts.baseline else 1)
        with ctx.reporter.task("training", runs or None) as advance:
            summary = validate_stage(ctx.inputs[0], opts.student, opts, baseline=opts.baseline,
                                     eval_data=opts.eval_data, progress=advance)
        summary["exit_code"] = 0 if summary["ok"] else EXIT_FAULTS
        return summary
