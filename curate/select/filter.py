"""``curate filter``: keep the traces that pass per-row checks and the best-ranked selections.

Order of application (the funnel in the summary lists the active filters in this order):

    where → min_tokens → max_tokens → require_answer → answer_correct → max_repetition
          → min_score → per_question → top_k / top_frac

Every filter sees only the rows that survived the filters before it, so a row is dropped once,
by the first filter it fails, with ``drop_reason`` = that filter's name and ``drop_value`` = the
value that decided (the token count, the score, the ``--where`` text, ...).

Ranking convention (shared with ``curate dedup``): rows are ranked by ``score`` descending,
null (and NaN) scores last; ties, and every row when there is no ``score`` column, are broken by
``id`` ascending (a plain string compare, i.e. by code point). The result therefore never
depends on the input's row order or on how it is cut into batches. Two rows with the same id
(possible only across inputs read together) fall back to input order.

Score-based options on an input without ``score``: ``--min-score`` is an error (there is
nothing to compare); ``--top-k``, ``--top-frac`` and ``--per-question`` are an error too unless
``--allow-unscored`` is given, in which case they rank by id alone (deterministic, but not a
quality choice, hence opt-in).

Streaming. The per-row filters run batch by batch. The selections (per-question, top-k,
top-frac) need to see every row before choosing, but never hold the rows: the first pass keeps
only a rank key per candidate (score, id, question key, ordinal, input file and row) and prunes
the candidates whenever the buffer doubles: a row outside the best K of its question among the
rows seen so far, or outside the best K overall, can never come back, so it is dropped at once.
Memory is O(questions × K) for ``--per-question`` and O(K) for ``--top-k``, whatever the row
size. ``--top-frac`` cannot know its K before the last row has been counted, so without
``--per-question`` it keeps the rank key of every survivor until the end (about 60 bytes a row,
not the row). A second pass reads INPUT again and writes the chosen rows, which keeps the
output in input order. Without a selection there is one pass.

``_dropped/`` holds the reader's own drops (when INPUT is not a curate folder) and every filter
drop, in the order they were decided; ``input_row`` is the row in the input file when the
reader mapped that batch one row to one row, else null.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from .. import schema as S
from ..dropped import dropped_rows
from ..errors import InputError
from ..options import StageOptions, option
from ..read.traces import ReadOptions, ReadStats
from ..stage import Stage, StageContext
from .normalize import text_key

ProgressFn = Callable[[int], None]
HELP_SHORT = 'Keep the best traces: min score, global top-K, best K per question, SQL filters.'
HELP_DOC = """Keep the traces that pass per-row checks, then the best-ranked ones, and write a dataset folder (data/*.parquet, _dropped/ with the reason and deciding value of every removed row, _manifest.json).

Filters apply in this order, each to the rows the earlier ones kept (the funnel in the summary shows it): --where → --min-tokens/--max-tokens → --require-answer → --answer-correct → --max-repetition → --min-score → --per-question → --top-k/--top-frac.

Ranking (for --per-question, --top-k, --top-frac): score descending, null scores last, ties by id ascending, so the result never depends on row order. The output keeps input order.

[bold]Examples[/bold]

  curate filter out/scored -o out/filtered --per-question 2
  curate filter out/scored -o out/filtered --top-k 1000          # the paper's selection
  curate filter out/scored -o out/filtered --answer-correct --max-repetition 0.2 --top-frac 0.5
  curate filter out/scored -o out/filtered --where "source = 'aime'" --where "length(response) < 4000"
  curate filter out/scored --min-score 0.6 --dry-run              # the funnel only; writes nothing

--where takes a SQL expression (polars SQL) over the columns; a null result drops the row."""  # noqa: E501

# The filters, in the order they are applied (also the order of `dropped` in the summary).
ROW_FILTERS = ("where", "min_tokens", "max_tokens", "require_answer", "answer_correct",
               "max_repetition", "min_score")
SELECTIONS = ("per_question", "top_k", "top_frac")
ORDER = ROW_FILTERS + SELECTIONS

# Python's str.split() whitespace, spelled out for RE2 (whose \s is ASCII-only), as in
# curate.signals.hygiene: the word count is then the same as len(text.split()).
_WORD = r"[^\t\n\x0b\x0c\r\x1c-\x1f\x85\p{Z}]+"
WORDS_MEASURE = "whitespace words of trajectory + response"
# The candidate buffer is pruned when it holds more than twice what the last prune kept, and
# never below this many rows: pruning costs a sort, so it should not run on every batch.
MIN_PRUNE_ROWS = 65_536


@dataclass
class FilterOptions(StageOptions):
    where: list[str] | None = option(help="Keep rows where this polars SQL expression is true, "
                                     "e.g. \"source = 'aime'\" (repeatable; all must hold).")
    min_tokens: int | None = option(help="Drop traces shorter than N tokens (length_tokens if "
                                    "present, else whitespace words of trajectory + response).")
    max_tokens: int | None = option(help="Drop traces longer than N tokens (same count as "
                                    "--min-tokens).")
    require_answer: bool = option(False, help="Drop traces with no final answer (has_answer, "
                                  "else a non-empty answer column).")
    answer_correct: bool = option(False, help="Keep only traces whose answer matches "
                                  "reference_answer (the answer_correct column, else checked by "
                                  "math-verify); rows without a reference are dropped.")
    max_repetition: float | None = option(help="Drop traces whose repetition (share of repeated "
                                          "word 10-grams) is above F.")
    min_score: float | None = option(help="Drop traces with score below F (missing scores: "
                                     "null, NaN or infinite, are dropped).")
    per_question: int | None = option(help="Keep the best K samples of each question.")
    question_key: str | None = option(help="Column that identifies a question for "
                                      "--per-question (default: a hash of the normalised "
                                      "question text).")
    top_k: int | None = option(help="Keep the best N traces overall (after the other filters).")
    top_frac: float | None = option(help="Keep the best share F (0 < F <= 1) of the rows the "
                                    "other filters kept (rounded down, at least 1).")
    allow_unscored: bool = option(False, help="Let --per-question/--top-k/--top-frac run on an "
                                  "input without score, ranking by id alone.")
    batch_rows: int = 2048

    def __post_init__(self):
        if self.top_k is not None and self.top_k < 1:
            raise InputError(f"--top-k {self.top_k}: must be at least 1")
        if self.top_frac is not None and not 0 < self.top_frac <= 1:
            raise InputError(f"--top-frac {self.top_frac}: must be in (0, 1]")
        if self.top_k is not None and self.top_frac is not None:
            raise InputError("--top-k and --top-frac: choose one")
        if self.per_question is not None and self.per_question < 1:
            raise InputError(f"--per-question {self.per_question}: must be at least 1")
        if self.question_key is not None and self.per_question is None:
            raise InputError(f"--question-key {self.question_key}: only used by --per-question, "
                             "which is not given")
        for name, value in (("--min-tokens", self.min_tokens), ("--max-tokens", self.max_tokens)):
            if value is not None and value < 0:
                raise InputError(f"{name} {value}: must be 0 or more")
        if (self.min_tokens is not None and self.max_tokens is not None
                and self.min_tokens > self.max_tokens):
            raise InputError(f"--min-tokens {self.min_tokens} is more than --max-tokens "
                             f"{self.max_tokens}: no row could pass")
        for name, value in (("--min-score", self.min_score),
                            ("--max-repetition", self.max_repetition)):
            if value is not None and math.isnan(value):
                raise InputError(f"{name} nan: expected a number")
        if self.batch_rows < 1:
            raise InputError(f"--batch-rows {self.batch_rows}: must be at least 1")
        self.where = list(self.where or [])
        self._exprs = [_parse_where(text) for text in self.where]

    @property
    def selecting(self) -> bool:
        return any(v is not None for v in (self.per_question, self.top_k, self.top_frac))

    def passes(self, dry_run: bool = False) -> int:
        """Reads of INPUT a run makes (for a progress total): 2 when a selection must write."""
        return 2 if self.selecting and not dry_run else 1


def _parse_where(text: str) -> pl.Expr:
    """A polars SQL expression (never Python eval). Syntax errors surface here, before reading."""
    if not text.strip():
        raise InputError("--where '': empty expression")
    try:
        expr = pl.sql_expr(text)
    except Exception as e:  # noqa: BLE001 - polars raises several types for a bad expression
        raise InputError(f"--where {_quote(text)}: {_polars_message(e)}") from None
    if not _per_row(expr):
        raise InputError(f"--where {_quote(text)}: aggregates, window functions and subqueries "
                         "are not row conditions (they would be computed per batch)")
    return expr


# Nodes of polars' expression tree whose value depends on other rows. A condition using them
# would be computed per batch, so its result would change with the batch size.
_ACROSS_ROWS = ('{"Agg":', '"Len"', '{"SubPlan":', '{"Window":', '"Rank":', '"Shift":',
                '"CumSum"', '"CumCount"')


def _per_row(expr: pl.Expr) -> bool:
    try:
        tree = expr.meta.serialize(format="json")
    except Exception:  # noqa: BLE001 - best effort; the per-batch length check still applies
        return True
    return not any(token in tree for token in _ACROSS_ROWS)


def _quote(text: str) -> str:
    """An expression as the user would type it in a shell (most hold 'string literals')."""
    return f'"{text}"' if "'" in text else f"'{text}'"


def _polars_message(e: BaseException) -> str:
    return " ".join(line.strip() for line in str(e).splitlines() if line.strip())


# --- formatting of drop values ------------------------------------------------------------------

def _num_text(col: str = "s") -> pl.Expr:
    """A float column as text, "null" for null. Values that are exactly a float32 (what `curate
    score` writes) get their shortest float32 form, so 0.3 reads 0.3 and not
    0.30000001192092896; other values their shortest float64 form."""
    x = pl.col(col)
    f32 = x.cast(pl.Float32)
    return (pl.when(f32.cast(pl.Float64) == x).then(f32.cast(pl.String))
            .otherwise(x.cast(pl.String)).fill_null("null"))


def _num_texts(values: pa.Array | np.ndarray) -> list[str]:
    s = pl.Series("s", values, dtype=pl.Float64)
    return pl.DataFrame([s]).select(_num_text()).to_series().to_list()


# --- the per-row filters ------------------------------------------------------------------------

@dataclass
class _Step:
    """One entry of the funnel: a filter (one per --where expression) and its removed count."""

    reason: str
    option: str
    removed: int = 0


@dataclass
class _Context:
    label: str  # the input file of the batch, for messages
    measures: set[str]  # how token counts were taken (for the summary)


# A check takes the surviving rows and returns (fail mask, drop values of the failing rows).
Check = Callable[[pa.Table, _Context], tuple[np.ndarray, list[str]]]


def _where_check(text: str, expr: pl.Expr) -> Check:
    roots = expr.meta.root_names()
    option = f"--where {_quote(text)}"

    def check(table: pa.Table, ctx: _Context):
        # Only the columns the expression names are converted; when one is missing the whole
        # table goes to polars so that its message lists the columns there are.
        cols = roots if all(c in table.column_names for c in roots) else table.column_names
        df = pl.from_arrow(table.select(sorted(set(cols)) or [S.ID]))
        try:
            res = df.select(expr.alias("__where")).to_series()
        except Exception as e:  # noqa: BLE001 - ColumnNotFound, InvalidOperation, Compute ...
            raise InputError(f"{option}: {_polars_message(e)} ({ctx.label})") from None
        if res.dtype != pl.Boolean:
            raise InputError(f"{option}: gives {res.dtype}, not a true/false condition")
        if res.len() == 1 and not roots:  # a constant (aggregates are refused when parsed)
            res = res.extend_constant(res[0], table.num_rows - 1)
        if res.len() != table.num_rows:
            raise InputError(f"{option}: gives {res.len()} value(s) for "
                             f"{table.num_rows} rows; use a per-row condition (no aggregate)")
        # SQL semantics: a null condition does not select the row.
        fail = ~res.fill_null(False).to_numpy()
        return fail, [text] * int(fail.sum())

    return check


def _token_counts(table: pa.Table, ctx: _Context) -> np.ndarray:
    words = None
    if "length_tokens" in table.column_names:
        col = pc.cast(table.column("length_tokens"), pa.int64())
        ctx.measures.add("length_tokens")
        if col.null_count == 0:
            return col.to_numpy()
        words = _word_counts(table)
        ctx.measures.add(WORDS_MEASURE)
        return pc.coalesce(col, pa.array(words)).to_numpy()
    ctx.measures.add(WORDS_MEASURE)
    return _word_counts(table)


def _word_counts(table: pa.Table) -> np.ndarray:
    total = np.zeros(table.num_rows, dtype=np.int64)
    for col in (S.TRAJECTORY, S.RESPONSE):
        if col in table.column_names:
            counts = pc.count_substring_regex(pc.fill_null(table.column(col), ""), _WORD)
            total += pc.fill_null(counts, 0).to_numpy().astype(np.int64)
    return total


def _tokens_check(bound: int, upper: bool) -> Check:
    def check(table: pa.Table, ctx: _Context):
        n = _token_counts(table, ctx)
        fail = n > bound if upper else n < bound
        return fail, [str(v) for v in n[fail].tolist()]

    return check


def _bools(table: pa.Table, name: str) -> list[bool | None]:
    return pc.cast(table.column(name), pa.bool_()).to_pylist()


def _blank(values: list[str | None]) -> np.ndarray:
    return np.array([v is None or not str(v).strip() for v in values], dtype=bool)


def _require_answer_check(table: pa.Table, ctx: _Context):
    if "has_answer" in table.column_names:
        has = _bools(table, "has_answer")
        fail = np.array([h is not True for h in has], dtype=bool)
        return fail, ["null" if h is None else "false" for h, f in zip(has, fail, strict=True)
                      if f]
    if "answer" in table.column_names:
        ans = table.column("answer").to_pylist()
        fail = _blank(ans)
        return fail, ["null" if a is None else "blank" for a, f in zip(ans, fail, strict=True)
                      if f]
    raise InputError(f"--require-answer: {ctx.label} has neither a has_answer nor an answer "
                     "column; run `curate score` first")


def _answer_correct_check(table: pa.Table, ctx: _Context):
    n = table.num_rows
    refs = (table.column(S.REFERENCE_ANSWER).to_pylist()
            if S.REFERENCE_ANSWER in table.column_names else [None] * n)
    no_ref = _blank(refs)
    if "answer_correct" in table.column_names:
        correct = _bools(table, "answer_correct")
    else:
        # Checked here, only where there is a reference (math-verify is the slow part).
        from ..signals.answers import check_answers

        idx = np.flatnonzero(~no_ref)
        correct = [None] * n
        if len(idx):
            resp = table.column(S.RESPONSE).take(pa.array(idx)).to_pylist()
            got, _ = check_answers(resp, [refs[i] for i in idx])
            for i, c in zip(idx.tolist(), got, strict=True):
                correct[i] = c
    fail = np.array([c is not True for c in correct], dtype=bool)
    values = []
    for c, missing, f in zip(correct, no_ref, fail, strict=True):
        if f:
            values.append("false" if c is False else "no reference" if missing else "null")
    return fail, values


def _repetition_check(bound: float) -> Check:
    def check(table: pa.Table, ctx: _Context):
        from ..signals.hygiene import repetition

        have = (pc.cast(table.column("repetition"), pa.float64()).to_pylist()
                if "repetition" in table.column_names else [None] * table.num_rows)
        if any(v is None for v in have):
            # The scorer's text: thinking and response joined by a blank line.
            traj = (table.column(S.TRAJECTORY).to_pylist()
                    if S.TRAJECTORY in table.column_names else [None] * table.num_rows)
            resp = table.column(S.RESPONSE).to_pylist()
            have = [v if v is not None else repetition((t or "") + "\n\n" + (r or ""))
                    for v, t, r in zip(have, traj, resp, strict=True)]
        rep = np.array(have, dtype=np.float64)
        fail = rep > bound
        return fail, _num_texts(rep[fail])

    return check


def _scores(table: pa.Table, label: str, need: str | None) -> pa.Array | None:
    """The score column as float64 (NaN and ±inf → null: no score), or None when absent and
    allowed."""
    if "score" not in table.column_names:
        if need:
            raise InputError(f"{need}: {label} has no score column: run `curate score` first, or "
                             "pass --allow-unscored to rank by id alone")
        return None
    col = table.column("score")
    if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)
            or pa.types.is_null(col.type)):
        raise InputError(f"{label}: column score is {col.type}, not a number")
    arr = pc.cast(col, pa.float64()).combine_chunks() if table.num_rows else pa.array(
        [], pa.float64())
    bad = pc.invert(pc.fill_null(pc.is_finite(arr), True))
    return pc.if_else(bad, pa.scalar(None, pa.float64()), arr)


def _min_score_check(bound: float) -> Check:
    def check(table: pa.Table, ctx: _Context):
        s = _scores(table, ctx.label, f"--min-score {bound}")
        fail = ~pc.fill_null(pc.greater_equal(s, bound), False).to_numpy(zero_copy_only=False)
        return fail, _num_texts(s.filter(pa.array(fail)))

    return check


def _row_filters(opts: FilterOptions) -> list[tuple[_Step, Check]]:
    out: list[tuple[_Step, Check]] = []
    for text, expr in zip(opts.where, opts._exprs, strict=True):
        out.append((_Step("where", f"--where {_quote(text)}"), _where_check(text, expr)))
    if opts.min_tokens is not None:
        out.append((_Step("min_tokens", f"--min-tokens {opts.min_tokens}"),
                    _tokens_check(opts.min_tokens, upper=False)))
    if opts.max_tokens is not None:
        out.append((_Step("max_tokens", f"--max-tokens {opts.max_tokens}"),
                    _tokens_check(opts.max_tokens, upper=True)))
    if opts.require_answer:
        out.append((_Step("require_answer", "--require-answer"), _require_answer_check))
    if opts.answer_correct:
        out.append((_Step("answer_correct", "--answer-correct"), _answer_correct_check))
    if opts.max_repetition is not None:
        out.append((_Step("max_repetition", f"--max-repetition {opts.max_repetition}"),
                    _repetition_check(opts.max_repetition)))
    if opts.min_score is not None:
        out.append((_Step("min_score", f"--min-score {opts.min_score}"),
                    _min_score_check(opts.min_score)))
    return out


# --- the selections -----------------------------------------------------------------------------

# A candidate: q (question key), s (score, float64, null last), id, ord (ordinal of the row in
# INPUT's canonical rows: what the second pass selects by), file, row (for _dropped/).
_KEY_SCHEMA = {"q": pl.String, "s": pl.Float64, "id": pl.String, "ord": pl.Int64,
               "file": pl.Int32, "row": pl.Int64}


def rank_sort(df: pl.DataFrame) -> pl.DataFrame:
    """The ranking convention: score descending, nulls last, then id ascending."""
    return df.sort(["s", "id", "ord"], descending=[True, False, False], nulls_last=True)


class _Selector:
    """Candidates of the selections, pruned as they come; the chosen ordinals at the end."""

    def __init__(self, opts: FilterOptions):
        self.opts = opts
        self.pending: list[pl.DataFrame] = []
        self.rows = 0
        self.kept_last = 0
        self.drops: list[tuple[str, pl.DataFrame]] = []  # (reason, candidates) to report
        self.removed: Counter = Counter()

    def add(self, keys: pl.DataFrame) -> None:
        self.pending.append(keys)
        self.rows += keys.height
        # --top-frac alone cannot prune: its K is only known after the last row.
        can_prune = self.opts.per_question is not None or self.opts.top_k is not None
        if can_prune and self.rows > max(2 * self.kept_last, MIN_PRUNE_ROWS):
            self._prune()

    def _all(self) -> pl.DataFrame:
        df = pl.concat(self.pending) if self.pending else pl.DataFrame(schema=_KEY_SCHEMA)
        self.pending = [df]
        return df

    def _prune(self) -> None:
        df = self._all()
        if self.opts.per_question is not None:
            df = self._per_question(df)
        else:
            df = self._top(df, self.opts.top_k, "top_k")
        self.pending = [df]
        self.rows = self.kept_last = df.height

    def _per_question(self, df: pl.DataFrame) -> pl.DataFrame:
        k = self.opts.per_question
        ranked = rank_sort(df).with_columns(rank=pl.int_range(1, pl.len() + 1).over("q"))
        out = ranked.filter(pl.col("rank") > k)
        if out.height:
            self._drop("per_question", out.with_columns(
                value=pl.format("rank>{}, score {}", pl.lit(k), _num_text())))
        return ranked.filter(pl.col("rank") <= k).drop("rank")

    def _top(self, df: pl.DataFrame, k: int, reason: str) -> pl.DataFrame:
        ranked = rank_sort(df)
        out = ranked.slice(k)
        if out.height:
            self._drop(reason, out.with_columns(value=_num_text()))
        return ranked.head(k)

    def _drop(self, reason: str, df: pl.DataFrame) -> None:
        self.removed[reason] += df.height
        self.drops.append((reason, df))

    def finish(self) -> np.ndarray:
        """The ordinals chosen, sorted (input order)."""
        df = self._all()
        if self.opts.per_question is not None:
            df = self._per_question(df)
        if self.opts.top_k is not None:
            df = self._top(df, self.opts.top_k, "top_k")
        elif self.opts.top_frac is not None:
            # Decimal: the share as typed (0.29 × 100 is 28.999… in binary floating point).
            k = max(1, int(Decimal(repr(self.opts.top_frac)) * df.height)) if df.height else 0
            df = self._top(df, k, "top_frac")
        self.pending = []
        return np.sort(df["ord"].to_numpy())

    def take_drops(self) -> list[tuple[str, pl.DataFrame]]:
        d, self.drops = self.drops, []
        return d


def _question_keys(table: pa.Table, opts: FilterOptions, label: str) -> pa.Array:
    if opts.question_key is None:
        questions = table.column(S.QUESTION).to_pylist()
        cache = {q: text_key(q) for q in set(questions)}  # samples of a question share it
        return pa.array([cache[q] for q in questions], pa.string())
    if opts.question_key not in table.column_names:
        raise InputError(f"--question-key {opts.question_key}: no such column in {label} "
                         f"(columns: {', '.join(table.column_names)})")
    col = table.column(opts.question_key)
    try:
        return pc.cast(col, pa.string()).combine_chunks()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # Lists and structs have no cast to text: their JSON-ish text identifies them.
        return pa.array([None if v is None else str(v) for v in col.to_pylist()], pa.string())


# --- the stage ----------------------------------------------------------------------------------

@dataclass
class _Run:
    stats: ReadStats
    steps: list[_Step]
    selector: _Selector | None
    files: dict[str, int] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)
    measures: set[str] = field(default_factory=set)
    traces: int = 0  # canonical rows after reading
    survivors: int = 0  # after the per-row filters
    kept: int = 0

    def file_index(self, label: str) -> int:
        if label not in self.files:
            self.files[label] = len(self.labels)
            self.labels.append(label)
        return self.files[label]


def _first_pass(ctx: StageContext, opts: FilterOptions) -> _Run:
    """Read once: per-row filters, candidate keys; rows written here when nothing selects."""
    filters = _row_filters(opts)
    selector = _Selector(opts) if opts.selecting else None
    run = _Run(ctx.read_stats, [s for s, _ in filters], selector)
    score_need = None if opts.allow_unscored else next(
        (f"{name} {v}" for name, v in (("--per-question", opts.per_question),
                                       ("--top-k", opts.top_k), ("--top-frac", opts.top_frac))
         if v is not None), None)
    ordinal = 0
    for batch in ctx.traces(ReadOptions(batch_rows=opts.batch_rows)):
        label = batch.label
        table = batch.table
        rows = batch.positions
        n = table.num_rows
        run.traces += n
        pos = np.arange(n, dtype=np.int64)  # surviving rows' positions in the batch
        fctx = _Context(label, run.measures)
        for step, check in filters:
            if table.num_rows == 0:
                break
            fail, values = check(table, fctx)
            if fail.any():
                step.removed += int(fail.sum())
                ids = table.column(S.ID).filter(pa.array(fail))
                ctx.drop(dropped_rows(ids, step.reason, values, label,
                                      rows.take(pa.array(pos[fail]))))
                table = table.filter(pa.array(~fail))
                pos = pos[~fail]
        run.survivors += table.num_rows
        if selector is None:
            run.kept += table.num_rows
            ctx.write(table)
        elif table.num_rows:
            s = _scores(table, label, score_need)
            keys = {"q": (_question_keys(table, opts, label) if opts.per_question is not None
                          else pa.nulls(table.num_rows, pa.string())),
                    "s": s if s is not None else pa.nulls(table.num_rows, pa.float64()),
                    "id": table.column(S.ID),
                    "ord": pa.array(pos + ordinal),
                    "file": pa.array(np.full(table.num_rows, run.file_index(label),
                                             dtype=np.int32)),
                    "row": rows.take(pa.array(pos))}
            selector.add(pl.from_arrow(pa.table(keys)).cast(_KEY_SCHEMA))
            _flush_selection_drops(run, ctx)
        ordinal += n
    return run


def _flush_selection_drops(run: _Run, ctx: StageContext) -> None:
    for reason, df in run.selector.take_drops():
        files = pa.array(run.labels, pa.string()).take(df["file"].to_arrow())
        ctx.drop(dropped_rows(df["id"].to_arrow(), reason, df["value"].to_arrow(), files,
                              df["row"].to_arrow()))


def _second_pass(ctx: StageContext, opts: FilterOptions, chosen: np.ndarray, run: _Run) -> None:
    """Read again and write the chosen rows, in input order (the batches are the same)."""
    ordinal = 0
    for batch in ctx.traces(ReadOptions(batch_rows=opts.batch_rows), record=False):
        n = batch.table.num_rows
        lo, hi = np.searchsorted(chosen, [ordinal, ordinal + n])
        if hi > lo:
            table = batch.table.take(pa.array(chosen[lo:hi] - ordinal))
            ctx.write(table)
            run.kept += table.num_rows
        ordinal += n
        if hi >= len(chosen):
            break  # nothing chosen further on: no need to read the rest


def _funnel(run: _Run, opts: FilterOptions) -> list[dict]:
    remaining = run.traces
    out = []
    steps = [(s.reason, s.option, s.removed) for s in run.steps]
    if run.selector is not None:
        for reason, option_text in (("per_question", f"--per-question {opts.per_question}"),
                                    ("top_k", f"--top-k {opts.top_k}"),
                                    ("top_frac", f"--top-frac {opts.top_frac}")):
            if getattr(opts, reason) is not None:
                steps.append((reason, option_text, run.selector.removed[reason]))
    for reason, option_text, removed in steps:
        remaining -= removed
        out.append({"filter": reason, "option": option_text, "removed": removed,
                    "remaining": remaining})
    return out


def _summary(ctx: StageContext, run: _Run, opts: FilterOptions, dry_run: bool) -> dict:
    read_reasons = [r for r in ctx.dropped if r not in ORDER]
    dropped = {r: ctx.dropped[r] for r in [*read_reasons, *ORDER] if ctx.dropped.get(r)}
    elapsed = max(time.time() - ctx.started, 1e-9)
    return {
        "rows_in": run.stats.rows_in,
        "traces": run.traces,
        "rows_out": run.kept,
        "dropped": dropped,
        "funnel": _funnel(run, opts),
        "tokens_measure": sorted(run.measures) or None,
        "ranking": "score descending (nulls last), then id ascending",
        "dry_run": dry_run,
        "rows_per_s": round(run.stats.rows_in / elapsed, 1),
    }


class FilterStage(Stage):
    name = "filter"
    progress = "filtering"
    Options = FilterOptions
    help = HELP_SHORT
    doc = HELP_DOC

    def whole_input(self, opts: FilterOptions) -> bool:
        return opts.selecting

    def passes(self, opts: FilterOptions, dry_run: bool = False) -> int:
        return opts.passes(dry_run)

    def needs_score(self, opts: FilterOptions) -> str | None:
        if opts.allow_unscored:
            return None
        for key in ("min-score", "per-question", "top-k", "top-frac"):
            if getattr(opts, key.replace("-", "_")) is not None:
                return key
        return None

    def dry_run(self, ctx: StageContext, opts: FilterOptions) -> dict:
        """Only the first pass: the funnel is the same as a real run's, since every drop is
        decided there; nothing is written."""
        run = _first_pass(ctx, opts)
        if run.selector is not None:
            run.kept = len(run.selector.finish())
            _flush_selection_drops(run, ctx)
        summary = _summary(ctx, run, opts, True)
        summary["output"] = None
        return summary

    def run(self, ctx: StageContext, opts: FilterOptions) -> dict:
        run = _first_pass(ctx, opts)
        if run.selector is not None:
            chosen = run.selector.finish()
            _flush_selection_drops(run, ctx)
            if len(chosen):
                _second_pass(ctx, opts, chosen, run)
        if run.kept == 0:
            funnel = ", ".join(f"{f['filter']} -{f['removed']}" for f in _funnel(run, opts))
            raise InputError(f"{', '.join(ctx.inputs)}: no row survived the filters "
                             f"({run.traces} traces; {funnel or 'no filter'}); nothing written "
                             "(see the funnel with --dry-run)")
        return _summary(ctx, run, opts, False)
