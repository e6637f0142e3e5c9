"""The read stage: any accepted input → canonical traces in a dataset folder."""

from __future__ import annotations

import time
from collections import Counter

from ..errors import InputError
from ..stage import MapStage, StageContext
from .traces import ReadOptions, TraceBatch


class ReadStage(MapStage):
    name = "read"
    progress = "reading"
    Options = ReadOptions
    takes = "files"
    help = "Read traces from any supported input into a canonical dataset folder."
    doc = """Read traces from Parquet, JSON/JSONL, a saved `datasets` folder or a hub dataset id, map them to the canonical columns and write a dataset folder (data/*.parquet, _dropped/, _manifest.json) that every later stage reads, and that pandas, polars, pyarrow and `datasets` read as it is.

[bold]Examples[/bold]

  curate read sample_data/ -o out/read
  curate read 'traces/*.parquet' -o out/read --preset s1k-1.1
  curate read gen.jsonl -o out/read --map question=prompt --map response=completion
  curate read marco.json -o out/read --preset tags --think-tags '<Thought>,</Thought>,<Output>,</Output>'

Rows with an empty question or response, or an unclosed thinking marker, go to _dropped/ with a reason; a broken file, column or option stops the run (exit 2) and writes nothing."""  # noqa: E501

    def read_options(self, opts: ReadOptions) -> ReadOptions:
        return opts

    def source_args(self, opts: ReadOptions) -> dict:
        return opts.source_args()

    def process(self, batch: TraceBatch, opts, state):
        return batch.table

    def summary(self, ctx: StageContext, opts, state, totals: Counter) -> dict:
        stats = ctx.read_stats
        if stats.rows_out == 0:
            raise InputError(f"{', '.join(ctx.inputs)}: no row survived reading "
                             f"(dropped: {dict(stats.drops) or 'none'}); nothing written")
        ctx.manifest["mappings"] = stats.mappings
        steps = sorted(stats.steps_per_trace)

        def q(p):
            return steps[min(len(steps) - 1, int(p * len(steps)))] if steps else None

        elapsed = max(time.time() - ctx.started, 1e-9)
        in_bytes = sum(s.size_bytes() for s in ctx.sources)
        return {
            "rows_in": stats.rows_in,
            "rows_out": stats.rows_out,
            "dropped": dict(stats.drops),
            "presets": {k: v["preset"] for k, v in stats.mappings.items()},
            "rows_with_thinking": stats.trajectory_rows,
            "rows_with_source_steps": stats.source_steps_rows,
            "steps_per_trace": {"median": q(0.5), "p90": q(0.9),
                                "max": steps[-1] if steps else None},
            "text_bytes": stats.text_bytes,
            "input_mb_per_s": round(in_bytes / 1e6 / elapsed, 2),
            "rows_per_s": round(stats.rows_in / elapsed, 1),
        }
