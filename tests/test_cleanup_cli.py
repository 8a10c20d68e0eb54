"""`python -m virtmig cleanup`: names checked before any host is reached; over real SSH it reports what it did."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import Sshd
from tests.inner_run import REPO


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "virtmig", *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def test_a_bad_host_name_is_refused_before_any_host_is_reached() -> None:
    proc = _cli("cleanup", "--src=-oProxyCommand=x", "--dst", "h2")
    assert proc.returncode == 2
    assert "is not a valid host name" in proc.stderr


@pytest.mark.sshd
def test_nothing_to_clean_is_said(sshd: Sshd) -> None:
    proc = _cli("cleanup", "--src", sshd.alias, "--dst", sshd.alias, "--ssh-config", str(sshd.ssh_config))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"nothing to clean on {sshd.alias}, {sshd.alias}"
