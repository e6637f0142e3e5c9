"""``curate eval``: how well does a scorer rank traces whose quality is known?

INPUT is a scored folder (it has a ``score`` column) or anything ``curate read`` accepts, which
is then scored in memory with the options given (the signals scorer by default, or ``--model``).
Eval sets are small (thousands of rows), so everything here holds one table in memory.

Trace level: AUROC and average precision of ``score`` and of each signal column against the
label; per question with several samples, how often the top-scored sample is correct, against
random choice, the longest, the shortest and any ``--baseline-column``.

Step level (when step labels exist): the ProcessBench protocol on the source's own steps. The
predicted first error is the first step whose reward falls below a threshold; F1 of the accuracy
on erroneous and on correct samples. The threshold is chosen on one half of the rows (split by a
hash of the id) and reported on the other.
"""

from __future__ import annotations

import json
import math
import time
import unicodedata
from dataclasses import dataclass, field

import pyarrow as pa
import xxhash

from .. import schema as S
from ..errors import InputError
from ..io.sources import resolve_inputs
from ..read.traces import ReadOptions, ReadStats, iter_traces
from . import metrics as M

# Columns written by the scorers whose ranking power is worth a line of its own.
SIGNAL_CANDIDATES = ("answer_correct", "quality", "alignment", "coherence", "ends_cleanly",
                     "has_answer", "repetition", "length_tokens", "trajectory_reward",
                     "min_step_reward")


@dataclass
class EvalOptions:
    label_column: str = "is_correct"
    step_labels_column: str = "step_labels"
    first_error_column: str = "first_error_step"
    question_key: str | None = None
    baseline_columns: list[str] = field(default_factory=list)
    threshold: float | None = None
    limit: int | None = None
    n_boot: int = 1000
    # Scoring, when INPUT is not scored yet (see curate.scoring.stage.ScoreOptions).
    score_options: object | None = None

    def __post_init__(self):
        if self.threshold is not None and not 0 <= self.threshold <= 1:
            raise InputError(f"--threshold {self.threshold}: expected a step reward in [0, 1]")


def load_table(inputs: list[str], opts: EvalOptions, progress=None,
               reporter=None) -> tuple[pa.Table, dict]:
    """INPUT as one table with score columns, and how it was scored."""
    sources = resolve_inputs(inputs)
    tables = [b.table for b in iter_traces(inputs, ReadOptions(limit=opts.limit), ReadStats(),
                                           progress, sources=sources)]
    table = pa.concat_tables(tables, promote_options="permissive") if tables else None
    if table is None or table.num_rows == 0:
        raise InputError(f"{', '.join(inputs)}: no rows to evaluate")
    if "score" in table.column_names:
        scorer = table.column("scorer")[0].as_py() if "scorer" in table.column_names else None
        return table, {"scored_by": scorer, "scored_here": False}
    return score_in_memory(table, opts.score_options, reporter)


def score_in_memory(table: pa.Table, score_opts=None, reporter=None) -> tuple[pa.Table, dict]:
    """Score a small table in memory with the scorer and engine the score stage would use
    (the registered families and engines: ``curate.scoring.stage.load_scorer``)."""
    from ..scoring.loading import load_scorer
    from ..scoring.stage import ScoreOptions

    loaded = load_scorer(score_opts or ScoreOptions(), reporter)
    try:
        cols = loaded.scorer.score(table, loaded.engine)
    finally:
        if loaded.engine is not None:
            loaded.engine.close()
    kept = cols.kept(table.num_rows)
    take = pa.array(kept, pa.int64())
    table = table.take(take)
    for col, arr in cols.columns.items():
        table = _set(table, col, arr.take(take))
    name = loaded.scorer.name
    return _set(table, "scorer", pa.array([name] * table.num_rows, pa.string())), \
        {"scored_by": name, "scored_here": True}


def _set(table: pa.Table, name: str, arr) -> pa.Table:
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, arr)
    return table.append_column(name, arr)


# --- columns ---------------------------------------------------------------------------------

