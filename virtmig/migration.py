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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import libvirt

from virtmig.jobstats import JobProgress, JobStats

#: Flags every live mode shares: the domain keeps running, is defined on the
#: destination afterwards and no longer on the source.
LIVE_BASE = libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE


@dataclass(frozen=True)
class MigrationMode:
    """A named set of migration flags and parameters (one column of the matrix).

    postcopy_after_first_pass: switch to post-copy once the first pass is done.
    """

    name: str
    flags: int
    params: Mapping[str, int] = field(default_factory=dict)
    postcopy_after_first_pass: bool = False

    @property
    def peer_to_peer(self) -> bool:
        return bool(self.flags & libvirt.VIR_MIGRATE_PEER2PEER)

    def with_flags(self, extra: int, suffix: str) -> MigrationMode:
        return MigrationMode(f"{self.name}-{suffix}", self.flags | extra, self.params, self.postcopy_after_first_pass)


P2P = MigrationMode("p2p", LIVE_BASE | libvirt.VIR_MIGRATE_PEER2PEER)
DIRECT = MigrationMode("direct", LIVE_BASE)
TUNNELLED = MigrationMode("p2p-tunnelled", LIVE_BASE | libvirt.VIR_MIGRATE_PEER2PEER | libvirt.VIR_MIGRATE_TUNNELLED)


@dataclass(frozen=True)
class MigrationOutcome:
    """What one call to `migrate` observed."""

    mode: MigrationMode
    wall_s: float
    stats: JobStats | None
    progress: list[JobProgress]
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


class ProgressSampler:
    """Samples the source's running job until stopped (a daemon thread)."""

    def __init__(self, dom: libvirt.virDomain, interval_s: float = 0.1) -> None:
        self._dom = dom
        self._interval = interval_s
        self._stop = threading.Event()
        self.samples: list[JobProgress] = []
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
            self.samples.append(JobProgress.from_libvirt(raw))


def migrate(
    src: libvirt.virConnect,
    dst: libvirt.virConnect,
    dst_uri: str,
    name: str,
    mode: MigrationMode,
    *,
    unsafe: bool = False,
) -> MigrationOutcome:
    """Migrate domain `name` from `src` to `dst` in `mode`, and measure it.

    `dst_uri` is the destination as the *source* libvirtd must reach it in
    peer-to-peer modes (e.g. qemu+ssh://h2/system); direct modes use `dst`.
    `unsafe` adds VIR_MIGRATE_UNSAFE, for storage libvirt cannot recognise as
    shared; the caller must say why in the record.
    A libvirt error is returned in the outcome, not raised, so the caller can
    diagnose it and still record what was measured.
    """
    flags = mode.flags | (libvirt.VIR_MIGRATE_UNSAFE if unsafe else 0)
    dom = src.lookupByName(name)
    params: dict[str, Any] = dict(mode.params)
    error: str | None = None
    started = time.monotonic()
    with ProgressSampler(dom) as sampler:
        postcopy = _PostcopySwitch(dom) if mode.postcopy_after_first_pass else None
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
    wall = time.monotonic() - started
    stats = None if error else read_completed_stats(dst, name)
    return MigrationOutcome(mode=mode, wall_s=wall, stats=stats, progress=sampler.samples, error=error)


def read_completed_stats(conn: libvirt.virConnect, name: str) -> JobStats | None:
    """The completed-job statistics of `name` on `conn`, read without consuming them."""
    flags = libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED | libvirt.VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED
    raw = conn.lookupByName(name).jobStats(flags)
    if not raw or raw.get("type") == libvirt.VIR_DOMAIN_JOB_NONE:
        return None
    return JobStats.from_libvirt(raw)


class _PostcopySwitch:
    """Switches a running migration to post-copy after its first pass."""

    def __init__(self, dom: libvirt.virDomain) -> None:
        self._dom = dom
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="virtmig-postcopy", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                raw = self._dom.jobStats(0)
                if int(raw.get("memory_iteration", 0)) >= 1:
                    self._dom.migrateStartPostCopy(0)
                    return
            except libvirt.libvirtError:
                return
