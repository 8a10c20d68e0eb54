"""Trends across runs: percentiles, the regression rule, and history read from results.json.

Every rule gets a case that must be flagged and one that must not, so a
comparison that always says "steady" (or always "regression") fails here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from virtmig.migration.records import MigrationRecord
from virtmig.report import trends_table
from virtmig.report.results_json import update_latest, write_run
from virtmig.report.trends import (
    IMPROVED,
    NOT_MEASURED,
    REGRESSION,
    STEADY,
    TOO_LITTLE_HISTORY,
    PastRun,
    TrendPolicy,
    compare,
    group_of,
    load_history,
    pair_of,
    percentile,
)


def rec(downtime: float | None, gap: float | None = None, total: float = 3000.0, *, mode: str = "p2p",
        ok: bool = True, src: str = "h1", dst: str = "h2", dirty: int | None = 8) -> MigrationRecord:
    stats = None if downtime is None else {"downtime_ms": downtime, "time_elapsed_ms": total}
    probe = None if gap is None else {"longest_gap_ms": gap}
    return MigrationRecord(test_id=f"suites/live/t.py::test[{mode}]", kind="live", mode=mode, src=src, dst=dst,
                           domain="vm", started_at="2024-05-01T10:00:00+00:00", wall_s=3.0, ok=ok,
                           storage="nfs-mount", stats=stats, probe=probe, dirty_rate_asked_mib_s=dirty)


def night(run_id: str, downtimes: Sequence[float], gaps: Sequence[float] | None = None,
          **kw: Any) -> PastRun:
    gaps = gaps if gaps is not None else [d + 30 for d in downtimes]
    return PastRun(run_id, f"2024-05-{run_id[-2:]}T02:00:00+00:00", ("h1", "h2"),
                   tuple(rec(d, g, **kw) for d, g in zip(downtimes, gaps, strict=True)))


#: Ten quiet nights: downtime around 100 ms, p95 around 120 ms.
HISTORY = [night(f"run-{d:02d}", [95 + d % 3, 100, 104, 118 + d % 2]) for d in range(1, 11)]


def row(trends: Any, metric: str, group: str = "live/p2p @8 MiB/s dirty") -> Any:
    return next(r for r in trends.rows if r.metric == metric and r.group == group)


# --- percentiles -----------------------------------------------------------------

def test_percentile_interpolates_like_numpy() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    assert percentile(values, 50) == 25.0
    assert percentile(values, 95) == pytest.approx(38.5)  # numpy.percentile(values, 95)
    assert percentile([7.0], 95) == 7.0
    assert percentile([3.0, 1.0, 2.0], 0) == 1.0 and percentile([3.0, 1.0, 2.0], 100) == 3.0
    with pytest.raises(ValueError):
        percentile([], 50)


# --- the rule --------------------------------------------------------------------

def test_a_doubled_downtime_is_a_regression() -> None:
    now = [rec(d, d + 30) for d in (200, 210, 220, 260)]
    trends = compare(now, HISTORY, TrendPolicy())
    down = row(trends, "libvirt_downtime_ms")
    assert down.status == REGRESSION
    assert down.history_runs == 10 and down.history_p50 == pytest.approx(102.0)
    assert any(reason.startswith("p50 215 ms vs 102 ms") for reason in down.reasons)
    assert row(trends, "probe_gap_ms").status == REGRESSION
    assert row(trends, "total_time_ms").status == STEADY
    assert trends_table.headline(trends) == (
        "2 regression(s) against 10 earlier run(s) of h1 / h2: live/p2p @8 MiB/s dirty libvirt downtime; "
        "live/p2p @8 MiB/s dirty probe longest gap.")


def test_a_night_like_the_others_is_not_flagged() -> None:
    now = [rec(d, d + 30) for d in (96, 101, 103, 119)]
    trends = compare(now, HISTORY, TrendPolicy())
    assert [r.status for r in trends.rows] == [STEADY, STEADY, STEADY]
    assert trends.regressions == []
    assert trends_table.headline(trends) == "No regression against 10 earlier run(s) of h1 / h2."


def test_only_the_tail_regressing_is_caught_by_p95() -> None:
    # p50 as before; one round trip in four stalls: the p95 reveals it.
    now = [rec(d) for d in (96, 100, 103, 400)]
    down = row(compare(now, HISTORY, TrendPolicy()), "libvirt_downtime_ms")
    assert down.status == REGRESSION
    assert [r.split()[0] for r in down.reasons] == ["p95"]


def test_small_absolute_rises_stay_under_the_floor() -> None:
    # +60% on a 10 ms downtime is 6 ms: under the 20 ms floor, so not flagged ...
    small = [night(f"run-{d:02d}", [10, 10, 10]) for d in range(1, 6)]
    assert row(compare([rec(16), rec(16)], small, TrendPolicy()), "libvirt_downtime_ms").status == STEADY
    # ... but a floor of 5 ms flags it.
    tight = TrendPolicy(floor_ms=5.0)
    assert row(compare([rec(16), rec(16)], small, tight), "libvirt_downtime_ms").status == REGRESSION


def test_threshold_is_the_option_value() -> None:
    now = [rec(d) for d in (130, 130, 130, 150)]  # +27% p50 over ~102, +28 ms
    assert row(compare(now, HISTORY, TrendPolicy()), "libvirt_downtime_ms").status == REGRESSION
    assert row(compare(now, HISTORY, TrendPolicy(threshold_pct=50)), "libvirt_downtime_ms").status == STEADY


def test_faster_is_improved_not_regressed() -> None:
    down = row(compare([rec(20), rec(25)], HISTORY, TrendPolicy()), "libvirt_downtime_ms")
    assert down.status == IMPROVED


def test_one_bad_night_in_the_history_does_not_move_the_baseline() -> None:
    history = [*HISTORY[:-1], night("run-10", [900, 950, 990, 999])]
    now = [rec(d) for d in (200, 210, 220, 260)]
    assert row(compare(now, history, TrendPolicy()), "libvirt_downtime_ms").status == REGRESSION


def test_too_little_history_is_said_not_flagged() -> None:
    now = [rec(d) for d in (400, 400)]
    down = row(compare(now, HISTORY[:2], TrendPolicy()), "libvirt_downtime_ms")
    assert down.status == TOO_LITTLE_HISTORY
    assert down.reasons == ("2 comparable run(s) in the history, 3 needed",)


def test_only_the_last_n_runs_count() -> None:
    old_slow = [night(f"run-{d:02d}", [400, 400]) for d in range(1, 8)]
    recent_fast = [night(f"run-{d:02d}", [100, 100]) for d in range(11, 14)]
    now = [rec(d) for d in (390, 400)]
    assert row(compare(now, old_slow + recent_fast, TrendPolicy(runs=3)), "libvirt_downtime_ms").status == REGRESSION
    assert row(compare(now, old_slow + recent_fast, TrendPolicy(runs=10)), "libvirt_downtime_ms").status == STEADY


def test_other_modes_and_dirty_rates_are_not_compared() -> None:
    history = [night(f"run-{d:02d}", [100, 100], mode="direct") for d in range(1, 6)]
    history += [night(f"run-{d:02d}", [100, 100], dirty=0) for d in range(6, 11)]
    trends = compare([rec(400), rec(400)], history, TrendPolicy())
    assert row(trends, "libvirt_downtime_ms").status == TOO_LITTLE_HISTORY
    assert {r.group for r in trends.rows} == {"live/p2p @8 MiB/s dirty"}


def test_failed_and_unmeasured_migrations_do_not_count() -> None:
    now = [rec(100, None), rec(5000, 5000, ok=False)]
    trends = compare(now, HISTORY, TrendPolicy())
    assert row(trends, "libvirt_downtime_ms").n == 1
    assert row(trends, "libvirt_downtime_ms").status == STEADY
    assert row(trends, "probe_gap_ms").status == NOT_MEASURED


def test_group_and_pair() -> None:
    assert group_of(rec(1, dirty=None)) == "live/p2p"
    assert pair_of([rec(1), rec(1, src="h2", dst="h1")]) == ("h1", "h2")
    assert pair_of([rec(1)], {"src": "b", "dst": "a"}) == ("a", "b")


# --- history from disk -----------------------------------------------------------

def write_night(root: Path, run_id: str, records: list[MigrationRecord], **run: Any) -> Path:
    run_dir = root / run_id
    meta = {"run_id": run_id, "started_at": f"2024-05-{run_id[-2:]}T02:00:00+00:00", **run}
    write_run(records, run_dir, run_meta=meta)
    return run_dir


def test_history_from_results_files(tmp_path: Path) -> None:
    for d in range(1, 5):
        write_night(tmp_path, f"2024050{d}", [rec(100), rec(110, src="h2", dst="h1")])
    write_night(tmp_path, "20240505", [rec(100, src="h7", dst="h8")])  # another pair
    current = write_night(tmp_path, "20240506", [rec(300)])
    write_night(tmp_path, "20240507", [rec(1)])  # started after the run being compared
    update_latest(tmp_path, current)
    (tmp_path / "20240508").mkdir()
    (tmp_path / "20240508" / "results.json").write_text("{not json")
    (tmp_path / "20240509").mkdir()
    (tmp_path / "20240509" / "results.json").write_text(json.dumps({"schema_version": 99}))

    runs, skipped = load_history(tmp_path, pair=("h1", "h2"), exclude=current, before="2024-05-06T02:00:00+00:00")
    assert [r.run_id for r in runs] == ["20240501", "20240502", "20240503", "20240504"]
    assert [s.split(":")[0] for s in skipped] == ["20240508", "20240509"]
    trends = compare([rec(300)], runs, TrendPolicy(), skipped=skipped)
    assert row(trends, "libvirt_downtime_ms").status == REGRESSION
    doc = trends.to_dict()
    assert doc["regressions"] == 1 and doc["compared_runs"] == [r.run_id for r in runs]
    assert doc["policy"]["threshold_pct"] == 25.0 and "25%" in doc["policy"]["rule"]
    json.dumps(doc)  # JSON-able as it stands


def test_trends_table_marks_regressions_and_states_the_rule() -> None:
    trends = compare([rec(d, d + 30) for d in (200, 210, 220, 260)], HISTORY, TrendPolicy())
    out = trends_table.render_html(trends)
    assert out.count('<tr class="regression">') == 2
    assert "more than 25% and at least 20 ms" in out
    assert "run-01, run-02" in out
    assert "Not compared: --trend-runs 0." in trends_table.render_html(None, problem="--trend-runs 0")
