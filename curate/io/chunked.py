"""A stage output committed chunk by chunk, so that a killed run continues where it stopped.

Chunks are written into a persistent hidden sibling, ``.OUT.curate-partial/``:
``part-NNNNN.parquet`` and ``_dropped/part-NNNNN.parquet`` per chunk (each written under a
temporary name, then renamed), and ``progress.json`` (replaced atomically after each chunk) with
the run's key and, per chunk, a hash of its input ids. A rerun with the same key skips the
chunks already there, after checking that their ids did not change; a rerun with another key
refuses (or starts over with --overwrite). When the last chunk is in, the parts get one schema
and their final names, the manifest is written and the folder renamed to OUT, as for every
stage: a folder that looks complete is complete.

Test hook: ``CURATE_TEST_ABORT_AFTER_CHUNKS=N`` ends the process with ``os._exit`` right after
the N-th chunk committed in it, like ``kill -9`` (no cleanup, no finally blocks).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InputError
from . import folder as F
from .writer import FolderFiles, StageOutput, place_dropped, place_parts

PROGRESS = "progress.json"
ABORT_ENV = "CURATE_TEST_ABORT_AFTER_CHUNKS"
CHUNK = "part-{:05d}.parquet"


def _describe_difference(old: dict, new: dict) -> str:
    diff = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return ", ".join(f"{k}: {old.get(k)!r} → {new.get(k)!r}" for k in diff[:3]) or "unknown"


def partial_folder(out: Path) -> Path:
    return out.parent / f".{out.name}{F.PARTIAL_TAG}"


def has_partial(out: Path) -> bool:
    """Whether an interrupted chunked run left committed chunks to resume from."""
    return (partial_folder(out) / PROGRESS).is_file()


class ChunkedOutput(StageOutput):
    def __init__(self, out, stage: str, key: dict, *, overwrite: bool = False):
        super().__init__(out, stage, overwrite=overwrite)
        self.key = key
        self.tmp = partial_folder(self.out)
        self.chunks: dict[int, dict] = {}
        self.committed_here = 0

    def __enter__(self) -> ChunkedOutput:
        self.check_target()
        self._make_parent()
        F.remove_dead_temps(self.out)
        progress = self.tmp / PROGRESS
        if progress.is_file():
            state = json.loads(progress.read_text())
            if state.get("key") != self.key:
                if not self.overwrite:
                    raise InputError(
                        f"{self.out}: an interrupted `curate {state.get('key', {}).get('stage')}`"
                        f" run with other settings left {self.tmp.name} "
                        f"({_describe_difference(state.get('key', {}), self.key)}); rerun it "
                        "as it was to finish it, or pass --overwrite to discard it")
                shutil.rmtree(self.tmp)
            else:
                self.chunks = {int(k): v for k, v in state["chunks"].items()}
                self.resumed = len(self.chunks)
        elif self.tmp.exists():
            shutil.rmtree(self.tmp)
        (self.tmp / F.DROPPED).mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # An interrupted run keeps its committed chunks: the next run resumes from them.
        if not self.committed and not self.chunks:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def write(self, table: pa.Table) -> None:  # pragma: no cover - the contract is per chunk
        raise RuntimeError("a chunked output is written with commit_chunk()")

    drop = write

    def is_done(self, index: int, ids_hash: str) -> bool:
        done = self.chunks.get(index)
        if done is None:
            return False
        if done["ids_hash"] != ids_hash:
            raise InputError(f"{self.out}: the input changed since the interrupted run (chunk "
                             f"{index} holds other rows now); pass --overwrite to start over")
        return True

    def commit_chunk(self, index: int, ids_hash: str, table: pa.Table,
                     dropped: pa.Table | None, stats: dict) -> None:
        name = CHUNK.format(index)
        if table.num_rows:
            _atomic_parquet(self.tmp / name, table)
        if dropped is not None and dropped.num_rows:
            _atomic_parquet(self.tmp / F.DROPPED / name, dropped)
        self.chunks[index] = {"ids_hash": ids_hash, "rows": table.num_rows,
                              "dropped": 0 if dropped is None else dropped.num_rows, **stats}
        _atomic_json(self.tmp / PROGRESS, {"key": self.key, "chunks": self.chunks})
        self.committed_here += 1
        limit = os.environ.get(ABORT_ENV)
        if limit and self.committed_here >= int(limit):
            os._exit(137)

    def finish(self) -> FolderFiles:
        order = sorted(self.chunks)
        parts = [self.tmp / CHUNK.format(i) for i in order if self.chunks[i]["rows"]]
        dropped = [self.tmp / F.DROPPED / CHUNK.format(i) for i in order
                   if self.chunks[i]["dropped"]]
        # Dropped parts keep their chunk numbers until renamed in order (0, 1, …).
        for i, p in enumerate(dropped):
            final = p.with_name(f"{F.DROPPED_PART.format(i)}.tmp")
            os.replace(p, final)
            dropped[i] = final
        renamed = []
        for p in dropped:
            target = p.with_name(p.name[: -len(".tmp")])
            os.replace(p, target)
            renamed.append(target)
        part_records, schema = place_parts(self.tmp, parts)
        dropped_records, dropped_schema = place_dropped(self.tmp, renamed)
        (self.tmp / PROGRESS).unlink()
        return FolderFiles(part_records, dropped_records, schema, dropped_schema)


def _atomic_parquet(path: Path, table: pa.Table) -> None:
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


def _atomic_json(path: Path, doc: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str))
    os.replace(tmp, path)
