"""The checks a measured migration must pass, as pure functions that can be shown to fail.

Why pure: a check that is never seen failing proves nothing.  Each
function here takes figures, not hosts, so tests/test_checks.py feeds every
one a failing case.

Two kinds of outcome:
* problems (lists of strings): the migration, or our measurement of it, is
  broken; the suites fail the test on any.
* the downtime agreement: libvirt's downtime and the probe's longest gap
  are two independent measurements of one outage; when they disagree beyond
  `DowntimeTolerance` the record and the report say so, but the test does
  not fail, since which one is wrong is for a human to find out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from virtmig.guest.probe import ProbeResult
from virtmig.migration.jobstats import JobStats


@dataclass(frozen=True)
class DowntimeTolerance:
    """How far the probe's gap may sit from libvirt's downtime, in ms (pre-copy hops).

    The rule comes from the outage breakdown (virtmig.migration.breakdown),
    which cuts the gap at the source's stop and the destination's resume:

        gap - downtime = lead + (paused - downtime) + return

    measured on the lab over 8 pre-copy hops (p2p, p2p-tunnelled, dirtying
    8 MiB/s; issue #13): lead (last answer -> source stopped) 2.4..8.7 ms,
    once 28.4 (the guest answered late just before a tunnelled switch-over);
    paused - downtime -4..+4 ms (the event's trip over the libvirt
    connection: libvirt's figure is confirmed independently); return
    (resumed -> first answer: QEMU's announce, bridge learning, one probe
    interval and round trip) 29..87 ms.  Excess seen: +35..+112 ms.  A
    `make soak` afterwards (60 pre-copy hops, six modes) stayed inside:
    lead 0.9..29.9, paused - downtime -5.6..+5.5, return 28..84, excess
    +26..+97 ms, every hop agreeing.  So:

    below_ms: the gap may undershoot libvirt's downtime only by the
        event/probe resolution: 4 ms of event skew plus one 5 ms interval,
        rounded to 10.  More means the probe missed part of the pause.
    above_ms: the largest lead (30) + skew (5) + largest return (85),
        i.e. 120 ms.  More means one segment grew: the record's breakdown
        note says which.

    Post-copy hops are not judged by it: after the switch the guest runs on
    the destination while its memory is still fetched page by page, so the
    probe's gap includes 100..210 ms of slowed running that libvirt's
    downtime (11..15 ms, the switch-over alone) does not count.
    """

    below_ms: float = 10.0
    above_ms: float = 120.0

    def describe(self) -> str:
        return f"probe gap within -{self.below_ms:g}/+{self.above_ms:g} ms of libvirt downtime"


#: Why a post-copy hop's gap is not compared with libvirt's downtime (see DowntimeTolerance).
POSTCOPY_NOT_COMPARED = ("not compared: after a post-copy switch the guest runs while its memory is fetched, "
                         "which the probe sees and libvirt's downtime does not count")


DEFAULT_TOLERANCE = DowntimeTolerance()


@dataclass(frozen=True)
class DowntimeAgreement:
    """libvirt's downtime against the probe's gap; `agrees` is None if one is missing."""

    libvirt_ms: float | None
    probe_ms: float | None
    excess_ms: float | None
    agrees: bool | None
    tolerance: str

    @property
    def note(self) -> str | None:
        """A line for the record's notes when they disagree, else None."""
        if self.agrees is not False:
            return None
        assert self.excess_ms is not None
        return (f"DOWNTIME DISAGREEMENT: probe gap {self.probe_ms:.0f} ms vs libvirt downtime "
                f"{self.libvirt_ms:.0f} ms ({self.excess_ms:+.0f} ms; tolerance: {self.tolerance})")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def compare_downtime(
    libvirt_ms: float | None, probe_ms: float | None, tolerance: DowntimeTolerance = DEFAULT_TOLERANCE,
    *, postcopy: bool = False,
) -> DowntimeAgreement:
    """Compare the two downtime measurements under `tolerance` (a post-copy hop's are not compared)."""
    if postcopy:
        excess = None if libvirt_ms is None or probe_ms is None else round(probe_ms - libvirt_ms, 3)
        return DowntimeAgreement(libvirt_ms, probe_ms, excess, None, POSTCOPY_NOT_COMPARED)
    if libvirt_ms is None or probe_ms is None:
        return DowntimeAgreement(libvirt_ms, probe_ms, None, None, tolerance.describe())
    excess = probe_ms - libvirt_ms
    agrees = -tolerance.below_ms <= excess <= tolerance.above_ms
    return DowntimeAgreement(libvirt_ms, probe_ms, round(excess, 3), agrees, tolerance.describe())


def stats_problems(stats: JobStats | None, *, live: bool = True) -> list[str]:
    """What is missing or impossible in libvirt's completed-job statistics."""
    if stats is None:
        return ["libvirt kept no completed-job statistics"]
    problems: list[str] = []
    if stats.success is False:
        problems.append(f"libvirt says the job failed: {stats.errmsg or 'no message'}")
    if stats.time_elapsed_ms is None:
        problems.append("no total time (time_elapsed)")
    if live:
        if stats.downtime_ms is None:
            problems.append("no downtime figure")
        elif stats.time_elapsed_ms is not None and stats.downtime_ms > stats.time_elapsed_ms:
            problems.append(f"downtime {stats.downtime_ms} ms exceeds total time {stats.time_elapsed_ms} ms")
        if not stats.memory_processed_bytes:
            problems.append("no memory was transferred (memory_processed is 0 or absent)")
        if not stats.memory_iteration:
            problems.append("no pass over memory recorded (memory_iteration is 0 or absent)")
        if stats.memory_remaining_bytes:
            problems.append(f"{stats.memory_remaining_bytes} bytes of memory remained after completion")
    return problems


def probe_problems(probe: ProbeResult, *, answered_after: bool) -> list[str]:
    """What makes the probe's view of the outage unusable.

    answered_after: the guest answered the probe after the operation ended
    (else the longest gap is cut off by the end of the window, not by the
    guest coming back, and the figure is a lower bound at best).
    """
    problems: list[str] = []
    if probe.received == 0:
        problems.append(f"the probe got no reply at all ({probe.sent} sent)")
    if not answered_after:
        problems.append("the guest never answered the probe after the migration: the gap is truncated")
    if probe.interval_ms > 5.0:
        problems.append(f"probe interval {probe.interval_ms:g} ms is coarser than the 5 ms required")
    return problems


def probe_caveats(probe: ProbeResult) -> list[str]:
    """Notes (not failures) about the probe's precision in this run."""
    slack = max(10 * probe.interval_ms, 50.0)
    if probe.longest_send_gap_ms > slack:
        return [f"probe thread stalled for {probe.longest_send_gap_ms:.0f} ms between sends: "
                "the gap may be overstated by up to that much"]
    return []



def abort_problems(src_state: str, dst_state: str) -> list[str]:
    """What is wrong after an aborted migration: the guest must run on the source and be gone from the destination.

    States as `virtmig.guest.domains.state_name` gives them ('running', 'absent', ...).
    """
    found = []
    if src_state != "running":
        found.append(f"after the abort the guest is {src_state} on the source, not running")
    if dst_state != "absent":
        found.append(f"after the abort a domain is left on the destination ({dst_state})")
    return found
