"""A pytest plugin for inner runs: stall the lab's NFS server just before the session's teardown.

Loaded with `-p tests.stall_nfs_plugin` by tests/test_lab_stalled_teardown.py,
which names ganesha's pid in VIRTMIG_STALL_PID and resumes it afterwards.
The stall comes once the last test has run and before any fixture is torn
down, so every teardown step that touches the storage meets a server that
no longer answers.
"""

from __future__ import annotations

import os
import signal

import pytest

PID_VARIABLE = "VIRTMIG_STALL_PID"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if nextitem is None:  # the last test: the session's fixtures are torn down right after this hook
        os.kill(int(os.environ[PID_VARIABLE]), signal.SIGSTOP)
