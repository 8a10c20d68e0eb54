"""JobStats parsing of libvirt's jobStats() dicts.

The dicts below have the shape and key set libvirt 9.0 / QEMU 7.2 return for
a completed peer-to-peer live migration of the lab's idle 128 MiB TCG guest
(figures from LAB-NOTES: downtime ~120 ms, 1.5 s total, 72 MB in 3 passes).
"""

from __future__ import annotations

import json
from typing import Any

import libvirt
import pytest

from virtmig.migration.jobstats import JobProgress, JobStats, JobStatsError

MIB = 1024 * 1024

COMPLETED_OUT: dict[str, Any] = {
    "type": libvirt.VIR_DOMAIN_JOB_COMPLETED,
    "operation": libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT,
    "success": True,
    "time_elapsed": 1500,
    "time_elapsed_net": 1492,
    "downtime": 120,
    "downtime_net": 112,
    "setup_time": 6,
    "data_total": 135_004_160,
    "data_processed": 72_312_587,
    "data_remaining": 0,
    "memory_total": 135_004_160,
    "memory_processed": 72_312_587,
    "memory_remaining": 0,
    "memory_constant": 15_290,
    "memory_normal": 17_523,
    "memory_normal_bytes": 71_774_208,
    "memory_bps": 50_446_060,
    "memory_dirty_rate": 1_250,
    "memory_page_size": 4096,
    "memory_iteration": 3,
    "memory_postcopy_requests": 0,
    "disk_total": 0,
    "disk_processed": 0,
    "disk_remaining": 0,
}

RUNNING_SAMPLE: dict[str, Any] = {
    "type": libvirt.VIR_DOMAIN_JOB_UNBOUNDED,
    "operation": libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT,
    "time_elapsed": 640,
    "data_total": 135_004_160,
    "data_processed": 31_457_280,
    "data_remaining": 98_566_144,
    "memory_total": 135_004_160,
    "memory_processed": 31_457_280,
    "memory_remaining": 98_566_144,
    "memory_bps": 49_283_072,
    "memory_dirty_rate": 0,
    "memory_page_size": 4096,
    "memory_iteration": 1,
    "disk_total": 0,
}


def test_completed_migration_parses_with_units() -> None:
    st = JobStats.from_libvirt(COMPLETED_OUT)
    assert st.job_type_name == "completed"
    assert st.operation_name == "migration_out"
    assert st.success is True
    assert st.downtime_ms == 120
    assert st.time_elapsed_ms == 1500
    assert st.memory_processed_bytes is not None and 68 * MIB < st.memory_processed_bytes < 70 * MIB
    assert st.memory_iteration == 3
    assert st.memory_bytes_per_s == 50_446_060
    assert st.dirty_rate_bytes_per_s == 1_250 * 4096
    assert st.extra == {}


def test_libvirt_module_constants_match_the_keys() -> None:
    """Every key libvirt returns maps to a field: none lands in `extra`."""
    assert libvirt.VIR_DOMAIN_JOB_DOWNTIME == "downtime"
    assert libvirt.VIR_DOMAIN_JOB_MEMORY_DIRTY_RATE == "memory_dirty_rate"
    assert libvirt.VIR_DOMAIN_JOB_MEMORY_POSTCOPY_REQS == "memory_postcopy_requests"
    assert JobStats.from_libvirt(COMPLETED_OUT).extra == {}
    assert JobStats.from_libvirt(RUNNING_SAMPLE).extra == {}


def test_to_dict_is_json_serialisable_and_complete() -> None:
    d = JobStats.from_libvirt(COMPLETED_OUT).to_dict()
    text = json.dumps(d)
    back = json.loads(text)
    assert back["downtime_ms"] == 120
    assert back["dirty_rate_bytes_per_s"] == 5_120_000
    assert back["operation_name"] == "migration_out"
    assert back["auto_converge_throttle_pct"] is None
    assert back["extra"] == {}


def test_missing_keys_become_none() -> None:
    dropped = ("downtime_net", "time_elapsed_net", "memory_page_size")
    partial = {k: v for k, v in COMPLETED_OUT.items() if k not in dropped}
    st = JobStats.from_libvirt(partial)
    assert st.downtime_net_ms is None
    assert st.time_elapsed_net_ms is None
    assert st.dirty_rate_bytes_per_s is None  # no page size, no byte rate
    assert st.downtime_ms == 120


def test_no_job_is_just_a_type() -> None:
    st = JobStats.from_libvirt({"type": libvirt.VIR_DOMAIN_JOB_NONE})
    assert st.job_type_name == "none"
    assert st.downtime_ms is None and st.success is None


def test_failed_job_keeps_errmsg() -> None:
    st = JobStats.from_libvirt(
        {"type": libvirt.VIR_DOMAIN_JOB_FAILED, "operation": 5, "success": False,
         "errmsg": "operation failed: migration out job: unexpectedly failed"}
    )
    assert st.success is False
    assert st.errmsg is not None and "unexpectedly failed" in st.errmsg
    assert st.job_type_name == "failed"


def test_unknown_keys_are_kept_in_extra() -> None:
    st = JobStats.from_libvirt({**COMPLETED_OUT, "vfio_data_transferred": 0})
    assert st.extra == {"vfio_data_transferred": 0}
    assert st.to_dict()["extra"] == {"vfio_data_transferred": 0}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("downtime", "120"),
        ("downtime", 120.0),
        ("downtime", True),  # bool is an int in Python, not a millisecond count
        ("memory_total", -1),
        ("memory_total", 2**64),
        ("success", 1),
        ("errmsg", 3),
        ("type", "3"),
        ("auto_converge_throttle", -5),
        ("some_future_key", [1, 2]),
    ],
)
def test_bad_values_are_rejected(key: str, value: object) -> None:
    with pytest.raises(JobStatsError, match=key):
        JobStats.from_libvirt({**COMPLETED_OUT, key: value})


def test_not_a_mapping_is_rejected() -> None:
    with pytest.raises(JobStatsError):
        JobStats.from_libvirt([("downtime", 1)])  # type: ignore[arg-type]


def test_progress_sample() -> None:
    p = JobProgress.from_libvirt(RUNNING_SAMPLE)
    assert p.running
    assert p.time_elapsed_ms == 640
    assert p.memory_remaining_bytes == 98_566_144
    assert p.memory_bytes_per_s == 49_283_072
    assert p.data_remaining_bytes == 98_566_144
    assert p.memory_iteration == 1
    assert json.loads(json.dumps(p.to_dict()))["memory_iteration"] == 1


def test_progress_after_the_job_ended() -> None:
    p = JobProgress.from_libvirt({"type": libvirt.VIR_DOMAIN_JOB_NONE})
    assert not p.running
    assert p.memory_remaining_bytes is None


def test_progress_rejects_bad_types() -> None:
    with pytest.raises(JobStatsError, match="memory_remaining"):
        JobProgress.from_libvirt({**RUNNING_SAMPLE, "memory_remaining": "lots"})
