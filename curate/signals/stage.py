"""``curate score`` with the offline signals scorer (no ``--model``): same output contract as the
PRM path — one committed chunk at a time, resumable, ``dropped/`` and a manifest — plus one column
per signal (``curate.signals.scorer``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict

import pyarrow as pa

from ..ingest import ReadOptions, fingerprint
from ..io.chunked import ChunkedOutput
from ..io.sources import resolve_inputs
from ..scoring.stage import ScoreOptions, _distribution, run_chunks
from .scorer import ANSWER_WEIGHT, QUALITY_WEIGHTS, VERSION, SignalsScorer


def make_scorer(encoder_spec: str, encoder_progress: Callable | None = None) -> SignalsScorer:
    if encoder_spec == "none":
        return SignalsScorer(None)
    from .encoder import load_encoder
    from .trajectory import TrajectorySignals

    return SignalsScorer(TrajectorySignals(load_encoder(encoder_spec,
                                                        progress=encoder_progress)))


def signals_stage(inputs: list[str], out: str, opts: ScoreOptions, *, overwrite: bool = False,
                  progress: Callable[[int], None] | None = None, command: str | None = None,
                  encoder_progress: Callable | None = None) -> dict:
    t0 = time.time()
    sources = resolve_inputs(inputs)
    scorer = make_scorer(opts.encoder, encoder_progress)
    # The first run distils the static encoder (about 35 s on 2 CPUs, then cached): timed
    # apart, so that the report does not read it as slow scoring.
    load_seconds = time.time() - t0
    enc = scorer.trajectory.encoder if scorer.trajectory is not None else None
    key = {"stage": "score", "scorer": VERSION, "encoder": enc.fingerprint if enc else "none",
           "chunk_rows": opts.chunk_rows, "limit": opts.limit,
           "inputs": [fingerprint(s) for s in sources]}

    def score_chunk(table: pa.Table):
        return scorer.score(table), {}, list(range(table.num_rows))

    with ChunkedOutput(out, "score", key, overwrite=overwrite) as dest:
        run = run_chunks(dest, inputs, sources, ReadOptions(batch_rows=opts.chunk_rows,
                                                            limit=opts.limit),
                         score_chunk, scorer.name, progress)
        elapsed = time.time() - t0
        summary = {
            "rows_in": run.stats.rows_in, "rows_out": run.rows_out, "dropped": dict(run.drops),
            "model": None, "family": "signals", "scorer": scorer.name,
            "encoder": enc.name if enc else "none", "chunks": len(dest.chunks),
            "chunks_resumed": dest.resumed, "score": _distribution(run.scores),
            "weights": {"answer": ANSWER_WEIGHT, "quality": QUALITY_WEIGHTS},
            "seconds": round(elapsed, 3), "scorer_load_seconds": round(load_seconds, 3),
            "traces_per_s": round(run.stats.rows_in / elapsed, 2) if elapsed else None,
        }
        run.require_rows(inputs)
        config = {k: v for k, v in asdict(opts).items() if k in ("scorer", "encoder",
                                                                 "chunk_rows", "limit")}
        dest.finish({"command": command, "inputs": key["inputs"],
                     "config": {**config, "scorer": "signals"},
                     "scorer": {"name": scorer.name, "version": VERSION,
                                "encoder": enc.fingerprint if enc else None},
                     "counts": run.counts(),
                     "timings": {"seconds": round(elapsed, 3),
                                 "scorer_load": round(load_seconds, 3)},
                     "summary": summary})
    summary["output"] = str(out)
    return summary
