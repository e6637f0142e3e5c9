"""The quick SFT of ``curate validate``: selected vs random, one held-out set, TRL doing the work.

Loss masking. The exported conversations are handed to TRL as *conversational prompt-completion*
rows (prompt = system?/user turns, completion = the assistant turn) with
``completion_only_loss=True``: TRL renders both through the student's chat template and masks
the prompt. ``assistant_only_loss`` was not chosen because it needs ``{% generation %}`` tags in
the template, which most students' templates (Qwen2's included) lack.

Sets (the point of the comparison is a fair held-out loss):

* *selected*: the export's ``train`` split, less the rows failing the format checks. Its
  ``test`` split is never used for evaluation: a slice of the export would favour the selection.
* *random*: an equal-size uniform sample of the pre-selection pool (``--baseline``: any input
  curate reads, or an export folder), seeded, drawn over the pool sorted by id.
* *held-out*: ``--eval-data`` when given, else pool rows left after both draws; either way rows
  whose id or normalised question (``text_key``) is in either training set are removed, so that
  another sample of a trained problem cannot count as held out. At most ``--eval-rows``.

Both runs start from the same checkpoint, seed, learning rate and step count; the held-out loss
is measured once before training (same init for both) and after each run.
"""

from __future__ import annotations

import contextlib
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import folder as F
from ..io.sources import resolve_inputs
from ..options import StageOptions, option
from ..read.traces import ReadOptions, iter_traces
from . import checks as C
from .checks import Example

TRL_DEFAULT_MAX_LENGTH = 1024


