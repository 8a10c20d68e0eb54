"""On the lab: the fault suite, run as an operator runs it, passes all four cases and leaves the hosts as found.

Each case's record must name its fault, when it came and went, how long the
guest was unreachable and how long recovery took; the guest must have come
through safe, on the source where the fault makes libvirt give up (the
killed libvirtd, the deadline).  Afterwards no rule of ours is left in the
hosts' firewalls, ganesha runs (not stopped), h2's libvirtd answers, and
the lab still counts as up (the restarted libvirtd is the one it knows).
The lab is raised for the test (`fresh_lab`) so that it is still up for
those checks after the inner run, which takes the lab's lock itself.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from filelock import FileLock

from tests.inner_run import known_tcg_bug, migrations, output_tail, run_suite
from virtmig.journal import Journal, Owner, runs_on
from virtmig.lab import lifecycle
from virtmig.lab.topology import LAB_LOCK, SSH_CONFIG
from virtmig.migration.faults import FAULTS, GANESHA_PIDFILE, RULE_COMMENT, NetworkCut, NfsStall
from virtmig.sshhost import SshHost

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module", autouse=True)
def lab_raised_afresh_after() -> Iterator[None]:
    """The tests after this module get a lab raised afresh (if it is up), not one the fault suite has been through.

    The suite kills and restarts h2's libvirtd and stalls ganesha; on Debian 13
    the next module's first p2p migration then failed once with libvirt's
    "client socket is closed" (cause not proven).  Torn down after `fresh_lab`.
    """
    yield
    with FileLock(str(LAB_LOCK), timeout=3600):
        if lifecycle.is_up():
            lifecycle.up()


def _ssh(node: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ssh", "-F", str(SSH_CONFIG), node, *argv], capture_output=True, text=True, timeout=30)


def test_the_guest_comes_through_each_fault_and_the_hosts_are_left_as_found(fresh_lab: None, tmp_path: Path) -> None:
    proc, html = run_suite(tmp_path, "suites/faults")
    hops = migrations(html)
    if proc.returncode != 0 and (bug := known_tcg_bug(hops)):
        pytest.xfail(bug)
    assert proc.returncode == 0, output_tail(proc)
    assert [h["fault"]["kind"] for h in hops] == [k.name for k in FAULTS], output_tail(proc)
    for hop in hops:
        fault = hop["fault"]
        assert hop["ok"] and not [n for n in hop["notes"] if n.startswith("PROBLEM")], hop["notes"]
        assert (hop["src"], hop["dst"]) == ("h1", "h2")
        assert fault["injected_at_s"] > 0 and fault["lifted_at_s"] >= fault["injected_at_s"], fault
        assert fault["recovered_at_s"] >= fault["lifted_at_s"] and fault["recovery_s"] >= 0, fault
        assert fault["unreachable_ms"] is not None, fault
        assert hop["integrity"] == {"ram": "ok", "disk": "ok"}, hop["integrity"]
        assert fault["guest_on"] == ("h2" if fault["migration"] == "completed" else "h1"), fault
        assert any(n.startswith(f"fault: {fault['kind']}: injected at") for n in hop["notes"]), hop["notes"]
    by_kind = {h["fault"]["kind"]: h for h in hops}
    assert by_kind["libvirtd-killed"]["fault"]["migration"] == "failed", by_kind["libvirtd-killed"]
    assert by_kind["no-convergence"]["fault"]["migration"] == "aborted"
    stuck = by_kind["no-convergence"]["error"]
    assert stuck.startswith("aborted after 20.") and "no-convergence case's own deadline" in stuck, stuck
    page = html.read_text()
    assert "fault tolerance: the guest came through 4 of 4 faults safe" in page
    assert "virtmig verdict for h1 (lab) -> h2 (lab): CERTIFIED" in proc.stdout, output_tail(proc)

    for node in ("h1", "h2"):
        rules = _ssh(node, "iptables", "-S")
        assert rules.returncode == 0 and RULE_COMMENT not in rules.stdout, (node, rules.stdout)
    pid = _ssh("nfs", "cat", GANESHA_PIDFILE).stdout.strip()
    state = _ssh("nfs", "grep", "^State:", f"/proc/{pid}/status").stdout
    assert pid.isdigit() and "stopped" not in state and state, (pid, state)
    assert _ssh("h2", "virsh", "-c", "qemu:///system", "uri").returncode == 0
    assert lifecycle.is_up(), lifecycle.status()


def test_a_killed_runs_firewall_rules_and_stopped_ganesha_are_undone_by_the_next_cleanup(lab_up: None) -> None:
    """What a run SIGKILLed mid-fault leaves (journal entries, DROP rules on h2, ganesha stopped) the cleanup undoes."""
    child = subprocess.Popen(["true"])
    child.wait()
    me = Owner.current("killed-mid-fault")
    dead = Owner(me.run_id, me.machine, me.boot_id, child.pid, me.start_ticks, me.started_at)
    with SshHost("h1", SSH_CONFIG) as h1, SshHost("h2", SSH_CONFIG) as h2, SshHost("nfs", SSH_CONFIG) as nfs:
        cut = NetworkCut(h2, h1, Journal(h2, dead).open())
        stall = NfsStall(nfs, Journal(nfs, dead).open())
        try:
            cut.inject()
            stall.inject()  # the run is killed here: no lift, no teardown
            assert RULE_COMMENT in _ssh("h2", "iptables", "-S").stdout
            proc = subprocess.run(
                [sys.executable, "-m", "virtmig", "cleanup", "--src", "h1", "--dst", "h2", "--nfs-server", "nfs",
                 "--ssh-config", str(SSH_CONFIG)], capture_output=True, text=True, timeout=120)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert "h2: 2 iptables rule(s) of the run removed" in proc.stdout, proc.stdout
            assert "nfs: ganesha.nfsd (pid" in proc.stdout and "resumed (SIGCONT)" in proc.stdout, proc.stdout
            assert RULE_COMMENT not in _ssh("h2", "iptables", "-S").stdout
            pid = _ssh("nfs", "cat", GANESHA_PIDFILE).stdout.strip()
            assert "stopped" not in _ssh("nfs", "grep", "^State:", f"/proc/{pid}/status").stdout
            assert runs_on(h2) == {} and runs_on(nfs) == {}
        finally:  # whatever failed above, the lab is left as found
            cut.lift()
            stall.lift()
