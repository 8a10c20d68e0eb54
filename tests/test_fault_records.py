"""What a faulted migration leaves behind: the judging, the fault window's timing, the record and the verdict row.

Each check is shown failing: a fault case whose judge cannot say no proves nothing.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import libvirt
import pytest

from tests.replay import ReplayHost
from tests.test_faults import Firewall
from virtmig.cleanup import undo
from virtmig.guest.probe import summarize
from virtmig.journal import Entry
from virtmig.migration import criteria
from virtmig.migration.faults import LIBVIRTD_KILLED, NETWORK_CUT, NO_CONVERGENCE, FaultKind, block_rules
from virtmig.migration.injection import (
    FaultRecord,
    FaultWindow,
    fault_problems,
    faulted_move_problems,
    migration_end,
)
from virtmig.migration.jobstats import JobProgress
from virtmig.migration.measure import MeasuredMigration
from virtmig.migration.records import MigrationRecord
from virtmig.migration.runner import MigrationOutcome
from virtmig.report.results_json import read_run, write_run
from virtmig.report.verdict import FaultOutcome, Verdict, render_html
from virtmig.waiters import wait_for

SAFE = {"ram": "ok", "disk": "ok"}


def judge(kind: FaultKind = NETWORK_CUT, **changes: object) -> list[str]:
    facts: dict[str, object] = {"injected": True, "migration": "failed", "src_state": "running",
                                "dst_state": "absent", "integrity": SAFE, "answers": True}
    facts.update(changes)
    return fault_problems(kind, **facts)  # type: ignore[arg-type]


def test_a_guest_safe_on_one_host_after_the_fault_has_no_problem() -> None:
    assert judge() == []
    assert judge(migration="completed", src_state="absent", dst_state="running") == []
    assert judge(NO_CONVERGENCE, migration="aborted") == []


def test_each_way_a_fault_can_hurt_the_guest_is_a_problem() -> None:
    assert judge(injected=False) == ["the migration ended before the network-cut fault could be injected"]
    assert "not running" in judge(src_state="paused")[0]
    assert "left on the destination (shut off)" in judge(dst_state="shut off")[0]
    assert judge(migration="completed", src_state="running", dst_state="running") == [
        "after the completed migration a domain is left on the source (running)"]
    assert judge(answers=False) == ["the guest does not answer after the fault"]
    assert judge(integrity={"ram": "ok", "disk": "err sum"}) == ["disk pattern not intact after the move: err sum"]
    assert judge(integrity=None) == ["the guest's RAM and disk patterns were not verified"]


def test_a_fault_that_must_make_libvirt_give_up_may_not_complete() -> None:
    assert "completed despite libvirtd-killed" in judge(LIBVIRTD_KILLED, migration="completed", src_state="absent",
                                                        dst_state="running")[0]
    assert "not ended by the harness's deadline (it failed)" in judge(NO_CONVERGENCE)[0]


def test_the_migrations_end_comes_from_the_runners_outcome() -> None:
    assert migration_end(None, None) == "completed"
    assert migration_end("aborted after 20.1 s", 20.1) == "aborted"
    assert migration_end("Connection closed", None) == "failed"


class Recorded:
    """A fault that only says what it did (the hosts' side is tests/test_faults.py's)."""

    def __init__(self, kind: FaultKind) -> None:
        self.kind = kind
        self.done: list[str] = []

    def blocker(self) -> str | None:
        return None

    def inject(self) -> str:
        self.done.append("inject")
        return "injected"

    def lift(self) -> str:
        self.done.append("lift")
        return "lifted"


def running(elapsed_ms: int, iteration: int = 1) -> JobProgress:
    return JobProgress(job_type=libvirt.VIR_DOMAIN_JOB_UNBOUNDED, time_elapsed_ms=elapsed_ms,
                       memory_iteration=iteration)


def test_the_window_injects_once_memory_moves_long_enough_and_lifts_after_the_hold() -> None:
    fault = Recorded(replace(NETWORK_CUT, hold_s=0.05, inject_after_s=1.0))
    seen: list[JobProgress] = []
    with FaultWindow(fault, forward=seen.append) as window:
        window.on_progress(running(1500, iteration=0))  # setting up: not yet
        window.on_progress(running(500))  # moving, but not for long enough
        threading.Event().wait(0.2)
        assert fault.done == []
        window.on_progress(running(1200))
        wait_for(lambda: fault.done == ["inject", "lift"] or None, target="the fault", state="injected and lifted",
                 timeout=5)
        window.migration_returned()
    assert fault.done == ["inject", "lift"] and len(seen) == 3
    assert window.injected_at_s is not None and window.injected_at_s >= 1.2
    assert window.lifted_at_s is not None and window.lifted_at_s > window.injected_at_s
    window.recovered()
    record = window.record(migration="completed", guest_on="h2", unreachable_ms=120.0)
    assert record.recovery_s is not None and record.recovery_s >= 0
    assert record.steps == ("injected", "lifted")


def test_a_migration_that_ends_first_gets_no_fault_and_nothing_to_lift() -> None:
    fault = Recorded(NETWORK_CUT)
    with FaultWindow(fault) as window:
        window.migration_returned()
    assert fault.done == [] and window.injected_at_s is None


def test_a_fault_held_for_the_whole_migration_is_lifted_when_it_returns_and_after_a_failure_too() -> None:
    fault = Recorded(NO_CONVERGENCE)
    with pytest.raises(RuntimeError), FaultWindow(fault) as window:
        window.on_progress(running(2000))
        wait_for(lambda: fault.done or None, target="the fault", state="injected", timeout=5)
        raise RuntimeError("the suite failed mid-migration")
    assert fault.done == ["inject", "lift"] and window.lifted_at_s is not None


def fault_record(kind: str = "network-cut") -> FaultRecord:
    return FaultRecord(kind, "cut", 1.2, 4.2, 6.0, 1.8, 130.0, "completed", "h2", ("h2: dropping", "h2: removed"))


def test_a_records_fault_survives_results_json(tmp_path: Path) -> None:
    record = MigrationRecord("suites/faults/x[network-cut]#hop1", "live", "p2p-16MiB/s+network-cut", "h1", "h2",
                             "g", "2026-01-01T00:00:00Z", 9.5, True, "nfs-mount", fault=fault_record().to_dict())
    path = write_run([record], tmp_path, run_meta={"run_id": "r"})
    _doc, (back,) = read_run(path)
    assert back == record and MigrationRecord.from_json(record.to_json()) == record
    assert FaultRecord.from_dict(back.fault or {}) == fault_record()
    assert fault_record().describe() == ("network-cut: injected at 1.2 s, lifted at 4.2 s into the migration; "
                                         "migration completed, guest on h2, unreachable 130 ms, recovered 1.8 s after")


def test_the_verdict_lists_fault_tolerance_as_a_row() -> None:
    verdict = Verdict(passed_tests=3)
    assert verdict.fault_tolerance() is None and "Fault tolerance" not in render_html(verdict, "h1 -> h2")
    verdict.faults += [FaultOutcome("network-cut", True, fault_record().describe()),
                       FaultOutcome("libvirtd-killed", False, fault_record("libvirtd-killed").describe())]
    verdict.faults_not_run.append("nfs-stalled: no NFS server in this run")
    assert verdict.fault_tolerance() == "fault tolerance: the guest came through 1 of 2 faults safe (1 not run)"
    text = verdict.text("h1 -> h2")
    assert "    FAIL libvirtd-killed: injected" in text and "    not run: nfs-stalled: no NFS server" in text
    assert "<h3>Fault tolerance</h3>" in render_html(verdict, "h1 -> h2")
    skipped = Verdict(passed_tests=1, faults_not_run=["network-cut: give --allow-faults to run them"])
    assert skipped.fault_tolerance() == "fault tolerance: not tested (1 not run)"


def test_cleanup_removes_a_dead_runs_firewall_rules_and_resumes_its_stopped_daemon() -> None:
    host = ReplayHost("h2", {"cat /proc/77/comm": (0, "ganesha.nfsd\n", ""), "kill -CONT 77": (0, "", "")})
    rules = Firewall(host, block_rules(["198.18.0.11"])).rules
    rules.update(" ".join(r) for r in block_rules(["198.18.0.11"]))  # left by a killed run
    firewall = Entry("h2", "dead", "1-firewall.json", "firewall", {"rules": block_rules(["198.18.0.11"])})
    assert undo(host, firewall) == "2 iptables rule(s) of the run removed" and rules == set()
    assert undo(host, firewall) == "no iptables rule of the run left"
    stopped = Entry("nfs", "dead", "2-stopped-process.json", "stopped-process", {"pid": "77", "comm": "ganesha.nfsd"})
    assert "resumed" in undo(host, stopped) and "kill -CONT 77" in host.calls
    host.recorded["cat /proc/77/comm"] = (0, "bash\n", "")
    assert undo(host, stopped) == "pid 77 is no longer ganesha.nfsd: nothing to resume"


class Refused(Recorded):
    """A fault whose making fails half-way (the journal entry written, the rule refused)."""

    def inject(self) -> str:
        self.done.append("inject")
        raise RuntimeError("iptables: Permission denied")


def test_a_fault_that_fails_half_made_is_still_lifted_and_its_error_kept() -> None:
    fault = Refused(NETWORK_CUT)
    with FaultWindow(fault) as window:
        window.on_progress(running(1500))
        wait_for(lambda: window.error, target="the fault", state="refused", timeout=5)
        window.migration_returned()
    assert fault.done == ["inject", "lift"]
    assert window.injected_at_s is None and window.error == "RuntimeError: iptables: Permission denied"
    assert "the migration ended before the network-cut fault could be injected" in judge(injected=False)


def measured(error: str | None, problems: list[str]) -> MeasuredMigration:
    samples = [(i * 5_000_000, i * 5_000_000 + 100_000) for i in range(100)]
    probe = summarize(samples, interval_s=0.005)
    outcome = MigrationOutcome(NETWORK_CUT.mode, 9.0, None, [], error)
    record = MigrationRecord("t#hop1", "live", "m", "h1", "h2", "g", "t", 9.0, not problems, "nfs-mount",
                             integrity=SAFE)
    return MeasuredMigration(outcome, probe, record, problems, criteria.compare_downtime(None, None))


def test_a_completed_faulted_move_is_also_judged_as_a_live_hop_and_its_silence_said_once() -> None:
    silent = "the guest never answered the probe after the migration: the gap is truncated"
    assert faulted_move_problems(NETWORK_CUT, measured(None, [silent]), injected=True, src_state="absent",
                                 dst_state="running", answers=False) == [silent]
    assert faulted_move_problems(NETWORK_CUT, measured(None, []), injected=True, src_state="absent",
                                 dst_state="running", answers=False) == ["the guest does not answer after the fault"]
    # a failed move's guest is judged where it stayed; the live hop's checks do not apply to it
    assert faulted_move_problems(LIBVIRTD_KILLED, measured("client socket is closed", [silent]), injected=True,
                                 src_state="running", dst_state="absent", answers=True) == []
