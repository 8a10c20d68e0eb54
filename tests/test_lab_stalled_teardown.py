"""On the lab: an NFS server that stalls before teardown still gets its exports file back, and the run ends.

The inner run is one live column; `tests.stall_nfs_plugin` SIGSTOPs the lab's
ganesha after the last test, so the guest directory, the hosts' mounts and
the export all meet a server that does not answer.  Teardown must then not
wait a timeout per step on the hosts (statfs tells it the mount is stalled:
lazy unmount, no rm through the mount), and must still write /etc/exports
back and remove its work directory on the server's own disk.  What cannot
complete against a stalled server (exportfs -ra, which reloads ganesha) is
reported as the run's error, and its journal entry is left for the next
run's cleanup.  The bound is the inner run's own timeout.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from fixtures.storage import WORKDIR
from tests.inner_run import output_tail, run_suite
from tests.stall_nfs_plugin import PID_VARIABLE
from virtmig.config import DEFAULT_MOUNT_POINT
from virtmig.lab.lifecycle import LabState
from virtmig.lab.topology import EXPORT_DIR, SSH_CONFIG
from virtmig.storage.exports import EXPORTS

pytestmark = pytest.mark.lab



def _ssh(node: str, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ssh", "-F", str(SSH_CONFIG), node, command], capture_output=True, text=True,
                          timeout=60)


def test_a_stalled_nfs_server_at_teardown_still_gets_its_exports_back(fresh_lab: None, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    state = LabState.load()
    assert state is not None
    ganesha = state.nodes["nfs"].daemons["ganesha"]
    before = _ssh("nfs", f"cat {EXPORTS}")
    assert before.returncode == 0, before.stderr
    monkeypatch.setenv(PID_VARIABLE, str(ganesha))
    try:
        proc, _html = run_suite(tmp_path, "suites/live", "-p", "tests.stall_nfs_plugin",
                                "-k", "round_trip and p2p and not tunnelled", timeout=900)
        after = _ssh("nfs", f"cat {EXPORTS}")
        workdir_left = _ssh("nfs", f"test -e {EXPORT_DIR}/{WORKDIR}").returncode == 0
        mounts = {host: _ssh(host, f"findmnt -n {DEFAULT_MOUNT_POINT}").stdout.strip() for host in ("h1", "h2")}
    finally:
        os.kill(ganesha, signal.SIGCONT)
    assert after.returncode == 0 and after.stdout == before.stdout, output_tail(proc)
    assert not workdir_left, "the run's work directory is still on the server"
    assert mounts == {"h1": "", "h2": ""}, mounts
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "exportfs" in out, output_tail(proc)  # the stall is reported, not hidden
    assert "1 passed" in out, output_tail(proc)  # the migration itself ran before the stall
