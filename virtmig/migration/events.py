"""libvirt domain events during a migration: when each host says the guest stopped, resumed, finished.

Why events: some facts exist nowhere else.  After a real post-copy
migration libvirt 9.0 keeps no completed-job statistics on the destination
(its `jobStats(COMPLETED)` answers type NONE), and the source domain is gone
once the call returns; the source's JOB_COMPLETED event is then the only
place libvirt hands out the job's statistics (downtime, total time, bytes).
The lifecycle events (SUSPENDED on the source, RESUMED on the destination)
say when each side paused and ran, for the outage breakdown.

libvirt delivers events only on connections opened after an event loop was
registered, so `start_event_loop()` must run before the connections are
opened (fixtures/hosts.py calls it; so does every `open_connection`).  There
is one loop per process, `virtmig.guest.libvirt_events`'s, which also runs
the connections' keepalive: libvirt allows one event implementation.

Each event is stamped with the controller's clocks when it arrives: that is
later than the host's own moment by the event's trip over the libvirt
connection (an SSH channel), which `DomainEvent.at_wall_ns` does not remove.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import libvirt

from virtmig.guest.libvirt_events import event_loop_running, start_event_loop

__all__ = ["DomainEvent", "EventRecorder", "event_loop_running", "start_event_loop"]


#: Lifecycle event names, as virsh event prints them.
LIFECYCLE_NAMES = {
    libvirt.VIR_DOMAIN_EVENT_DEFINED: "defined", libvirt.VIR_DOMAIN_EVENT_UNDEFINED: "undefined",
    libvirt.VIR_DOMAIN_EVENT_STARTED: "started", libvirt.VIR_DOMAIN_EVENT_SUSPENDED: "suspended",
    libvirt.VIR_DOMAIN_EVENT_RESUMED: "resumed", libvirt.VIR_DOMAIN_EVENT_STOPPED: "stopped",
    libvirt.VIR_DOMAIN_EVENT_SHUTDOWN: "shutdown", libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED: "pmsuspended",
    libvirt.VIR_DOMAIN_EVENT_CRASHED: "crashed",
}


@dataclass(frozen=True)
class DomainEvent:
    """One event: where (the recorder's name for the connection), what, and when it reached us.

    kind: "lifecycle" (event, detail: libvirt's codes) or "job-completed"
    (params: the job's statistics, as jobStats() would give them).
    at_mono_ns / at_wall_ns: the controller's monotonic and wall clocks on arrival.
    """

    where: str
    kind: str
    event: int = -1
    detail: int = -1
    params: Mapping[str, Any] = field(default_factory=dict)
    at_mono_ns: int = 0
    at_wall_ns: int = 0

    @property
    def name(self) -> str:
        if self.kind != "lifecycle":
            return self.kind
        return LIFECYCLE_NAMES.get(self.event, str(self.event))


class EventRecorder:
    """Records one domain's lifecycle and job-completed events on named connections, inside a with block.

    Registered for every domain and filtered by name, because the domain
    does not exist yet on the destination when the recording starts.
    """

    def __init__(self, conns: Mapping[str, libvirt.virConnect], domain: str) -> None:
        if not event_loop_running():
            raise RuntimeError("no libvirt event loop: call virtmig.migration.events.start_event_loop() "
                               "before opening the connections")
        self._conns = dict(conns)
        self._domain = domain
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._ids: list[tuple[libvirt.virConnect, int]] = []
        self.events: list[DomainEvent] = []

    def _add(self, event: DomainEvent) -> None:
        with self._arrived:
            self.events.append(event)
            self._arrived.notify_all()

    def __enter__(self) -> EventRecorder:
        try:
            for where, conn in self._conns.items():
                self._ids.append((conn, conn.domainEventRegisterAny(
                    None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, where)))
                self._ids.append((conn, conn.domainEventRegisterAny(
                    None, libvirt.VIR_DOMAIN_EVENT_ID_JOB_COMPLETED, self._on_job_completed, where)))
        except BaseException:
            self._deregister()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._deregister()

    def _deregister(self) -> None:
        while self._ids:
            conn, cb_id = self._ids.pop()
            try:
                conn.domainEventDeregisterAny(cb_id)
            except libvirt.libvirtError:  # noqa: PERF203 - a closed connection has dropped it already
                continue

    def _on_lifecycle(self, conn: libvirt.virConnect, dom: libvirt.virDomain, event: int, detail: int,
                      where: str) -> None:
        if dom.name() == self._domain:
            self._add(DomainEvent(where, "lifecycle", event, detail, at_mono_ns=time.monotonic_ns(),
                                  at_wall_ns=time.time_ns()))

    def _on_job_completed(self, conn: libvirt.virConnect, dom: libvirt.virDomain, params: dict[str, Any],
                          where: str) -> None:
        if dom.name() == self._domain:
            self._add(DomainEvent(where, "job-completed", params=dict(params), at_mono_ns=time.monotonic_ns(),
                                  at_wall_ns=time.time_ns()))

    def wait_job_completed(self, where: str, timeout: float) -> DomainEvent | None:
        """The job-completed event from `where`, waiting up to `timeout` s for it (None if it never came)."""
        def found() -> DomainEvent | None:
            return next((e for e in self.events if e.where == where and e.kind == "job-completed"), None)

        with self._arrived:
            self._arrived.wait_for(lambda: found() is not None, timeout=timeout)
            return found()

    def first(self, where: str, event: int) -> DomainEvent | None:
        """The first lifecycle `event` (VIR_DOMAIN_EVENT_*) seen from `where`."""
        with self._lock:
            return next((e for e in self.events if e.where == where and e.kind == "lifecycle" and e.event == event),
                        None)
