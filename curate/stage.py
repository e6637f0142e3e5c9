"""The Stage contract and the one skeleton that runs every stage.

A stage is a class with a ``name``, an ``Options`` dataclass (``curate.options``) and a ``run``
method. ``run_stage`` owns everything around it, the same for every stage: resolving INPUT,
refusing an output it must not replace, the temporary folder and its atomic commit, writing
every dropped row (the reader's included) to ``_dropped/``, the manifest (inputs with
fingerprints, options, counts taken from the files written, exact score statistics, timings,
schema, per-part row counts and hashes), and progress. A stage only reads batches, writes
rows, drops rows, and returns its summary::

    class Upper(Stage):
        name = "upper"
        Options = UpperOptions            # a StageOptions dataclass
        help = "Upper-case the questions."

        def run(self, ctx, opts):
            for batch in ctx.traces():
                ctx.write(batch.table.set_column(...))
            return {"rows_out": ctx.rows_written}

``MapStage`` is the chunk-by-chunk form (read, score, decontam): ``process`` turns one batch
into a ``Chunk`` and the skeleton does the loop; a ``resumable`` map stage commits chunk by
chunk and a rerun continues after the last one. A stage that needs its whole input before it
can write (dedup, filter's top-K, export's ranking) says so in ``whole_input``: that is the
seam a distributed executor uses to run map stages as parallel tasks.

Where a stage's rows go (``writes``): ``"traces"`` (a dataset folder the next stage reads),
``"sft"`` (export's records, which no trace stage can read), or ``None`` (validate and
report write no folder).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

from . import schema as S
from .errors import InputError
from .io.sources import Source, fingerprint, resolve_inputs
from .io.writer import ENVIRONMENT_ERRNOS, StageOutput, check_target, os_error_message, schema_doc
from .options import StageOptions
from .read.traces import ReadOptions, ReadStats, TraceBatch, iter_traces
from .stats import distribution

# --- progress ----------------------------------------------------------------------------------

class Reporter:
    """Where progress and notes go. The library's default shows nothing; the command line
    gives a rich implementation (bars on stderr)."""

    @contextlib.contextmanager
    def task(self, label: str, total: int | None) -> Iterator[Callable[[int], None]]:
        """A unit of work with ``total`` steps (None: unknown); yields ``advance(n)``."""
        yield lambda n: None

    @contextlib.contextmanager
    def lazy(self, label: str) -> Iterator[Callable[[int, int], None]]:
        """Work that may not happen at all (a one-time model download or distillation);
        yields ``update(done, total)``, and shows something only once it is called."""
        yield lambda done, total: None

    def note(self, message: str) -> None:
        """A line for people (plain text)."""

    def result(self, stage: str, summary: dict) -> None:
        """A stage of a run finished with this summary."""


QUIET = Reporter()


# --- the contract ------------------------------------------------------------------------------

@dataclass
class Chunk:
    """What ``MapStage.process`` makes of one batch: the rows kept (with any new columns), the
    rows dropped (``curate.dropped``), and counters the summary adds up."""

    table: pa.Table
    dropped: pa.Table | None = None
    stats: dict[str, float] = field(default_factory=dict)


class Stage:
    """One step of the flow (see the module text)."""

    name: ClassVar[str]
    Options: ClassVar[type[StageOptions]]
    help: ClassVar[str] = ""   # one line: `curate --help`, `curate run --example`
    progress: ClassVar[str] = ""  # the progress bar's label, e.g. "filtering" (default: name)
    doc: ClassVar[str] = ""    # the command's --help text (rich markup allowed)
    # What INPUT is: "files" (read: files, folders, hub ids), "traces" (any input `read`
    # accepts, in a run the previous stage's folder), "export" (an export folder), "run" (a run
    # folder: every stage folder in it).
    takes: ClassVar[str] = "traces"
    writes: ClassVar[str | None] = "traces"
    resumable: ClassVar[bool] = False
    provides_score: ClassVar[bool] = False  # adds the `score` column later stages rank by
    # An exit code the stage may end with while still having done its work (validate's
    # failed checks); the flow goes on and reports it.
    soft_exit: ClassVar[int | None] = None

    def whole_input(self, opts) -> bool:
        """Whether the stage needs all of INPUT before it can write a row."""
        return False

    def chunked(self, opts) -> bool:
        """Whether this run commits chunk by chunk (and a rerun resumes): ``resumable``,
        unless the options make it a run of another kind (score's --rescore)."""
        return self.resumable

    def passes(self, opts, dry_run: bool = False) -> int:
        """Reads of INPUT a run makes (the progress total is rows × passes)."""
        return 1

    def needs_score(self, opts) -> str | None:
        """The option that ranks by ``score``, when one is set (the flow then needs a scoring
        stage before this one)."""
        return None

    def source_args(self, opts) -> dict:
        """How INPUT arguments are resolved (the read stage's hub split, config, revision)."""
        return {}

    def read_options(self, opts) -> ReadOptions:
        """How this stage reads INPUT."""
        return ReadOptions(batch_rows=getattr(opts, "batch_rows", 2048))

    def check(self, opts, out: str | None) -> None:
        """Checks that need the output path (e.g. export's ``-o -``). Raises InputError."""

    @classmethod
    def in_run(cls, values: dict, folders: dict[str, Path]) -> dict:
        """The stage's config values inside `curate run`, given the folders of the stages
        planned before it (validate's baseline defaults to the run's read stage)."""
        return values

    def run(self, ctx: StageContext, opts) -> dict:
        raise NotImplementedError

    # ``dry_run(ctx, opts) -> dict``, when a stage defines it, answers `--dry-run`: what a run
    # would do, writing nothing.
    dry_run = None


class MapStage(Stage):
    """A stage that works chunk by chunk: ``process`` maps one batch, the skeleton loops."""

    def open(self, ctx: StageContext, opts) -> Any:
        """Load what every chunk needs (a model, a benchmark index), once; returns it."""
        return None

    def process(self, batch: TraceBatch, opts, state) -> Chunk | pa.Table:
        raise NotImplementedError

    def summary(self, ctx: StageContext, opts, state, totals: Counter) -> dict:
        """The stage's summary from the summed chunk counters (``Chunk.stats``)."""
        return dict(totals)

    def resume_key(self, ctx: StageContext, opts, state) -> dict:
        """What a resumed run must share with the interrupted one (resumable stages)."""
        return {"stage": self.name, "options": opts.values(),
                "inputs": [fingerprint(s) for s in ctx.sources]}

    def close(self, state) -> None:
        """Release what ``open`` loaded."""

    def run(self, ctx: StageContext, opts) -> dict:
        state = self.open(ctx, opts)
        try:
            totals: Counter = Counter()
            if self.chunked(opts):
                self._run_chunks(ctx, opts, state, totals)
            else:
                for batch in ctx.traces(self.read_options(opts)):
                    chunk = self._process(batch, opts, state)
                    ctx.write(chunk.table)
                    if chunk.dropped is not None:
                        ctx.drop(chunk.dropped)
                    totals.update(_plain_numbers(chunk.stats))
            return self.summary(ctx, opts, state, totals)
        finally:
            self.close(state)

    def _process(self, batch, opts, state) -> Chunk:
        out = self.process(batch, opts, state)
        return out if isinstance(out, Chunk) else Chunk(out)

    def _run_chunks(self, ctx: StageContext, opts, state, totals: Counter) -> None:
        dest = ctx.open_chunks(self.resume_key(ctx, opts, state))
        for index, batch in enumerate(ctx.traces(self.read_options(opts))):
            ids_hash = _ids_hash(batch.table)
            if dest.is_done(index, ids_hash):  # committed by the interrupted run
                done = dest.chunks[index]
                totals.update(done.get("stats", {}))
                ctx.dropped.update(done.get("drops", {}))
                ctx.rows_written += done["rows"]
                continue
            chunk = self._process(batch, opts, state)
            dropped = [t for t in (batch.dropped, chunk.dropped) if t is not None]
            dropped = pa.concat_tables(dropped, promote_options="permissive") if dropped \
                else None
            drops = Counter(dropped.column(S.DROP_REASON).to_pylist()) if dropped else Counter()
            dest.commit_chunk(index, ids_hash, chunk.table, dropped,
                              {"stats": _plain_numbers(chunk.stats), "drops": dict(drops)})
            totals.update(_plain_numbers(chunk.stats))
            ctx.dropped.update(drops)
            ctx.rows_written += chunk.table.num_rows


def _plain_numbers(stats: dict) -> dict:
    """Counters as Python numbers (a numpy integer would reach the manifest as text)."""
    return {k: v.item() if hasattr(v, "item") else v for k, v in stats.items()}


def _ids_hash(table: pa.Table) -> str:
    h = xxhash.xxh3_64()
    for i in table.column(S.ID).to_pylist():
        h.update(i.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()


# --- the context a stage runs in ---------------------------------------------------------------

class StageContext:
    """What a running stage sees: its INPUT, its output, progress, and the manifest extras."""

    def __init__(self, stage: Stage, inputs: list[str], sources: list[Source] | None,
                 out: Path | None, *, overwrite: bool = False, command: str | None = None,
                 reporter: Reporter = QUIET, advance: Callable[[int], None] | None = None):
        self.stage = stage
        self.inputs = inputs
        self.sources = sources or []
        self.out = out
        self.overwrite = overwrite
        self.command = command
        self.reporter = reporter
        self.read_stats = ReadStats()
        self.manifest: dict[str, Any] = {}   # extra manifest keys (a model's fingerprint …)
        self.timings: dict[str, float] = {}  # named phases, seconds
        self.rows_written = 0
        self.dropped: Counter = Counter()
        self.started = time.time()
        self._advance = advance
        self._dest: StageOutput | None = None
        self._scratch: Path | None = None
        self._stack = contextlib.ExitStack()
        self._chunked = False
        self.stdout = None  # the binary stream of `-o -` (records on stdout), else None

    # -- reading -----------------------------------------------------------------------------
    def traces(self, read_opts: ReadOptions | None = None, *,
               record: bool = True) -> Iterator[TraceBatch]:
        """INPUT as canonical trace batches. The first read (``record``) writes the reader's
        dropped rows to ``_dropped/`` and counts rows in; a later pass over the same INPUT
        (``record=False``) only reads. Every pass advances the progress."""
        opts = read_opts or self.stage.read_options(None)
        stats = self.read_stats if record else ReadStats()
        for batch in iter_traces(self.inputs, opts, stats, self._advance,
                                 sources=self.sources):
            # A chunked output commits the reader's drops with their chunk instead.
            if record and batch.dropped is not None and not self._chunked:
                self.drop(batch.dropped)
            yield batch

    # -- writing -----------------------------------------------------------------------------
    @property
    def dest(self) -> StageOutput:
        if self._dest is None:
            raise RuntimeError(f"stage {self.stage.name} writes no folder here")
        return self._dest

    @property
    def writing(self) -> bool:
        return self._dest is not None

    def write(self, table: pa.Table) -> None:
        """Rows for the output folder (any columns; one schema is made at commit)."""
        if table.num_rows:
            if self._dest is not None:
                self._dest.write(table)
            self.rows_written += table.num_rows

    def drop(self, table: pa.Table) -> None:
        """Rows that leave the flow (build them with ``curate.dropped``)."""
        if table is None or not table.num_rows:
            return
        self.dropped.update(table.column(S.DROP_REASON).to_pylist())
        if self._dest is not None:
            self._dest.drop(table)

    @property
    def scratch(self) -> Path:
        """A folder for spill files, removed when the stage ends."""
        if self._dest is not None:
            return self._dest.scratch
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix=f"curate-{self.stage.name}-"))
            self._stack.callback(shutil.rmtree, self._scratch, True)
        return self._scratch

    def open_chunks(self, key: dict):
        """The chunk-by-chunk output of a resumable stage (see ``io.chunked``)."""
        from .io.chunked import ChunkedOutput

        dest = ChunkedOutput(self.out, self.stage.name, key, overwrite=self.overwrite)
        self._dest = self._stack.enter_context(dest)
        self._chunked = True
        return dest

    def _open_folder(self, shard_bytes: int | None) -> None:
        kw = {"shard_bytes": shard_bytes} if shard_bytes else {}
        dest = StageOutput(self.out, self.stage.name, overwrite=self.overwrite, **kw)
        self._dest = self._stack.enter_context(dest)

    def note(self, message: str) -> None:
        self.reporter.note(message)

    def advance(self, n: int) -> None:
        """Progress of work that is not reading (export's ranked write, …)."""
        if self._advance is not None:
            self._advance(n)