def _floats(table: pa.Table, name: str) -> list[float | None]:
    """A numeric or boolean column as floats; ``a.b`` reads field b of the JSON column a."""
    if name in table.column_names:
        col = table.column(name)
    elif "." in name and name.split(".", 1)[0] in table.column_names:
        base, path = name.split(".", 1)
        col = table.column(base)
        if not pa.types.is_string(col.type) and not pa.types.is_large_string(col.type):
            raise InputError(f"--baseline-column {name}: column {base} is {col.type}, not a "
                             "JSON string")
        vals = []
        for text in col.to_pylist():
            try:
                v = json.loads(text) if text else None
                for part in path.split("."):
                    v = v.get(part) if isinstance(v, dict) else None
            except json.JSONDecodeError:
                v = None
            vals.append(_finite(v) if isinstance(v, (int, float)) and not isinstance(v, bool)
                        else None)
        return vals
    else:
        raise InputError(f"column {name!r} not found (columns: "
                         f"{', '.join(table.column_names)})")
    t = col.type
    if pa.types.is_boolean(t):
        return [None if v is None else float(v) for v in col.to_pylist()]
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return [_finite(v) for v in col.to_pylist()]
    raise InputError(f"column {name!r} is {t}, not numeric or boolean")


def _finite(v) -> float | None:
    """NaN and ±inf are no value (see curate.stats): a missing score, never the best one."""
    return float(v) if v is not None and math.isfinite(v) else None


def trace_labels(table: pa.Table, opts: EvalOptions) -> tuple[list[int | None], str | None]:
    """0/1 labels per row (None: unknown) and a note on where they came from."""
    name = opts.label_column
    if name in table.column_names:
        col = table.column(name)
        if pa.types.is_boolean(col.type):
            labels = [None if v is None else int(v) for v in col.to_pylist()]
        elif pa.types.is_integer(col.type):
            labels = col.to_pylist()
            bad = sorted({v for v in labels if v not in (None, 0, 1)})
            if bad:
                raise InputError(f"--label-column {name}: expected 0/1 or true/false, found "
                                 f"{bad[:3]}")
        else:
            raise InputError(f"--label-column {name}: is {col.type}, expected boolean or 0/1 "
                             "integers")
        if any(v is not None for v in labels):
            return labels, None
    first = _first_errors(table, opts)
    if first is not None and name == EvalOptions.label_column:
        # PRMBench-style data: a solution with no marked error step is a correct one.
        known = _step_labels(table, opts)
        return [None if known is not None and known[i] is None else int(f is None)
                for i, f in enumerate(first)], (f"labels derived from {opts.first_error_column}"
                                                 " (no marked error = correct)")
    if name not in table.column_names:
        raise InputError(f"--label-column {name}: no such column (columns: "
                         f"{', '.join(table.column_names)})")
    return [None] * table.num_rows, f"{name} is null in every row"


def _step_labels(table: pa.Table, opts: EvalOptions) -> list[list[int] | None] | None:
    name = opts.step_labels_column
    if name not in table.column_names:
        return None
    col = table.column(name)
    if not pa.types.is_list(col.type) and not pa.types.is_large_list(col.type):
        raise InputError(f"--step-labels-column {name}: is {col.type}, expected a list of "
                         "integers per row")
    return col.to_pylist()


def _first_errors(table: pa.Table, opts: EvalOptions) -> list[int | None] | None:
    """The labelled first wrong step per row (None: no error), from first_error_step or else
    from the step labels (first 0)."""
    steps = _step_labels(table, opts)
    if opts.first_error_column in table.column_names:
        col = table.column(opts.first_error_column)
        if not pa.types.is_integer(col.type):
            raise InputError(f"--first-error-column {opts.first_error_column}: is {col.type}, "
                             "expected integers")
        return col.to_pylist()
    if steps is None:
        return None
    return [None if s is None else next((i for i, v in enumerate(s) if v == 0), None)
            for s in steps]


