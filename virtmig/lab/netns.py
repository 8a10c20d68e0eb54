"""Lab nodes as Linux namespaces: one network, mount and UTS namespace each.

A node is an `ip netns` (so `ip netns pids` can always find what runs in it)
plus a *holder* process started with `unshare --mount --uts` inside it.  The
holder owns the node's private mount table (per-host /etc/libvirt, /etc/ssh,
a tmpfs on /run, ...) and its hostname; the lab starts every daemon of the
node with `nsenter` into the holder's namespaces.

Only the lab package does this.  The harness reaches the nodes over SSH, as it
would reach real hosts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from virtmig.host import CommandError, CommandResult
from virtmig.lab.topology import NETNS_PREFIX, LabNode
from virtmig.localhost import LocalHost
from virtmig.waiters import WaitTimeout, wait_for

#: The lab's orphan reaper, run by path inside a node (`spawn(reap_orphans=True)`).
REAPER = Path(__file__).with_name("reaper.py")


class LabError(RuntimeError):
    """A lab operation failed; the message names the node and the command."""


def sh(argv: Sequence[str], *, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command on the machine itself and fail loudly with its stderr."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, input=input)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)!r} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def lab_netns_names() -> list[str]:
    """Every namespace a lab (this one or a crashed earlier one) created."""
    out = sh(["ip", "netns", "list"], check=False).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [n for n in names if n.startswith(NETNS_PREFIX)]


def netns_pids(name: str) -> list[int]:
    """PIDs of all processes living in a lab namespace (daemons, QEMU, holder)."""
    out = sh(["ip", "netns", "pids", name], check=False).stdout
    return [int(p) for p in out.split()]


def terminate(pids: Sequence[int], *, grace: float = 5.0) -> None:
    """SIGTERM the given PIDs, then SIGKILL whatever is still there after `grace`."""
    alive = _signal_and_wait([p for p in pids if is_alive(p)], signal.SIGTERM, grace)
    _signal_and_wait(alive, signal.SIGKILL, grace)


def _signal_and_wait(pids: list[int], sig: int, grace: float) -> list[int]:
    """Send `sig` to each PID; return those still alive after up to `grace` seconds."""
    for pid in pids:
        _signal(pid, sig)
    alive = list(pids)

    def ended() -> bool | None:
        nonlocal alive
        alive = [p for p in alive if is_alive(p)]
        return True if not alive else None

    with contextlib.suppress(WaitTimeout):  # the survivors are the answer: the caller escalates, or gives up
        wait_for(ended, target=f"PIDs {pids}", state=f"ended by {signal.Signals(sig).name}", timeout=grace,
                 interval=0.05, describe=lambda: f"still alive: {alive}")
    return alive


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes; reap it if it is our child.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):  # ENOENT or ESRCH: it ended between kill(0) and the read
        return False
    if state == "Z":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


class Node:
    """A running lab node: its netns and the holder of its mount/UTS namespaces."""

    def __init__(self, spec: LabNode, holder_pid: int) -> None:
        self.spec = spec
        self.holder_pid = holder_pid
        #: The transport `run` goes through (named as the node, so errors say which).
        self._local = LocalHost(spec.name)

    @classmethod
    def create(cls, spec: LabNode) -> Node:
        """Create the netns and start the holder; the hostname is set inside."""
        sh(["ip", "netns", "add", spec.netns])
        # The holder is a shell that waits, so that orphans it inherits are
        # reaped (an `exec sleep` holder leaves zombies behind).
        holder = subprocess.Popen(
            ["ip", "netns", "exec", spec.netns, "unshare", "--mount", "--uts",
             "--propagation", "private", "sh", "-c",
             f"hostname {spec.name}; trap 'kill $!; wait; exit 0' TERM; echo ready; sleep infinity & wait"],
            # stderr to /dev/null: the holder outlives us, and an inherited
            # pipe would keep a caller's `| tail` (or CI's log reader) waiting.
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, text=True,
        )
        assert holder.stdout is not None
        if holder.stdout.readline().strip() != "ready":
            raise LabError(f"holder of {spec.name} did not start")
        holder.stdout.close()
        return cls(spec, holder.pid)

    def nsenter(self, argv: Sequence[str]) -> list[str]:
        """The command line that runs argv inside this node's namespaces."""
        return ["nsenter", "-t", str(self.holder_pid), "-m", "-u", "-n", "--", *argv]

    def run(self, argv: Sequence[str], *, check: bool = True, stdin: str | None = None) -> CommandResult:
        """Run a short command inside the node (lab set-up only), as `virtmig.host.Host.run` would.

        The answer is the harness's own `CommandResult`; with check, a
        non-zero exit raises `LabError` (a lab step failed), from the `CommandError`.
        """
        try:
            return self._local.run(*self.nsenter(argv), check=check, stdin=stdin)
        except CommandError as exc:
            raise LabError(str(exc)) from exc

    def spawn(self, argv: Sequence[str], log: Path, *, reap_orphans: bool = False) -> int:
        """Start a daemon in the foreground inside the node; return its PID.

        Daemons run in the foreground (no double fork) so that the PID we
        record is the daemon's own and `down` can end it by PID.
        reap_orphans: run it under the lab's reaper (`virtmig.lab.reaper`),
        which reaps the daemon's orphans at once as a host's init does
        (libvirtd's QEMUs); the PID returned is still the daemon's.
        """
        log.parent.mkdir(parents=True, exist_ok=True)
        if not reap_orphans:
            with log.open("ab") as out:
                proc = subprocess.Popen(
                    self.nsenter(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            return proc.pid
        read_end, write_end = os.pipe()
        with os.fdopen(read_end) as answer:
            try:
                with log.open("ab") as out:
                    subprocess.Popen(
                        self.nsenter([sys.executable, str(REAPER), "--pid-fd", str(write_end), "--", *argv]),
                        stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                        start_new_session=True, pass_fds=(write_end,),
                    )
            finally:
                os.close(write_end)  # ours: the reaper's copy is the only writer left
            line = answer.readline().strip()  # EOF (""), if the reaper died before writing
        if not line.isdigit():
            raise LabError(f"{argv[0]} under the lab's reaper on {self.spec.name} did not start (see {log})")
        return int(line)

    def bind(self, source: Path, target: str) -> None:
        """Bind a per-node copy over a system path, inside this node only."""
        self.run(["mount", "--bind", str(source), target])
