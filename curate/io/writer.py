"""Writing one stage's dataset folder (layout in ``folder.py``), committed atomically.

Everything is written into a hidden sibling (``.OUT.curate-tmp-PID``) and renamed to OUT only
after the manifest is complete, so an interrupted run never leaves a folder that looks
complete; the next run into the same OUT removes what a killed run left there. Stages never
call this directly: ``curate.stage.run_stage`` opens it, hands the stage ``write`` / ``drop``
through the stage context, and writes the manifest.

Parts roll over at the size cap. Inputs of several shapes (extra columns that only some files
have) give parts with different schemas while writing; ``finish`` gives them one schema (the
union of the columns, in order of first appearance, null where a part lacks one), because a
folder whose parts disagree is one that polars' and pyarrow's dataset readers refuse.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import shutil
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import __version__
from ..errors import InputError
from . import folder as F
from .background import Background

DEFAULT_SHARD_BYTES = 256 * 1024**2


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


class PartWriter:
    """Parquet parts in one folder, rolled over by size or when the schema changes.

    Encoding and compressing a batch runs in a background thread (``Background``) while the
    caller reads and maps the next batch; at most ``QUEUE`` batches wait, so memory stays
    bounded, and an error in the thread is raised by the next ``write`` or by ``close``.
    """

    QUEUE = 2
    TEMP_NAME = "part-{:05d}.parquet"

    def __init__(self, folder: Path, max_bytes: int):
        self.folder = folder
        self.max_bytes = max_bytes
        self.index = 0
        self.writer: pq.ParquetWriter | None = None
        self.path: Path | None = None
        self.rows_in_part = 0
        self.paths: list[Path] = []
        self._background = Background(self._write_now, "curate-writer", self.QUEUE)

    def write(self, table: pa.Table) -> None:
        self._background.raise_error()
        if table.num_rows:
            self._background.put(table)

    def _write_now(self, table: pa.Table) -> None:
        if self.writer is not None and not table.schema.equals(self.writer.schema):
            try:
                table = table.cast(self.writer.schema)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, ValueError,
                    KeyError):
                self._close_part()  # another shape: a new part (one schema is made at commit)
        if self.writer is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.path = self.folder / self.TEMP_NAME.format(self.index)
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
        self.paths.append(self.path)
        self.writer = None
        self.index += 1

    def close(self) -> list[Path]:
        """Finish every queued batch and the last part; the parts written, in order."""
        self._background.close()
        self._close_part()
        return self.paths

    def abort(self) -> None:
        """Stop without finishing (the folder is about to be removed)."""
        self._background.stop()
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception:  # noqa: BLE001 - cleaning up after another error
                pass
            self.writer = None


# --- one schema per folder ---------------------------------------------------------------------

def union_schema(schemas: list[pa.Schema]) -> pa.Schema:
    """Every column of every schema, in order of first appearance. Where parts disagree on a
    column's type, the wider type when Arrow knows one (int32 + int64, null + anything), else
    text (the value's string form): a folder must have one schema, and text loses nothing a
    reader could not get back."""
    fields: dict[str, pa.Field] = {}
    for schema in schemas:
        for f in schema:
            if f.name not in fields:
                fields[f.name] = f.with_nullable(True)
                continue
            old = fields[f.name]
            if old.type.equals(f.type):
                continue
            try:
                merged = pa.unify_schemas([pa.schema([old]), pa.schema([f.with_nullable(True)])],
                                          promote_options="permissive").field(0)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                merged = pa.field(f.name, pa.string())
            fields[f.name] = merged
    return pa.schema(list(fields.values()))


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns, in its order (missing ones null)."""
    cols = []
    for f in schema:
        if f.name not in table.column_names:
            cols.append(pa.nulls(table.num_rows, f.type))
            continue
        col = table.column(f.name)
        if not col.type.equals(f.type):
            try:
                col = pc.cast(col, f.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                col = pa.array([None if v is None else _text(v) for v in col.to_pylist()],
                               f.type)
        cols.append(col)
    return pa.Table.from_arrays(cols, schema=schema)


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str,
                                                           ensure_ascii=False)


def unify_parts(paths: list[Path]) -> pa.Schema | None:
    """Give the Parquet files ``paths`` one schema, rewriting only those that differ."""
    if not paths:
        return None
    schemas = [pq.read_schema(p) for p in paths]
    target = union_schema(schemas)
    for path, schema in zip(paths, schemas, strict=True):
        if schema.remove_metadata().equals(target):
            continue
        table = conform(pq.read_table(path), target)
        tmp = path.with_name(path.name + ".unify")
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    return target


@dataclass
class FolderFiles:
    """What a finished (not yet published) folder holds: manifest entries and the schemas."""

    parts: list[dict]
    dropped_parts: list[dict]
    schema: pa.Schema | None
    dropped_schema: pa.Schema | None

    @property
    def rows(self) -> int:
        return sum(p["rows"] for p in self.parts)


def place_parts(tmp: Path, paths: list[Path], folder: str = F.DATA,
                name=lambda i, n: F.PART_NAME.format(i=i, n=n)
                ) -> tuple[list[dict], pa.Schema | None]:
    """Give the parts one schema and move them to their final names (data/train-i-of-n, or
    _dropped/part-i); their manifest entries, and the schema."""
    schema = unify_parts(paths)
    target = tmp / folder
    target.mkdir(parents=True, exist_ok=True)
    records = []
    for i, p in enumerate(paths):
        final = target / name(i, len(paths))
        if p != final:
            os.replace(p, final)
        records.append(F.part_record(tmp, final))
    return records, schema


def place_dropped(tmp: Path, paths: list[Path]) -> tuple[list[dict], pa.Schema | None]:
    return place_parts(tmp, paths, F.DROPPED, lambda i, n: F.DROPPED_PART.format(i))


class StageOutput:
    """Context manager for one stage's output folder: parts, _dropped/, manifest, commit."""

    def __init__(self, out: str | os.PathLike, stage: str, *, overwrite: bool = False,
                 shard_bytes: int = DEFAULT_SHARD_BYTES):
        self.out = Path(out)
        self.stage = stage
        self.overwrite = overwrite
        self.shard_bytes = shard_bytes
        self.tmp = self.out.parent / f".{self.out.name}{F.TMP_TAG}{os.getpid()}"
        self._data: PartWriter | None = None
        self._drops: PartWriter | None = None
        self.committed = False
        self.resumed = 0  # chunks a previous run committed (ChunkedOutput)

    # -- lifecycle ---------------------------------------------------------------------------
    def check_target(self) -> None:
        """Refuse an output that would destroy something that is not ours (InputError)."""
        check_target(self.out, self.stage, self.overwrite)

    def __enter__(self) -> StageOutput:
        self.check_target()
        self._make_parent()
        F.remove_dead_temps(self.out)
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir()
        self._data = PartWriter(self.tmp / ".parts", self.shard_bytes)
        self._drops = PartWriter(self.tmp / F.DROPPED, self.shard_bytes)
        return self

    def _make_parent(self) -> None:
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"{self.out}: cannot create its parent folder "
                             f"({e.strerror or e})") from None

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.committed:
            for w in (self._data, self._drops):
                if w is not None:
                    w.abort()
            shutil.rmtree(self.tmp, ignore_errors=True)

    @property
    def scratch(self) -> Path:
        """A folder for a stage's spill files, inside the temporary folder (gone at commit)."""
        p = self.tmp / ".scratch"
        p.mkdir(exist_ok=True)
        return p

    @property
    def data_dir(self) -> Path:
        """Where a stage that names its own row files (export's shards) writes them."""
        p = self.tmp / F.DATA
        p.mkdir(exist_ok=True)
        return p

    # -- writing ----------------------------------------------------------------------------
    def write(self, table: pa.Table) -> None:
        self._data.write(table)

    def drop(self, table: pa.Table) -> None:
        self._drops.write(table)

    def finish(self) -> FolderFiles:
        """Close the writers; parts get one schema and their final names; hashes are taken."""
        written = self._data.close()
        dropped = self._drops.close()
        shutil.rmtree(self.tmp / ".scratch", ignore_errors=True)
        own = sorted((self.tmp / F.DATA).glob("*.parquet")) if (self.tmp / F.DATA).is_dir() \
            else []
        if written and own:
            raise RuntimeError("a stage wrote rows both through write() and into data/")
        if own:  # a stage that names its own files (export): hash them as they are
            parts = [F.part_record(self.tmp, p) for p in own]
            schema = pq.read_schema(own[0]) if own else None
        else:
            parts, schema = place_parts(self.tmp, written)
        shutil.rmtree(self.tmp / ".parts", ignore_errors=True)
        dropped_parts, dropped_schema = place_dropped(self.tmp, dropped)
        return FolderFiles(parts, dropped_parts, schema, dropped_schema)

    def publish(self, manifest: dict) -> dict:
        """Write the manifest into the temporary folder and rename it to OUT."""
        doc = {
            "curate": {"version": __version__, "stage": self.stage, "status": "complete",
                       "format": F.FORMAT},
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **manifest,
            "versions": package_versions(),
        }
        (self.tmp / F.MANIFEST).write_text(json.dumps(doc, indent=2, default=str) + "\n")
        old = None
        if self.out.exists():
            old = self.out.parent / f".{self.out.name}{F.OLD_TAG}{os.getpid()}"
            os.replace(self.out, old)
        os.replace(self.tmp, self.out)
        self.committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return doc


