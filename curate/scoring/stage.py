"""The score stage: traces → rewards per step, trajectory reward, selection score.

Reads INPUT as `curate read` does, one chunk per read batch (``--chunk-rows``), scores each chunk
and commits it (``ChunkedOutput``): a killed run, rerun with the same command, continues and
ends with exactly the rows of an uninterrupted run. ``rescore_stage`` recomputes ``score`` from
stored rewards with another alpha / aggregation, without a model.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import pyarrow as pa
import xxhash

from .. import schema as S
from ..errors import InputError
from ..ingest import ReadOptions, ReadStats, fingerprint, iter_traces
from ..io.chunked import ChunkedOutput
from ..io.sources import resolve_inputs
from ..io.writer import StageOutput, schema_doc
from .aggregate import AGGS, score_column
from .cache import RewardCache
from .multi import MultiDeviceEngine, parse_devices
from .result import SCORE_COLUMNS, Scored

ENGINES = ("auto", "hf", "vllm")
SCORERS = ("auto", "step-prm", "seq-prm", "signals")


@dataclass
class ScoreOptions:
    model: str | None = None
    scorer: str = "auto"
    engine: str = "auto"
    alpha: float = 1.0
    agg: str = "mean"
    system: str | None = None
    dtype: str = "auto"
    device: str = "auto"
    batch_tokens: int = 16384
    max_model_len: int | None = None
    long: str = "drop"
    chunk_rows: int = 1024
    revision: str | None = None
    trust_remote_code: bool = False
    limit: int | None = None
    gpu_memory_utilization: float | None = None
    tensor_parallel_size: int = 1
    devices: str | None = None  # "0,1": one engine per GPU (data parallel)
    encoder: str = "minilm-static"  # the signals scorer's sentence encoder

    def __post_init__(self):
        if self.alpha < 0 or self.alpha != self.alpha:
            raise InputError(f"--alpha {self.alpha}: must be >= 0 (the weight of the "
                             "trajectory reward)")
        if self.agg not in AGGS:
            raise InputError(f"--agg {self.agg}: expected one of {', '.join(AGGS)}")
        if self.engine not in ENGINES:
            raise InputError(f"--engine {self.engine}: expected one of {', '.join(ENGINES)}")
        if self.scorer not in SCORERS:
            raise InputError(f"--scorer {self.scorer}: expected one of {', '.join(SCORERS)}")
        if self.long not in ("drop", "window"):
            raise InputError(f"--long {self.long}: expected drop or window")
        for name in ("batch_tokens", "chunk_rows"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be "
                                 "at least 1")
        if self.gpu_memory_utilization is not None and not 0 < self.gpu_memory_utilization <= 1:
            raise InputError(f"--gpu-memory-utilization {self.gpu_memory_utilization}: expected "
                             "a fraction in (0, 1]")
        if self.tensor_parallel_size < 1:
            raise InputError(f"--tensor-parallel-size {self.tensor_parallel_size}: must be at "
                             "least 1")
        if self.scorer == "signals" and self.model is not None:
            raise InputError("--scorer signals takes no --model (it runs without a reward "
                             "model; --encoder picks its sentence encoder)")
        if self.scorer in ("step-prm", "seq-prm") and self.model is None:
            raise InputError(f"--scorer {self.scorer} needs --model (a checkpoint folder or "
                             "hub id)")
        parse_devices(self.devices)  # a bad --devices fails before any model is loaded
        if self.max_model_len is not None and self.max_model_len < 8:
            raise InputError(f"--max-model-len {self.max_model_len}: too small")


def _device(opts: ScoreOptions) -> str:
    if opts.device != "auto":
        return opts.device
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def _make_scorer(ckpt, opts: ScoreOptions):
    from .seq_prm import SeqPRMScorer
    from .step_prm import SYSTEM_PROMPT, StepPRMScorer, load_tokenizer

    tok = load_tokenizer(ckpt, opts.trust_remote_code)
    max_len = opts.max_model_len or ckpt.max_len
    if ckpt.family == "step-prm":
        return StepPRMScorer(ckpt, tok, system=opts.system or SYSTEM_PROMPT, alpha=opts.alpha,
                             max_len=max_len, long=opts.long)
    return SeqPRMScorer(ckpt, tok, max_len=max_len)


def _engine_name(ckpt, opts: ScoreOptions, device: str) -> str:
    """The engine that runs: auto means vLLM for a step PRM on a visible GPU when vLLM imports,
    the transformers engine otherwise."""
    if opts.engine != "auto":
        return opts.engine
    if ckpt.family != "step-prm" or not device.startswith("cuda"):
        return "hf"
    from .engine_vllm import vllm_available

    try:
        import torch
    except ImportError:
        return "hf"
    return "vllm" if torch.cuda.is_available() and vllm_available() else "hf"


def _make_engine(ckpt, opts: ScoreOptions, device: str):
    if _engine_name(ckpt, opts, device) == "vllm":
        from .engine_vllm import VLLMEngine

        return VLLMEngine(ckpt, device=device, dtype=opts.dtype,
                          gpu_memory_utilization=opts.gpu_memory_utilization,
                          tensor_parallel_size=opts.tensor_parallel_size,
                          max_model_len=opts.max_model_len,
                          trust_remote_code=opts.trust_remote_code)
    from .engine_hf import HFEngine

    return HFEngine(ckpt, device=device, dtype=opts.dtype, batch_tokens=opts.batch_tokens,
                    trust_remote_code=opts.trust_remote_code)


class _LazyEngine:
    """Stands for an engine and builds it at the first forward pass."""

    def __init__(self, make: Callable):
        self._make = make
        self.loaded = None

    def _engine(self):
        if self.loaded is None:
            self.loaded = self._make()
        return self.loaded

    def step_probs(self, *args):
        return self._engine().step_probs(*args)

    def seq_scores(self, *args):
        return self._engine().seq_scores(*args)


class _CountingEngine:
    """Dry runs: counts the tokens a real engine would process, runs nothing."""

    def __init__(self):
        self.sequences = 0
        self.tokens = 0

    def step_probs(self, seqs, sep_id, pad_id):
        import numpy as np

        self.sequences += len(seqs)
        self.tokens += sum(len(s) for s in seqs)
        return [np.full(sum(1 for t in s if t == sep_id), np.nan) for s in seqs]

    def seq_scores(self, seqs, pad_id):
        self.sequences += len(seqs)
        self.tokens += sum(len(s) for s in seqs)
        return [float("nan")] * len(seqs)


# Throughput assumed by --dry-run when none is given: a 7B PRM in bf16 on one H100 at about
# half its peak (prefill only). An estimate from the FLOPs, not a measurement of this project.
ASSUMED_TOKENS_PER_S = 30_000


def dry_run(inputs: list[str], opts: ScoreOptions,
            tokens_per_s: float = ASSUMED_TOKENS_PER_S) -> dict:
    """Tokenize only: token counts, the too-long share and the GPU time it would take."""
    from .checkpoint import inspect

    t0 = time.time()
    if opts.model is None:
        raise InputError("--dry-run needs --model (its tokenizer and context decide the counts)")
    sources = resolve_inputs(inputs)
    ckpt = inspect(opts.model, opts.scorer, opts.revision)
    scorer = _make_scorer(ckpt, opts)
    counter = _CountingEngine()
    stats = ReadStats()
    drops: Counter = Counter()
    for batch in iter_traces(inputs, ReadOptions(limit=opts.limit), stats, sources=sources):
        if batch.table.num_rows:
            scored = scorer.score(batch.table, counter)
            drops.update(reason for reason, _ in scored.drops.values())
        if batch.dropped is not None:
            drops.update(batch.dropped.column(S.DROP_REASON).to_pylist())
    n = stats.rows_in or 1
    return {"dry_run": True, "rows_in": stats.rows_in, "model": ckpt.model,
            "family": ckpt.family, "max_len": scorer.max_len, "alpha": opts.alpha,
            "sequences": counter.sequences, "tokens": counter.tokens,
            "too_long": drops.get("too_long", 0),
            "too_long_share": round(drops.get("too_long", 0) / n, 4), "dropped": dict(drops),
            "assumed_tokens_per_s": tokens_per_s,
            "estimated_gpu_hours": round(counter.tokens / tokens_per_s / 3600, 3),
            "seconds": round(time.time() - t0, 3)}


def _ids_hash(table: pa.Table) -> str:
    h = xxhash.xxh3_64()
    for i in table.column(S.ID).to_pylist():
        h.update(i.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()


def _drop_rows(table: pa.Table, drops: dict, label: str) -> pa.Table:
    ids = table.column(S.ID).to_pylist()
    rows = sorted(drops)
    return pa.Table.from_arrays(
        [pa.array([ids[i] for i in rows], pa.string()),
         pa.array([drops[i][0] for i in rows], pa.string()),
         pa.array([drops[i][1] for i in rows], pa.string()),
         pa.array([label] * len(rows), pa.string()), pa.nulls(len(rows), pa.int64())],
        schema=S.DROPPED_SCHEMA)


def score_stage(inputs: list[str], out: str, opts: ScoreOptions, *, overwrite: bool = False,
                progress: Callable[[int], None] | None = None,
                command: str | None = None,
                encoder_progress: Callable[[int, int], object] | None = None) -> dict:
    """Score INPUT into OUT; the offline ``signals`` scorer when no ``--model`` is given
    (``encoder_progress(done, total)`` reports the one-time distillation of its encoder)."""
    if opts.model is None or opts.scorer == "signals":
        from ..signals.stage import signals_stage

        return signals_stage(inputs, out, opts, overwrite=overwrite, progress=progress,
                             command=command, encoder_progress=encoder_progress)
    from .checkpoint import inspect

    t0 = time.time()
    sources = resolve_inputs(inputs)
    ckpt = inspect(opts.model, opts.scorer, opts.revision)
    scorer = _make_scorer(ckpt, opts)
    device = _device(opts)
    semantic = {k: v for k, v in asdict(opts).items()
                if k in ("scorer", "alpha", "agg", "system", "dtype", "max_model_len", "long",
                         "chunk_rows", "limit")}
    score_key = {"stage": "score", "model": ckpt.key(), "family": ckpt.family, **semantic}
    key = {**score_key, "inputs": [fingerprint(s) for s in sources]}
    cache = RewardCache.load(Path(out), _cache_key(score_key))
    scorer_name = f"{ckpt.model}@{ckpt.revision or 'local'}"
    # The model is loaded only when a trace needs a forward pass: a resumed, reused or
    # all-too-long run never loads it.
    devices = parse_devices(opts.devices)
    if devices and len(devices) == 1:
        device = devices[0]
    if devices and len(devices) > 1:
        device = ",".join(devices)
        engine = _LazyEngine(lambda: MultiDeviceEngine(partial(_make_engine, ckpt, opts),
                                                       devices))
    else:
        engine = _LazyEngine(lambda: _make_engine(ckpt, opts, device))

    def score_chunk(table: pa.Table) -> tuple[dict[str, pa.Array], dict, list[int]]:
        scored = cache.score(table, scorer, engine) if table.num_rows else None
        kept = [i for i in range(table.num_rows) if scored is None or i not in scored.drops]
        columns = scored.columns(kept) if scored is not None else \
            Scored.empty(0).columns([])
        sub = table.take(pa.array(kept, pa.int64()))
        for name, arr in columns.items():
            sub = _set(sub, name, arr)
        columns["score"] = score_column(sub, opts.alpha, opts.agg)
        return columns, (scored.drops if scored is not None else {}), kept

    with ChunkedOutput(out, "score", key, overwrite=overwrite) as dest:
        run = run_chunks(dest, inputs, sources, ReadOptions(batch_rows=opts.chunk_rows,
                                                            limit=opts.limit),
                         score_chunk, scorer_name, progress)
        if isinstance(engine.loaded, MultiDeviceEngine):
            engine.loaded.close()
        elapsed = time.time() - t0
        eng = engine.loaded.stats.as_dict() if engine.loaded is not None else {}
        summary = {
            "rows_in": run.stats.rows_in, "rows_out": run.rows_out, "dropped": dict(run.drops),
            "model": ckpt.model, "family": ckpt.family,
            "engine": _engine_name(ckpt, opts, device), "device": device,
            "alpha": opts.alpha, "agg": opts.agg, "chunks": len(dest.chunks),
            "chunks_resumed": dest.resumed, "too_long": run.drops.get("too_long", 0),
            "windowed": run.windowed,
            "reused": cache.hits,
            "score": _distribution(run.scores), "seconds": round(elapsed, 3),
            "traces_per_s": round(run.stats.rows_in / elapsed, 2) if elapsed else None,
            **({"engine_stats": eng} if eng else {}),
        }
        if opts.alpha == 0:
            summary["note"] = "alpha 0: trajectory pass skipped (about half the compute)"
        run.require_rows(inputs)
        dest.finish({
            "command": command, "inputs": key["inputs"], "config": asdict(opts),
            "model": ckpt.fingerprint(), "counts": run.counts(),
            "timings": {"seconds": round(elapsed, 3)}, "summary": summary,
            "score_key": _cache_key(score_key),
        })
    summary["output"] = str(out)
    return summary


@dataclass
class ChunkRun:
    """What a chunked scoring run saw: counts, drops and a sample of scores."""

    stats: ReadStats
    rows_out: int = 0
    windowed: int = 0
    drops: Counter = None
    scores: list = None

    def __post_init__(self):
        self.drops = Counter() if self.drops is None else self.drops
        self.scores = [] if self.scores is None else self.scores

    def counts(self) -> dict:
        return {"rows_in": self.stats.rows_in, "rows_out": self.rows_out,
                "dropped": dict(self.drops)}

    def require_rows(self, inputs: list[str]) -> None:
        if self.rows_out == 0:
            raise InputError(f"{', '.join(inputs)}: no trace could be scored (dropped: "
                             f"{dict(self.drops)}); nothing written")


def run_chunks(dest: ChunkedOutput, inputs: list[str], sources, read_opts: ReadOptions,
               score_chunk: Callable, scorer_name: str,
               progress: Callable[[int], None] | None) -> ChunkRun:
    """Read INPUT chunk by chunk, skip the chunks a previous run committed, score the others
    with ``score_chunk(table) -> (columns of the kept rows, drops {row: (reason, value)},
    kept row indices)`` and commit each one."""
    run = ChunkRun(ReadStats())
    for index, batch in enumerate(iter_traces(inputs, read_opts, run.stats, progress,
                                              sources=sources)):
        table = batch.table
        if dest.is_done(index, _ids_hash(table)):
            done = dest.chunks[index]
            run.rows_out += done["rows"]
            run.drops.update(done.get("drops", {}))
            run.windowed += done.get("windowed", 0)
            run.scores.extend(done.get("scores_sample", []))
            continue
        columns, row_drops, kept = score_chunk(table)
        out_table = table.take(pa.array(kept, pa.int64()))
        for name, arr in columns.items():
            out_table = _set(out_table, name, arr)
        out_table = _set(out_table, "scorer", pa.array([scorer_name] * len(kept), pa.string()))
        dropped = [t for t in (batch.dropped, _drop_rows(table, row_drops, batch.source.label)
                               if row_drops else None) if t is not None]
        dropped_table = pa.concat_tables(dropped) if dropped else None
        chunk_drops = Counter(dropped_table.column(S.DROP_REASON).to_pylist()) \
            if dropped_table is not None else Counter()
        sample = [s for s in out_table.column("score").to_pylist() if s is not None][:256]
        n_windowed = sum(1 for w in out_table.column("windows").to_pylist() if w > 1)
        dest.commit_chunk(index, _ids_hash(table), out_table, dropped_table,
                          {"drops": dict(chunk_drops), "scores_sample": sample,
                           "windowed": n_windowed})
        run.rows_out += out_table.num_rows
        run.drops.update(chunk_drops)
        run.windowed += n_windowed
        run.scores.extend(sample)
    return run


def _cache_key(score_key: dict) -> dict:
    """What reused rewards must share: model and scoring settings, not chunking or limits.
    ``agg`` is left out too: it changes the score, not the rewards, and score is recomputed."""
    key = {k: v for k, v in score_key.items() if k not in ("chunk_rows", "limit", "agg",
                                                             "alpha")}
    key["trajectory_pass"] = score_key["alpha"] > 0  # any alpha > 0 stores the same rewards
    return key


def _set(table: pa.Table, name: str, arr: pa.Array) -> pa.Table:
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, arr)
    return table.append_column(name, arr)


def _distribution(scores: list[float]) -> dict:
    if not scores:
        return {}
    s = sorted(scores)
    return {"min": round(s[0], 4), "median": round(statistics.median(s), 4),
            "max": round(s[-1], 4), "sampled": len(s)}


def rescore_stage(inputs: list[str], out: str, alpha: float, agg: str, *,
                  overwrite: bool = False, command: str | None = None) -> dict:
    """Recompute ``score`` from stored rewards: no model, seconds for a large set."""
    ScoreOptions(alpha=alpha, agg=agg)  # validates both
    t0 = time.time()
    sources = resolve_inputs(inputs)
    stats = ReadStats()
    n = 0
    scores: list[float] = []
    missing_traj = 0
    schema = None
    with StageOutput(out, "score", overwrite=overwrite) as dest:
        for batch in iter_traces(inputs, ReadOptions(), stats, sources=sources):
            table = batch.table
            lacking = [c for c in SCORE_COLUMNS if c not in table.column_names]
            if lacking:
                raise InputError(f"{batch.source.label}: not a scored folder (no column "
                                 f"{lacking[0]}); run `curate score` first")
            scorer = table.column("scorer")[0].as_py() if table.num_rows else None
            if scorer and scorer.startswith("signals"):
                raise InputError(f"{batch.source.label}: scored by the signals scorer, whose "
                                 "score is not agg + alpha × trajectory reward; run `curate "
                                 "score` again instead (it is cheap)")
            if alpha:
                traj = table.column("trajectory_reward").to_pylist()
                steps = table.column("step_rewards").to_pylist()
                resp = table.column("response_step_rewards").to_pylist()
                missing_traj += sum(1 for t, a, b in zip(traj, steps, resp, strict=True)
                                    if t is None and (a or b))
                if missing_traj:
                    raise InputError(f"{batch.source.label}: scored with --alpha 0 (no "
                                     f"trajectory reward stored); rescore with --alpha 0 or "
                                     "score again")
            table = _set(table, "score", score_column(table, alpha, agg))
            dest.write(table)
            schema = schema or table.schema
            n += table.num_rows
            scores.extend(s for s in table.column("score").to_pylist()[:256] if s is not None)
        elapsed = time.time() - t0
        summary = {"rows_in": stats.rows_in, "rows_out": n, "alpha": alpha, "agg": agg,
                   "score": _distribution(scores), "seconds": round(elapsed, 3),
                   "rescored": True}
        dest.commit({"command": command, "inputs": [fingerprint(s) for s in sources],
                     "config": {"rescore": True, "alpha": alpha, "agg": agg},
                     "counts": {"rows_in": stats.rows_in, "rows_out": n, "dropped": {}},
                     "timings": {"seconds": round(elapsed, 3)}, "summary": summary,
                     "schema": schema_doc(schema)})
    summary["output"] = str(out)
    return summary


__all__ = ["ScoreOptions", "score_stage", "rescore_stage"]
