"""virtmig.migration.breakdown on a synthetic timeline: the segments add up to the gap, missing ends stay unknown."""

from __future__ import annotations

import libvirt
import pytest

from virtmig.guest.probe import summarize
from virtmig.migration.breakdown import outage_breakdown
from virtmig.migration.events import DomainEvent
from virtmig.migration.jobstats import JobStats

MS = 1_000_000
# A send every 5 ms answered 1 ms later, except seqs 20..39: the last answer before the outage is seq 19's
# (96 ms), the first after it seq 40's (201 ms).
SAMPLES = [(i * 5 * MS, None if 20 <= i < 40 else i * 5 * MS + MS) for i in range(60)]


def _event(where: str, event: int, at_ms: float) -> DomainEvent:
    return DomainEvent(where, "lifecycle", event, 1, at_mono_ns=int(at_ms * MS), at_wall_ns=0)


def test_segments_cut_the_gap_at_the_events() -> None:
    probe = summarize(SAMPLES, interval_s=0.005)
    events = [_event("dst", libvirt.VIR_DOMAIN_EVENT_RESUMED, 50),  # before the stop: not this hop's resume
              _event("src", libvirt.VIR_DOMAIN_EVENT_SUSPENDED, 110),
              _event("dst", libvirt.VIR_DOMAIN_EVENT_RESUMED, 180)]
    stats = JobStats(downtime_ms=65, setup_time_ms=3, time_elapsed_ms=2100)
    b = outage_breakdown(probe, events, stats)
    assert b.gap_ms == pytest.approx(105)
    assert b.lead_ms is not None and b.paused_ms is not None and b.return_ms is not None
    assert [b.lead_ms, b.paused_ms, b.return_ms] == pytest.approx([14, 70, 21])
    assert b.lead_ms + b.paused_ms + b.return_ms == pytest.approx(b.gap_ms)
    assert (b.libvirt_downtime_ms, b.libvirt_setup_ms, b.libvirt_total_ms) == (65, 3, 2100)
    assert "stopped -> destination resumed 70.0" in b.describe()
    assert b.pause_note() is None  # 70 ms by the events, 65 by libvirt: within the events' trips
    assert "PAUSE DISAGREEMENT" in (b.pause_note(within_ms=4) or "")


def test_missing_events_leave_their_segments_unknown() -> None:
    probe = summarize(SAMPLES, interval_s=0.005)
    b = outage_breakdown(probe, [_event("src", libvirt.VIR_DOMAIN_EVENT_SUSPENDED, 110)], None)
    assert b.lead_ms == pytest.approx(14) and b.paused_ms is None and b.return_ms is None
    assert b.libvirt_downtime_ms is None and "resumed ?" in b.describe()


#: One hop's two events: the source stopped at 110 ms, the destination resumed at 180 ms.
HOP = [_event("src", libvirt.VIR_DOMAIN_EVENT_SUSPENDED, 110), _event("dst", libvirt.VIR_DOMAIN_EVENT_RESUMED, 180)]


def test_the_return_is_cut_at_the_first_announcement_after_the_resume() -> None:
    """Destination resumed at 180 ms, first answer at 201 ms: an announcement at 186 ms cuts 21 into 6 + 15."""
    probe = summarize(SAMPLES, interval_s=0.005)
    events = HOP
    # 40 ms: the guest's own ARP before it stopped (not this hop's announcement); 230 ms: QEMU's next round.
    b = outage_breakdown(probe, events, None, announces_ns=[40 * MS, 186 * MS, 230 * MS])
    assert b.return_ms is not None and b.announce_ms is not None and b.announced_to_answer_ms is not None
    assert [b.return_ms, b.announce_ms, b.announced_to_answer_ms] == pytest.approx([21, 6, 15])
    assert b.announce_ms + b.announced_to_answer_ms == pytest.approx(b.return_ms)
    assert "resumed -> announced on the destination's bridge 6.0 + announced -> first answer 15.0" in b.describe()


def test_without_a_capture_the_return_stays_whole_and_says_why() -> None:
    probe = summarize(SAMPLES, interval_s=0.005)
    events = HOP
    b = outage_breakdown(probe, events, None, announce_note="no capture on h2's br0: no tcpdump on this host")
    assert b.return_ms == pytest.approx(21) and b.announce_ms is None and b.announced_to_answer_ms is None
    assert "announcement not seen: no capture on h2's br0: no tcpdump on this host" in b.describe()
    only_before = outage_breakdown(probe, events, None, announces_ns=[40 * MS])
    assert only_before.announce_ms is None and only_before.announce_note == "no announcement after the resume"


def test_an_announcement_after_the_first_answer_does_not_cut_the_return() -> None:
    """The guest's reply reached the probe first (201 ms) and its ARP came at 205 ms: no negative segment."""
    probe = summarize(SAMPLES, interval_s=0.005)
    b = outage_breakdown(probe, HOP, None, announces_ns=[205 * MS])
    assert b.return_ms == pytest.approx(21) and b.announce_ms is None and b.announced_to_answer_ms is None
    assert b.announce_note == "the guest answered before it announced"