# --- running a stage ---------------------------------------------------------------------------

class StageResult(dict):
    """A stage's summary (the dict), with its manifest and exit code beside it."""

    def __init__(self, summary: dict, manifest: dict | None = None, exit_code: int = 0):
        super().__init__(summary)
        self.summary = self
        self.manifest = manifest
        self.exit_code = exit_code


def stage_instance(stage) -> Stage:
    """A Stage from a registered name, a Stage class or an instance."""
    if isinstance(stage, str):
        from .registry import get_stage

        stage = get_stage(stage)
    return stage() if isinstance(stage, type) else stage


def build_options(stage: Stage, options) -> StageOptions:
    if options is None:
        return stage.Options.build({})
    if isinstance(options, stage.Options):
        return options
    if isinstance(options, dict):
        return stage.Options.build(options)
    raise TypeError(f"options of stage {stage.name}: expected {stage.Options.__name__} or a "
                    f"dict, got {type(options).__name__}")


def input_total(stage: Stage, opts, sources: list[Source] | None, dry_run: bool = False
                ) -> int | None:
    """The progress total: input rows × passes, when every source knows its row count."""
    if not sources:
        return None
    counts = [s.total_rows() for s in sources]
    if None in counts:
        return None
    total = sum(counts)
    cap = getattr(opts, "limit", None) or getattr(opts, "sample", None)
    if stage.takes == "files" and cap:
        total = min(total, cap)
    return total * stage.passes(opts, dry_run)


