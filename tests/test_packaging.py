"""The declared dependency ranges are the ones the code is tested against."""

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
packaging_requirements = pytest.importorskip("packaging.requirements")
packaging_specifiers = pytest.importorskip("packaging.specifiers")


def _hf_extra_transformers():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs = [packaging_requirements.Requirement(r)
            for r in meta["project"]["optional-dependencies"]["hf"]]
    found = [r for r in reqs if r.name == "transformers"]
    assert len(found) == 1, reqs
    return found[0].specifier


def _script_transformers(script: str) -> set[str]:
    """The transformers specifiers a script passes to pip (quoted 'transformers…' arguments)."""
    text = (ROOT / "scripts" / script).read_text()
    specs = {str(packaging_requirements.Requirement(m).specifier)
             for m in re.findall(r"""['"](transformers[^'"]*)['"]""", text)}
    assert specs, f"scripts/{script} installs no pinned transformers"
    return specs


def test_hf_extra_declares_the_transformers_range_ci_installs():
    declared = _hf_extra_transformers()
    for script in ("test.sh", "setup.sh"):
        installed_by = _script_transformers(script)
        assert len(installed_by) == 1, (script, installed_by)
        assert declared == packaging_specifiers.SpecifierSet(installed_by.pop()), \
            f"pyproject.toml's hf extra says transformers{declared}; scripts/{script} differs"


def test_installed_transformers_is_in_the_declared_range():
    try:
        version = importlib.metadata.version("transformers")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("transformers is not installed")
    declared = _hf_extra_transformers()
    assert declared.contains(version, prereleases=True), \
        f"transformers {version} is installed, outside the declared {declared}"
