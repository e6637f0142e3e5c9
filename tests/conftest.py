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
    """All rows of a dataset folder, in order, read the way a user would: pyarrow's dataset
    reader on the folder, with no options (every part has one schema)."""
    import pyarrow.dataset as ds

    folder = Path(folder)
    if not sorted(folder.glob("data/*.parquet")):
        return None
    return ds.dataset(folder).to_table()


def read_dropped(folder) -> pa.Table | None:
    parts = sorted((Path(folder) / "_dropped").glob("part-*.parquet"))
    if not parts:
        return None
    return pa.concat_tables([pq.read_table(p) for p in parts])


def score_json(cli, *args) -> dict:
    """`curate score ARGS --json`, which must succeed; its summary."""
    r = cli("score", *args, "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def rows_by_id(folder) -> dict[str, dict]:
    return {r["id"]: r for r in read_output(folder).to_pylist()}


def manifest(folder) -> dict:
    return json.loads((Path(folder) / "_manifest.json").read_text())


# --- tiny random Qwen2 checkpoints (curate.testing.tiny_models), built once per session ---

def _tiny(tmp_path_factory, name: str, kind: str, **kw) -> Path:
    pytest.importorskip("torch", reason="torch is not installed (pip install curate-prm[dev] "
                                        "and torch to run the model tests)")
    pytest.importorskip("transformers", reason="transformers is not installed")
    pytest.importorskip("tokenizers", reason="tokenizers is not installed")
    from curate.testing import tiny_models

    builder = {"step": tiny_models.build_step_prm, "seq": tiny_models.build_seq_prm,
               "lm": tiny_models.build_causal_lm}[kind]
    return builder(tmp_path_factory.mktemp(name), **kw)


@pytest.fixture(scope="session")
def tiny_step_prm(tmp_path_factory) -> Path:
    """Qwen2ForProcessRewardModel-style checkpoint (score.0/score.2, 2 classes) + tokenizer."""
    return _tiny(tmp_path_factory, "tiny_step_prm", "step")


@pytest.fixture(scope="session")
def tiny_step_prm_remote(tmp_path_factory) -> Path:
    """The same step PRM (same weights as tiny_step_prm) shipping remote code like the real
    Qwen2.5-Math-PRM-7B: auto_map, configuration_qwen2_rm.py, modeling_qwen2_rm.py."""
    return _tiny(tmp_path_factory, "tiny_step_prm_remote", "step", remote_code=True)


@pytest.fixture(scope="session")
def tiny_seq_prm(tmp_path_factory) -> Path:
    """ReasonFlux-PRM-1.5B-style checkpoint: Qwen2ForCausalLM + reward_head.pt."""
    return _tiny(tmp_path_factory, "tiny_seq_prm", "seq")


@pytest.fixture(scope="session")
def tiny_causal_lm(tmp_path_factory) -> Path:
    """A plain Qwen2ForCausalLM: the wrong model for a PRM scorer."""
    return _tiny(tmp_path_factory, "tiny_causal_lm", "lm")


@pytest.fixture(scope="session")
def tiny_thinkprm(tmp_path_factory) -> Path:
    """A ThinkPRM-shaped causal LM (R1-Distill tokenizer, chat template and generation config;
    curate.testing.tiny_verifier)."""
    pytest.importorskip("torch", reason="torch is not installed")
    pytest.importorskip("transformers", reason="transformers is not installed")
    from curate.testing.tiny_verifier import build_thinkprm

    return build_thinkprm(tmp_path_factory.mktemp("tiny_thinkprm"))


@pytest.fixture(scope="session")
def tiny_prm_bad_head(tmp_path_factory) -> Path:
    """A step PRM whose score.2 has 3 outputs instead of 2."""
    return _tiny(tmp_path_factory, "tiny_prm_bad_head", "step", head_outputs=3)


@pytest.fixture(scope="session")
def tiny_prm_unknown_arch(tmp_path_factory) -> Path:
    """A step PRM whose config names an architecture no scorer knows."""
    return _tiny(tmp_path_factory, "tiny_prm_unknown_arch", "step",
                 architecture="Qwen2ForSomethingElse")