def run_stage(stage, inputs: list[str] | str | None, out: str | os.PathLike | None,
              options=None, *, overwrite: bool = False, dry_run: bool = False,
              command: str | None = None, reporter: Reporter = QUIET,
              progress: Callable[[int], None] | None = None, stdout=None) -> StageResult:
    """Run one stage on INPUT into OUT (see the module text); returns its summary.

    ``stage``: a registered name, a Stage class or instance. ``options``: its Options, or a
    dict of option values. ``out`` is None for a dry run and for stages that write no
    folder; ``"-"`` streams the records to ``stdout`` (a binary stream; default the
    process's) for a stage that can (export). ``progress(n)`` is called as rows are read (else
    ``reporter`` shows a bar)."""
    t0 = time.time()
    stage = stage_instance(stage)
    opts = build_options(stage, options)
    inputs = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs or [])
    inputs = [str(i) for i in inputs]
    if dry_run and stage.dry_run is None:
        raise InputError(f"curate {stage.name} has no --dry-run")
    writes = stage.writes is not None and not dry_run
    stage.check(opts, None if out is None else str(out))
    if writes and out is None:
        raise InputError("-o/--output is required (the folder to write to)")
    to_folder = writes and str(out) != "-"
    out_path = Path(out) if to_folder else None
    sources = None
    if stage.takes in ("files", "traces"):
        # resolved before anything is created, so a bad INPUT fails fast
        sources = resolve_inputs(inputs, **stage.source_args(opts))
    if to_folder:
        check_target(out_path, stage.name, overwrite)
    try:
        with contextlib.ExitStack() as stack:
            advance = progress
            if advance is None and sources is not None:  # a bar for the rows read
                advance = stack.enter_context(reporter.task(
                    _label(stage, dry_run), input_total(stage, opts, sources, dry_run)))
            ctx = StageContext(stage, inputs, sources, out_path, overwrite=overwrite,
                               command=command, reporter=reporter, advance=advance)
            if writes and not to_folder:
                ctx.stdout = stdout if stdout is not None else sys.stdout.buffer
            stack.enter_context(ctx._stack)
            if to_folder and not stage.chunked(opts):
                ctx._open_folder(getattr(opts, "shard_bytes", None))
            if dry_run:
                summary = stage.dry_run(ctx, opts)
            else:
                summary = stage.run(ctx, opts)
            exit_code = summary.pop("exit_code", 0) if isinstance(summary, dict) else 0
            summary = dict(summary or {})
            elapsed = time.time() - t0
            manifest = None
            if stage.writes is not None:  # validate and report return theirs as they are
                summary.setdefault("seconds", round(elapsed, 3))
            if writes:
                summary["output"] = str(out)
            if to_folder:
                manifest = _commit(ctx, stage, opts, summary, elapsed)
            return StageResult(summary, manifest, exit_code)
    except OSError as e:
        if e.errno in ENVIRONMENT_ERRNOS or isinstance(e, PermissionError):
            where = "stdout" if str(out) == "-" and not e.filename else out
            raise InputError(os_error_message(e, where)) from None
        raise


