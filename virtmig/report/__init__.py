"""Turning migration records into what operators read: tables, charts, JSON.

The submodules (`svg`, `tables`, `results_json`) are pure functions of
`MigrationRecord`s and never import pytest; the pytest side lives in
`fixtures/report.py`.

This module is the one place that knows which keys of a record's `stats`,
`probe` and `progress` hold which figure.  Those dicts are the `to_dict()`
forms of classes that evolve on their own (`virtmig.migration.jobstats`,
`virtmig.guest.probe`) and old results.json files keep their old names, so every
figure is looked up under its current name first and older aliases after;
a figure that is absent, null, or not a finite number reads as None and is
shown as `DASH`, never as a crash or a made-up zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Final

from virtmig.migration.records import MigrationRecord

#: What a missing figure looks like in tables and charts.
DASH: Final = "–"

MIB: Final = 1024 * 1024


def number(value: object) -> float | None:
    """A finite int/float as float; anything else (None, bool, str, NaN) as None.

    bool is excluded because True is an int in Python and must not read as 1 ms.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def first_number(d: Mapping[str, object] | None, keys: Iterable[str]) -> float | None:
    """The first key of `keys` in `d` holding a usable number."""
    if not d:
        return None
    for key in keys:
        value = number(d.get(key))
        if value is not None:
            return value
    return None


def downtime_ms(record: MigrationRecord) -> float | None:
    """libvirt's measured guest pause (CPUs stopped to resumed)."""
    return first_number(record.stats, ("downtime_ms",))


def probe_gap_ms(record: MigrationRecord) -> float | None:
    """Longest silence the external probe saw: the guest's downtime from outside."""
    return first_number(record.probe, ("longest_gap_ms", "max_gap_ms", "gap_ms"))


def probe_lost(record: MigrationRecord) -> float | None:
    """Probe packets that never came back."""
    return first_number(record.probe, ("lost", "lost_count"))


def total_time_ms(record: MigrationRecord) -> float | None:
    return first_number(record.stats, ("time_elapsed_ms", "total_time_ms"))


def data_moved_bytes(record: MigrationRecord) -> float | None:
    """Bytes sent: all data if libvirt says so, else the memory part."""
    return first_number(record.stats, ("data_processed_bytes", "memory_processed_bytes"))


def passes(record: MigrationRecord) -> float | None:
    """Pre-copy iterations over guest memory."""
    return first_number(record.stats, ("memory_iteration", "iterations"))


def throughput_bytes_per_s(record: MigrationRecord) -> float | None:
    return first_number(record.stats, ("memory_bytes_per_s", "memory_bps"))


def dirty_rate_bytes_per_s(record: MigrationRecord) -> float | None:
    """Guest dirtying rate in bytes/s; derived from pages/s when not given."""
    direct = first_number(record.stats, ("dirty_rate_bytes_per_s",))
    if direct is not None:
        return direct
    pages = first_number(record.stats, ("memory_dirty_rate_pages_per_s",))
    size = first_number(record.stats, ("memory_page_size_bytes", "memory_page_size"))
    if pages is None or size is None:
        return None
    return pages * size


def progress_points(record: MigrationRecord) -> list[tuple[float, float]]:
    """(elapsed ms, remaining memory bytes) of each usable sample, by time.

    Samples taken after the job ended carry nulls and are skipped.  So are
    the samples before the job first reports: until QEMU has counted the
    guest's memory (pass 0, nothing remaining), libvirt reports 0 bytes
    remaining, which would draw every line rising from 0 to the guest's size.
    """
    points: list[tuple[float, float, bool]] = []
    for sample in record.progress:
        if not isinstance(sample, Mapping):
            continue
        t = first_number(sample, ("time_elapsed_ms", "t_ms"))
        remaining = first_number(sample, ("memory_remaining_bytes",))
        iteration = first_number(sample, ("memory_iteration",))
        if t is not None and remaining is not None:
            points.append((t, remaining, remaining > 0 or (iteration or 0) >= 1))
    points.sort()
    first = next((k for k, (_, _, reported) in enumerate(points) if reported), len(points))
    return [(t, remaining) for t, remaining, _ in points[first:]]


def fmt(value: float | None, digits: int = 0) -> str:
    """A figure for display: fixed decimals, thousands separated, DASH if absent."""
    if value is None:
        return DASH
    return f"{value:,.{digits}f}"


def short_label(record: MigrationRecord, limit: int = 32) -> str:
    """The test's own name (last node-id part), shortened for chart labels."""
    name = record.test_id.rsplit("::", 1)[-1] or record.test_id
    return name if len(name) <= limit else name[: limit - 1] + "…"
