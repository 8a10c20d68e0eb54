"""When a fault comes and goes during a migration, and what the record says about it.

`FaultWindow` runs beside `virtmig.migration.measure.measured_live_migration`:
it sees the running job's progress samples (it wraps the progress
callback), injects the fault once the job has moved memory for
`FaultKind.inject_after_s`, holds it for `hold_s` and lifts it.  Lifting
is never left to chance: leaving the window lifts a fault still in place,
after a failure too.  Times are seconds into the migration job, as libvirt
counts them (the job's elapsed time at the sample that triggered the
fault), so "injected at 1.4 s" means 1.4 s after libvirt started the job.

`FaultRecord` is what a record carries (`MigrationRecord.fault`), and
`fault_problems` judges the end state, both pure.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from types import TracebackType
from typing import Any

import libvirt

from virtmig.guest import domains
from virtmig.migration import criteria
from virtmig.migration.faults import Fault, FaultKind
from virtmig.migration.jobstats import JobProgress
from virtmig.migration.measure import MeasuredMigration
from virtmig.migration.runner import ProgressCallback
from virtmig.waiters import WaitTimeout, wait_for

#: How long the window waits for the job to move memory before it gives up on injecting.
TRIGGER_TIMEOUT_S = 120.0
#: How long the pair may take to settle after a fault (a restarted libvirtd removes
#: the half-made incoming domain; an aborted job is cleaned up).
SETTLE_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class FaultRecord:
    """The fault of one migration, for its record (JSON types only).

    injected_at_s / lifted_at_s: seconds into the migration job when the fault was in
        place (its commands done) and gone again (None: never).
    recovered_at_s: when the guest was found safe again (answering on one
        host, the other host clean, no job left), seconds into the job.
    recovery_s: from the fault's end (lifted) to recovered.
    unreachable_ms: the probe's longest gap around the migration.
    migration: "completed", "failed" or "aborted" (by the harness's deadline).
    guest_on: the host the guest ended on ("" if on none, or on both).
    steps: what was done on the hosts, in order.
    """

    kind: str
    what: str
    injected_at_s: float | None
    lifted_at_s: float | None
    recovered_at_s: float | None
    recovery_s: float | None
    unreachable_ms: float | None
    migration: str
    guest_on: str
    steps: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["steps"] = list(self.steps)
        return raw

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FaultRecord:
        return cls(**{**raw, "steps": tuple(raw.get("steps", ()))})

    def describe(self) -> str:
        """One line for the report's notes and the verdict."""
        def s(value: float | None) -> str:
            return "never" if value is None else f"{value:.1f} s"

        gap = "?" if self.unreachable_ms is None else f"{self.unreachable_ms:.0f} ms"
        recovery = "not recovered" if self.recovery_s is None else f"recovered {self.recovery_s:.1f} s after"
        return (f"{self.kind}: injected at {s(self.injected_at_s)}, lifted at {s(self.lifted_at_s)} into the "
                f"migration; migration {self.migration}, guest on {self.guest_on or 'no single host'}, "
                f"unreachable {gap}, {recovery}")


def migration_end(error: str | None, aborted_after_s: float | None) -> str:
    """"completed", "aborted" (the harness's deadline) or "failed", from the runner's outcome."""
    if error is None:
        return "completed"
    return "aborted" if aborted_after_s is not None else "failed"


def _has_job(conn: libvirt.virConnect, name: str) -> bool:
    dom = domains.lookup(conn, name)
    try:
        return dom is not None and dom.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE
    except libvirt.libvirtError:
        return False  # gone between the lookup and the read: no job there


def wait_settled(src: libvirt.virConnect, dst: libvirt.virConnect, name: str,
                 timeout: float = SETTLE_TIMEOUT_S) -> tuple[str, str]:
    """(source state, destination state) once one host runs the guest, the other has none, and no job is left.

    On timeout, the states as last seen: `fault_problems` then says what is wrong.
    """
    last = ("not read", "not read")

    def settled() -> tuple[str, str] | None:
        nonlocal last
        last = (domains.state_name(src, name), domains.state_name(dst, name))
        if sorted(last) == ["absent", "running"] and not _has_job(src, name) and not _has_job(dst, name):
            return last
        return None

    try:
        return wait_for(settled, target=f"{name} on the pair", state="on one host, absent from the other, no job",
                        timeout=timeout, interval=0.5, describe=lambda: f"source {last[0]}, destination {last[1]}")
    except WaitTimeout:
        return last


def fault_problems(kind: FaultKind, *, injected: bool, migration: str, src_state: str, dst_state: str,
                   integrity: dict[str, Any] | None, answers: bool) -> list[str]:
    """What is wrong after a faulted migration (empty: the guest came through safe).

    The guest must run on exactly one host (the source when the kind
    demands it, else the end libvirt reports) and be absent from the other,
    answer, and keep its RAM and disk patterns.  A fault that never came
    proves nothing, so that is a problem too.
    """
    found = []
    if not injected:
        found.append(f"the migration ended before the {kind.name} fault could be injected")
    if kind.stays_on_source and migration == "completed":
        found.append(f"the migration completed despite {kind.name}: libvirt should have given it up")
    if kind.deadline_s is not None and migration != "aborted":
        found.append(f"the migration was not ended by the harness's deadline (it {migration})")
    here, there = ("destination", "source") if migration == "completed" else ("source", "destination")
    on, off = (dst_state, src_state) if migration == "completed" else (src_state, dst_state)
    if on != "running":
        found.append(f"after the {migration} migration the guest is {on} on the {here}, not running")
    if off != "absent":
        found.append(f"after the {migration} migration a domain is left on the {there} ({off})")
    if not answers:
        found.append("the guest does not answer after the fault")
    if not integrity:
        found.append("the guest's RAM and disk patterns were not verified")
    else:
        found += [f"{area} pattern not intact after the move: {reply}" for area, reply in sorted(integrity.items())
                  if reply != "ok"]
    return found


def faulted_move_problems(kind: FaultKind, measured: MeasuredMigration, *, injected: bool, src_state: str,
                          dst_state: str, answers: bool) -> list[str]:
    """Everything wrong with a faulted migration: `fault_problems`, and for a completed move the live suite's own.

    A completed move is judged as the live suite judges it too (statistics,
    the probe); its silent guest is then said once, by the probe's problem,
    as the known QEMU 7.2 TCG crash's diagnosis (tests/inner_run.py) expects.
    """
    ended = migration_end(measured.outcome.error, measured.outcome.aborted_after_s)
    as_move = measured.problems if ended == "completed" else []
    silent = set(criteria.probe_problems(measured.probe, answered_after=False)) & set(as_move)
    return as_move + [p for p in fault_problems(
        kind, injected=injected, migration=ended, src_state=src_state, dst_state=dst_state,
        integrity=measured.record.integrity, answers=answers or bool(silent)) if p not in as_move]


@dataclass
class FaultWindow:
    """Injects `fault` once the job has moved memory a while, lifts it after `hold_s`; always lifts on exit.

    Use as a context manager around the migration, passing `on_progress`
    as its progress callback; call `migration_returned()` right after it.
    """

    fault: Fault
    forward: ProgressCallback | None = None
    trigger_timeout_s: float = TRIGGER_TIMEOUT_S
    steps: list[str] = field(default_factory=list)
    injected_at_s: float | None = None
    lifted_at_s: float | None = None
    recovered_at_s: float | None = None
    error: str | None = None
    _job_start: float | None = None
    _attempted: bool = False
    _latest: tuple[float, JobProgress] | None = None
    _ended: threading.Event = field(default_factory=threading.Event)
    _abandon: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def on_progress(self, sample: JobProgress) -> None:
        self._latest = (time.monotonic(), sample)
        if self.forward is not None:
            self.forward(sample)

    def _since_job_start(self) -> float | None:
        return None if self._job_start is None else round(time.monotonic() - self._job_start, 3)

    def _due(self) -> JobProgress | None:
        """The sample that says the job has moved memory long enough (None: not yet), for wait_for."""
        if self._ended.is_set():
            raise _Ended
        latest = self._latest
        if latest is None:
            return None
        seen, sample = latest
        if sample.running and (sample.memory_iteration or 0) >= 1 and \
                (sample.time_elapsed_ms or 0) >= self.fault.kind.inject_after_s * 1000:
            self._job_start = seen - (sample.time_elapsed_ms or 0) / 1000
            return sample
        return None

    def _run(self) -> None:
        try:
            wait_for(self._due, target="the migration job", state=f"moving memory for "
                     f"{self.fault.kind.inject_after_s:g} s", timeout=self.trigger_timeout_s, interval=0.05)
            with self._lock:
                if self._ended.is_set():
                    return
                self._attempted = True  # from here on the fault may be (half) made: lifting is due
                self.steps.append(self.fault.inject())
                self.injected_at_s = self._since_job_start()  # in place now
            hold = self.fault.kind.hold_s
            if hold is not None:  # held its whole time, even when the migration gave up early
                self._abandon.wait(hold)
                self._lift()
        except _Ended:
            return
        except (WaitTimeout, Exception) as exc:  # noqa: BLE001 - kept for the record; the exit lifts
            self.error = f"{type(exc).__name__}: {exc}"

    def _lift(self) -> None:
        with self._lock:
            if self._attempted and self.lifted_at_s is None:
                self.steps.append(self.fault.lift())
                self.lifted_at_s = self._since_job_start()  # gone now

    def __enter__(self) -> FaultWindow:
        self._thread = threading.Thread(target=self._run, name="virtmig-fault", daemon=True)
        self._thread.start()
        return self

    def migration_returned(self) -> None:
        """The migration call returned: a fault not yet injected never will be; a held one is lifted on time."""
        self._ended.set()
        if self._thread is not None:
            self._thread.join(timeout=(self.fault.kind.hold_s or 0) + 60)
        if self.fault.kind.hold_s is None:
            self._lift()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._ended.set()
        self._abandon.set()
        if self._thread is not None:
            self._thread.join(timeout=(self.fault.kind.hold_s or 0) + 60)
        self._lift()  # also a half-made fault (inject() raised)

    def recovered(self) -> None:
        """The guest was found safe again: note when."""
        self.recovered_at_s = self._since_job_start()

    def record(self, *, migration: str, guest_on: str, unreachable_ms: float | None) -> FaultRecord:
        recovery = (None if self.recovered_at_s is None or self.lifted_at_s is None
                    else round(self.recovered_at_s - self.lifted_at_s, 3))
        steps = [*self.steps, *([f"error: {self.error}"] if self.error else [])]
        return FaultRecord(self.fault.kind.name, self.fault.kind.what, self.injected_at_s, self.lifted_at_s,
                           self.recovered_at_s, recovery, unreachable_ms, migration, guest_on, tuple(steps))


class _Ended(Exception):  # noqa: N818 - a signal between the window's methods, not an error
    """The migration call returned before the fault was due."""