def _label(stage: Stage, dry_run: bool) -> str:
    verb = stage.progress or stage.name
    return f"{verb} (dry run)" if dry_run else verb


def _commit(ctx: StageContext, stage: Stage, opts, summary: dict, elapsed: float) -> dict:
    """Finish the folder and publish it with its manifest. Counts come from the files."""
    dest = ctx.dest
    files = dest.finish()
    dropped = _reasons(dest.tmp, files.dropped_parts)
    counts = {"rows_in": ctx.read_stats.rows_in, "rows_out": files.rows,
              "dropped": dict(sorted(dropped.items()))}
    score = _score_distribution(dest.tmp, files.parts) if files.schema is not None and \
        "score" in files.schema.names else None
    if score is not None:
        summary["score"] = score
    for key in ("rows_in", "rows_out"):
        summary.setdefault(key, counts[key])
    summary.setdefault("dropped", counts["dropped"])
    manifest = {
        "command": ctx.command,
        "inputs": [fingerprint(s) for s in ctx.sources],
        "config": opts.config(),
        "counts": counts,
        "timings": {"seconds": round(elapsed, 3),
                    **{k: round(v, 3) for k, v in ctx.timings.items()}},
        "schema": schema_doc(files.schema),
        "score": score,
        "summary": summary,
        **ctx.manifest,
        "parts": files.parts,
        "dropped_parts": files.dropped_parts,
    }
    if dest.resumed:
        manifest["resumed_chunks"] = dest.resumed
    return dest.publish(manifest)


def _reasons(tmp: Path, parts: list[dict]) -> Counter:
    out: Counter = Counter()
    for p in parts:
        col = pq.read_table(tmp / p["file"], columns=[S.DROP_REASON]).column(0)
        for r in pc.value_counts(col).to_pylist():
            out[r["values"]] += r["counts"]
    return out


def _score_distribution(tmp: Path, parts: list[dict]) -> dict | None:
    """Exact statistics of every row's score (one column read back from the parts)."""
    import numpy as np

    values = [pc.cast(pq.read_table(tmp / p["file"], columns=["score"]).column(0),
                      pa.float64()).to_numpy(zero_copy_only=False) for p in parts]
    if not values:
        return None
    return distribution(np.concatenate(values))


__all__ = ["Chunk", "MapStage", "Reporter", "Stage", "StageContext", "StageResult",
           "run_stage"]
