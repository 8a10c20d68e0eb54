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

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import libvirt

from virtmig.migration.deadline import DeadlinePolicy, JobWatchdog, wait_job_ended
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
    """

    mode: MigrationMode
    wall_s: float
    stats: JobStats | None
    progress: list[JobProgress]
    error: str | None
    notes: tuple[str, ...] = ()
    postcopy_switched: bool | None = None
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
    started = time.monotonic()
    with ProgressSampler(dom, on_sample=on_progress) as sampler, \
            JobWatchdog(dom, deadline or DeadlinePolicy(), memory_bytes, lambda: sampler.samples) as watchdog:
        if mode.postcopy_after_first_pass:
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
        notes.append(postcopy.describe())
    stats = None if error else read_completed_stats(dst, name)
    return MigrationOutcome(
        mode=mode, wall_s=wall, stats=stats, progress=sampler.samples, error=error, notes=tuple(notes),
        postcopy_switched=None if postcopy is None else postcopy.switched_at is not None,
        aborted_after_s=watchdog.aborted_after_s if error else None,
    )


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
    """Switches a running migration to post-copy after its first pass.

    QEMU's pass counter (libvirt's memory_iteration, QEMU's dirty-sync-count)
    is 1 during the first pass (the first bitmap sync happens at setup) and
    becomes 2 when the first pass is over; that is the moment to switch.
    """

    def __init__(self, dom: libvirt.virDomain) -> None:
        self._dom = dom
        self._stop = threading.Event()
        self.switched_at: int | None = None
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="virtmig-postcopy", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def describe(self) -> str:
        if self.switched_at is not None:
            return f"switched to post-copy at pass {self.switched_at}"
        return f"never switched to post-copy ({self.error or 'the job ended before its second pass'})"

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                raw = self._dom.jobStats(0)
                iteration = int(raw.get("memory_iteration", 0))
                if iteration >= 2:
                    self._dom.migrateStartPostCopy(0)
                    self.switched_at = iteration
                    return
            except libvirt.libvirtError as exc:
                self.error = str(exc)
                return


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