def question_groups(table: pa.Table, key: str | None) -> list:
    if key is not None:
        if key not in table.column_names:
            raise InputError(f"--question-key {key}: no such column")
        return table.column(key).to_pylist()
    return [xxhash.xxh3_64_hexdigest(" ".join(unicodedata.normalize("NFKC", q or "")
                                              .lower().split()).encode("utf-8",
                                                                       "surrogatepass"))
            for q in table.column(S.QUESTION).to_pylist()]


# --- the report ------------------------------------------------------------------------------

def _ranking(scores, labels, groups, n_boot: int) -> dict:
    auroc = M.auroc(scores, labels)
    return {"auroc": auroc,
            "auroc_ci95": M.bootstrap_ci(M.auroc, scores, labels, n_boot=n_boot)
            if auroc is not None else None,
            "average_precision": M.average_precision(scores, labels),
            "top1_accuracy": M.top1(groups, scores, labels)["top1_accuracy"]}


def evaluate(table: pa.Table, opts: EvalOptions) -> dict:
    t0 = time.time()
    all_labels, label_note = trace_labels(table, opts)
    known = [i for i, v in enumerate(all_labels) if v is not None]

    def sub(values: list) -> list:  # the rows with a known label
        return [values[i] for i in known]

    labels = sub(all_labels)
    groups = sub(question_groups(table, opts.question_key))
    all_scores = _floats(table, "score")
    scores = sub(all_scores)
    result: dict = {"rows": table.num_rows, "labelled_rows": len(known),
                    "label_column": opts.label_column, "label_note": label_note,
                    "auroc": None, "auroc_ci95": None, "average_precision": None,
                    "top1_accuracy": None, "processbench_f1": None, "notes": []}
    if label_note:
        result["notes"].append(label_note)
    positives = sum(labels)
    result["positives"] = positives
    one_class = bool(known) and positives in (0, len(known))
    if one_class:
        result["notes"].append(f"every labelled row is {'correct' if positives else 'wrong'}:"
                               " AUROC and average precision are undefined")
    if known:
        result.update(_ranking(scores, labels, groups, opts.n_boot))
        if one_class:  # all-correct AP is trivially 1: as meaningless as the AUROC
            result["average_precision"] = None
        top = M.top1(groups, scores, labels)
        result["questions"] = top["questions"]
        result["oracle_top1"] = top["oracle"]
        lengths = sub(_floats(table, "length_tokens") if "length_tokens" in table.column_names
                      else [float(len(r or "")) for r in table.column(S.RESPONSE).to_pylist()])
        result["baselines"] = {
            "random": {"top1_accuracy": top["random"], "auroc": 0.5 if result["auroc"]
                       is not None else None},
            "longest": {"top1_accuracy": M.top1(groups, lengths, labels)["top1_accuracy"],
                        "auroc": M.auroc(lengths, labels)},
            "shortest": {"top1_accuracy": M.top1(groups, lengths, labels,
                                                 pick="min")["top1_accuracy"],
                         "auroc": M.auroc([None if v is None else -v for v in lengths],
                                          labels)},
        }
        for name in opts.baseline_columns:
            result["baselines"][name] = _ranking(sub(_floats(table, name)), labels, groups,
                                                 opts.n_boot)
        result["signals"] = {}
        for name in _signal_columns(table):
            vals = sub(_floats(table, name) if name != "min_step_reward"
                       else _min_rewards(table))
            result["signals"][name] = {**_ranking(vals, labels, groups, 0),
                                       "unscored": sum(1 for v in vals if v is None)}
        result["histogram"] = _histograms(scores, labels)
    if len(known) < table.num_rows:
        result["notes"].append(f"{table.num_rows - len(known)} rows have no label and are left "
                               "out of the trace-level figures")
    result["unscored"] = sum(1 for v in scores if v is None)
    steps = step_level(table, opts)
    if steps is not None:
        result["step_level"] = steps
        result["processbench_f1"] = steps.get("f1")
    result["seconds"] = round(time.time() - t0, 3)
    return result


