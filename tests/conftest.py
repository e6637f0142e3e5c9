"""Shared fixtures: paths to the real data, a CLI runner, helpers to read an output folder."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
SHARED = ROOT.parent / "shared" / "data"

needs_shared = pytest.mark.skipif(
    not (SHARED / "real").is_dir(),
    reason="../shared/data is absent (a user's clone has no shared folder)")


@pytest.fixture
def cli():
    from curate_cli.app import app

    runner = CliRunner()

    def invoke(*args, **kw):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False, **kw)

    return invoke


def read_output(folder) -> pa.Table:
    """All rows of a dataset folder's top-level parts, in order (schemas may differ per part)."""
    folder = Path(folder)
    parts = sorted(folder.glob("part-*.parquet"))
    tables = [pq.read_table(p) for p in parts]
    return pa.concat_tables(tables, promote_options="permissive") if tables else None


def read_dropped(folder) -> pa.Table | None:
    parts = sorted((Path(folder) / "dropped").glob("part-*.parquet"))
    if not parts:
        return None
    return pa.concat_tables([pq.read_table(p) for p in parts], promote_options="permissive")


def manifest(folder) -> dict:
    return json.loads((Path(folder) / "manifest.json").read_text())
