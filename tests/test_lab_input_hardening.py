"""On the lab: the injection strings of issue #11 stop a real-host run as usage errors, and the
NFS server's /etc/exports is left byte for byte as it was.

The inner run is the operator's command (`pytest suites/live --src h1 --dst h2
--nfs-server nfs --export ... --ssh-config ...`) against the lab's hosts, so
the lab must be up for the check to mean anything: the file read before and
after is the real server's.  The lab's lock is not held meanwhile
(`fresh_lab`), so this file may run before those whose inner runs take it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.inner_run import REPO
from virtmig.lab.topology import SSH_CONFIG
from virtmig.storage.exports import END, EXPORTS

pytestmark = pytest.mark.lab

REAL_HOSTS = ["--src", "h1", "--dst", "h2", "--nfs-server", "nfs", "--ssh-config", str(SSH_CONFIG)]
INJECTIONS = [
    ["--export", "/srv/vm\n/ *(rw,no_root_squash)"],
    ["--export", "/srv/vm *(rw,no_root_squash)"],
    ["--export", f"/srv/vm\n{END}\n/ *(rw)"],
    ["--export", "/etc"],
    ["--export", "/srv/vm", "--mount-point", "/mnt/nfs\n/ *(rw,no_root_squash)"],
    ["--export", "/srv/vm", "--mount-point", "/usr/lib"],
    ["--export", "/srv/vm", "--qemu-user", "root;id"],
]


def _exports_file() -> tuple[int, bytes]:
    """(rc of cat, content) of the lab NFS server's /etc/exports: byte for byte is the claim."""
    proc = subprocess.run(["ssh", "-F", str(SSH_CONFIG), "nfs", "cat", EXPORTS], capture_output=True, timeout=30)
    return proc.returncode, proc.stdout


@pytest.mark.parametrize("argv", INJECTIONS, ids=lambda a: repr(a[-1])[:40])
def test_injection_is_a_usage_error_and_exports_stay_unchanged(fresh_lab: None, tmp_path: Path,
                                                               argv: list[str]) -> None:
    before = _exports_file()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "suites/live", "-p", "no:cacheprovider", *REAL_HOSTS, *argv,
         f"--junitxml={tmp_path / 'junit.xml'}"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, proc.stdout + proc.stderr
    assert "ERROR:" in proc.stderr and argv[-2] in proc.stderr, proc.stderr
    assert _exports_file() == before
