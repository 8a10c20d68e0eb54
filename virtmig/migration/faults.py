"""Faults injected into a running live migration: the kinds as data, and how each is made and undone on a host.

Why: a certification runs on production hosts before maintenance, where
links flap, daemons die and storage stalls.  A pair is fit for that when a
fault during a migration leaves the guest safe: running on exactly one
host, answering, its memory and disk as they were, nothing half-made left
on the other host.  Each `FaultKind` says what is broken, for how long,
how the migration is slowed so the fault lands while it runs, and which
end is acceptable; each `Fault` makes the change through the `Host`
interface and undoes it (`lift`, idempotent, called always).

Which end is acceptable follows from what the fault does to the
migration, not from hope:

* libvirtd killed on the destination: the source libvirtd loses its
  peer-to-peer connection and must cancel the job, so the guest has to
  stay on the source;
* a migration that cannot converge is ended by the harness's deadline
  (abortJob): the guest has to stay on the source;
* a network cut of a few seconds (packets dropped, as a pulled cable does;
  no resets) and an NFS server stalled for a few seconds: TCP and the NFS
  client wait it out, so libvirt may finish the move afterwards or give it
  up; either end is safe as long as the guest is whole on one host and
  absent from the other.

Post-copy is not faulted: after the switch-over the guest's memory lives
on both hosts and libvirt cannot go back; a fault then loses the guest by
design (libvirt leaves it paused, "post-copy failed"), which is no finding
about the pair.

The rule the network cut inserts and the NFS daemon it stops are written
to the run's journal first (kinds `firewall` and `stopped-process`), so
`virtmig.cleanup` removes the rule and resumes the daemon after a killed run.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import libvirt

from virtmig.guest.integrity import Agent
from virtmig.host import Host
from virtmig.journal import Recorder
from virtmig.migration.modes import BANDWIDTH_LIMIT, MigrationMode
from virtmig.waiters import wait_for

#: Bound on each command a fault runs on a host.
STEP_TIMEOUT_S = 30.0
#: How long a restarted libvirtd may take to answer again.
LIBVIRTD_START_TIMEOUT_S = 90.0

#: libvirt's migration ports (qemu.conf migration_port_min/max defaults) and ssh,
#: which the peer-to-peer control connection and the qemu+ssh URIs use.
MIGRATION_PORTS = "49152:49215"
SSH_PORT = "22"
#: The comment that marks a rule as virtmig's (iptables -m comment).
RULE_COMMENT = "virtmig-fault"

LIBVIRTD_PIDFILE = "/run/libvirtd.pid"
GANESHA_PIDFILE = "/run/ganesha/ganesha.pid"

#: The rate the faulted migrations move memory at, MiB/s: slow enough (a 128 MiB
#: guest takes ~10 s) that a fault lands mid-migration, fast enough to keep a case short.
FAULT_BANDWIDTH_MIB_S = 16
#: The no-convergence case: memory moves at this rate while the guest dirties faster.
STUCK_BANDWIDTH_MIB_S = 8
STUCK_DIRTY_RATE_MIB_S = 48
#: Its deadline when --migration-timeout is not given, s: the derived default
#: (60 s + 10 x memory at 8 MiB/s) would hold the run for minutes.
STUCK_DEADLINE_S = 20.0

SLOWED = replace(BANDWIDTH_LIMIT, name=f"p2p-{FAULT_BANDWIDTH_MIB_S}MiB/s",
                 params={libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: FAULT_BANDWIDTH_MIB_S})
STUCK = replace(BANDWIDTH_LIMIT, name=f"p2p-{STUCK_BANDWIDTH_MIB_S}MiB/s",
                params={libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: STUCK_BANDWIDTH_MIB_S})


class FaultError(RuntimeError):
    """A fault could not be made or undone; the message names the host and the step."""


@dataclass(frozen=True)
class FaultKind:
    """One fault of the suite, as data.

    hold_s: how long the fault lasts before it is lifted (None: until the
        migration call returns; the deadline ends that one).
    inject_after_s: how long the job must have moved memory before the fault comes.
    stays_on_source: the migration must fail and the guest stay on the
        source (else either end is safe; see the module's docstring).
    deadline_s: this case's deadline when --migration-timeout is not given
        (None: the harness's derived default).
    """

    name: str
    what: str
    hold_s: float | None
    mode: MigrationMode
    stays_on_source: bool
    inject_after_s: float = 1.0
    deadline_s: float | None = None


NETWORK_CUT = FaultKind(
    "network-cut", f"migration network cut for 3 s: the destination drops TCP {MIGRATION_PORTS} and "
    f"{SSH_PORT} from the source (iptables DROP, removed afterwards)", 3.0, SLOWED, stays_on_source=False)
LIBVIRTD_KILLED = FaultKind(
    "libvirtd-killed", "the destination's libvirtd killed (SIGKILL), restarted 2 s later", 2.0, SLOWED,
    stays_on_source=True)
NFS_STALLED = FaultKind(
    "nfs-stalled", "the NFS server's daemon stopped (SIGSTOP) for 4 s, then resumed (SIGCONT)", 4.0, SLOWED,
    stays_on_source=False)
NO_CONVERGENCE = FaultKind(
    "no-convergence", f"the guest dirties {STUCK_DIRTY_RATE_MIB_S} MiB/s against a "
    f"{STUCK_BANDWIDTH_MIB_S} MiB/s limit: the migration cannot converge and is ended by the deadline",
    None, STUCK, stays_on_source=True, deadline_s=STUCK_DEADLINE_S)

#: The suite's cases, in the order they run.
FAULTS: tuple[FaultKind, ...] = (NETWORK_CUT, LIBVIRTD_KILLED, NFS_STALLED, NO_CONVERGENCE)


class Fault(Protocol):
    """A fault bound to its hosts: why it cannot run here, make it, undo it."""

    kind: FaultKind

    def blocker(self) -> str | None:
        """Why this fault cannot be made on these hosts (None: it can); changes nothing."""
        ...

    def inject(self) -> str:
        """Make the fault; say what was done."""
        ...

    def lift(self) -> str:
        """Undo the fault if it is in place (idempotent); say what was done."""
        ...


# -- pure parts ----------------------------------------------------------------

def block_rules(sources: Sequence[str]) -> list[list[str]]:
    """The iptables rules (INPUT chain, without the -I/-D verb) that cut *sources* off the migration ports and ssh."""
    if not sources:
        raise FaultError("no address of the source to cut off")
    rules = []
    for port in (MIGRATION_PORTS, SSH_PORT):
        rules.append(["INPUT", "-s", ",".join(sources), "-p", "tcp", "--dport", port,
                      "-m", "comment", "--comment", RULE_COMMENT, "-j", "DROP"])
    return rules


def ipv4_addresses(hostname_i: str) -> list[str]:
    """The global IPv4 addresses in `hostname -I`'s answer (loopback and IPv6 left out), in its order."""
    found = []
    for word in hostname_i.split():
        try:
            addr = ipaddress.ip_address(word)
        except ValueError:
            continue
        if addr.version == 4 and not addr.is_loopback:
            found.append(word)
    return found


def daemon_pid(host: Host, pidfile: str, comm: str) -> str:
    """The pid in *pidfile* on *host*, once /proc/PID/comm confirms it is *comm*; FaultError otherwise.

    Read on the host, not found by name: on the lab the nodes share one pid
    namespace, and a name would also find the other nodes' daemons.
    """
    read = host.run("cat", pidfile, check=False, timeout=STEP_TIMEOUT_S)
    pid = read.stdout.split()[0] if read.ok and read.stdout.split() else ""
    if not pid.isdigit():
        raise FaultError(f"{host.name}: {pidfile} holds no pid ({read.stderr.strip() or read.stdout.strip()!r})")
    found = host.run("cat", f"/proc/{pid}/comm", check=False, timeout=STEP_TIMEOUT_S).stdout.strip()
    if found != comm:
        raise FaultError(f"{host.name}: {pidfile} names pid {pid}, which is "
                         f"{repr(found) if found else 'not running'}, not {comm}")
    return pid


#: Exit 0 when pid "$1" is gone or a zombie (dead, not yet reaped by its parent: on the
#: lab a daemon's parent may be a process that never waits for it).
GONE_SCRIPT = r'''
stat=$(cat "/proc/$1/stat" 2>/dev/null) || exit 0
case "${stat##*) }" in Z*) exit 0;; esac
exit 1
'''


def process_gone(host: Host, pid: str) -> bool:
    """Whether process *pid* on *host* has ended (a zombie has)."""
    return host.run_script(GONE_SCRIPT, args=[pid], check=False, timeout=STEP_TIMEOUT_S).ok


# -- the faults ----------------------------------------------------------------

@dataclass
class NetworkCut:
    """DROP rules on the destination against the source's addresses, journalled before they go in."""

    dst: Host
    src: Host
    journal: Recorder
    kind: FaultKind = NETWORK_CUT
    _rules: list[list[str]] | None = None
    _entry: str | None = None

    def blocker(self) -> str | None:
        listed = self.dst.run("iptables", "-S", "INPUT", check=False, timeout=STEP_TIMEOUT_S)
        if not listed.ok:
            return f"{self.dst.name}: iptables is not usable ({listed.stderr.strip() or f'rc {listed.rc}'})"
        return None

    def inject(self) -> str:
        sources = ipv4_addresses(self.src.run("hostname", "-I", timeout=STEP_TIMEOUT_S).stdout)
        rules = block_rules(sources)
        self._entry = self.journal.record("firewall", rules=rules)
        self._rules = rules
        for rule in rules:
            self.dst.run("iptables", "-I", *rule, timeout=STEP_TIMEOUT_S)
        return f"{self.dst.name}: dropping TCP {MIGRATION_PORTS} and {SSH_PORT} from {', '.join(sources)}"

    def lift(self) -> str:
        if self._rules is None:
            return "no rule was inserted"
        for rule in self._rules:
            while self.dst.run("iptables", "-C", *rule, check=False, timeout=STEP_TIMEOUT_S).ok:
                self.dst.run("iptables", "-D", *rule, timeout=STEP_TIMEOUT_S)
        self._rules = None
        if self._entry is not None:
            self.journal.done(self._entry)
            self._entry = None
        return f"{self.dst.name}: rules removed"


#: How a host's libvirtd is started again after it was killed (the harness picks one per site).
Restarter = Callable[[Host], None]


def systemd_restart(host: Host) -> None:
    """A standard host's way: systemd's unit (which may already have restarted it: restart is harmless then)."""
    host.run("systemctl", "restart", "libvirtd", timeout=LIBVIRTD_START_TIMEOUT_S)


def wait_libvirtd_answers(host: Host, timeout: float = LIBVIRTD_START_TIMEOUT_S) -> None:
    """Wait until libvirtd on *host* answers its own local client."""
    def answers() -> bool | None:
        return host.run("virsh", "-c", "qemu:///system", "uri", check=False, timeout=STEP_TIMEOUT_S).ok or None

    wait_for(answers, target=f"libvirtd on {host.name}", state="answering again", timeout=timeout, interval=0.5)


@dataclass
class LibvirtdKill:
    """SIGKILL to the destination's libvirtd (pid from its pid file), started again by `restart` when lifted."""

    dst: Host
    restart: Restarter
    kind: FaultKind = LIBVIRTD_KILLED
    _killed: str | None = None

    def blocker(self) -> str | None:
        try:
            daemon_pid(self.dst, LIBVIRTD_PIDFILE, "libvirtd")
        except FaultError as exc:
            return f"no libvirtd to kill: {exc}"
        return None

    def inject(self) -> str:
        pid = daemon_pid(self.dst, LIBVIRTD_PIDFILE, "libvirtd")
        self._killed = pid
        self.dst.run("kill", "-KILL", pid, timeout=STEP_TIMEOUT_S)
        wait_for(lambda: process_gone(self.dst, pid) or None, target=f"libvirtd (pid {pid}) on {self.dst.name}",
                 state="gone after SIGKILL", timeout=STEP_TIMEOUT_S)
        return f"{self.dst.name}: libvirtd (pid {pid}) killed"

    def lift(self) -> str:
        if self._killed is None:
            return "libvirtd was not killed"
        self.restart(self.dst)
        wait_libvirtd_answers(self.dst)
        pid, self._killed = self._killed, None
        return f"{self.dst.name}: libvirtd restarted (was pid {pid}) and answering"


@dataclass
class NfsStall:
    """SIGSTOP to nfs-ganesha on the NFS server (pid from its pid file), SIGCONT when lifted; journalled."""

    server: Host | None
    journal: Recorder | None
    kind: FaultKind = NFS_STALLED
    _stopped: str | None = None
    _entry: str | None = None

    def blocker(self) -> str | None:
        if self.server is None or self.journal is None:
            return "no NFS server in this run (--nfs-server not given, or --no-provision): nothing to stall"
        try:
            daemon_pid(self.server, GANESHA_PIDFILE, "ganesha.nfsd")
        except FaultError as exc:
            return (f"no nfs-ganesha to stop ({exc}); a kernel NFS server's nfsd threads "
                    "cannot be stopped with a signal")
        return None

    def inject(self) -> str:
        assert self.server is not None and self.journal is not None, "inject() after blocker() said no"
        pid = daemon_pid(self.server, GANESHA_PIDFILE, "ganesha.nfsd")
        self._entry = self.journal.record("stopped-process", pid=pid, comm="ganesha.nfsd")
        self._stopped = pid
        self.server.run("kill", "-STOP", pid, timeout=STEP_TIMEOUT_S)
        return f"{self.server.name}: ganesha.nfsd (pid {pid}) stopped"

    def lift(self) -> str:
        if self._stopped is None or self.server is None:
            return "nothing was stopped"
        self.server.run("kill", "-CONT", self._stopped, timeout=STEP_TIMEOUT_S)
        pid, self._stopped = self._stopped, None
        if self._entry is not None and self.journal is not None:
            self.journal.done(self._entry)
            self._entry = None
        return f"{self.server.name}: ganesha.nfsd (pid {pid}) resumed"


@dataclass
class DirtyFaster:
    """The guest told to dirty memory faster than the migration's bandwidth limit, and back when lifted."""

    agent: Agent
    usual_rate_mib_s: int
    kind: FaultKind = NO_CONVERGENCE
    _raised: bool = False

    def blocker(self) -> str | None:
        return None

    def inject(self) -> str:
        self._raised = True
        reply = self.agent(f"dirty {STUCK_DIRTY_RATE_MIB_S}")
        return f"guest: dirty {STUCK_DIRTY_RATE_MIB_S} MiB/s ({reply})"

    def lift(self) -> str:
        if not self._raised:
            return "the dirty rate was not raised"
        reply = self.agent(f"dirty {self.usual_rate_mib_s}")
        self._raised = False
        return f"guest: dirty {self.usual_rate_mib_s} MiB/s again ({reply})"


@dataclass(frozen=True)
class FaultHosts:
    """What the faults reach: the pair, the NFS server (None: not this run's), the journals, the guest's agent.

    restart: how the destination's libvirtd is started again (the harness
    picks systemd or the lab's way); usual_dirty_rate_mib_s: the rate the
    guest goes back to when the no-convergence fault is lifted.
    """

    src: Host
    dst: Host
    nfs_server: Host | None
    dst_journal: Recorder
    server_journal: Recorder | None
    restart: Restarter
    agent: Agent
    usual_dirty_rate_mib_s: int


def bind(kind: FaultKind, hosts: FaultHosts) -> Fault:
    """The fault of *kind* on these hosts."""
    if kind == NETWORK_CUT:
        return NetworkCut(hosts.dst, hosts.src, hosts.dst_journal, kind)
    if kind == LIBVIRTD_KILLED:
        return LibvirtdKill(hosts.dst, hosts.restart, kind)
    if kind == NFS_STALLED:
        return NfsStall(hosts.nfs_server, hosts.server_journal, kind)
    if kind == NO_CONVERGENCE:
        return DirtyFaster(hosts.agent, hosts.usual_dirty_rate_mib_s, kind)
    raise ValueError(f"no fault of kind {kind.name!r}")
