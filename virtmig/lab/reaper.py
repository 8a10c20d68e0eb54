"""Lab adapter: a node's stand-in for a host's init reaping orphaned processes at once.

libvirtd starts each QEMU through a double fork, so QEMU's parent is
whatever reaps orphans: systemd on a real host, which reaps a dead QEMU at
once.  On this machine that is PID 1 of the microVM, which reaps orphans
only about every 1.5 s (measured: QEMU exits within 7 ms of SIGTERM, its
zombie stays 1.4-1.9 s).  libvirt's destroy, and the confirm step of every
migration, wait until `kill(pid, 0)` fails, that is until the zombie is
reaped, so every destroy and migration on the lab took 1.5 s longer than on
a real host.

This runs a daemon (libvirtd) as its child after making itself a child
subreaper (prctl PR_SET_CHILD_SUBREAPER), so that the daemon's orphans are
reparented here and reaped the moment they end.  The daemon's own PID is
written to --pid-fd, so the lab records and stops the daemon itself by PID
(`virtmig.lab.netns.Node.spawn`).  SIGTERM and SIGINT are passed on to the
daemon; the reaper ends when it has no child left (orphans still running
after the daemon, e.g. a guest left by a killed libvirtd, keep it alive).

Run as a script by path inside a node (`nsenter ... python reaper.py`): it
imports nothing from virtmig.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import sys
from types import FrameType

PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="run a daemon, reaping its orphans at once")
    parser.add_argument("--pid-fd", type=int, required=True, help="write the daemon's PID here, then close it")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the daemon's command line")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no daemon command given")
    _become_subreaper()
    daemon = os.fork()
    if daemon == 0:
        os.close(args.pid_fd)
        try:
            os.execvp(command[0], command)
        finally:
            os._exit(127)  # exec failed: the daemon's status says so

    def forward(signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(daemon, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    os.write(args.pid_fd, f"{daemon}\n".encode())
    os.close(args.pid_fd)
    status = 0
    while True:
        try:
            pid, wstatus = os.wait()
        except ChildProcessError:
            return status
        if pid == daemon:
            status = os.waitstatus_to_exitcode(wstatus)


if __name__ == "__main__":
    sys.exit(main())
