"""The layers of the code (README, "Where to look"), as import-linter contracts in
pyproject.toml: they hold, and they do fail when a lower layer reaches up."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = [
    p for p in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"] if "." not in p
]  # the top-level ones (the data directories are listed as packages too)
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(tree)}  # the packages of ``tree``, not the installed ones
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def copy_of_the_code(to: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, to / package, ignore=shutil.ignore_patterns("__pycache__", "static"))
    shutil.copy(ROOT / "pyproject.toml", to / "pyproject.toml")
    return to


def test_the_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    "module, scratch_import, broken",
    [
        ("storage/sink.py", "import streams.embedded", "Layers"),  # storage reaching up to streams
        ("streams/geo.py", "import collector.app", "Layers"),  # the filter reaching up to an app
        ("queries/planner.py", "import streams.embedded", "Layers"),  # the read side and the filter are independent
        ("queries/engine.py", "import rollups.visit_builder", "Layers"),  # the read side never writes the roll-ups
        ("api/app.py", "import collector.app", "Layers"),  # one app into another's internals
        ("web/routing.py", "import collector.app", "The HTTP package knows no app"),
        ("storage/sites.py", "import web.messages", "The pipeline below the apps serves no HTTP"),
        ("beacon/wiring.py", "import streams.worker", "Only the Kafka entry points load Faust"),
    ],
)
def test_a_scratch_import_across_the_layers_breaks_a_contract(tmp_path, module, scratch_import, broken):
    tree = copy_of_the_code(tmp_path)
    with open(tree / module, "a") as fh:
        fh.write(f"\n{scratch_import}  # scratch: a deliberate violation\n")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert f"{broken}" in result.stdout and "BROKEN" in result.stdout, result.stdout


def test_beacon_serve_without_kafka_never_loads_faust():
    probe = "import sys, beacon.cli, beacon.serve, beacon.serve_workers, beacon.wiring; print('faust' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120).stdout
    assert out.strip() == "False"


def import_cycles(packages: list[str]) -> set[tuple[str, str]]:
    """Pairs of modules that import each other, directly or through others, counting
    the imports made for type checking only."""
    import grimp

    graph = grimp.build_graph(*packages, exclude_type_checking_imports=False)
    return {
        tuple(sorted((module, imported)))
        for module in graph.modules
        for imported in graph.find_modules_directly_imported_by(module)
        if imported in graph.modules and graph.chain_exists(importer=imported, imported=module)
    }


def test_no_module_imports_one_that_imports_it_back_even_for_type_checking():
    assert import_cycles(PACKAGES) == set()


def test_the_cycle_check_finds_a_type_checking_cycle(tmp_path, monkeypatch):
    tree = copy_of_the_code(tmp_path)
    context = tree / "web" / "context.py"
    anchor = "from web.types import"
    type_checking_import = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import web.server\n"
    context.write_text(context.read_text().replace(anchor, type_checking_import + anchor, 1))
    monkeypatch.syspath_prepend(str(tree))
    for name in [m for m in sys.modules if m.split(".")[0] in PACKAGES]:
        monkeypatch.delitem(sys.modules, name)
    assert ("web.context", "web.server") in import_cycles(PACKAGES)
