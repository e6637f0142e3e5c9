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

Labels of the first wrong step: ``--first-error-column`` (default ``first_error_step``; e.g.
``label`` in ProcessBench's raw JSON) holds a 0-based step index, with null **or -1** meaning
"no error" (ProcessBench's own convention), else the first 0 in the step labels. A value that is
not a step of its row (below -1, at or past the row's step count, a fraction) is out of range:
the row is left out of the ProcessBench F1 and, when the trace labels come from the first
errors, of the trace-level figures too, and a note says how many and which (``first_error_truth``
in ``metrics``). A row's step count is its step-label count, else its source steps
(``trajectory_steps`` + ``response_steps``), else (step level only) its step-reward count.

Every figure that comes out null says why: ``notes`` holds one line per reason, starting with
the names of the figures it explains (``auroc, auroc_ci95: ...``); the terminal view prints the
same lines.

``--sample N --seed S`` evaluates a uniform random sample of N rows: the N rows whose keyed
hash (xxh3-64 of the row id, keyed by the seed) is smallest. Which rows are chosen depends on
the ids and the seed only, never on row order or on how the input is split into files, and the
sample is evaluated in hash order, so the whole result is independent of input order. (The
reader's own ``ReadOptions.sample`` picks row *positions*, which depend on order.) ``--limit N``
still takes the first N rows.
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
    sample: int | None = None
    seed: int = 0
    n_boot: int = 1000
    # Scoring, when INPUT is not scored yet (see curate.scoring.stage.ScoreOptions).
    score_options: object | None = None

    def __post_init__(self):
        if self.threshold is not None and not 0 <= self.threshold <= 1:
            raise InputError(f"--threshold {self.threshold}: expected a step reward in [0, 1]")
        if self.limit is not None and self.sample is not None:
            raise InputError("--limit and --sample: choose one (--limit takes the first N rows, "
                             "--sample a seeded random N)")
        if self.limit is not None and self.limit < 1:
            raise InputError(f"--limit {self.limit}: must be at least 1")
        if self.sample is not None and self.sample < 1:
            raise InputError(f"--sample {self.sample}: must be at least 1")


def load_table(inputs: list[str], opts: EvalOptions, progress=None,
               reporter=None) -> tuple[pa.Table, dict]:
    """INPUT as one table with score columns, and how it was read and scored."""
    sources = resolve_inputs(inputs)
    batches = (b.table for b in iter_traces(inputs, ReadOptions(limit=opts.limit), ReadStats(),
                                            progress, sources=sources))
    how: dict = {}
    if opts.sample is not None:
        table, total = sample_rows(batches, opts.sample, opts.seed)
        how["sample"] = {"requested": opts.sample, "rows": 0 if table is None
                         else table.num_rows, "of": total, "seed": opts.seed}
    else:
        tables = list(batches)
        table = pa.concat_tables(tables, promote_options="permissive") if tables else None
    if table is None or table.num_rows == 0:
        raise InputError(f"{', '.join(inputs)}: no rows to evaluate")
    if "score" in table.column_names:
        scorer = table.column("scorer")[0].as_py() if "scorer" in table.column_names else None
        return table, {**how, "scored_by": scorer, "scored_here": False}
    table, scored = score_in_memory(table, opts.score_options, reporter)
    return table, {**how, **scored}


def sample_key(row_id: str, seed: int) -> int:
    """A row's place in the ``--sample`` order: xxh3-64 of its id keyed by the seed.

    A fixed prefix keeps it unrelated to the calibration split's hash (``split_indices``), so a
    sample is not tilted towards one half."""
    return xxhash.xxh3_64_intdigest(b"curate-eval-sample\x1f" + (row_id or "").encode(
        "utf-8", "surrogatepass"), seed=seed % 2**64)


def sample_rows(tables, n: int, seed: int) -> tuple[pa.Table | None, int]:
    """The ``n`` rows with the smallest ``sample_key`` (a uniform random sample without
    replacement, the same whatever the row order), in that order; and how many rows there were.

    Streams: at most about 2n rows plus one batch are held at a time."""
    kept: pa.Table | None = None
    keys: list[tuple[int, str]] = []
    total = 0

    def trim(table: pa.Table, keys: list) -> tuple[pa.Table, list]:
        order = sorted(range(len(keys)), key=keys.__getitem__)[:n]
        return table.take(pa.array(order, pa.int64())), [keys[i] for i in order]

    for t in tables:
        total += t.num_rows
        ids = t.column(S.ID).to_pylist()
        keys += [(sample_key(i, seed), i or "") for i in ids]
        kept = t if kept is None else pa.concat_tables([kept, t], promote_options="permissive")
        if kept.num_rows > 2 * n:
            kept, keys = trim(kept, keys)
    if kept is None:
        return None, 0
    return trim(kept, keys)[0], total


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


def trace_labels(table: pa.Table, opts: EvalOptions,
                 first: FirstErrors | None = None) -> tuple[list[int | None], str | None]:
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
    if first is None:
        first = first_errors(table, opts)
    if first is not None and any(first.labelled) and name == EvalOptions.label_column:
        # PRMBench / ProcessBench-style data: a solution with no marked error step is correct.
        # A row whose first-error value is out of range has no usable label.
        out = set(first.out_of_range)
        return [None if not first.labelled[i] or i in out else int(t is None)
                for i, t in enumerate(first.truth)], \
            f"labels derived from {first.source} (no marked error = correct" + \
            ("" if first.source.endswith("(first 0)") else "; -1 and null mean no error") + ")"
    if name not in table.column_names:
        raise InputError(f"--label-column {name}: no such column (columns: "
                         f"{', '.join(table.column_names)})")
    return [None] * table.num_rows, f"{name} is null in every row"


def _step_labels(table: pa.Table, opts: EvalOptions) -> list[list[int] | None] | None:
    name = opts.step_labels_column
    if name not in table.column_names:
        if name != EvalOptions.step_labels_column:  # asked for by name: it must be there
            raise InputError(f"--step-labels-column {name}: no such column (columns: "
                             f"{', '.join(table.column_names)})")
        return None
    col = table.column(name)
    if not pa.types.is_list(col.type) and not pa.types.is_large_list(col.type):
        raise InputError(f"--step-labels-column {name}: is {col.type}, expected a list of "
                         "integers per row")
    return col.to_pylist()


def _source_step_counts(table: pa.Table) -> list[int | None]:
    """Each row's own steps (thinking + response; None where the source gives none)."""
    counts: list[int | None] = [None] * table.num_rows
    for name in S.STEP_FIELDS:
        if name in table.column_names:
            for i, steps in enumerate(table.column(name).to_pylist()):
                if steps is not None:
                    counts[i] = (counts[i] or 0) + len(steps)
    return counts


@dataclass
class FirstErrors:
    """The labelled first wrong step of every row (see the module doc for the conventions)."""

    source: str                   # where they come from, for notes: a column, or step labels
    columns: list[str]            # the label columns the input has
    raw: list                     # the values as the input gives them
    truth: list[int | None]       # None: no error (or unusable: see labelled, out_of_range)
    labelled: list[bool]          # False: the row carries no step-level label
    out_of_range: list[int]       # rows whose value is not a step of the row
    steps: list[int | None]       # each row's step count, where the data gives it
    has_step_labels: bool


def first_errors(table: pa.Table, opts: EvalOptions) -> FirstErrors | None:
    """The labelled first wrong step per row: from ``--first-error-column`` (an index; -1 or
    null: no error), else the first 0 in the step labels; None when the input has neither.

    A value that is not a step of its row is out of range (``metrics.first_error_truth``): the
    row is listed in ``out_of_range`` and left out wherever its label would count. A row is
    unlabelled when it has null step labels and no first-error value."""
    name = opts.first_error_column
    step_labels = _step_labels(table, opts)
    source_counts = _source_step_counts(table)
    counts = source_counts if step_labels is None else [
        len(s) if s is not None else c for s, c in zip(step_labels, source_counts, strict=True)]
    columns = [c for c in (name, opts.step_labels_column) if c in table.column_names]
    if name in table.column_names:
        col = table.column(name)
        if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)
                or pa.types.is_null(col.type)):
            raise InputError(f"--first-error-column {name}: is {col.type}, expected integers "
                             "(a 0-based step index; -1 or null: no error)")
        raw = col.to_pylist()
        truth, bad = M.first_error_truth(raw, counts)
        given = [v is not None and not (isinstance(v, float) and math.isnan(v)) for v in raw]
        labelled = [True] * len(raw) if step_labels is None else [
            g or s is not None for g, s in zip(given, step_labels, strict=True)]
        return FirstErrors(name, columns, raw, truth, labelled, bad, counts,
                           step_labels is not None)
    if name != EvalOptions.first_error_column:  # asked for by name: it must be there
        raise InputError(f"--first-error-column {name}: no such column (columns: "
                         f"{', '.join(table.column_names)})")
    if step_labels is None:
        return None
    raw = [None if s is None else next((i for i, v in enumerate(s) if v == 0), None)
           for s in step_labels]
    return FirstErrors(f"{opts.step_labels_column} (first 0)", columns, raw, raw,
                       [s is not None for s in step_labels], [], counts, True)


def _out_of_range_note(table: pa.Table, first: FirstErrors, trace_level: bool) -> str:
    i = first.out_of_range[0]
    ids = table.column(S.ID).to_pylist()
    steps = "" if first.steps[i] is None else f" of {first.steps[i]} steps"
    return (f"{len(first.out_of_range)} rows have a first-error value that is not a step of "
            f"the row ({first.source}: e.g. {first.raw[i]!r}{steps} in row {ids[i]}; -1 or "
            f"null means no error); they are left out of the ProcessBench F1"
            + (" and of the trace-level figures" if trace_level else ""))


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

TOP1_WHY = ("no question has two or more scored samples; top-1 compares the samples of one "
            "question, matched by normalised question text or --question-key")


def _ranking(scores, labels, groups, n_boot: int) -> tuple[dict, dict[str, str]]:
    """AUROC (+ bootstrap interval), average precision and top-1 of one score, and why each
    figure that is None is None."""
    scored = [y for s, y in zip(scores, labels, strict=True) if s is not None]
    n, pos = len(scored), sum(scored)
    one_class = None
    if not labels:
        one_class = "no row has a trace label"
    elif n == 0:
        one_class = "no labelled row has a value"
    elif pos in (0, n):
        which = "labelled" if n == len(labels) else "labelled and scored"
        one_class = (f"undefined: every {which} row is {'correct' if pos else 'wrong'} ({pos} "
                     f"of {n} correct); ranking needs both correct and wrong rows")
    auroc = M.auroc(scores, labels)
    ci = M.bootstrap_ci(M.auroc, scores, labels, n_boot=n_boot) \
        if auroc is not None and n_boot > 0 else None
    # With one class, AP is 0 or trivially 1: as meaningless as the AUROC.
    ap = M.average_precision(scores, labels) if one_class is None else None
    top = M.top1(groups, scores, labels)["top1_accuracy"] if labels else None
    why: dict[str, str] = {}
    if auroc is None:
        why["auroc"] = one_class or "undefined"
    if ci is None:
        why["auroc_ci95"] = (why["auroc"] if auroc is None else "no bootstrap (n_boot 0)"
                             if n_boot < 1 else
                             f"fewer than half of {n_boot} bootstrap resamples of the {n} rows "
                             f"hold both classes ({pos} correct, {n - pos} wrong: too few)")
    if ap is None:
        why["average_precision"] = one_class or "undefined"
    if top is None:
        why["top1_accuracy"] = one_class if not labels else TOP1_WHY
    return {"auroc": auroc, "auroc_ci95": ci, "average_precision": ap,
            "top1_accuracy": top}, why


def _null_notes(main: dict[str, str], others: dict[str, dict[str, str]]) -> list[str]:
    """One line per reason a figure is None: the score's figures first ("auroc, auroc_ci95:
    why"), then any baseline's or signal's whose reason differs from the score's."""
    lines = []
    by_reason: dict[str, list[str]] = {}
    for metric, reason in main.items():
        by_reason.setdefault(reason, []).append(metric)
    for reason, metrics in by_reason.items():
        shared = any(w.get(m) == reason for w in others.values() for m in metrics)
        lines.append(f"{', '.join(metrics)}: {reason}"
                     + (" (so for the baselines and signals too)" if shared else ""))
    for who, why in others.items():
        own: dict[str, list[str]] = {}
        for metric, reason in why.items():
            if main.get(metric) != reason:
                own.setdefault(reason, []).append(metric)
        lines += [f"{who}: {', '.join(m)}: {r}" for r, m in own.items()]
    return lines


def evaluate(table: pa.Table, opts: EvalOptions) -> dict:
    """Every figure of ``curate eval`` on one scored table; a figure that is None has a line in
    ``notes`` that names it and says why."""
    t0 = time.time()
    first = first_errors(table, opts)
    all_labels, label_note = trace_labels(table, opts, first)
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
    notes = result["notes"]
    if label_note:
        notes.append(label_note)
    if first is not None and first.out_of_range:
        notes.append(_out_of_range_note(table, first, label_note is not None
                                        and label_note.startswith("labels derived")))
    result["positives"] = sum(labels)
    figures, why = _ranking(scores, labels, groups, opts.n_boot)
    result.update(figures)
    others: dict[str, dict[str, str]] = {}
    if known:
        top = M.top1(groups, scores, labels)
        result["questions"] = top["questions"]
        result["oracle_top1"] = top["oracle"]
        if top["oracle"] is None:
            why["oracle_top1"] = TOP1_WHY
        lengths = sub(_floats(table, "length_tokens") if "length_tokens" in table.column_names
                      else [float(len(r or "")) for r in table.column(S.RESPONSE).to_pylist()])
        result["baselines"] = {
            "random": {"top1_accuracy": top["random"], "auroc": 0.5 if result["auroc"]
                       is not None else None},
        }
        others["baseline random"] = {k: why[k] for k in ("auroc", "top1_accuracy") if k in why}
        for name, vals in (("longest", lengths),
                           ("shortest", [None if v is None else -v for v in lengths])):
            fig, w = _ranking(vals, labels, groups, 0)
            # The length baselines are reported without average precision and interval.
            result["baselines"][name] = {"top1_accuracy": fig["top1_accuracy"],
                                         "auroc": fig["auroc"]}
            others[f"baseline {name}"] = {k: w[k] for k in ("auroc", "top1_accuracy") if k in w}
        for name in opts.baseline_columns:
            fig, w = _ranking(sub(_floats(table, name)), labels, groups, opts.n_boot)
            result["baselines"][name] = fig
            others[f"baseline {name}"] = w
        result["signals"] = {}
        for name in _signal_columns(table):
            vals = sub(_floats(table, name) if name != "min_step_reward"
                       else _min_rewards(table))
            fig, w = _ranking(vals, labels, groups, 0)
            del fig["auroc_ci95"]  # no interval for signals: not computed, not reported
            w.pop("auroc_ci95", None)
            result["signals"][name] = {**fig, "unscored": sum(1 for v in vals if v is None)}
            others[f"signal {name}"] = w
        result["histogram"] = _histograms(scores, labels)
    elif label_note:
        why = {k: f"no row has a trace label ({label_note})" for k in why}
    notes += _null_notes(why, others)
    if len(known) < table.num_rows:
        notes.append(f"{table.num_rows - len(known)} rows have no label and are left "
                     "out of the trace-level figures")
    result["unscored"] = sum(1 for v in scores if v is None)
    steps, f1_why, step_notes = _step_level(table, opts, first)
    if steps is not None:
        result["step_level"] = steps
        result["processbench_f1"] = steps.get("f1")
    notes += [f"step level: {n}" for n in step_notes]
    if result["processbench_f1"] is None:
        notes.append(f"processbench_f1: {f1_why}")
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


def _step_level(table: pa.Table, opts: EvalOptions, first: FirstErrors | None
                ) -> tuple[dict | None, str | None, list[str]]:
    """The ProcessBench protocol: (figures or None when no row has a step label, why the F1 is
    None if it is, notes on the rows left out)."""
    if first is None:
        return None, (f"no step labels: the input has no {opts.first_error_column} column and "
                      f"no {opts.step_labels_column} column (see --first-error-column, "
                      "--step-labels-column)"), []
    if not any(first.labelled):
        return None, (f"no step labels: {' and '.join(first.columns)} "
                      f"{'is' if len(first.columns) == 1 else 'are'} null in every row"), []
    split_rule = _split_rule(table)
    out: dict = {"split_rule": split_rule, "first_error_source": first.source,
                 "length_mismatch": 0, "unlabelled": 0, "out_of_range": 0, "unscored": 0,
                 "rows": 0, "f1": None}
    notes: list[str] = []
    why = None
    if "predicted_first_error" in table.column_names and "step_rewards" not in \
            table.column_names:
        return _verifier_step_level(table, first, out)
    if "step_rewards" not in table.column_names:
        why = "the input has no step_rewards column (it was scored without step rewards)"
        out["note"] = why
        return out, why, notes
    rewards = _all_rewards(table)
    ids = table.column(S.ID).to_pylist()
    bad = set(first.out_of_range)
    use_r, use_t, keys = [], [], []
    for i, r in enumerate(rewards):
        t = first.truth[i]
        if not first.labelled[i]:
            out["unlabelled"] += 1
        elif i in bad:
            out["out_of_range"] += 1
        elif not r:
            out["unscored"] += 1
        elif first.steps[i] is not None and len(r) != first.steps[i]:
            out["length_mismatch"] += 1
        elif t is not None and t >= len(r):  # only when the data does not give the steps
            out["out_of_range"] += 1
            bad.add(i)
        else:
            use_r.append(r)
            use_t.append(t)
            keys.append(ids[i])
    out["rows"] = len(use_r)
    if out["length_mismatch"]:
        what = "step-label count" if first.has_step_labels else "source step count"
        notes.append(f"{out['length_mismatch']} rows have a {what} that differs from the step "
                     f"count (steps: {split_rule}); they are left out")
    if out["out_of_range"] > len(first.out_of_range):  # found only here, against the rewards
        notes.append(f"{out['out_of_range'] - len(first.out_of_range)} rows have a first error "
                     f"past their last step ({first.source}, steps: {split_rule}); they are "
                     "left out")
    if out["unscored"] and use_r:
        notes.append(f"{out['unscored']} rows have no step rewards; they are left out")
    if not use_r:
        if out["unscored"] and out["unscored"] == sum(first.labelled) - len(first.out_of_range):
            why = "the scorer gave no step rewards (e.g. --encoder none)"
        else:
            why = (f"no labelled row has step rewards for its steps ({out['length_mismatch']} "
                   f"count mismatches, {out['out_of_range']} out of range, {out['unscored']} "
                   "without step rewards)")
    elif all(t is None for t in use_t) or all(t is not None for t in use_t):
        why = (f"every usable sample is {'correct' if use_t[0] is None else 'erroneous'} "
               f"({len(use_r)} rows): F1 needs both kinds")
    else:
        try:
            out.update(M.processbench_eval(use_r, use_t, keys, fixed_threshold=opts.threshold))
        except ValueError:  # the calibration half lacks one kind: too few rows to choose on
            calib = M.split_indices(keys)[0]
            lacks = "erroneous" if all(use_t[i] is None for i in calib) else "correct"
            why = (f"only {len(use_r)} rows: the calibration half ({len(calib)} rows) has no "
                   f"{lacks} samples to choose a threshold on; give --threshold")
        else:
            if out["f1"] is None:
                lacks = "erroneous" if not out["n_error"] else "correct"
                why = (f"the test half ({out['test_rows']} rows) has no {lacks} samples; give "
                       "--threshold to use every row")
    if notes or why:
        out["note"] = "; ".join(notes + ([why] if why else []))
    return out, why, notes


def _verifier_step_level(table: pa.Table, first: FirstErrors, out: dict
                         ) -> tuple[dict, str | None, list[str]]:
    """The ProcessBench protocol for a generative verifier: its prediction is the first step its
    critique judged incorrect (``predicted_first_error``, -1 for none), so there is no
    threshold to choose and every labelled row is a test row."""
    preds_raw = table.column("predicted_first_error").to_pylist()
    mism = table.column("verdict_count_mismatch").to_pylist() \
        if "verdict_count_mismatch" in table.column_names else [False] * table.num_rows
    bad = set(first.out_of_range)
    preds, truth, mismatched = [], [], 0
    for i, p in enumerate(preds_raw):
        if not first.labelled[i]:
            out["unlabelled"] += 1
        elif i in bad:
            out["out_of_range"] += 1
        elif p is None:  # no verdict at all in the critique
            out["unscored"] += 1
        else:
            preds.append(None if p < 0 else int(p))
            truth.append(first.truth[i])
            mismatched += bool(mism[i])
    out.update(rows=len(preds), threshold=None, test_rows=len(preds), verdict_count_mismatch=
               mismatched, predictions="the first step the critique judged incorrect "
               "(predicted_first_error)")
    notes = []
    if out["unscored"]:
        notes.append(f"{out['unscored']} rows have a critique without any verdict; they are "
                     "left out")
    if mismatched:
        notes.append(f"{mismatched} of the rows used have a critique that judged another "
                     "number of steps than given (verdict_count_mismatch); their first "
                     "incorrect verdict is used as it is")
    why = None
    if not preds:
        why = "no labelled row has verifier verdicts"
    elif all(t is None for t in truth) or all(t is not None for t in truth):
        why = (f"every usable sample is {'correct' if truth[0] is None else 'erroneous'} "
               f"({len(preds)} rows): F1 needs both kinds")
    else:
        out.update(M.processbench_f1(preds, truth))
    if notes or why:
        out["note"] = "; ".join(notes + ([why] if why else []))
    return out, why, notes


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


__all__ = ["EvalOptions", "eval_stage", "evaluate", "first_errors", "load_table",
           "sample_rows"]
