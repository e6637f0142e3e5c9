"""The dataset folder every stage writes: its layout, its manifest, and the checks on both.

Layout (format 2)::

    OUT/data/train-00000-of-00003.parquet …   the rows; every part has the same schema
    OUT/_dropped/part-00000.parquet …         every row that left the flow, with its reason
    OUT/_manifest.json                        inputs, options, counts, timings, schema, and per
                                              part its row count and an xxh3-128 of its bytes

Why these names: Parquet tools read a folder without options only when it holds nothing but
row files. pyarrow.dataset and pandas skip names that start with ``_`` or ``.`` (the Spark
``_SUCCESS`` / ``_metadata`` convention); ``datasets`` skips names that start with ``.`` or
``__``, and when data files carry a split name (``train-*``) it reads only those. So
``pd.read_parquet(OUT)``, ``pyarrow.dataset.dataset(OUT)``,
``datasets.load_dataset("parquet", data_dir=OUT)`` and ``pl.scan_parquet("OUT/data/*.parquet")``
all give exactly the rows, and ``_dropped/`` and ``_manifest.json`` stay visible to people.

Folders written by curate 0.1 (``part-*.parquet`` and ``manifest.json`` at the top level) are
still read as inputs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import xxhash

from ..errors import InputError

FORMAT = 2
DATA = "data"
DROPPED = "_dropped"
MANIFEST = "_manifest.json"
LEGACY_MANIFEST = "manifest.json"  # curate 0.1 (format 1)
PART_NAME = "train-{i:05d}-of-{n:05d}.parquet"
DROPPED_PART = "part-{:05d}.parquet"

# Hidden siblings a stage writes next to OUT while it runs (see writer.py and chunked.py).
TMP_TAG = ".curate-tmp-"
OLD_TAG = ".curate-old-"
PARTIAL_TAG = ".curate-partial"


def manifest_path(folder: str | Path) -> Path | None:
    """The manifest of a curate folder (either format), or None."""
    for name in (MANIFEST, LEGACY_MANIFEST):
        p = Path(folder) / name
        if p.is_file():
            try:
                if "curate" in json.loads(p.read_text()):
                    return p
            except (OSError, ValueError):
                return None
    return None


def is_curate_folder(path: str | Path) -> bool:
    return manifest_path(path) is not None


def read_manifest(folder: str | Path) -> dict:
    p = manifest_path(folder)
    if p is None:
        raise InputError(f"{folder}: not a curate output folder (no {MANIFEST})")
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{p}: unreadable manifest ({e})") from None


def part_files(folder: str | Path, doc: dict | None = None) -> list[Path]:
    """The row files of a curate folder, in order, as its manifest lists them."""
    folder = Path(folder)
    doc = doc if doc is not None else read_manifest(folder)
    parts = doc.get("parts")
    if parts is None:  # format 1 before parts were listed: the files present
        return sorted(folder.glob("part-*.parquet"))
    return [folder / p["file"] for p in parts]


def file_hash(path: Path) -> str:
    """xxh3-128 of a file's bytes (a few GB/s: cheap next to writing the file)."""
    h = xxhash.xxh3_128()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def part_record(folder: Path, path: Path, rows: int | None = None) -> dict:
    """The manifest entry of one written part: file (relative), rows, bytes, xxh3."""
    if rows is None:
        import pyarrow.parquet as pq

        rows = pq.ParquetFile(path).metadata.num_rows
    return {"file": path.relative_to(folder).as_posix(), "rows": int(rows),
            "bytes": path.stat().st_size, "xxh3": file_hash(path)}


@dataclass
class Damage:
    """What is wrong with a folder's parts: the first fault found, as one line."""

    part: str
    problem: str

    def message(self, folder: Path) -> str:
        return f"{folder}: part {self.part} {self.problem}; rerun the stage that wrote it"


def check_parts(folder: str | Path, doc: dict | None = None, *,
                hashes: bool = False) -> Damage | None:
    """Every part the manifest lists exists with its row count (Parquet footer: cheap), and with
    ``hashes`` its content hash. Returns the first fault, or None."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = Path(folder)
    doc = doc if doc is not None else read_manifest(folder)
    for key in ("parts", "dropped_parts"):
        for p in doc.get(key) or []:
            path = folder / p["file"]
            if not path.is_file():
                return Damage(p["file"], "is missing")
            try:
                rows = pq.ParquetFile(path).metadata.num_rows
            except (pa.ArrowException, OSError) as e:
                return Damage(p["file"], f"is not readable Parquet ({str(e)[:80]})")
            if "rows" in p and rows != p["rows"]:
                return Damage(p["file"], f"holds {rows} rows, the manifest says {p['rows']}")
            if hashes and p.get("xxh3") and file_hash(path) != p["xxh3"]:
                return Damage(p["file"], "changed since it was written (content hash differs)")
    return None


def verify(folder: str | Path, *, hashes: bool = False) -> None:
    """Raise InputError naming the first missing or damaged part of a curate folder."""
    folder = Path(folder)
    damage = check_parts(folder, hashes=hashes)
    if damage is not None:
        raise InputError(damage.message(folder))


# --- leftovers of killed runs ----------------------------------------------------------------

_PID = re.compile(r"-(\d+)$")


def alive(pid: int) -> bool:
    """Whether a process with this pid exists (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_dead_temps(out: Path) -> list[Path]:
    """Remove the temporary siblings (``.OUT.curate-tmp-PID``, ``.OUT.curate-old-PID``) that a
    killed run of the same output left behind: their process is gone, so nobody will finish
    or remove them. A live run's folders are left alone. Returns what was removed."""
    removed = []
    parent = out.parent
    if not parent.is_dir():
        return removed
    for tag in (TMP_TAG, OLD_TAG):
        for p in parent.glob(f".{out.name}{tag}*"):
            m = _PID.search(p.name)
            if m and int(m.group(1)) != os.getpid() and not alive(int(m.group(1))):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    return removed
