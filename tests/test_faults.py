"""The fault suite's library parts, without a lab: the kinds, the rules, each fault made and undone, the judging.

Hosts are `tests.replay.ReplayHost`s whose answers change as the fault's
commands run (an iptables rule is there after -I and gone after -D), so a
fault that forgets to undo, or undoes the wrong thing, fails here.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.replay import Recorded, ReplayHost, script_key
from virtmig.localhost import LocalHost
from virtmig.migration.deadline import DeadlinePolicy
from virtmig.migration.faults import (
    FAULTS,
    GONE_SCRIPT,
    LIBVIRTD_KILLED,
    NETWORK_CUT,
    NFS_STALLED,
    NO_CONVERGENCE,
    DirtyFaster,
    FaultError,
    FaultHosts,
    LibvirtdKill,
    NetworkCut,
    NfsStall,
    bind,
    block_rules,
    daemon_pid,
    ipv4_addresses,
    process_gone,
)
from virtmig.waiters import wait_for


class Journal:
    """A `virtmig.journal.Recorder` in memory: entries written, and those still open."""

    def __init__(self) -> None:
        self.open: dict[str, dict[str, Any]] = {}
        self.written: list[tuple[str, dict[str, Any]]] = []

    def record(self, kind: str, **data: Any) -> str:
        name = f"{len(self.written)}-{kind}"
        self.open[name] = {"kind": kind, **data}
        self.written.append((kind, data))
        return name

    def done(self, entry: str) -> None:
        del self.open[entry]


def test_every_kind_has_a_name_a_description_and_a_bandwidth_limit_that_slows_the_move() -> None:
    assert [k.name for k in FAULTS] == ["network-cut", "libvirtd-killed", "nfs-stalled", "no-convergence"]
    for kind in FAULTS:
        assert kind.what and kind.mode.peer_to_peer and kind.mode.params, kind
        assert not kind.mode.switch_to_postcopy, "post-copy is not faulted"
    assert [k.name for k in FAULTS if k.stays_on_source] == ["libvirtd-killed", "no-convergence"]
    assert NO_CONVERGENCE.hold_s is None and NO_CONVERGENCE.deadline_s is not None


def test_the_cut_drops_the_sources_addresses_on_the_migration_ports_and_ssh() -> None:
    rules = block_rules(["198.18.0.11", "10.0.0.1"])
    assert [r[r.index("--dport") + 1] for r in rules] == ["49152:49215", "22"]
    for rule in rules:
        assert rule[0] == "INPUT" and rule[-2:] == ["-j", "DROP"]
        assert rule[rule.index("-s") + 1] == "198.18.0.11,10.0.0.1"
    with pytest.raises(FaultError):
        block_rules([])


def test_only_global_ipv4_addresses_are_the_sources() -> None:
    assert ipv4_addresses("198.18.0.11 127.0.0.1 fe80::1 2001:db8::1 10.1.2.3 \n") == ["198.18.0.11", "10.1.2.3"]


def test_a_daemons_pid_comes_from_its_pid_file_and_must_be_that_daemon() -> None:
    host = ReplayHost("h2", {"cat /run/libvirtd.pid": (0, "4242\n", ""), "cat /proc/4242/comm": (0, "libvirtd\n", "")})
    assert daemon_pid(host, "/run/libvirtd.pid", "libvirtd") == "4242"
    host.recorded["cat /proc/4242/comm"] = (0, "bash\n", "")
    with pytest.raises(FaultError, match="'bash', not libvirtd"):
        daemon_pid(host, "/run/libvirtd.pid", "libvirtd")
    host.recorded["cat /run/libvirtd.pid"] = (1, "", "cat: /run/libvirtd.pid: No such file or directory")
    with pytest.raises(FaultError, match="holds no pid"):
        daemon_pid(host, "/run/libvirtd.pid", "libvirtd")


def doing(action: Callable[[], object]) -> Callable[[], Recorded]:
    """A recorded answer that changes the host's state when the command runs (rc 0)."""
    def answer() -> Recorded:
        action()
        return (0, "", "")
    return answer


class Firewall:
    """iptables on a ReplayHost, for the given rules: -I adds one, -C finds it, -D removes it."""

    def __init__(self, host: ReplayHost, rules: list[list[str]]) -> None:
        self.rules: set[str] = set()
        host.recorded["iptables -S INPUT"] = (0, "-P INPUT ACCEPT\n", "")
        for rule in rules:
            key = " ".join(rule)
            host.recorded[f"iptables -I {key}"] = doing(lambda key=key: self.rules.add(key))  # type: ignore[misc]
            host.recorded[f"iptables -D {key}"] = doing(lambda key=key: self.rules.discard(key))  # type: ignore[misc]
            host.recorded[f"iptables -C {key}"] = self._check(key)

    def _check(self, key: str) -> Callable[[], Recorded]:
        return lambda: (0 if key in self.rules else 1, "", "")


