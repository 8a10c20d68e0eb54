"""virtmig.migration.events against libvirt's test driver: events arrive, named, for the right domain only."""

from __future__ import annotations

import libvirt
import pytest

from virtmig.guest import libvirt_events
from virtmig.guest.domains import open_connection
from virtmig.migration.events import EventRecorder, start_event_loop
from virtmig.waiters import wait_for


def test_lifecycle_events_of_the_domain_are_recorded_in_order() -> None:
    start_event_loop()
    conn = open_connection("test:///default")
    try:
        dom = conn.lookupByName("test")
        with EventRecorder({"here": conn}, "test") as recorder:
            dom.suspend()
            dom.resume()
            resumed = wait_for(lambda: recorder.first("here", libvirt.VIR_DOMAIN_EVENT_RESUMED),
                               target="the test domain's events", state="resumed seen", timeout=10, interval=0.01)
        suspended = recorder.first("here", libvirt.VIR_DOMAIN_EVENT_SUSPENDED)
        assert suspended is not None and suspended.name == "suspended"
        assert suspended.at_mono_ns <= resumed.at_mono_ns and resumed.name == "resumed"
        assert recorder.wait_job_completed("here", 0) is None
        count = len(recorder.events)
        dom.suspend()  # after the block: deregistered, nothing more is recorded
        dom.resume()
        assert len(recorder.events) == count
    finally:
        conn.close()


def test_other_domains_are_not_recorded() -> None:
    # Two connections to the one test:///default driver: libvirt allows one registration per event per
    # connection, and both see the same domain's events.
    start_event_loop()
    conn, second = open_connection("test:///default"), open_connection("test:///default")
    try:
        with EventRecorder({"here": conn}, "test") as mine, EventRecorder({"here": second}, "not-this-one") as other:
            dom = conn.lookupByName("test")
            dom.suspend()
            dom.resume()
            wait_for(lambda: mine.first("here", libvirt.VIR_DOMAIN_EVENT_RESUMED), target="the test domain's events",
                     state="resumed seen", timeout=10, interval=0.01)
        assert other.events == []  # the other connection got the same events; its recorder kept none
    finally:
        conn.close()
        second.close()


def test_a_recorder_needs_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(libvirt_events, "_thread", None)
    with pytest.raises(RuntimeError, match="start_event_loop"):
        EventRecorder({}, "x")
