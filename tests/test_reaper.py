"""The lab's orphan reaper (`virtmig/lab/reaper.py`), run as the lab runs it: a script, with a real daemon.

The "daemon" here is a shell that double-forks a child, as libvirtd starts
QEMU, so the child is an orphan whose parent must become the reaper (not
this machine's PID 1, which reaps orphans only every second or so).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from virtmig.lab.netns import REAPER
from virtmig.waiters import wait_for

#: The daemon: writes its own PID and its orphan's, then waits until it is signalled.
DAEMON = ("(sleep 30 & echo $! > {orphan}) ; echo $$ > {own}; "
          "trap 'exit 3' TERM; while :; do sleep 0.05; done")


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent PID) of *pid*, or None when it is gone (reaped)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return fields[0], int(fields[1])


def _start(script: str) -> tuple[subprocess.Popen[bytes], int]:
    read_end, write_end = os.pipe()
    reaper = subprocess.Popen([sys.executable, str(REAPER), "--pid-fd", str(write_end), "--", "sh", "-c", script],
                              pass_fds=(write_end,), start_new_session=True)
    os.close(write_end)
    with os.fdopen(read_end) as answer:
        return reaper, int(answer.readline())


def _read_pid(path: Path) -> int:
    return int(wait_for(lambda: path.exists() and path.read_text().strip() or None,
                        target=str(path), state="written", timeout=10))


def test_the_daemons_orphans_are_reparented_to_the_reaper_and_reaped(tmp_path: Path) -> None:
    own, orphan_file = tmp_path / "own", tmp_path / "orphan"
    reaper, daemon = _start(DAEMON.format(own=own, orphan=orphan_file))
    try:
        assert _read_pid(own) == daemon, "the PID written to --pid-fd is not the daemon's own"
        assert (_stat(daemon) or ("", 0))[1] == reaper.pid, "the daemon is not the reaper's child"
        orphan = _read_pid(orphan_file)
        wait_for(lambda: (_stat(orphan) or ("", 0))[1] == reaper.pid or None, target=f"orphan {orphan}",
                 state=f"reparented to the reaper {reaper.pid}", timeout=10,
                 describe=lambda: f"stat {_stat(orphan)}")
        os.kill(orphan, signal.SIGKILL)
        # Reaped by the reaper: gone from /proc, not a zombie waiting for PID 1.
        wait_for(lambda: _stat(orphan) is None or None, target=f"orphan {orphan}", state="reaped",
                 timeout=10, describe=lambda: f"stat {_stat(orphan)}")
        reaper.send_signal(signal.SIGTERM)  # passed on to the daemon, which exits 3
        assert reaper.wait(timeout=10) == 3
    finally:
        if reaper.poll() is None:
            reaper.kill()
            reaper.wait()


def test_the_reaper_outlives_its_daemon_while_an_orphan_runs(tmp_path: Path) -> None:
    orphan_file = tmp_path / "orphan"
    reaper, daemon = _start(f"(sleep 30 & echo $! > {orphan_file}); exit 0")
    try:
        orphan = _read_pid(orphan_file)
        wait_for(lambda: _stat(daemon) is None or None, target=f"daemon {daemon}", state="ended and reaped",
                 timeout=10)
        assert reaper.poll() is None, "the reaper ended while an orphan of its daemon still ran"
        assert (_stat(orphan) or ("", 0))[1] == reaper.pid
        os.kill(orphan, signal.SIGKILL)
        assert reaper.wait(timeout=10) == 0, "the reaper's status is not its daemon's"
    finally:
        if reaper.poll() is None:
            reaper.kill()
            reaper.wait()