def test_the_network_cut_is_journalled_before_its_rules_go_in_and_lifting_removes_both() -> None:
    dst = ReplayHost("h2")
    rules = Firewall(dst, block_rules(["198.18.0.11"])).rules
    src = ReplayHost("h1", {"hostname -I": (0, "198.18.0.11 \n", "")})
    journal = Journal()
    rules_when_journalled: list[int] = []
    record = journal.record

    def record_seeing_rules(kind: str, **data: Any) -> str:
        rules_when_journalled.append(len(rules))
        return record(kind, **data)
    journal.record = record_seeing_rules  # type: ignore[method-assign]
    cut = NetworkCut(dst, src, journal)
    assert cut.blocker() is None
    assert "from 198.18.0.11" in cut.inject()
    assert len(rules) == 2 and [k for k, _ in journal.written] == ["firewall"]
    assert rules_when_journalled == [0], "the entry must be written before any rule goes in"
    assert journal.written[0][1]["rules"] == block_rules(["198.18.0.11"])
    cut.lift()
    assert rules == set() and journal.open == {}
    assert cut.lift() == "no rule was inserted"  # idempotent


def test_without_iptables_the_cut_cannot_run_and_says_why() -> None:
    cut = NetworkCut(ReplayHost("h2"), ReplayHost("h1"), Journal())
    assert "iptables is not usable" in (cut.blocker() or "")


def test_libvirtd_is_killed_by_its_pid_and_restarted_by_the_sites_way() -> None:
    alive = {"4242"}
    restarted: list[str] = []
    dst = ReplayHost("h2", {
        "cat /run/libvirtd.pid": (0, "4242\n", ""),
        "cat /proc/4242/comm": (0, "libvirtd\n", ""),
        "kill -KILL 4242": doing(lambda: alive.discard("4242")),
        script_key(GONE_SCRIPT, ["4242"]): lambda: (1 if "4242" in alive else 0, "", ""),
        "virsh -c qemu:///system uri": lambda: (0 if restarted else 1, "qemu:///system\n", ""),
    })
    kill = LibvirtdKill(dst, lambda host: restarted.append(host.name))
    assert kill.blocker() is None
    assert "pid 4242" in kill.inject() and not alive
    assert "restarted" in kill.lift() and restarted == ["h2"]
    assert kill.lift() == "libvirtd was not killed"


def test_ganesha_is_stopped_journalled_and_always_resumed() -> None:
    signals: list[str] = []
    server = ReplayHost("nfs", {
        "cat /run/ganesha/ganesha.pid": (0, "77\n", ""),
        "cat /proc/77/comm": (0, "ganesha.nfsd\n", ""),
        "kill -STOP 77": doing(lambda: signals.append("STOP")),
        "kill -CONT 77": doing(lambda: signals.append("CONT")),
    })
    journal = Journal()
    stall = NfsStall(server, journal)
    assert stall.blocker() is None
    stall.inject()
    assert journal.written == [("stopped-process", {"pid": "77", "comm": "ganesha.nfsd"})]
    stall.lift()
    assert signals == ["STOP", "CONT"] and journal.open == {}


def test_an_nfs_stall_needs_a_ganesha_server_of_the_run() -> None:
    assert "no NFS server" in (NfsStall(None, None).blocker() or "")
    kernel = ReplayHost("nfs", {"cat /run/ganesha/ganesha.pid": (1, "", "No such file or directory")})
    assert "kernel NFS server" in (NfsStall(kernel, Journal()).blocker() or "")


def test_no_convergence_raises_the_dirty_rate_and_puts_it_back() -> None:
    said: list[str] = []

    def agent(text: str) -> str:
        said.append(text)
        return f"ok {text}"

    fault = DirtyFaster(agent, 8)
    fault.inject()
    fault.lift()
    assert said == ["dirty 48", "dirty 8"]


def test_bind_gives_each_kind_its_fault() -> None:
    hosts = FaultHosts(ReplayHost("h1"), ReplayHost("h2"), None, Journal(), None, lambda host: None,
                       lambda text: "ok", 8)
    assert [type(bind(k, hosts)).__name__ for k in (NETWORK_CUT, LIBVIRTD_KILLED, NFS_STALLED, NO_CONVERGENCE)] == \
        ["NetworkCut", "LibvirtdKill", "NfsStall", "DirtyFaster"]


def test_a_killed_daemon_left_unreaped_counts_as_gone() -> None:
    """On the lab libvirtd's parent may never reap it: its zombie must not look alive."""
    child = subprocess.Popen(["true"])
    try:
        wait_for(lambda: Path(f"/proc/{child.pid}/stat").read_text().rpartition(") ")[2].startswith("Z") or None,
                 target="the child", state="a zombie", timeout=10, interval=0.01)
        assert process_gone(LocalHost(), str(child.pid))
    finally:
        child.wait()
    assert process_gone(LocalHost(), str(child.pid))
    assert not process_gone(LocalHost(), str(os.getpid()))


def test_a_deadline_fixed_by_a_case_says_so() -> None:
    policy = DeadlinePolicy(fixed_s=20, fixed_by="the no-convergence case's own deadline")
    assert policy.explain(128 * 2**20, None) == "deadline 20 s (the no-convergence case's own deadline)"
    assert DeadlinePolicy(fixed_s=2).explain(128 * 2**20, None) == "deadline 2 s (--migration-timeout)"
