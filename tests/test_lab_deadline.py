"""On the lab: a live migration that outlives its deadline is aborted, and the guest stays on the source.

The bandwidth-limit column moves the guest's memory at a capped rate, so it
takes several seconds; with `--migration-timeout 2` the harness must call
abortJob, wait for the job to end, and record "aborted after ..." with the
guest running on h1, nothing on h2, and its RAM and disk patterns intact.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from fixtures.storage import WORKDIR
from tests.inner_run import migrations, output_tail, run_suite
from virtmig.lab.lifecycle import LabState
from virtmig.lab.topology import NFS

pytestmark = pytest.mark.lab


def test_a_migration_past_its_deadline_is_aborted_and_the_guest_stays_on_the_source(tmp_path: Path) -> None:
    proc, html = run_suite(tmp_path, "suites/live", "-k", "round_trip and bandwidth-limit",
                           "--migration-timeout", "2")
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, output_tail(proc)
    (hop,) = migrations(html)  # the first hop is aborted; the test stops there
    assert (hop["src"], hop["dst"], hop["ok"]) == ("h1", "h2", False), hop
    assert hop["error"].startswith("aborted after 2."), hop["error"]
    assert "deadline 2 s (--migration-timeout)" in hop["error"], hop["error"]
    assert "after the abort the guest is running on h1 and absent on h2" in hop["notes"], hop["notes"]
    assert not [n for n in hop["notes"] if n.startswith("PROBLEM")], hop["notes"]
    assert hop["integrity"] and set(hop["integrity"].values()) == {"ok"}, hop["integrity"]
    assert hop["stats"] is None


class StallWhenSaving(threading.Thread):
    """Stops the lab's ganesha as soon as the saved state appears on the server's disk, resumes it after *hold_s*.

    Why a stall: the save of a mostly idle 128 MiB guest takes well under a
    second here, and a stalled NFS server is what the deadline is for.  The
    file is watched on the NFS node's own disk (the lab's state directory).
    """

    def __init__(self, saved: Path, ganesha: int, hold_s: float = 5.0) -> None:
        super().__init__(daemon=True)
        self.saved, self.ganesha, self.hold_s = saved, ganesha, hold_s
        self.done = threading.Event()
        self.stopped_at: float | None = None

    def run(self) -> None:
        try:
            while not self.done.is_set() and not self.saved.exists():
                time.sleep(0.002)
            if self.done.is_set():
                return
            os.kill(self.ganesha, signal.SIGSTOP)
            self.stopped_at = time.monotonic()
            self.done.wait(self.hold_s)
        finally:
            os.kill(self.ganesha, signal.SIGCONT)


def test_a_save_past_its_deadline_is_aborted_and_the_guest_stays_on_the_source(fresh_lab: None,
                                                                                 tmp_path: Path) -> None:
    """save-restore with a 1 s deadline while the NFS server stalls mid-save: aborted, and the guest resumes.

    The save needs no_root_squash on the lab's FUSE mount (see tests/test_lab.py), hence the export options.
    """
    state = LabState.load()
    assert state is not None
    saved = NFS.state_dir / "export" / WORKDIR / "virtmig-guest" / "saved-state.img"
    staller = StallWhenSaving(saved, state.nodes["nfs"].daemons["ganesha"])
    staller.start()
    try:
        proc, html = run_suite(tmp_path, "suites/offline", "-k", "save-restore", "--migration-timeout", "1",
                               "--export-options", "rw,sync,no_root_squash,no_subtree_check")
    finally:
        staller.done.set()
        staller.join()
    assert staller.stopped_at is not None, "the save never wrote its file"
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, output_tail(proc)
    (move,) = migrations(html)
    assert (move["kind"], move["src"], move["dst"], move["ok"]) == ("save-restore", "h1", "h2", False), move
    assert move["error"].startswith("save aborted after 1."), move["error"]
    assert "deadline 1 s (--migration-timeout)" in move["error"], move["error"]
    assert "after the abort the guest is running on h1 and absent on h2" in move["notes"], move["notes"]
    assert not [n for n in move["notes"] if n.startswith("PROBLEM")], move["notes"]
    assert move["integrity"] and set(move["integrity"].values()) == {"ok"}, move["integrity"]