def _signal_columns(table: pa.Table) -> list[str]:
    names = [c for c in SIGNAL_CANDIDATES if c in table.column_names
             and table.column(c).null_count < table.num_rows]
    if "step_rewards" in table.column_names and any(r for r in _all_rewards(table)):
        names.append("min_step_reward")
    return names


def _all_rewards(table: pa.Table) -> list[list[float] | None]:
    a = table.column("step_rewards").to_pylist()
    b = table.column("response_step_rewards").to_pylist() \
        if "response_step_rewards" in table.column_names else [None] * table.num_rows
    return [None if x is None and y is None else list(x or []) + list(y or [])
            for x, y in zip(a, b, strict=True)]


def _min_rewards(table: pa.Table) -> list[float | None]:
    return [min(r) if r else None for r in _all_rewards(table)]


def _histograms(scores, labels, bins: int = 10) -> dict:
    vals = [s for s in scores if s is not None]
    if not vals:
        return {}
    lo, hi = min(vals), max(vals)
    out = {"edges": None}
    for name, want in (("correct", 1), ("wrong", 0)):
        edges, counts = M.histogram([s for s, y in zip(scores, labels, strict=True)
                                     if y == want], bins=bins, lo=lo, hi=hi)
        out["edges"] = [float(e) for e in edges]
        out[name] = [int(c) for c in counts]
    return out


def step_level(table: pa.Table, opts: EvalOptions) -> dict | None:
    labels = _step_labels(table, opts)
    if labels is None or all(v is None for v in labels) or "step_rewards" not in \
            table.column_names:
        return None
    first = _first_errors(table, opts)
    rewards = _all_rewards(table)
    split_rule = _split_rule(table)
    ids = table.column(S.ID).to_pylist()
    use_r, use_t, keys = [], [], []
    mismatch = unlabelled = 0
    for i, lab in enumerate(labels):
        if lab is None:
            unlabelled += 1
            continue
        if rewards[i] is None:
            continue
        if len(rewards[i]) != len(lab):
            mismatch += 1
            continue
        use_r.append(rewards[i])
        use_t.append(first[i])
        keys.append(ids[i])
    out: dict = {"split_rule": split_rule, "length_mismatch": mismatch,
                 "unlabelled": unlabelled, "rows": len(use_r)}
    if mismatch:
        out["note"] = (f"{mismatch} rows have a step-label count that differs from the step "
                       f"count (steps: {split_rule}); they are left out")
    if not use_r:
        out["f1"] = None
        if all(r is None for r in rewards):
            out["note"] = "the scorer gave no step rewards (e.g. --encoder none)"
        return out
    if opts.threshold is None and (all(t is None for t in use_t)
                                   or all(t is not None for t in use_t)):
        out["f1"] = None
        out["note"] = ("every sample is " + ("correct" if use_t[0] is None else "erroneous")
                       + ": F1 needs both kinds")
        return out
    try:
        ev = M.processbench_eval(use_r, use_t, keys, fixed_threshold=opts.threshold)
    except ValueError:  # the calibration half lacks one kind: too few rows to choose on
        out["f1"] = None
        out["note"] = (f"only {len(use_r)} rows: the calibration half lacks erroneous or "
                       "correct samples; give --threshold")
        return out
    out.update(ev)
    return out


def _split_rule(table: pa.Table) -> str:
    for col in (S.TRAJECTORY_STEPS, S.RESPONSE_STEPS):
        if col in table.column_names and table.column(col).null_count < table.num_rows:
            return f"the source's own steps ({col})"
    return "blank lines (\\n\\n)"


def eval_stage(inputs: list[str], opts: EvalOptions, progress=None, reporter=None) -> dict:
    t0 = time.time()
    table, how = load_table(inputs, opts, progress, reporter)
    result = evaluate(table, opts)
    result.update(how)
    result["input"] = inputs
    result["seconds"] = round(time.time() - t0, 3)
    return result


__all__ = ["EvalOptions", "eval_stage", "evaluate", "load_table"]
