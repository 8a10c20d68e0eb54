"""Typed migration job statistics, parsed from libvirt's jobStats() dict.

libvirt-python's `virDomain.jobStats(flags)` returns a flat dict: the job
type under "type" (added by the binding) plus the typed parameters named by
the VIR_DOMAIN_JOB_* macros of libvirt-domain.h, in libvirt's units
(milliseconds, bytes, bytes/s, pages, pages/s). Benchmarks compare these
numbers across runs and hosts, so each field here carries its unit in its
name, and a value of the wrong type or sign is an error rather than a
silently wrong figure. Keys are optional because libvirt omits what QEMU did
not report (e.g. downtime_net without a known clock delta between hosts,
disk_* without storage migration, everything but "type" for no job).

Read completed statistics with
`dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED |
libvirt.VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED)`: without KEEP_COMPLETED the
first read discards them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Final, Literal

import libvirt

_Kind = Literal["u64", "int", "bool", "str"]
_U64_MAX: Final = 2**64 - 1

#: Added by libvirt-python, not a typed parameter, so libvirt has no macro.
KEY_TYPE: Final = "type"

#: (dataclass field, libvirt key, value kind) for JobStats, in header order.
_STATS_FIELDS: Final[tuple[tuple[str, str, _Kind], ...]] = (
    ("job_type", KEY_TYPE, "int"),
    ("operation", libvirt.VIR_DOMAIN_JOB_OPERATION, "int"),
    ("success", libvirt.VIR_DOMAIN_JOB_SUCCESS, "bool"),
    ("errmsg", libvirt.VIR_DOMAIN_JOB_ERRMSG, "str"),
    ("time_elapsed_ms", libvirt.VIR_DOMAIN_JOB_TIME_ELAPSED, "u64"),
    ("time_elapsed_net_ms", libvirt.VIR_DOMAIN_JOB_TIME_ELAPSED_NET, "u64"),
    ("time_remaining_ms", libvirt.VIR_DOMAIN_JOB_TIME_REMAINING, "u64"),
    ("downtime_ms", libvirt.VIR_DOMAIN_JOB_DOWNTIME, "u64"),
    ("downtime_net_ms", libvirt.VIR_DOMAIN_JOB_DOWNTIME_NET, "u64"),
    ("setup_time_ms", libvirt.VIR_DOMAIN_JOB_SETUP_TIME, "u64"),
    ("data_total_bytes", libvirt.VIR_DOMAIN_JOB_DATA_TOTAL, "u64"),
    ("data_processed_bytes", libvirt.VIR_DOMAIN_JOB_DATA_PROCESSED, "u64"),
    ("data_remaining_bytes", libvirt.VIR_DOMAIN_JOB_DATA_REMAINING, "u64"),
    ("memory_total_bytes", libvirt.VIR_DOMAIN_JOB_MEMORY_TOTAL, "u64"),
    ("memory_processed_bytes", libvirt.VIR_DOMAIN_JOB_MEMORY_PROCESSED, "u64"),
    ("memory_remaining_bytes", libvirt.VIR_DOMAIN_JOB_MEMORY_REMAINING, "u64"),
    ("memory_constant_pages", libvirt.VIR_DOMAIN_JOB_MEMORY_CONSTANT, "u64"),
    ("memory_normal_pages", libvirt.VIR_DOMAIN_JOB_MEMORY_NORMAL, "u64"),
    ("memory_normal_bytes", libvirt.VIR_DOMAIN_JOB_MEMORY_NORMAL_BYTES, "u64"),
    ("memory_bytes_per_s", libvirt.VIR_DOMAIN_JOB_MEMORY_BPS, "u64"),
    ("memory_dirty_rate_pages_per_s", libvirt.VIR_DOMAIN_JOB_MEMORY_DIRTY_RATE, "u64"),
    ("memory_page_size_bytes", libvirt.VIR_DOMAIN_JOB_MEMORY_PAGE_SIZE, "u64"),
    ("memory_iteration", libvirt.VIR_DOMAIN_JOB_MEMORY_ITERATION, "u64"),
    ("memory_postcopy_requests", libvirt.VIR_DOMAIN_JOB_MEMORY_POSTCOPY_REQS, "u64"),
    ("disk_total_bytes", libvirt.VIR_DOMAIN_JOB_DISK_TOTAL, "u64"),
    ("disk_processed_bytes", libvirt.VIR_DOMAIN_JOB_DISK_PROCESSED, "u64"),
    ("disk_remaining_bytes", libvirt.VIR_DOMAIN_JOB_DISK_REMAINING, "u64"),
    ("disk_bytes_per_s", libvirt.VIR_DOMAIN_JOB_DISK_BPS, "u64"),
    ("disk_temp_used_bytes", libvirt.VIR_DOMAIN_JOB_DISK_TEMP_USED, "u64"),
    ("disk_temp_total_bytes", libvirt.VIR_DOMAIN_JOB_DISK_TEMP_TOTAL, "u64"),
    ("compression_cache_bytes", libvirt.VIR_DOMAIN_JOB_COMPRESSION_CACHE, "u64"),
    ("compression_bytes", libvirt.VIR_DOMAIN_JOB_COMPRESSION_BYTES, "u64"),
    ("compression_pages", libvirt.VIR_DOMAIN_JOB_COMPRESSION_PAGES, "u64"),
    ("compression_cache_misses", libvirt.VIR_DOMAIN_JOB_COMPRESSION_CACHE_MISSES, "u64"),
    ("compression_overflow", libvirt.VIR_DOMAIN_JOB_COMPRESSION_OVERFLOW, "u64"),
    ("auto_converge_throttle_pct", libvirt.VIR_DOMAIN_JOB_AUTO_CONVERGE_THROTTLE, "int"),
)

#: Keys of a running-job sample that progress tracking needs.
_PROGRESS_FIELDS: Final[tuple[tuple[str, str, _Kind], ...]] = (
    ("job_type", KEY_TYPE, "int"),
    ("time_elapsed_ms", libvirt.VIR_DOMAIN_JOB_TIME_ELAPSED, "u64"),
    ("memory_remaining_bytes", libvirt.VIR_DOMAIN_JOB_MEMORY_REMAINING, "u64"),
    ("memory_bytes_per_s", libvirt.VIR_DOMAIN_JOB_MEMORY_BPS, "u64"),
    ("data_remaining_bytes", libvirt.VIR_DOMAIN_JOB_DATA_REMAINING, "u64"),
    ("memory_iteration", libvirt.VIR_DOMAIN_JOB_MEMORY_ITERATION, "u64"),
    ("memory_dirty_rate_pages_per_s", libvirt.VIR_DOMAIN_JOB_MEMORY_DIRTY_RATE, "u64"),
)

JOB_TYPE_NAMES: Final[Mapping[int, str]] = {
    libvirt.VIR_DOMAIN_JOB_NONE: "none",
    libvirt.VIR_DOMAIN_JOB_BOUNDED: "bounded",
    libvirt.VIR_DOMAIN_JOB_UNBOUNDED: "unbounded",
    libvirt.VIR_DOMAIN_JOB_COMPLETED: "completed",
    libvirt.VIR_DOMAIN_JOB_FAILED: "failed",
    libvirt.VIR_DOMAIN_JOB_CANCELLED: "cancelled",
}

OPERATION_NAMES: Final[Mapping[int, str]] = {
    libvirt.VIR_DOMAIN_JOB_OPERATION_UNKNOWN: "unknown",
    libvirt.VIR_DOMAIN_JOB_OPERATION_START: "start",
    libvirt.VIR_DOMAIN_JOB_OPERATION_SAVE: "save",
    libvirt.VIR_DOMAIN_JOB_OPERATION_RESTORE: "restore",
    libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN: "migration_in",
    libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT: "migration_out",
    libvirt.VIR_DOMAIN_JOB_OPERATION_SNAPSHOT: "snapshot",
    libvirt.VIR_DOMAIN_JOB_OPERATION_SNAPSHOT_REVERT: "snapshot_revert",
    libvirt.VIR_DOMAIN_JOB_OPERATION_DUMP: "dump",
    libvirt.VIR_DOMAIN_JOB_OPERATION_BACKUP: "backup",
    libvirt.VIR_DOMAIN_JOB_OPERATION_SNAPSHOT_DELETE: "snapshot_delete",
}

Scalar = int | bool | str | float


class JobStatsError(ValueError):
    """A job statistics dict has a value of the wrong type or range."""


def _check(key: str, value: object, kind: _Kind) -> int | bool | str:
    if kind == "bool":
        if not isinstance(value, bool):
            raise JobStatsError(f"{key}: expected bool, got {type(value).__name__} {value!r}")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise JobStatsError(f"{key}: expected str, got {type(value).__name__} {value!r}")
        return value
    # bool is an int subclass; True as a byte count is a bug upstream, not 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise JobStatsError(f"{key}: expected int, got {type(value).__name__} {value!r}")
    if value < 0:
        raise JobStatsError(f"{key}: negative value {value}")
    if kind == "u64" and value > _U64_MAX:
        raise JobStatsError(f"{key}: {value} does not fit an unsigned 64-bit value")
    return value


def _parse(
    d: Mapping[str, object], table: tuple[tuple[str, str, _Kind], ...]
) -> tuple[dict[str, object], dict[str, Scalar]]:
    """Known keys into field values (None when absent), the rest as extras."""
    if not isinstance(d, Mapping):
        raise JobStatsError(f"expected a mapping, got {type(d).__name__}")
    values: dict[str, object] = {}
    known: set[str] = set()
    for name, key, kind in table:
        known.add(key)
        raw = d.get(key)
        values[name] = None if raw is None else _check(key, raw, kind)
    extra: dict[str, Scalar] = {}
    for key, raw in d.items():
        if key in known:
            continue
        if not isinstance(raw, (int, bool, str, float)):
            raise JobStatsError(f"{key}: unexpected value type {type(raw).__name__}")
        extra[str(key)] = raw
    return values, extra


@dataclass(frozen=True)
class JobStats:
    """Statistics of one (usually completed) job; units are in field names.

    `downtime_ms` is libvirt's measured guest pause (CPUs stopped to resumed);
    `downtime_net_ms` excludes the hand-over between hosts and needs both
    hosts' clocks known, so it is often absent. `extra` keeps keys this
    version does not know, so newer libvirt output is recorded, not dropped.
    """

    job_type: int | None = None
    operation: int | None = None
    success: bool | None = None
    errmsg: str | None = None
    time_elapsed_ms: int | None = None
    time_elapsed_net_ms: int | None = None
    time_remaining_ms: int | None = None
    downtime_ms: int | None = None
    downtime_net_ms: int | None = None
    setup_time_ms: int | None = None
    data_total_bytes: int | None = None
    data_processed_bytes: int | None = None
    data_remaining_bytes: int | None = None
    memory_total_bytes: int | None = None
    memory_processed_bytes: int | None = None
    memory_remaining_bytes: int | None = None
    memory_constant_pages: int | None = None
    memory_normal_pages: int | None = None
    memory_normal_bytes: int | None = None
    memory_bytes_per_s: int | None = None
    memory_dirty_rate_pages_per_s: int | None = None
    memory_page_size_bytes: int | None = None
    memory_iteration: int | None = None
    memory_postcopy_requests: int | None = None
    disk_total_bytes: int | None = None
    disk_processed_bytes: int | None = None
    disk_remaining_bytes: int | None = None
    disk_bytes_per_s: int | None = None
    disk_temp_used_bytes: int | None = None
    disk_temp_total_bytes: int | None = None
    compression_cache_bytes: int | None = None
    compression_bytes: int | None = None
    compression_pages: int | None = None
    compression_cache_misses: int | None = None
    compression_overflow: int | None = None
    auto_converge_throttle_pct: int | None = None
    extra: Mapping[str, Scalar] = field(default_factory=dict)

    @classmethod
    def from_libvirt(cls, d: Mapping[str, object]) -> JobStats:
        """Parse jobStats() output; missing keys become None, bad values raise."""
        values, extra = _parse(d, _STATS_FIELDS)
        return cls(**values, extra=extra)  # type: ignore[arg-type]

    @property
    def dirty_rate_bytes_per_s(self) -> int | None:
        """Guest dirtying rate in bytes/s (libvirt reports pages/s)."""
        if self.memory_dirty_rate_pages_per_s is None or self.memory_page_size_bytes is None:
            return None
        return self.memory_dirty_rate_pages_per_s * self.memory_page_size_bytes

    @property
    def job_type_name(self) -> str | None:
        return None if self.job_type is None else JOB_TYPE_NAMES.get(self.job_type, str(self.job_type))

    @property
    def operation_name(self) -> str | None:
        return None if self.operation is None else OPERATION_NAMES.get(self.operation, str(self.operation))

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: every field (None as null), names for enums, derived rate."""
        out: dict[str, object] = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out["job_type_name"] = self.job_type_name
        out["operation_name"] = self.operation_name
        out["dirty_rate_bytes_per_s"] = self.dirty_rate_bytes_per_s
        out["extra"] = dict(self.extra)
        return out


@dataclass(frozen=True)
class JobProgress:
    """One sample of a running job, for progress curves and stall detection.

    A job that has ended reads as job_type VIR_DOMAIN_JOB_NONE with every
    other field None: `running` tells the two apart.
    """

    job_type: int | None = None
    time_elapsed_ms: int | None = None
    memory_remaining_bytes: int | None = None
    memory_bytes_per_s: int | None = None
    data_remaining_bytes: int | None = None
    memory_iteration: int | None = None
    memory_dirty_rate_pages_per_s: int | None = None

    @classmethod
    def from_libvirt(cls, d: Mapping[str, object]) -> JobProgress:
        """Parse a `dom.jobStats()` sample; keys beyond progress are ignored."""
        values, _ = _parse(d, _PROGRESS_FIELDS)
        return cls(**values)  # type: ignore[arg-type]

    @property
    def running(self) -> bool:
        return self.job_type in (libvirt.VIR_DOMAIN_JOB_BOUNDED, libvirt.VIR_DOMAIN_JOB_UNBOUNDED)

    def to_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