@dataclass
class ValidateOptions(StageOptions):
    student: str | None = option(help="The student model (folder or hub id): its tokenizer "
                                 "and chat template, and the checkpoint the quick SFT starts "
                                 "from.", required=True)
    steps: int = option(20, help="Optimizer steps per SFT run; 0 runs the format checks alone.")
    batch_size: int = option(4, help="Rows per step.")
    lr: float = option(1e-4, help="Learning rate (constant, no warmup).")
    lora: bool = option(False, help="Train LoRA adapters (PEFT, r=16, all linear layers) "
                        "instead of all weights.")
    max_seq_len: int = option(TRL_DEFAULT_MAX_LENGTH, help="Token limit (TRL's max_length): "
                              "rows over it are counted and truncated.")
    baseline: str | None = option(help="The pre-selection input (anything curate reads, or an "
                                  "export folder): the random run's sample and, without "
                                  "--eval-data, the held-out rows.")
    eval_data: str | None = option(help="Held-out rows to evaluate both runs on (anything "
                                   "curate reads, or an export folder).")
    eval_rows: int = option(64, help="At most this many held-out rows.")
    seed: int = option(0, help="Seed of the samples and of training.")

    def __post_init__(self):
        if self.steps < 0:
            raise InputError(f"--steps {self.steps}: must be 0 (checks only) or more")
        if self.batch_size < 1:
            raise InputError(f"--batch-size {self.batch_size}: must be at least 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise InputError(f"--lr {self.lr}: must be a positive number")
        if self.max_seq_len < 2:
            raise InputError(f"--max-seq-len {self.max_seq_len}: must be at least 2")
        if self.eval_rows < 1:
            raise InputError(f"--eval-rows {self.eval_rows}: must be at least 1")


# --- the three sets ------------------------------------------------------------------------------

def read_pool(path: str, style: str, system: str | None, label: str) -> list[Example]:
    """Examples of any input curate reads (or an export folder), sorted by id, ids unique."""
    if C.is_export(path):
        rows = [ex for split in C.read_export(path, label).values() for ex in split]
    else:
        sources = resolve_inputs([path])
        rows = []
        for batch in iter_traces([path], ReadOptions(), sources=sources):
            rows.extend(C.examples_from_traces(batch.table, style, system))
    seen: dict[str, Example] = {}
    for ex in sorted(rows, key=lambda e: e.id):
        seen.setdefault(ex.id, ex)  # first of a duplicated id, in id order: input-order free
    return list(seen.values())


@dataclass
class Sets:
    selected: list[Example]
    random: list[Example] | None
    heldout: list[Example] | None
    heldout_source: str | None
    overlap_removed: int = 0


def plan_sets(selected: list[Example], exported_ids: set[str], pool: list[Example] | None,
              eval_rows: list[Example] | None, n_eval: int, seed: int) -> Sets:
    """Draw the random sample and the held-out set (see the module docstring)."""
    rng = np.random.default_rng(seed)
    random = None
    if pool is not None:
        if not pool:
            raise InputError("--baseline: no rows to sample from")
        k = min(len(selected), len(pool))
        random = [pool[i] for i in sorted(rng.choice(len(pool), size=k, replace=False))]
    trained = [*selected, *(random or [])]
    taken_ids = exported_ids | {e.id for e in trained}
    taken_q = {e.question_key for e in trained}
    if eval_rows is not None:
        candidates, source = eval_rows, "--eval-data"
    elif pool is not None:
        candidates, source = pool, "baseline pool"
    else:
        return Sets(selected, None, None, None)
    kept = [e for e in candidates if e.id not in taken_ids and e.question_key not in taken_q]
    removed = len(candidates) - len(kept)
    if not kept:
        what = "--eval-data" if eval_rows is not None else "--baseline"
        raise InputError(f"{what}: no rows left for a held-out set once the rows (ids and "
                         "questions) of both training sets are removed; pass a larger pool or "
                         "--eval-data")
    if len(kept) > n_eval:
        kept = [kept[i] for i in sorted(rng.choice(len(kept), size=n_eval, replace=False))]
    return Sets(selected, random, kept, source, removed if eval_rows is not None else 0)


# --- training ------------------------------------------------------------------------------------

def _need_trl():
    try:
        import peft  # noqa: F401
        import trl  # noqa: F401
    except ImportError:
        raise InputError("--steps: the quick SFT needs TRL and PEFT (pip install "
                         "'curate-prm[validate]'); --steps 0 runs the format checks alone"
                         ) from None


def _dataset(examples: list[Example]):
    from datasets import Dataset

    return Dataset.from_list([e.as_record() for e in examples])


def _finite(x) -> bool:
    return x is not None and math.isfinite(float(x))


def train_once(student: str, tok, train: list[Example], heldout: list[Example] | None,
               opts: ValidateOptions, workdir: Path, eval_before: bool) -> dict:
    """One short SFTTrainer run; its losses, speed and held-out loss."""
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, PrinterCallback, ProgressCallback
    from trl import SFTConfig, SFTTrainer

    datasets.disable_progress_bar()
    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    torch.manual_seed(opts.seed)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            student, dtype=torch.bfloat16 if bf16 else torch.float32)
    except Exception as e:  # noqa: BLE001 - any failure to load means the same to the user
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"--student {student}: cannot load a causal LM ({first})") from None
    peft_config = None
    if opts.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0,
                                 target_modules="all-linear", task_type="CAUSAL_LM")
    args = SFTConfig(
        output_dir=str(workdir), max_steps=opts.steps, per_device_train_batch_size=opts.batch_size,
        per_device_eval_batch_size=opts.batch_size, learning_rate=opts.lr,
        lr_scheduler_type="constant", warmup_steps=0, logging_steps=1, save_strategy="no",
        eval_strategy="no", report_to="none", disable_tqdm=True, seed=opts.seed,
        max_length=opts.max_seq_len, completion_only_loss=True, dataloader_num_workers=0,
        use_cpu=not cuda)
    # stdout carries only the summary (--json): TRL / transformers print logs and notices there.
    with contextlib.redirect_stdout(sys.stderr):
        trainer = SFTTrainer(model=model, args=args, train_dataset=_dataset(train),
                             processing_class=tok, peft_config=peft_config)
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        heldout_ds = _dataset(heldout) if heldout else None
        before = trainer.evaluate(heldout_ds)["eval_loss"] if heldout_ds and eval_before else None
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
        after = trainer.evaluate(heldout_ds)["eval_loss"] if heldout_ds else None
    logs = [h for h in trainer.state.log_history if "loss" in h and "eval_loss" not in h]
    losses = [float(h["loss"]) for h in logs]
    grads = [h.get("grad_norm") for h in logs if h.get("grad_norm") is not None]
    tokens = max((int(h.get("num_tokens", 0)) for h in logs), default=0)
    nan = not all(map(_finite, losses + grads)) or (after is not None and not _finite(after))
    out = {
        "rows": len(train),
        "steps": int(trainer.state.global_step),
        "loss_start": losses[0] if losses else None,
        "loss_end": losses[-1] if losses else None,
        "loss_decreased": bool(losses and losses[-1] < losses[0]),
        "nan": bool(nan),
        "tokens": tokens,
        "seconds": round(seconds, 3),
        "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else None,
        "heldout_loss": float(after) if after is not None else None,
    }
    if before is not None:
        out["heldout_loss_before"] = float(before)
    del trainer, model
    if cuda:
        torch.cuda.empty_cache()
    return out


