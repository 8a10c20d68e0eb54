"""When a lab test may xfail for QEMU 7.2's TCG lost-dirty-page crash, and when it must fail.

The records here are made the way a live hop makes them: the probe's result
from `summarize`, the problems from `criteria` and `Measurement.problems()`,
the integrity summary from `verify_patterns`, and the crash diagnosis from
`crash_diagnosis` on the console evidence, as suites/live adds it.  So the
rule in tests/inner_run.py is checked against what a run really writes, on
both sides: the known crash after good checks xfails; the same crash after
anything the harness or libvirt got wrong does not.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from tests.inner_run import known_tcg_bug, tcg_crash_after_good_start
from virtmig.guest import integrity
from virtmig.guest.console import TCG_DIRTY_FIX_COMMIT, crash_diagnosis
from virtmig.guest.integrity import IntegrityError
from virtmig.guest.probe import AgentError, ProbeResult, summarize
from virtmig.migration import criteria
from virtmig.migration.jobstats import JobStats
from virtmig.migration.measure import GuestAccess, Measurement
from virtmig.migration.records import MigrationRecord
from virtmig.report.results_json import record_from_dict

MS = 1_000_000
QEMU_7_2, QEMU_9_0 = 7_002_022, 9_000_000
TEST = "suites/live/test_live_migration.py::test_round_trip[p2p]"
GUEST = GuestAccess("198.18.0.100", 7007)
STATS = JobStats(success=True, time_elapsed_ms=1355, downtime_ms=205, memory_processed_bytes=72 * 2**20,
                 memory_total_bytes=128 * 2**20, memory_remaining_bytes=0, memory_iteration=3)
PANIC = "[   31.337000] Kernel panic - not syncing: Fatal exception in interrupt"
HEARTBEAT = "[   30.001000] virtmig: alive rx=1042 tx=1040"


def answering(text: str) -> str:
    """The guest agent with the patterns intact."""
    verb, seed = text.split()
    return f"ok {verb} {seed}"


def silent(text: str) -> str:
    """The guest agent of a crashed guest."""
    raise AgentError(f"agent 198.18.0.100:7007 did not answer '!{text}' (1 attempts of 30 s; last: no reply)")


def probe_result(*, before: bool = True, after: bool = True, interval_ms: int = 5) -> ProbeResult:
    """400 sends; an outage from seq 100, answered again from seq 150 if `after`, from the start if not `before`."""
    def answered(seq: int) -> bool:
        return (seq >= 150 and after) or (seq < 100 and before)

    samples = [(i * interval_ms * MS, (i * interval_ms + 1) * MS if answered(i) else None) for i in range(400)]
    return summarize(samples, interval_s=interval_ms / 1e3)


def hop(where: str = "trip1-hop1", *, crashed: bool = True, console: Sequence[str] = (HEARTBEAT, PANIC),
        console_host: str | None = None, virt_type: str = "qemu", qemu: int = QEMU_7_2,
        probe: ProbeResult | None = None, stats: JobStats | None = STATS, error: str | None = None,
        more_problems: Sequence[str] = ()) -> dict[str, Any]:
    """One live hop h1 -> h2 as results.json holds it, made as measured_live_migration and suites/live make it."""
    src, dst = "h1", "h2"
    checks = integrity.verify_patterns(silent if crashed else answering, "p2p-0123456789abcdef")
    probe = probe if probe is not None else probe_result(after=not crashed)
    meas = Measurement(GUEST, "p2p-0123456789abcdef", integrity.AREAS, integrity_checks=checks, probe=probe,
                       answered_after=not crashed)
    problems = ([] if error else criteria.stats_problems(stats) + meas.problems()) + list(more_problems)
    notes = [f"PROBLEM: {p}" for p in problems]
    if problems:  # the suite's look at the destination, as suites/live does it
        evidence = [f"{console_host or dst} console: {line}" for line in console]
        evidence += [f"{h} fdb: 52:54:00:00:00:64 dev vnet0 master br0" for h in (src, dst)]
        if crash := crash_diagnosis(evidence, dst, virt_type, qemu):
            notes.append(f"PROBLEM: {crash}")
        notes += [f"evidence: {line}" for line in evidence]
    record = MigrationRecord(
        test_id=f"{TEST}#{where}", kind="live", mode="p2p", src=src, dst=dst, domain="virtmig-test",
        started_at="2026-01-01T00:00:00.000+00:00", wall_s=2.5, ok=not problems and error is None,
        storage="nfs-mount", error=error, stats=None if stats is None else stats.to_dict(), probe=probe.to_dict(),
        notes=notes, integrity=None if error else integrity.summary(checks))
    raw: dict[str, Any] = json.loads(record.to_json())
    return raw


# --- xfail: the known crash, after checks that passed -----------------------


def test_the_known_crash_after_a_good_hop_is_the_bug() -> None:
    bug = known_tcg_bug([hop("trip1-hop1", crashed=False), hop("trip1-hop2")])
    assert bug is not None
    assert bug.startswith("the guest kernel crashed on h2 after the move: Kernel panic")
    assert TCG_DIRTY_FIX_COMMIT in bug and "QEMU 7.2" in bug


def test_the_known_crash_on_the_first_hop_is_the_bug() -> None:
    assert known_tcg_bug([hop()]) is not None


@pytest.mark.parametrize("line", [
    "[   12.5] virtio_net virtio0: output.0:id 3 is not a head!",
    "[   40.1] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [swapper/0:0]",
    "[   61.2] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
    "[   13.0] list_del corruption. prev->next should be ffff8880, but was 0000000000000000",
])
def test_every_crash_marker_counts(line: str) -> None:
    assert known_tcg_bug([hop(console=(HEARTBEAT, line))]) is not None


def test_patterns_found_corrupt_are_what_the_bug_does() -> None:
    """Lost dirty pages may also show as a `fail` verify: still the bug, with the crash on the console."""
    corrupt = [f"{area} pattern not intact after the move: agent 198.18.0.100:7007 answered "
               f"'!{area}-verify s' with 'fail {area}-verify s offset=4096'" for area in integrity.AREAS]
    record = hop()
    record["notes"] = [n for n in record["notes"] if "not intact" not in n] + [f"PROBLEM: {p}" for p in corrupt]
    assert known_tcg_bug([record]) is not None


# --- no xfail: not the signature --------------------------------------------


def test_no_failed_hop_is_no_bug() -> None:
    assert known_tcg_bug([hop(crashed=False), hop("trip1-hop2", crashed=False)]) is None
    assert known_tcg_bug([]) is None


@pytest.mark.parametrize(("virt_type", "qemu"), [("kvm", QEMU_7_2), ("qemu", QEMU_9_0)])
def test_a_crash_outside_the_bugs_reach_fails(virt_type: str, qemu: int) -> None:
    """KVM guests, and TCG on QEMU 9.0 (the fix), crash for another reason."""
    record = hop(virt_type=virt_type, qemu=qemu)
    assert any("crashed" in n for n in record["notes"]) and not record["ok"]
    assert known_tcg_bug([record]) is None


def test_a_guest_silent_without_a_crash_fails() -> None:
    assert known_tcg_bug([hop(console=(HEARTBEAT,))]) is None


def test_the_crash_must_be_on_the_destinations_console() -> None:
    record = hop()
    assert known_tcg_bug([record]) is not None
    record["notes"] = [n.replace("evidence: h2 console: ", "evidence: h1 console: ") for n in record["notes"]]
    assert known_tcg_bug([record]) is None


def test_a_failed_migration_is_not_the_crash_after_it() -> None:
    """libvirt's error, or no statistics, says the move itself failed, even with the crash named beside it."""
    record = hop()
    assert known_tcg_bug([record]) is not None
    assert known_tcg_bug([{**record, "error": "operation failed: migration job: unexpectedly failed"}]) is None
    assert known_tcg_bug([{**record, "stats": None}]) is None


