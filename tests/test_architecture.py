"""The shape of the code, checked with import-linter (contracts in pyproject.toml).

Data flows one way, folders -> ingest -> longnet -> assistant: vault (keys and encrypted
files) imports none of them, longnet imports neither ingest nor assistant, ingest imports neither longnet nor assistant, the answer engine
imports neither the CLI nor the TUI, and no modules or packages import each other in a
circle (lazy imports inside functions count). The first test checks the tree as it is;
the others break each rule once in a copy of the tree and check that it is caught.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("longnet", "ingest", "assistant", "vault")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    """`lint-imports` on the packages under ``tree`` (found first on the path), no cache."""
    env = {"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([str(LINT_IMPORTS), str(tree / "pyproject.toml"), "--no-cache"],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=300)


def test_the_tree_keeps_every_contract():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory) -> Path:
    tree = tmp_path_factory.mktemp("tree")
    shutil.copy(ROOT / "pyproject.toml", tree)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tree / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return tree


def _file_of(tree: Path, module: str) -> Path:
    path = tree.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _one_module_import() -> tuple[str, str]:
    """An import between two plain modules of longnet (importer, imported)."""
    graph = grimp.build_graph("longnet", cache_dir=None)
    packages = {m for m in graph.modules if (ROOT.joinpath(*m.split(".")) / "__init__.py").exists()}
    for importer in sorted(graph.modules - packages):
        for imported in sorted(graph.find_modules_directly_imported_by(importer) - packages):
            return importer, imported
    raise AssertionError("longnet has no import between two modules")


def _break_rule(tree: Path, module: str, line: str) -> str:
    """Append ``line`` to ``module``'s file under ``tree``; returns the old text."""
    path = _file_of(tree, module)
    before = path.read_text()
    path.write_text(before + "\n\n" + line + "\n")
    return before


_importer, _imported = _one_module_import()


@pytest.mark.parametrize("module, line, contract", [
    ("longnet.generate", "import ingest.store", "longnet knows nothing of ingest"),
    ("longnet.weights", "def _x():\n    from assistant import home", "longnet knows nothing"),
    ("ingest.dates", "def _x():\n    import longnet.model", "ingest knows nothing"),
    ("ingest.chunking", "from assistant import config", "ingest knows nothing"),
    ("assistant.engine.evaluation", "def _x():\n    from assistant.cli import common",
     "the engine knows neither"),
    ("assistant.engine.results", "def _x():\n    import assistant.tui.app",
     "the engine knows neither"),
    ("vault.chunks", "def _x():\n    import ingest.store", "vault (keys and encrypted files)"),
    # A lazy import that closes a circle is still a circle.
    (_imported, f"def _x():\n    import {_importer}", "no import cycles"),
], ids=["longnet->ingest", "longnet->assistant (lazy)", "ingest->longnet (lazy)",
        "ingest->assistant", "engine->cli (lazy)", "engine->tui (lazy)", "vault->ingest (lazy)",
        "cycle (lazy)"])
def test_a_broken_rule_is_caught(tree_copy, module, line, contract):
    before = _break_rule(tree_copy, module, line)
    try:
        result = lint_imports(tree_copy)
    finally:
        _file_of(tree_copy, module).write_text(before)
    assert result.returncode != 0, result.stdout
    broken = [row for row in result.stdout.splitlines() if row.rstrip().endswith("BROKEN")]
    # (an engine -> CLI import also closes a circle, so it may break two contracts)
    assert any(row.startswith(contract) for row in broken), result.stdout
