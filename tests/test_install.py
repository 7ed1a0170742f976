"""Installing beacon as the README says: no setuptools warnings, the data files in
the package, and a second `make serve` that does not install again."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_builds_without_warnings_and_holds_the_data_files(tmp_path):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in project["tool"]["setuptools"]["packages"]:
        if "." not in package:
            shutil.copytree(
                ROOT / package, source / package, ignore=shutil.ignore_patterns("node_modules", "__pycache__")
            )
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-v", "-w", str(tmp_path / "out")],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    output = build.stdout + build.stderr
    assert "would be ignored" not in output and "SetuptoolsDeprecationWarning" not in output, output[-3000:]

    names = set(zipfile.ZipFile(next((tmp_path / "out").glob("*.whl"))).namelist())
    migrations = {f"schemas/clickhouse/{p.name}" for p in (ROOT / "schemas" / "clickhouse").glob("*.sql")}
    dashboard = {f"dashboard/static/{p.name}" for p in (ROOT / "dashboard" / "static").iterdir()}
    tracker = {f"collector/static/{p.name}" for p in (ROOT / "collector" / "static").iterdir()}
    assert migrations and migrations | dashboard | tracker | {"schemas/beacon.v1.json"} <= names
    assert not [n for n in names if n.startswith("dashboard/frontend")]  # sources and node_modules stay home


def _make(work: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-C", str(work), *args], capture_output=True, text=True, timeout=60)


def test_a_second_make_serve_installs_nothing(tmp_path):
    """make's own view (-q: "is it up to date?", -n: what it would run) of a virtualenv
    already made, before and after an install, and after pyproject.toml changed."""
    work = tmp_path / "project"
    (work / ".venv" / "bin").mkdir(parents=True)
    shutil.copy(ROOT / "Makefile", work / "Makefile")
    shutil.copy(ROOT / "pyproject.toml", work / "pyproject.toml")
    (work / ".venv" / "bin" / "python").touch()

    assert _make(work, "-q", "install").returncode == 1  # never installed here
    assert "pip install --quiet -e ." in _make(work, "-n", "serve").stdout
    (work / ".venv" / ".installed").touch()  # what the install's last step does
    assert _make(work, "-q", "install").returncode == 0
    assert "pip install" not in _make(work, "-n", "serve").stdout

    later = (work / ".venv" / ".installed").stat().st_mtime + 10
    os.utime(work / "pyproject.toml", (later, later))  # a new dependency, say
    assert "pip install --quiet -e ." in _make(work, "-n", "serve").stdout
    assert "pip install --quiet -e '.[test]'" in _make(work, "-n", "test").stdout