# --- the stage -----------------------------------------------------------------------------------

def validate_stage(exported: str, student: str, opts: ValidateOptions, *,
                   baseline: str | None = None, eval_data: str | None = None,
                   progress=None) -> dict:
    """Run ``curate validate``; returns the summary (``ok`` false on a fault or a NaN)."""
    t0 = time.time()
    splits = C.read_export(exported)  # a bad EXPORTED fails before the student loads
    for path in (baseline, eval_data):
        if path is not None:
            resolve_inputs([path])  # fail fast on a missing file, before any training
    tok = C.load_student_tokenizer(student)
    if opts.steps > 0:
        _need_trl()
    manifest = _manifest(exported)
    style = manifest.get("config", {}).get("think_style", "r1")
    system = manifest.get("config", {}).get("system")
    train = splits.get("train", [])
    everything = [e for s in splits.values() for e in s]
    ok, check = C.check_examples(everything, tok, opts.max_seq_len)
    ok_ids = {e.id for e, good in zip(everything, ok, strict=True) if good}
    selected = [e for e in train if e.id in ok_ids]
    notes: list[str] = []
    if check["tokens"].get("over"):
        notes.append(f"WARNING {check['tokens']['over']:,} of {check['rows']:,} rows are longer "
                     f"than --max-seq-len {opts.max_seq_len:,} tokens: TRL truncates them "
                     "silently")
    bad = sum(check["faults"].values())
    if bad:
        notes.append(f"WARNING {check['rows'] - check['ok_rows']:,} rows fail the format checks "
                     "(see checks.fault_ids); they are left out of training")
    summary: dict = {"exported": exported, "student": student, "options": opts.values(),
                     "checks": check, "train": {}, "heldout": None, "notes": notes}
    if opts.steps > 0:
        if not selected:
            raise InputError(f"EXPORTED {exported}: no train rows pass the format checks")
        pool = read_pool(baseline, style, system, "--baseline") if baseline else None
        evals = read_pool(eval_data, style, system, "--eval-data") if eval_data else None
        sets = plan_sets(selected, {e.id for e in everything}, pool, evals, opts.eval_rows,
                         opts.seed)
        failing = 0
        for name in ("random", "heldout"):
            rows = getattr(sets, name)
            if rows:
                good, _ = C.check_examples(rows, tok, opts.max_seq_len)
                kept = [e for e, g in zip(rows, good, strict=True) if g]
                failing += len(rows) - len(kept)
                setattr(sets, name, kept or None)
        if sets.heldout is not None:
            summary["heldout"] = {"rows": len(sets.heldout), "source": sets.heldout_source,
                                  "overlap_removed": sets.overlap_removed}
        if failing:
            notes.append(f"{failing:,} baseline / eval rows fail the format checks and are left "
                         "out of the random sample and the held-out set")
        elif baseline is None and eval_data is None:
            notes.append("no --baseline or --eval-data: no held-out loss (the export's own test "
                         "split would favour the selection)")
        with tempfile.TemporaryDirectory(prefix="curate-validate-") as tmp:
            summary["train"]["selected"] = train_once(student, tok, sets.selected, sets.heldout,
                                                      opts, Path(tmp) / "selected", True)
            if progress:
                progress(1)
            if sets.random:
                summary["train"]["random"] = train_once(student, tok, sets.random, sets.heldout,
                                                        opts, Path(tmp) / "random", False)
                if progress:
                    progress(1)
        runs = summary["train"]
        if "random" in runs and sets.heldout:
            sel, rnd = runs["selected"]["heldout_loss"], runs["random"]["heldout_loss"]
            summary["comparison"] = {
                "heldout_loss_selected": sel, "heldout_loss_random": rnd,
                "selected_minus_random": sel - rnd if _finite(sel) and _finite(rnd) else None}
        for name, run in runs.items():
            if run["nan"]:
                notes.append(f"WARNING the {name} run produced a NaN or infinite loss")
            elif not run["loss_decreased"]:
                notes.append(f"the {name} run's training loss did not decrease in "
                             f"{run['steps']} steps")
    nan = any(r["nan"] for r in summary["train"].values())
    summary["ok"] = not bad and not nan
    summary["seconds"] = round(time.time() - t0, 3)
    return summary


def _manifest(exported: str) -> dict:
    try:
        return F.read_manifest(exported)
    except InputError as e:
        raise InputError(f"EXPORTED {e}") from None
