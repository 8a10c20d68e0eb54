"""Moving a guest that stops on the way: offline migration, cold move, save/restore.

Why these matter next to live migration: they are what operators fall back
to when live migration is refused, and their downtime is seconds, not
milliseconds, so it must be measured as the user sees it: from the guest's
last answer on the source to its first answer on the destination (the
probe runs from before the guest stops until it answers again).

The three procedures, as virsh would do them:
* offline: shut the guest off, `virsh migrate --offline --persistent
  --undefinesource` (VIR_MIGRATE_OFFLINE | PERSIST_DEST | UNDEFINE_SOURCE,
  peer-to-peer), start it on the destination;
* cold: shut the guest off, define its XML on the destination, undefine it on
  the source, start it on the destination;
* save-restore: `virsh save` the running guest to the shared storage on the
  source, `virsh restore` it on the destination, then make it persistent
  there (define) and forget it on the source (undefine): the running state,
  RAM included, crosses over through the file.

"Shut off" is `destroy --graceful` (SIGTERM to QEMU, which flushes its disk
caches): the test guest is busybox with no ACPI handler, so a guest-side
shutdown request would never be honoured.

The save is bounded like a live migration (virtmig.migration.deadline): it
is a job that writes the guest's RAM to the shared storage, and a stalled
NFS server would hold it for ever.  Past the deadline it is aborted
(abortJob), and libvirt resumes the guest on the source.  The other steps
are no jobs libvirt can abort (define, start, restore); the connection's
keepalive ends them when a host stops answering.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import libvirt

from virtmig.guest import integrity
from virtmig.guest.integrity import Agent
from virtmig.migration import criteria
from virtmig.migration.clocks import HostClock
from virtmig.migration.deadline import DeadlinePolicy, JobWatchdog, wait_job_ended
from virtmig.migration.jobstats import JobStats
from virtmig.migration.measure import GuestAccess, Leg, Measurement, abort_aftermath
from virtmig.migration.records import MigrationRecord
from virtmig.migration.runner import read_completed_stats

OFFLINE_FLAGS = (libvirt.VIR_MIGRATE_OFFLINE | libvirt.VIR_MIGRATE_PERSIST_DEST
                 | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE | libvirt.VIR_MIGRATE_PEER2PEER)

#: Which patterns survive each kind: the disk always; RAM only when the
#: running state itself is carried over (save/restore), since the others boot.
AREAS_BY_KIND: dict[str, tuple[str, ...]] = {
    "offline": ("disk",),
    "cold": ("disk",),
    "save-restore": ("ram", "disk"),
}

#: Booting the guest under TCG takes 10-11 s on the lab; leave room.
BOOT_ANSWER_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class OfflineOutcome:
    """What one procedure did: per-phase wall times (ms), libvirt's stats if any, or the error."""

    kind: str
    phases_ms: dict[str, float]
    stats: JobStats | None
    error: str | None
    #: The save's age when its deadline aborted it (None: not aborted).
    aborted_after_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def wall_s(self) -> float:
        return sum(self.phases_ms.values()) / 1e3


