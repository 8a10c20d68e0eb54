"""Run an inner pytest session that loads the harness's plugins from the repo.

The report tests drive real inner sessions (with and without xdist) because
records reach the controller only through pytest's report plumbing.
pytest-xdist >= 3.8 gives local workers the sys.path their controller
started with, so a session with `-n` runs in its own interpreter, started
with PYTHONPATH naming the repo; a serial one runs in-process.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def run_with_plugins(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, *args: str) -> pytest.RunResult:
    """pytester.runpytest(*args), with the repo importable in every worker."""
    pytester.syspathinsert(REPO_ROOT)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    run = pytester.runpytest_subprocess if "-n" in args else pytester.runpytest
    return run(*args)