def check_target(out: Path, stage: str, overwrite: bool) -> None:
    """Refuse an output that would destroy something that is not ours, or that cannot be
    replaced (the folder the user is in, or one above it). Raises InputError."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: output path exists and is a file, not a folder")
    try:
        here = Path.cwd().resolve()
    except OSError:
        here = None
    if here is not None and (out.resolve() == here or out.resolve() in here.parents):
        raise InputError(f"-o {out}: is the folder you are in (or holds it); a stage replaces "
                         "its output folder whole, so write to a new folder, e.g. -o out/stage")
    if out.is_dir() and any(out.iterdir()) and not F.is_curate_folder(out):
        if not overwrite:
            raise InputError(f"{out}: output folder exists, is not empty and is not a curate "
                             "output; choose another -o or pass --overwrite")
    if F.is_curate_folder(out) and not overwrite:
        prev = F.read_manifest(out)["curate"].get("stage")
        if prev != stage:
            raise InputError(f"{out}: holds the output of `curate {prev}`; pass --overwrite "
                             f"to replace it with this `curate {stage}` run")


def os_error_message(e: OSError, where: str | os.PathLike | None = None) -> str:
    """One line for an error of the user's environment: the path and the system's reason."""
    path = e.filename or where or "output"
    reason = os.strerror(e.errno) if e.errno else (e.strerror or str(e).splitlines()[0])
    return f"{path}: {reason}"


# errno values that are the environment's doing (disk, permissions, a closed reader), not a bug
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT,
                      errno.EFBIG, errno.EMFILE, errno.ENFILE, errno.EIO, errno.ENOTDIR,
                      errno.EISDIR, errno.ENOENT, errno.EEXIST, errno.ENOTEMPTY, errno.EBUSY,
                      errno.EXDEV, errno.ENAMETOOLONG, errno.ELOOP}


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