class _Phases:
    """Times named steps on the monotonic clock."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}

    def run(self, name: str, step: Callable[[], object]) -> None:
        t0 = time.monotonic()
        try:
            step()
        finally:
            self.ms[name] = round((time.monotonic() - t0) * 1e3, 1)


def _shut_off(dom: libvirt.virDomain) -> None:
    dom.destroyFlags(libvirt.VIR_DOMAIN_DESTROY_GRACEFUL)


class SaveAborted(Exception):
    """The save ran past its deadline and was aborted; the message says after how long and why."""

    def __init__(self, message: str, after_s: float) -> None:
        super().__init__(message)
        self.after_s = after_s


def _offline(leg: Leg, name: str, phases: _Phases, _path: str | None,
             _deadline: DeadlinePolicy) -> JobStats | None:
    dom = leg.src.lookupByName(name)
    phases.run("shut off", lambda: _shut_off(dom))
    phases.run("migrate --offline", lambda: dom.migrateToURI3(leg.dst_uri, {}, OFFLINE_FLAGS))
    phases.run("start on destination", lambda: leg.dst.lookupByName(name).create())
    return None  # an offline migration moves no state: libvirt keeps no job statistics


def _cold(leg: Leg, name: str, phases: _Phases, _path: str | None, _deadline: DeadlinePolicy) -> JobStats | None:
    dom = leg.src.lookupByName(name)
    xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
    phases.run("shut off", lambda: _shut_off(dom))
    phases.run("define on destination", lambda: leg.dst.defineXML(xml))
    phases.run("undefine on source", lambda: dom.undefine())
    phases.run("start on destination", lambda: leg.dst.lookupByName(name).create())
    return None


def _save_restore(leg: Leg, name: str, phases: _Phases, path: str | None,
                  deadline: DeadlinePolicy) -> JobStats | None:
    if path is None:
        raise ValueError("save-restore needs a path on the shared storage")
    dom = leg.src.lookupByName(name)
    xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
    memory_bytes = int(dom.info()[2]) * 1024  # current memory, KiB: what the save writes
    with JobWatchdog(dom, deadline, memory_bytes, lambda: ()) as watchdog:
        try:
            phases.run("save on source", lambda: dom.save(path))
        except libvirt.libvirtError as exc:
            watchdog.stop()
            if watchdog.aborted_after_s is None:
                raise
            wait_job_ended(dom, name)
            why = f"; abortJob failed: {watchdog.abort_error}" if watchdog.abort_error else ""
            raise SaveAborted(f"save aborted after {watchdog.aborted_after_s:.1f} s ({watchdog.explain()}){why}; "
                              f"libvirt: {exc}", watchdog.aborted_after_s) from exc
    saved = read_completed_stats(leg.src, name)
    phases.run("restore on destination", lambda: leg.dst.restore(path))
    phases.run("define on destination", lambda: leg.dst.defineXML(xml))
    phases.run("undefine on source", lambda: dom.undefine())
    return saved


_PROCEDURES: dict[str, Callable[[Leg, str, _Phases, str | None, DeadlinePolicy], JobStats | None]] = {
    "offline": _offline,
    "cold": _cold,
    "save-restore": _save_restore,
}
KINDS: tuple[str, ...] = tuple(_PROCEDURES)


def move(kind: str, leg: Leg, name: str, save_path: str | None = None,
         deadline: DeadlinePolicy | None = None) -> OfflineOutcome:
    """Run procedure `kind` on running domain `name` along `leg`; errors are returned, not raised."""
    procedure = _PROCEDURES[kind]
    phases = _Phases()
    try:
        stats = procedure(leg, name, phases, save_path, deadline or DeadlinePolicy())
    except SaveAborted as exc:
        return OfflineOutcome(kind, phases.ms, None, str(exc), aborted_after_s=exc.after_s)
    except libvirt.libvirtError as exc:
        return OfflineOutcome(kind, phases.ms, None, str(exc))
    return OfflineOutcome(kind, phases.ms, stats, None)


@dataclass(frozen=True)
class MeasuredMove:
    """Outcome, record and problems of one measured offline/cold/save-restore move."""

    outcome: OfflineOutcome
    record: MigrationRecord
    problems: list[str]


def measured_move(
    kind: str, leg: Leg, name: str, *, guest: GuestAccess, test_id: str, storage: str,
    save_path: str | None = None, clock_hosts: Sequence[HostClock] = (), agent: Agent | None = None,
    deadline: DeadlinePolicy | None = None,
) -> MeasuredMove:
    """`move` with the probe running across it and the patterns written before and verified after."""
    areas = AREAS_BY_KIND[kind]
    waiting = dataclasses.replace(guest, answer_timeout_s=max(guest.answer_timeout_s, BOOT_ANSWER_TIMEOUT_S))
    meas = Measurement(waiting, integrity.new_seed(kind), areas, clock_hosts, agent)
    with meas:
        outcome = move(kind, leg, name, save_path, deadline)
        # An aborted save leaves the guest running on the source: its patterns must be intact there.
        meas.finish(verify=outcome.ok or outcome.aborted_after_s is not None)
    assert meas.probe is not None
    problems = meas.problems() if outcome.ok else []
    after_abort: list[str] = []
    if outcome.aborted_after_s is not None:
        after_abort, problems = abort_aftermath(leg, name, meas)
    notes = [f"phases (ms): {', '.join(f'{k} {v:g}' for k, v in outcome.phases_ms.items())}",
             "downtime = probe gap: last answer on the source to first answer on the destination"]
    notes += after_abort + meas.notes() + [f"PROBLEM: {p}" for p in problems]
    record = MigrationRecord(
        test_id=test_id, kind=kind, mode=kind, src=leg.src_name, dst=leg.dst_name, domain=name,
        started_at=meas.started_at, wall_s=round(outcome.wall_s, 3), ok=outcome.ok and not problems,
        storage=storage, error=outcome.error, stats=outcome.stats.to_dict() if outcome.stats else None,
        probe=meas.probe.to_dict(), notes=notes, dirty_rate_asked_mib_s=guest.dirty_rate_mib_s,
        clock_offsets=meas.clock_offsets,
        integrity=integrity.summary(meas.integrity_checks) if meas.integrity_checks else None,
        downtime_agreement=criteria.compare_downtime(None, meas.probe.longest_gap_ms).to_dict(),
    )
    return MeasuredMove(outcome, record, problems)
