"""Tools a test needs from the machine (npm, node, chromium…): where one is missing the
test skips on a developer's machine, and fails in CI (``CI=true``), whose `.ci/run`
installs them: a CI run that skipped them would pass without testing what they test."""

from __future__ import annotations

import os
import shutil

import pytest


def unavailable(reason: str) -> None:
    """Skip, or fail under CI=true, for ``reason``."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"cannot run in CI: {reason}")
    pytest.skip(reason)


def require_tool(name: str, purpose: str) -> str:
    """The path of the command ``name``; ``unavailable`` when it is not on PATH."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed: {purpose}")
    return path