def test_another_failed_hop_in_the_run_fails() -> None:
    other = hop(crashed=False, more_problems=["the post-copy mode never switched to post-copy"])
    other["test_id"] = f"{TEST.replace('p2p', 'postcopy')}#trip1-hop1"
    assert known_tcg_bug([other, hop()]) is None
    assert known_tcg_bug([hop(), other]) is None


# --- no xfail: the harness's checks before the hop did not pass -------------


def test_a_failed_earlier_hop_of_the_same_test_fails() -> None:
    earlier = record_from_dict(hop("trip1-hop1", crashed=False, more_problems=["something of the harness's"]))
    crash = record_from_dict(hop("trip1-hop2"))
    assert tcg_crash_after_good_start(crash, []) is not None
    assert tcg_crash_after_good_start(crash, [earlier]) is None
    other_test = record_from_dict({**hop("trip1-hop1", crashed=False, more_problems=["x"]),
                                   "test_id": f"{TEST.replace('p2p', 'direct')}#trip1-hop1"})
    assert tcg_crash_after_good_start(crash, [other_test]) is not None, "another test's hop is not this one's start"


@pytest.mark.parametrize("change", [{"integrity": None}, {"probe": None}, {"kind": "offline"}])
def test_a_hop_without_its_verify_or_probe_or_not_live_fails(change: dict[str, object]) -> None:
    """No verify ran (so nothing shows the patterns were in place), no probe, or not the live hop the bug hits."""
    assert known_tcg_bug([{**hop(), **change}]) is None


def test_a_guest_that_never_answered_the_probe_fails() -> None:
    record = hop(probe=probe_result(before=False, after=False))
    assert any("no reply at all" in n for n in record["notes"])
    assert known_tcg_bug([record]) is None


def test_a_guest_that_did_not_answer_before_the_move_fails() -> None:
    """Replies only after the outage: the guest was not answering when the hop began."""
    probe = probe_result(before=False, after=True)
    assert probe.received > 0 and probe.gap_first_lost_seq == 0
    assert known_tcg_bug([hop(probe=probe)]) is None


def test_a_probe_the_harness_set_up_wrong_fails() -> None:
    record = hop(probe=probe_result(after=False, interval_ms=10))
    assert any("coarser" in n for n in record["notes"])
    assert known_tcg_bug([record]) is None


@pytest.mark.parametrize("change", [{"downtime_ms": None}, {"memory_iteration": 0}, {"success": False}])
def test_bad_libvirt_statistics_beside_the_crash_fail(change: dict[str, object]) -> None:
    stats = JobStats(**{**{k: getattr(STATS, k) for k in (
        "success", "time_elapsed_ms", "downtime_ms", "memory_processed_bytes", "memory_total_bytes",
        "memory_remaining_bytes", "memory_iteration")}, **change})
    assert known_tcg_bug([hop(stats=stats)]) is None


def test_no_statistics_at_all_fails() -> None:
    assert known_tcg_bug([hop(stats=None)]) is None


def test_any_other_problem_beside_the_crash_fails() -> None:
    assert known_tcg_bug([hop(more_problems=["the post-copy mode never switched to post-copy"])]) is None


def test_a_pattern_the_harness_could_not_write_leaves_no_record() -> None:
    """Why the rule may take a record as proof that the patterns were written before the move."""
    meas = Measurement(GUEST, "s1", integrity.AREAS, agent=silent)
    with pytest.raises(IntegrityError, match="could not write the ram pattern"), meas:
        pytest.fail("the migration would have started")
    assert meas.probe is None and meas.started_at == ""
