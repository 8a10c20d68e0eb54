"""On the lab: a run SIGKILLed at a bad moment is cleaned up by the next run of the same command.

The inner run is the operator's `pytest suites/live -k ...` on the lab.  It
is killed (SIGKILL: no teardown runs) once its change can be seen on the
hosts: right after the NFS server's exports file is written, after the
hosts mounted the export, while the guest migrates, and in the middle of a
permission case (its own extra exports, directory and mounts made).  The same command
is then run again: it must say what it cleaned, end CERTIFIED, and leave
the server's /etc/exports byte-identical to before the first run, with no
mount, no guest and no journal entry on any node.

The lab is fresh for these tests (tests/conftest.py `fresh_lab`), and not
held while they run: the inner runs take the lab's lock themselves.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.inner_run import REPO, known_tcg_bug, migrations, output_tail, run_suite
from virtmig.journal import JOURNAL_ROOT
from virtmig.lab.topology import EXPORT_DIR, SSH_CONFIG
from virtmig.storage.exports import BEGIN, EXPORTS
from virtmig.storage.shared import GATE_ROOT
from virtmig.waiters import wait_for

pytestmark = [pytest.mark.lab, pytest.mark.killed_runs]

GUEST = "virtmig-guest"
MOUNT_POINT = "/mnt/nfs"
#: The p2p column for the first two moments; the bandwidth-limit column moves the
#: guest for several seconds, long enough to be caught mid-migration.
P2P = ("suites/live", "-k", "round_trip and p2p and not tunnelled")
SLOW = ("suites/live", "-k", "round_trip and bandwidth-limit")
#: The read-only-export case adds two tagged export blocks, a directory beside the export and mounts.
PERMISSION = ("suites/permissions", "-k", "read_only")


def _ssh(node: str, *argv: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["ssh", "-F", str(SSH_CONFIG), node, *argv], capture_output=True, timeout=30)


def _exports() -> tuple[int, bytes]:
    proc = _ssh("nfs", "cat", EXPORTS)
    return proc.returncode, proc.stdout


def _leftovers() -> dict[str, str]:
    """Mounts at the mount point, guests, the permission cases' gates, mounts and directory, and journal files,
    per node (empty strings: nothing)."""
    found = {}
    for node in ("h1", "h2"):
        found[f"{node} mount"] = _ssh(node, "findmnt", "-n", MOUNT_POINT).stdout.decode().strip()
        found[f"{node} domains"] = _ssh(node, "virsh", "-c", "qemu:///system", "list", "--all",
                                        "--name").stdout.decode().strip()
        found[f"{node} case mounts"] = " ".join(line for line in _ssh(node, "findmnt", "-n", "-o", "TARGET").stdout
                                                .decode().split() if GATE_ROOT in line)
        found[f"{node} gates"] = _ssh(node, "ls", "-A", GATE_ROOT).stdout.decode().strip()
    found["nfs case dir"] = _ssh("nfs", "ls", "-d", f"{EXPORT_DIR}-virtmig-case").stdout.decode().strip()
    for node in ("h1", "h2", "nfs"):
        found[f"{node} journal"] = _ssh(node, "find", JOURNAL_ROOT, "-type", "f").stdout.decode().strip()
    return found


def _exports_written() -> bool:
    return BEGIN.encode() in _exports()[1]


def _mounted() -> bool:
    return bool(_ssh("h2", "findmnt", "-n", MOUNT_POINT).stdout.strip())


def _mid_permission_case() -> bool:
    """The case's extra exports are in the server's file, and a host mounted one."""
    return f"{BEGIN}: ".encode() in _exports()[1] and b"virtmig-perm" in _ssh("h1", "findmnt", "-n", "-o",
                                                                                "TARGET").stdout


def _migrating() -> bool:
    listed = _ssh("h2", "virsh", "-c", "qemu:///system", "list", "--all", "--name").stdout.decode().split()
    return GUEST in listed


MOMENTS: dict[str, tuple[tuple[str, ...], Callable[[], bool]]] = {
    "after-exports-written": (P2P, _exports_written),
    "after-mounting": (P2P, _mounted),
    "mid-migration": (SLOW, _migrating),
    "mid-permission-case": (PERMISSION, _mid_permission_case),
}


def _run_and_kill(tmp_path: Path, args: tuple[str, ...], moment: Callable[[], bool]) -> None:
    log = tmp_path / "killed.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                                cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        wait_for(lambda: True if proc.poll() is not None or moment() else None, target="the inner run",
                 state="at the moment to kill it", timeout=600, interval=0.1)
        assert proc.poll() is None, f"the inner run ended before the moment: {log.read_text()[-3000:]}"
    finally:
        proc.send_signal(signal.SIGKILL)  # our own child, by its pid
        proc.wait()


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_a_killed_run_is_cleaned_up_by_the_next(fresh_lab: None, tmp_path: Path, moment: str) -> None:
    args, reached = MOMENTS[moment]
    before = _exports()
    assert not any(_leftovers().values()), _leftovers()
    _run_and_kill(tmp_path, args, reached)

    proc, html = run_suite(tmp_path, *args)
    # What the cleanup and the second run's teardown leave is checked whatever the migration did.
    assert "virtmig cleanup: cleaning up after run" in proc.stdout, output_tail(proc)
    assert "dead runs cleaned up before this run" in html.read_text(), "the report's verdict shows the cleanup"
    assert _exports() == before
    assert not any(_leftovers().values()), _leftovers()
    if proc.returncode != 0 and (bug := known_tcg_bug(migrations(html))):
        pytest.xfail(bug)
    assert proc.returncode == 0, output_tail(proc)
    assert ": CERTIFIED" in proc.stdout, output_tail(proc)
