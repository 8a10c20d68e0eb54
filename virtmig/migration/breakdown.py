"""Where a live hop's outage goes: the probe's gap cut at the moments libvirt says the guest stopped and ran.

Why: the probe's longest gap runs tens of ms past libvirt's downtime on
every hop, and a tolerance wide enough to cover an unexplained excess also
hides a regression.  Cutting the gap into segments says which part grows:

    last answer -> source stopped -> destination resumed -> first answer
       (lead)         (paused: libvirt's downtime)          (return)

* lead: from the last echo the guest answered before the outage to the
  source's SUSPENDED event: how early the probe loses the guest (its
  interval, plus a reply lost in flight);
* paused: source SUSPENDED to destination RESUMED (pre-copy: libvirt's
  downtime; post-copy: the switch-over);
* return: destination RESUMED to the first echo answered after it: QEMU's
  self-announce moving the MAC across the bridges, then one probe interval
  and round trip.  Where the destination's bridge was captured
  (virtmig.migration.announce), return is cut at the first announcement
  seen there: resumed -> announced (QEMU or the guest sending it) and
  announced -> first answer (the network and the probe).

All on the controller's monotonic clock: the probe's times are taken there
(or, with `--probe-from`, taken on that host and moved onto ours by an offset
whose uncertainty the probe's result carries: it shifts `lead` and `return`
by at most that much, and leaves the gap itself alone), and the events are
stamped when they reach this process (virtmig.migration.events), which is
later than the host's own moment by the event's trip over the libvirt
connection.  Both events make that trip, so it cancels out of
`paused`; it shifts `lead` up and `return` down by the same amount.  The
clock offsets (virtmig.migration.clocks) bound how the hosts' clocks sit
against ours, for host-side timestamps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import libvirt

from virtmig.guest.probe import ProbeResult
from virtmig.migration.events import DomainEvent
from virtmig.migration.jobstats import JobStats

#: How far the events' stop -> resume may sit from libvirt's downtime on a pre-copy hop, ms: the
#: two events' trips over the libvirt connection differ by this much at most (lab: within 4 ms).
PAUSE_AGREEMENT_MS = 10.0

#: How much later than the host's own moment an event may reach this process, ms (its trip over the
#: libvirt connection).  `return` comes out short by that trip: negative when the guest answered
#: within it (seen on the lab: -1.3 ms, a hop whose guest answered before QEMU announced).
EVENT_TRIP_BOUND_MS = 10.0


@dataclass(frozen=True)
class OutageBreakdown:
    """The segments of one hop's outage, ms (None when an end was not seen), and libvirt's own figures."""

    gap_ms: float
    lead_ms: float | None
    paused_ms: float | None
    return_ms: float | None
    libvirt_downtime_ms: float | None
    libvirt_setup_ms: float | None
    libvirt_total_ms: float | None
    #: Destination resumed -> first announcement on its bridge, and that -> the probe's first answer (ms);
    #: None without a capture (`announce_note` says why).
    announce_ms: float | None = None
    announced_to_answer_ms: float | None = None
    announce_note: str | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def pause_note(self, within_ms: float = PAUSE_AGREEMENT_MS) -> str | None:
        """A note when the events' stop -> resume and libvirt's downtime differ by more than `within_ms` (pre-copy)."""
        if self.paused_ms is None or self.libvirt_downtime_ms is None:
            return None
        diff = self.paused_ms - self.libvirt_downtime_ms
        if abs(diff) <= within_ms:
            return None
        return (f"PAUSE DISAGREEMENT: the events say the guest was stopped {self.paused_ms:.1f} ms, libvirt's "
                f"downtime is {self.libvirt_downtime_ms:.0f} ms ({diff:+.1f} ms; within {within_ms:g} ms expected)")

    def describe(self) -> str:
        def ms(v: float | None) -> str:
            return "?" if v is None else f"{v:.1f}"

        back = f"resumed -> first answer {ms(self.return_ms)}"
        if self.announce_ms is not None:
            back += (f" (resumed -> announced on the destination's bridge {ms(self.announce_ms)} + announced -> "
                     f"first answer {ms(self.announced_to_answer_ms)})")
        elif self.announce_note:
            back += f" (announcement not seen: {self.announce_note})"
        return (f"outage {self.gap_ms:.1f} ms = last answer -> source stopped {ms(self.lead_ms)} + stopped -> "
                f"destination resumed {ms(self.paused_ms)} + {back} "
                f"(libvirt: downtime {ms(self.libvirt_downtime_ms)}, setup {ms(self.libvirt_setup_ms)}, "
                f"total {ms(self.libvirt_total_ms)})")


def _first(events: Sequence[DomainEvent], where: str, event: int, after_ns: int = 0) -> DomainEvent | None:
    return next((e for e in events if e.where == where and e.kind == "lifecycle" and e.event == event
                 and e.at_mono_ns >= after_ns), None)


#: The note of a hop whose guest answered the probe before QEMU's first announcement was seen (QEMU waits
#: announce-initial, 50 ms, after the resume; a reply the guest sends sooner teaches the bridges itself).
ANSWERED_BEFORE_ANNOUNCE = "the guest answered before it announced"


def outage_breakdown(probe: ProbeResult, events: Sequence[DomainEvent], stats: JobStats | None, *,
                     announces_ns: Sequence[int] = (), announce_note: str | None = None) -> OutageBreakdown:
    """Cut the probe's longest gap at the source's SUSPENDED and the destination's RESUMED events (pure).

    announces_ns: the destination bridge's announcements on our monotonic
    clock; the first at or after the resume cuts the return segment.
    """
    stop = _first(events, "src", libvirt.VIR_DOMAIN_EVENT_SUSPENDED)
    resume = _first(events, "dst", libvirt.VIR_DOMAIN_EVENT_RESUMED, stop.at_mono_ns if stop else 0)
    if resume is None:  # a destination started running without a separate resume (detail 'migrated')
        resume = _first(events, "dst", libvirt.VIR_DOMAIN_EVENT_STARTED, stop.at_mono_ns if stop else 0)
    lead = None if stop is None else (stop.at_mono_ns - probe.gap_start_ns) / 1e6
    paused = None if stop is None or resume is None else (resume.at_mono_ns - stop.at_mono_ns) / 1e6
    back = None if resume is None else (probe.gap_end_ns - resume.at_mono_ns) / 1e6

    def figure(value: int | None) -> float | None:
        return None if value is None else float(value)

    announced = None if resume is None else next((a for a in sorted(announces_ns) if a >= resume.at_mono_ns), None)
    if resume is not None and announced is None and announce_note is None and announces_ns:
        announce_note = "no announcement after the resume"
    if announced is not None and announced > probe.gap_end_ns:
        # The guest's echo reply reached the probe first: that frame, not an announcement, taught the bridges.
        announced, announce_note = None, ANSWERED_BEFORE_ANNOUNCE
    return OutageBreakdown(
        gap_ms=probe.longest_gap_ms, lead_ms=lead, paused_ms=paused, return_ms=back,
        libvirt_downtime_ms=figure(stats.downtime_ms) if stats else None,
        libvirt_setup_ms=figure(stats.setup_time_ms) if stats else None,
        libvirt_total_ms=figure(stats.time_elapsed_ms) if stats else None,
        announce_ms=None if announced is None or resume is None else (announced - resume.at_mono_ns) / 1e6,
        announced_to_answer_ms=None if announced is None else (probe.gap_end_ns - announced) / 1e6,
        announce_note=announce_note,
    )
