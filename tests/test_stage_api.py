"""The public extension points: a stage added from outside in ~20 lines runs in a flow from
Python and from `curate run`, resumes, and shows in the report; the registry is the one list of
stages; no import cycles; no private name imported across packages."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pyarrow.compute as pc
import pytest
from conftest import ROOT, SAMPLE, manifest, read_dropped, read_output

import curate


# --- a stage of one's own, through the public API only (the DESIGN.md example) ---------------
@dataclass
class ShortOptions(curate.StageOptions):
    max_chars: int = curate.option(2000, help="Drop traces whose response is longer.")


class DropLong(curate.MapStage):
    name = "droplong"
    Options = ShortOptions
    help = "Drop traces whose response is longer than --max-chars."

    def process(self, batch, opts, state):
        long = pc.greater(pc.utf8_length(batch.table.column("response")), opts.max_chars)
        mask = long.to_numpy(zero_copy_only=False)
        dropped = curate.dropped_rows(batch.table.column("id").filter(long), "too_long_text",
                                      [str(opts.max_chars)] * int(mask.sum()), batch.label,
                                      batch.positions.filter(long))
        return curate.Chunk(batch.table.filter(pc.invert(long)), dropped, {"long": int(mask.sum())})
# --- end of the example -----------------------------------------------------------------------


@pytest.fixture
def droplong():
    curate.register_stage(DropLong, after="read")
    yield DropLong
    curate.unregister_stage("droplong")


def _config(out: Path) -> dict:
    return {"run": {"out": str(out)},
            "read": {"inputs": [str(SAMPLE / "processbench.parquet")]},
            "droplong": {"max-chars": 1600}, "export": {}}


def _expected_kept() -> int:
    import pyarrow.parquet as pq

    t = pq.read_table(SAMPLE / "processbench.parquet")
    return sum(1 for r in t.column("response").to_pylist() if len(r) <= 1600)


def test_a_toy_stage_runs_in_a_flow_from_python_and_resumes(droplong, tmp_path):
    out = tmp_path / "out"
    doc = curate.run(_config(out))
    assert [s["stage"] for s in doc["stages"]] == ["read", "droplong", "export", "report"]
    kept = _expected_kept()
    m = manifest(out / "droplong")
    assert m["curate"]["stage"] == "droplong" and m["counts"]["rows_out"] == kept
    assert m["config"]["max_chars"] == 1600
    assert m["command"] == f"curate droplong {out / 'read'} -o {out / 'droplong'} --max-chars 1600"
    assert read_output(out / "droplong").num_rows == kept
    dropped = read_dropped(out / "droplong")
    assert set(dropped.column("drop_reason").to_pylist()) == {"too_long_text"}
    assert dropped.num_rows == m["counts"]["rows_in"] - kept
    # the report shows it in the funnel, in the registry's order
    report = doc["stages"][-1]["summary"]
    assert [s["stage"] for s in report["stages"]] == ["read", "droplong", "export"]
    assert report["stages"][1]["dropped"] == {"too_long_text": dropped.num_rows}
    # a rerun skips it; a changed option reruns it and the stages after it
    again = curate.run(_config(out))
    assert [s["action"] for s in again["stages"]] == ["skip", "skip", "skip", "run"]
    cfg = _config(out)
    cfg["droplong"]["max-chars"] = 1200
    changed = curate.run(cfg)
    assert [s["action"] for s in changed["stages"]] == ["skip", "run", "run", "run"]
    assert changed["stages"][1]["reason"] == "config changed: max-chars 1600 → 1200"


def test_a_toy_stage_runs_from_curate_run_with_its_own_section(droplong, cli, tmp_path):
    out = tmp_path / "out"
    cfg = tmp_path / "flow.toml"
    cfg.write_text(f'[run]\nout = "{out}"\n[read]\ninputs = ["{SAMPLE / "processbench.parquet"}"]'
                   f'\n[droplong]\nmax-chars = 1600\n')
    r = cli("run", cfg, "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [s["stage"] for s in doc["stages"]] == ["read", "droplong", "report"]
    assert doc["stages"][1]["summary"]["rows_out"] == _expected_kept()
    assert doc["stages"][1]["summary"]["long"] == doc["stages"][1]["summary"]["rows_in"] - \
        _expected_kept()
    r = cli("run", cfg, "--json")
    assert [s["action"] for s in json.loads(r.stdout)["stages"]] == ["skip", "skip", "run"]
    # its options are config keys like any stage's: a typo is named with the valid ones
    cfg.write_text(cfg.read_text().replace("max-chars", "max-char"))
    r = cli("run", cfg)
    assert r.exit_code == 2 and "[droplong] unknown key 'max-char'" in r.stderr
    assert "did you mean 'max-chars'" in r.stderr
    # and `curate run --example` lists it
    assert "[droplong]" in cli("run", "--example").stdout
    # the command line has a command for it, from the same declaration
    r = cli("droplong", out / "read", "-o", tmp_path / "alone", "--max-chars", "1600", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["rows_out"] == _expected_kept()
    assert "--max-chars" in cli("droplong", "--help").stdout


def test_the_example_stage_in_design_md_is_this_one():
    # DESIGN.md shows the example above; keep the two the same.
    design = (ROOT / "docs" / "DESIGN.md").read_text()
    here = Path(__file__).read_text()
    start = here.index("@dataclass\nclass ShortOptions")
    end = here.index("# --- end of the example")
    assert here[start:end].strip() in design


# --- one list of stages --------------------------------------------------------------------------

def test_the_registry_is_the_one_ordered_list_of_stages(cli):
    from curate.flow.config import stage_specs
    from curate.registry import _HELP, get_stage, stage_names

    names = stage_names()
    assert names == ["read", "score", "filter", "dedup", "decontam", "export", "validate",
                     "report"]
    assert list(stage_specs()) == names
    listed = cli("--help", env={"COLUMNS": "200"}).stdout
    assert [n for n in names if f" {n} " in listed] == names
    for name, text in _HELP.items():  # `curate --help` lists them without importing them
        assert get_stage(name).help == text, name


def test_the_cli_lists_stages_without_importing_them():
    code = ("import sys; import curate_cli.app as a; "
            "from typer.main import get_command; from click.testing import CliRunner; "
            "CliRunner().invoke(get_command(a.app), ['--help']); "
            "print(sorted(m for m in ('polars', 'pyarrow', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


# --- the code's shape ----------------------------------------------------------------------------

def test_no_import_cycles_in_curate_or_cli():
    tool = ROOT.parent / "shared" / "tools" / "import_cycles.py"
    if tool.is_file():
        r = subprocess.run([sys.executable, str(tool)], cwd=ROOT, capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stdout
    assert _cycles() == []


def _modules() -> dict[str, Path]:
    out = {}
    for pkg, folder in (("curate", ROOT / "curate"), ("cli", ROOT / "cli")):
        for f in folder.rglob("*.py"):
            rel = f.relative_to(folder).with_suffix("").parts
            name = ".".join((pkg, *rel)).removesuffix(".__init__")
            out[name] = f
    return out


def _imports(name: str, path: Path, mods: dict) -> list[tuple[str, list[str]]]:
    """(module imported, names taken from it) for every import, lazy ones included."""
    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name.replace("curate_cli", "cli", 1), []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            head = base[: len(base) - node.level + 1] if node.level else []
            mod = ".".join(head + ([node.module] if node.module else []))
            mod = mod.replace("curate_cli", "cli", 1)
            for a in node.names:
                full = f"{mod}.{a.name}"
                out.append((full, []) if full in mods else (mod, [a.name]))
    return out


def _cycles() -> list[list[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        for target, _ in _imports(m, path, mods):
            while target and target not in mods:
                target = target.rpartition(".")[0]
            if target and target != m and not m.startswith(target + "."):
                graph[m].add(target)
    seen, cycles = set(), []

    def visit(m, path):
        if m in path:
            cycles.append(path[path.index(m):])
            return
        if m in seen:
            return
        seen.add(m)
        for n in sorted(graph[m]):
            visit(n, [*path, m])

    for m in sorted(graph):
        visit(m, [])
    return cycles


def test_no_private_name_is_imported_across_packages():
    mods = _modules()
    offenders = []
    for m, path in mods.items():
        pkg = m.rpartition(".")[0] if path.name != "__init__.py" else m
        for target, names in _imports(m, path, mods):
            for n in names:
                if n.startswith("_") and not n.startswith("__") and \
                        target.rpartition(".")[0] != pkg and target != pkg:
                    offenders.append(f"{m} imports {target}.{n}")
    assert offenders == []
