"""The dataset folder every stage writes, committed atomically.

Layout::

    OUT/part-00000.parquet …   the rows (size-capped parts; no other .parquet at the top level)
    OUT/dropped/part-00000.parquet …   rows that left the flow: id, drop_reason, drop_value,
                                       input_file, input_row (+ the input row with
                                       --keep-dropped-rows)
    OUT/manifest.json          inputs with fingerprints, config, versions, counts, timings, schema

Everything is written into a hidden sibling folder (``.OUT.curate-tmp-PID``) and renamed to OUT
only when the manifest is complete, so an interrupted run never leaves a folder that looks
complete. A folder counts as a curate output when its manifest.json has a ``curate`` key.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from importlib import metadata
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .. import __version__
from ..errors import InputError
from .background import Background
from .sources import MANIFEST, is_curate_folder

DEFAULT_SHARD_BYTES = 256 * 1024**2
PART = "part-{:05d}.parquet"


def parse_size(text: str, option: str = "--shard-size") -> int:
    """'500MB', '1GiB', '1048576' → bytes."""
    t = text.strip().upper().replace(" ", "")
    units = {"KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "KB": 1000, "MB": 1000**2,
             "GB": 1000**3, "K": 1024, "M": 1024**2, "G": 1024**3, "B": 1}
    for u, mult in sorted(units.items(), key=lambda kv: -len(kv[0])):  # noqa: B007
        if t.endswith(u):
            num = t[: -len(u)]
            break
    else:
        num, mult = t, 1
    try:
        value = float(num) * mult
    except ValueError:
        raise InputError(f"{option} '{text}': expected a number with an optional unit "
                         "(e.g. 500MB, 1GiB)") from None
    if value < 1024:
        raise InputError(f"{option} '{text}': too small (at least 1KiB)")
    return int(value)


class _PartWriter:
    """Parquet parts in one folder, rolled over by size or when the schema changes.

    Encoding and compressing a batch runs in a background thread (``Background``) while the
    caller reads and maps the next batch; at most ``QUEUE`` batches wait, so memory stays
    bounded, and an error in the thread is raised by the next ``write`` or by ``close``.
    """

    QUEUE = 2

    def __init__(self, folder: Path, max_bytes: int):
        self.folder = folder
        self.max_bytes = max_bytes
        self.index = 0
        self.writer: pq.ParquetWriter | None = None
        self.path: Path | None = None
        self.rows_in_part = 0
        self.parts: list[dict] = []
        self._background = Background(self._write_now, "curate-writer", self.QUEUE)

    def write(self, table: pa.Table) -> None:
        self._background.raise_error()
        if table.num_rows:
            self._background.put(table)

    def _write_now(self, table: pa.Table) -> None:
        if self.writer is not None and not table.schema.equals(self.writer.schema):
            try:
                table = table.cast(self.writer.schema)
            except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError, KeyError):
                self._close_part()
        if self.writer is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.path = self.folder / PART.format(self.index)
            self.writer = pq.ParquetWriter(self.path, table.schema, compression="zstd")
            self.rows_in_part = 0
        self.writer.write_table(table)
        self.rows_in_part += table.num_rows
        if self.path.stat().st_size >= self.max_bytes:
            self._close_part()

    def _close_part(self) -> None:
        if self.writer is None:
            return
        self.writer.close()
        self.parts.append({"file": self.path.name, "rows": self.rows_in_part,
                           "bytes": self.path.stat().st_size})
        self.writer = None
        self.index += 1

    def close(self) -> list[dict]:
        """Finish every queued batch and the last part; the list of parts written."""
        self._background.close()
        self._close_part()
        return self.parts

    def abort(self) -> None:
        """Stop without finishing (the folder is about to be removed)."""
        self._background.stop()
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception:  # noqa: BLE001 - cleaning up after another error
                pass
            self.writer = None


class StageOutput:
    """Context manager for one stage's output folder: parts, dropped/, manifest, atomic commit."""

    def __init__(self, out: str | os.PathLike, stage: str, *, overwrite: bool = False,
                 shard_bytes: int = DEFAULT_SHARD_BYTES):
        self.out = Path(out)
        self.stage = stage
        self.overwrite = overwrite
        self.shard_bytes = shard_bytes
        self.tmp = self.out.parent / f".{self.out.name}.curate-tmp-{os.getpid()}"
        self.rows = 0
        self.dropped = 0
        self.started = time.time()
        self._data: _PartWriter | None = None
        self._drops: _PartWriter | None = None
        self.committed = False

    # -- lifecycle ---------------------------------------------------------------------------
    def check_target(self) -> None:
        """Refuse an output that would destroy something that is not ours (InputError)."""
        out = self.out
        if out.exists() and not out.is_dir():
            raise InputError(f"{out}: output path exists and is a file, not a folder")
        if out.is_dir() and any(out.iterdir()) and not is_curate_folder(out):
            if not self.overwrite:
                raise InputError(f"{out}: output folder exists, is not empty and is not a curate "
                                 "output; choose another -o or pass --overwrite")
        if is_curate_folder(out) and not self.overwrite:
            prev = json.loads((out / MANIFEST).read_text())["curate"].get("stage")
            if prev != self.stage:
                raise InputError(f"{out}: holds the output of `curate {prev}`; pass --overwrite "
                                 f"to replace it with this `curate {self.stage}` run")

    def __enter__(self) -> StageOutput:
        self.check_target()
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"{self.out}: cannot create its parent folder ({e.strerror})") \
                from None
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir()
        self._data = _PartWriter(self.tmp, self.shard_bytes)
        self._drops = _PartWriter(self.tmp / "dropped", self.shard_bytes)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.committed:
            for w in (self._data, self._drops):
                if w is not None:
                    w.abort()
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- writing ----------------------------------------------------------------------------
    def write(self, table: pa.Table) -> None:
        self._data.write(table)
        self.rows += table.num_rows

    def drop(self, table: pa.Table) -> None:
        self._drops.write(table)
        self.dropped += table.num_rows

    def commit(self, manifest: dict) -> dict:
        parts = self._data.close()
        dropped_parts = self._drops.close()
        return self._commit_folder(manifest, parts, dropped_parts)

    def _commit_folder(self, manifest: dict, parts: list, dropped_parts: list) -> dict:
        """Write the manifest into the temporary folder and rename it to OUT."""
        doc = {
            "curate": {"version": __version__, "stage": self.stage, "status": "complete",
                       "format": 1},
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **manifest,
            "parts": parts,
            "dropped_parts": dropped_parts,
            "versions": package_versions(),
        }
        (self.tmp / MANIFEST).write_text(json.dumps(doc, indent=2, default=str) + "\n")
        old = None
        if self.out.exists():
            old = self.out.parent / f".{self.out.name}.curate-old-{os.getpid()}"
            os.replace(self.out, old)
        os.replace(self.tmp, self.out)
        self.committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return doc


def package_versions() -> dict:
    out = {"python": platform.python_version(), "curate": __version__}
    for name in ("pyarrow", "polars", "datasets", "typer", "rich", "xxhash", "torch",
                 "transformers", "vllm"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def schema_doc(schema: pa.Schema | None) -> list[dict]:
    if schema is None:
        return []
    return [{"name": f.name, "type": str(f.type)} for f in schema]
