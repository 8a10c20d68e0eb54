"""Live migration through libvirt-python, measured while it runs.

What `virsh migrate --live DOM qemu+ssh://DST/system` does, as API calls:
peer-to-peer modes hand the destination URI to the source libvirtd
(`migrateToURI3`), which opens its own ssh connection to the destination;
direct modes let this process drive both sides (`migrate3` with a
destination connection).  While the call runs, a sampler thread reads the
source's job info (remaining memory, throughput) for the progress chart.
Afterwards the completed-job statistics are read once, from the destination,
with KEEP_COMPLETED so that a second reader (virsh domjobinfo --completed)
still sees them.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import libvirt

from virtmig.migration.deadline import DeadlinePolicy, JobWatchdog, wait_job_ended
from virtmig.migration.events import DomainEvent, EventRecorder, event_loop_running
from virtmig.migration.jobstats import JobProgress, JobStats
from virtmig.migration.modes import MigrationMode

__all__ = [
    "MigrationOutcome", "ProgressSampler", "ProgressCallback", "migrate", "progress_line", "read_completed_stats",
]

#: Called from the sampler thread with each running-job sample.
ProgressCallback = Callable[[JobProgress], None]



@dataclass(frozen=True)
class MigrationOutcome:
    """What one call to `migrate` observed.

    notes: facts about how the job ran that the flags do not show (the
    downtime limit libvirt reports back, when post-copy was switched on).
    postcopy_switched: True/False for post-copy modes, None otherwise.
    postcopy_pass: the pass at which the source was seen paused for post-copy.
    events: the domain's libvirt events on both sides during the call ("src",
        "dst"; empty without an event loop, `virtmig.migration.events`).
    """

    mode: MigrationMode
    wall_s: float
    stats: JobStats | None
    progress: list[JobProgress]
    error: str | None
    notes: tuple[str, ...] = ()
    postcopy_switched: bool | None = None
    postcopy_pass: int | None = None
    events: tuple[DomainEvent, ...] = ()
    aborted_after_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def progress_line(sample: JobProgress) -> str:
    """One terminal line for a running-job sample: remaining MiB, MiB/s, pass."""
    def mib(value: int | None) -> str:
        return "?" if value is None else f"{value / 2**20:.1f}"

    if not sample.memory_iteration:
        # Before the first pass libvirt reports 0 remaining: not "almost done".
        return f"migrating: setting up ({sample.time_elapsed_ms or 0} ms)"
    return (f"migrating: {mib(sample.memory_remaining_bytes)} MiB left, "
            f"{mib(sample.memory_bytes_per_s)} MiB/s, pass {sample.memory_iteration or '?'}")


class ProgressSampler:
    """Samples the source's running job until stopped (a daemon thread).

    `on_sample`, if given, gets each sample as it is taken (on this thread):
    the terminal progress line.  An exception from it is kept, not raised
    here, so a broken display never aborts a migration.
    """

    def __init__(self, dom: libvirt.virDomain, interval_s: float = 0.1,
                 on_sample: ProgressCallback | None = None) -> None:
        self._dom = dom
        self._interval = interval_s
        self._on_sample = on_sample
        self._stop = threading.Event()
        self.samples: list[JobProgress] = []
        self.callback_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="virtmig-progress", daemon=True)

    def __enter__(self) -> ProgressSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                raw = self._dom.jobStats(0)
            except libvirt.libvirtError:
                return  # the domain left the source: migration is over
            if raw.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
                continue
            sample = JobProgress.from_libvirt(raw)
            self.samples.append(sample)
            if self._on_sample is not None and self.callback_error is None:
                try:
                    self._on_sample(sample)
                except Exception as exc:  # noqa: BLE001 - display only; keep migrating
                    self.callback_error = exc


def migrate(
    src: libvirt.virConnect,
    dst: libvirt.virConnect,
    dst_uri: str,
    name: str,
    mode: MigrationMode,
    *,
    unsafe: bool = False,
    on_progress: ProgressCallback | None = None,
    deadline: DeadlinePolicy | None = None,
) -> MigrationOutcome:
    """Migrate domain `name` from `src` to `dst` in `mode`, and measure it.

    `dst_uri` is the destination as the *source* libvirtd must reach it in
    peer-to-peer modes (e.g. qemu+ssh://h2/system); direct modes use `dst`.
    `unsafe` adds VIR_MIGRATE_UNSAFE, for storage libvirt cannot recognise as
    shared; the caller must say why in the record.  `on_progress` gets each
    running-job sample (from a thread).  Past `deadline` (virtmig.migration.deadline;
    default: derived from the guest's memory and the measured rate) the job
    is aborted and waited for: the outcome's error then says "aborted after S s".
    A libvirt error is returned in the outcome, not raised, so the caller can
    diagnose it and still record what was measured.
    """
    flags = mode.flags | (libvirt.VIR_MIGRATE_UNSAFE if unsafe else 0)
    dom = src.lookupByName(name)
    params: dict[str, Any] = dict(mode.params)
    notes: list[str] = []
    if mode.max_downtime_ms is not None:
        dom.migrateSetMaxDowntime(mode.max_downtime_ms, 0)
        notes.append(f"max downtime set to {mode.max_downtime_ms} ms; libvirt reads back "
                     f"{dom.migrateGetMaxDowntime(0)} ms")
    error: str | None = None
    postcopy: _PostcopySwitch | None = None
    memory_bytes = int(dom.info()[2]) * 1024  # current memory, KiB
    with contextlib.ExitStack() as stack:
        recorder = (stack.enter_context(EventRecorder({"src": src, "dst": dst}, name))
                    if event_loop_running() else None)
        started = time.monotonic()
        with ProgressSampler(dom, on_sample=on_progress) as sampler, \
                JobWatchdog(dom, deadline or DeadlinePolicy(), memory_bytes, lambda: sampler.samples) as watchdog:
            if mode.switch_to_postcopy:
                postcopy = _PostcopySwitch(dom)
            try:
                if mode.peer_to_peer:
                    dom.migrateToURI3(dst_uri, params, flags)
                else:
                    dom.migrate3(dst, params, flags)
            except libvirt.libvirtError as exc:
                error = str(exc)
            finally:
                if postcopy:
                    postcopy.stop()
                watchdog.stop()
        if watchdog.aborted_after_s is not None:
            if error is None:  # the job finished as abortJob came: it is not aborted
                notes.append(f"abortJob after {watchdog.aborted_after_s:.1f} s came too late: the job had completed")
            else:
                wait_job_ended(dom, name)
                why = f"; abortJob failed: {watchdog.abort_error}" if watchdog.abort_error else ""
                error = (f"aborted after {watchdog.aborted_after_s:.1f} s ({watchdog.explain()}){why}; "
                         f"libvirt: {error}")
        notes.append(watchdog.explain())
        wall = time.monotonic() - started
        if postcopy is not None:
            if recorder is not None:
                postcopy.confirm_from_events(recorder.events, started)
            notes.append(postcopy.describe())
        stats = None if error else read_completed_stats(dst, name)
        if stats is None and error is None and postcopy is not None and postcopy.switched_at is not None:
            stats = _postcopy_stats(recorder, notes)
        events = () if recorder is None else tuple(recorder.events)
        if events:
            notes.append("events: " + ", ".join(
                f"{e.where} {e.name}{'' if e.detail < 0 else f'({e.detail})'} "
                f"+{(e.at_mono_ns / 1e9 - started) * 1e3:.0f} ms" for e in events))
    return MigrationOutcome(
        mode=mode, wall_s=wall, stats=stats, progress=sampler.samples, error=error, notes=tuple(notes),
        postcopy_switched=None if postcopy is None else postcopy.switched_at is not None,
        postcopy_pass=None if postcopy is None else postcopy.switched_at, events=events,
        aborted_after_s=watchdog.aborted_after_s if error else None,
    )


#: How long the rest of a post-copy migration may take after libvirt's call returned, s.
POSTCOPY_FINISH_TIMEOUT_S = 120.0


def _postcopy_stats(recorder: EventRecorder | None, notes: list[str]) -> JobStats | None:
    """A post-copy job's statistics, from its job-completed event (a note says whence and when).

    libvirt 9.0 keeps no completed-job statistics on the destination after
    a real post-copy migration (jobStats(COMPLETED) answers type NONE, and
    the source domain is gone); the source's JOB_COMPLETED event carries them.
    """
    if recorder is None:
        notes.append("no libvirt event loop: the post-copy job's statistics could not be read")
        return None
    t0 = time.monotonic()
    for where in ("src", "dst"):
        event = recorder.wait_job_completed(where, POSTCOPY_FINISH_TIMEOUT_S if where == "src" else 0)
        if event is not None:
            notes.append(f"statistics from the {where} job-completed event, {time.monotonic() - t0:.2f} s after "
                         "libvirt's call returned (libvirt keeps none on the destination after post-copy)")
            return JobStats.from_libvirt({"type": libvirt.VIR_DOMAIN_JOB_COMPLETED, **event.params})
    notes.append(f"no job-completed event within {POSTCOPY_FINISH_TIMEOUT_S:g} s of the post-copy call's return")
    return None


def read_completed_stats(conn: libvirt.virConnect, name: str) -> JobStats | None:
    """The completed-job statistics of `name` on `conn`, read without consuming them."""
    flags = libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED | libvirt.VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED
    try:
        raw = conn.lookupByName(name).jobStats(flags)
    except libvirt.libvirtError:
        return None  # e.g. an inactive domain after save: there is no job to read
    if not raw or raw.get("type") == libvirt.VIR_DOMAIN_JOB_NONE:
        return None
    return JobStats.from_libvirt(raw)


class _PostcopySwitch:
    """Asks for post-copy as soon as the job runs, then confirms that QEMU switched.

    Why not after the first pass, as operators often do: QEMU switches only
    at an iteration check that still finds more pending than it can send
    within the downtime limit; a guest that dirties little lets pre-copy
    converge at the end of its first pass, before a request made then is
    seen, and the post-copy column then "never switched" on a healthy pair
    (issue #13: trip 3 of 3).  Asked for at once, the request is set before
    QEMU's first iteration check, when nearly all RAM is pending and none of
    it holds pre-copy back (RAM is post-copiable), so QEMU switches there.
    Requests made before libvirt has started QEMU's migration are refused
    (no outgoing migration yet) and retried every `POLL_S`; an accepted one
    is repeated every `REPEAT_S` until the switch is seen (it is idempotent,
    and QEMU forgets a request made before its `migrate` command started).

    requested_at: the pass (libvirt's memory_iteration) when the request was
    accepted; switched_at: the pass when the source was seen paused for
    post-copy (VIR_DOMAIN_PAUSED_POSTCOPY), the evidence that it switched;
    switched_after_ms: when that was, from the switcher's start.
    """

    POLL_S = 0.005
    REPEAT_S = 0.1

    def __init__(self, dom: libvirt.virDomain) -> None:
        self._dom = dom
        self._stop = threading.Event()
        self._started = time.monotonic()
        self.requested_at: int | None = None
        self.switched_at: int | None = None
        self.switched_after_ms: float | None = None
        self.seen_by = "the source's state (paused: post-copy)"
        self.refusals: dict[str, int] = {}
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="virtmig-postcopy", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def describe(self) -> str:
        refused = "; ".join(f"{n} x {msg!r}" for msg, n in self.refusals.items()) or "none"
        asked = (f"never accepted; refusals: {refused}" if self.requested_at is None
                 else f"accepted at pass {self.requested_at}; refusals before: {refused}")
        if self.switched_at is not None:
            return (f"switched to post-copy {self.switched_after_ms:.0f} ms into the job (pass {self.switched_at}), "
                    f"seen by {self.seen_by} (request {asked})")
        return (f"never seen in post-copy (request {asked}; "
                f"{self.error or 'the job ended before the source paused for post-copy'})")

    def confirm_from_events(self, events: Sequence[DomainEvent], started_s: float) -> None:
        """Take the switch as seen when the source said it paused for post-copy (or the destination resumed so).

        The state poll can miss a short post-copy phase between two reads;
        libvirt's lifecycle events cannot: SUSPENDED with detail POSTCOPY on
        the source, RESUMED with detail POSTCOPY on the destination.
        """
        if self.switched_at is not None:
            return
        for e in events:
            if e.kind != "lifecycle":
                continue
            if ((e.where, e.event, e.detail) in (
                    ("src", libvirt.VIR_DOMAIN_EVENT_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY),
                    ("dst", libvirt.VIR_DOMAIN_EVENT_RESUMED, libvirt.VIR_DOMAIN_EVENT_RESUMED_POSTCOPY))):
                self.switched_at = self.requested_at if self.requested_at is not None else -1
                self.switched_after_ms = (e.at_mono_ns / 1e9 - started_s) * 1e3
                self.seen_by = f"the {e.where} {e.name}(post-copy) event"
                self.error = None
                return

    def _pass(self) -> int:
        return int(self._dom.jobStats(0).get("memory_iteration", 0))

    def _run(self) -> None:
        while self.requested_at is None and not self._stop.wait(self.POLL_S):
            try:
                self._dom.migrateStartPostCopy(0)
            except libvirt.libvirtError as exc:  # not yet an outgoing migration (or gone): try again
                self.refusals[str(exc)] = self.refusals.get(str(exc), 0) + 1
                continue
            try:
                self.requested_at = self._pass()
            except libvirt.libvirtError:
                self.requested_at = -1  # accepted, but the job was over before its pass could be read
        repeat_at = time.monotonic() + self.REPEAT_S
        while not self._stop.is_set():
            try:
                if time.monotonic() >= repeat_at:
                    repeat_at = time.monotonic() + self.REPEAT_S
                    with contextlib.suppress(libvirt.libvirtError):  # the job may just have switched or ended
                        self._dom.migrateStartPostCopy(0)
                state, reason = self._dom.state(0)
                if state == libvirt.VIR_DOMAIN_PAUSED and reason == libvirt.VIR_DOMAIN_PAUSED_POSTCOPY:
                    self.switched_after_ms = (time.monotonic() - self._started) * 1e3
                    self.switched_at = self._pass()
                    return
                if state == libvirt.VIR_DOMAIN_PAUSED and reason == libvirt.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED:
                    self.error = "post-copy failed (source paused: post-copy failed)"
                    return
            except libvirt.libvirtError as exc:
                self.error = f"the source domain could no longer be read: {exc}"
                return
            self._stop.wait(self.POLL_S)


def postcopy_blocker(read_file: Callable[[str], str]) -> str | None:
    """Why post-copy cannot work on a destination host, or None if nothing is known to stop it.

    Post-copy needs userfaultfd(2) in the destination QEMU.  Kernels refuse it
    to unprivileged processes unless vm.unprivileged_userfaultfd is 1 (QEMU
    7.2 does not use /dev/userfaultfd), and libvirt runs QEMU as qemu.conf's
    `user`.  `read_file` reads a file on the host (e.g. Host.read_text).
    """
    try:
        sysctl = read_file("/proc/sys/vm/unprivileged_userfaultfd").strip()
        conf = read_file("/etc/libvirt/qemu.conf")
    except OSError:
        return None
    user = "root"
    for line in conf.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "user" and not line.lstrip().startswith("#"):
            user = value.strip().strip('"')
    if sysctl == "0" and user not in ("root", "0", "+0"):
        return (f"QEMU runs as {user!r} and vm.unprivileged_userfaultfd=0: the kernel refuses it the "
                "userfaultfd post-copy needs on the destination")
    return None
