"""A test that needs npm skips where npm is missing, except in CI (``CI=true``), where it
fails: a green CI run must have run it (tests/tools.py). Run here with an empty PATH."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NEEDS_NPM = [
    "tests/test_tracker_build.py::test_the_committed_files_equal_a_fresh_build",
    "tests/test_dashboard_build.py::test_the_committed_files_equal_a_fresh_build",
]


def _run_without_npm(test: str, ci: bool, tmp_path: Path) -> str:
    empty = tmp_path / "bin"  # the PATH: no npm (pytest runs from this Python, by its path)
    empty.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"PATH": str(empty)} | ({"CI": "true"} if ci else {})
    done = subprocess.run(
        [sys.executable, "-m", "pytest", test, "-q", "-rfs", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout


@pytest.mark.parametrize("test", NEEDS_NPM)
def test_a_missing_npm_fails_in_ci_and_skips_elsewhere(test, tmp_path):
    in_ci = _run_without_npm(test, ci=True, tmp_path=tmp_path)
    assert "1 failed" in in_ci and "npm is not installed" in in_ci, in_ci
    elsewhere = _run_without_npm(test, ci=False, tmp_path=tmp_path)
    assert "1 skipped" in elsewhere and "failed" not in elsewhere, elsewhere
