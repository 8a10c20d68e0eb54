"""Trends across nights: this run against the last N runs of the same host pair.

One night's p95 downtime of 180 ms says nothing until it is put beside the
previous nights' 90 ms.  For each migration group (kind, mode and the dirty
rate asked for, so that only comparable migrations meet) and each metric
(libvirt downtime, probe gap, total time), this run's p50 and p95 are
compared with the *median* of the same percentiles over the history runs.
The median, not the mean or the last run, so that one bad night in the
history neither hides nor invents a regression.

A regression is flagged when this run's p50 or p95 exceeds the history's by
more than `TrendPolicy.threshold_pct` percent *and* by at least
`TrendPolicy.floor_ms` (a 3 ms rise on a 6 ms downtime is 50 % and noise).
With fewer than `min_history` comparable runs nothing is flagged: the row
says so.  Only successful migrations count; a failed one has no figures
worth a percentile and is the verdict's business.

Pure functions of records, except `load_history`, which reads results.json
files and skips (with a reason) any it cannot use.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from virtmig.migration.records import MigrationRecord
from virtmig.report import downtime_ms, probe_gap_ms, total_time_ms
from virtmig.report.results_json import LATEST_NAME, RESULTS_NAME, read_run

#: (key in results.json, label in the report, how to read it from a record).
METRICS: Final[tuple[tuple[str, str, Callable[[MigrationRecord], float | None]], ...]] = (
    ("libvirt_downtime_ms", "libvirt downtime", downtime_ms),
    ("probe_gap_ms", "probe longest gap", probe_gap_ms),
    ("total_time_ms", "total time", total_time_ms),
)

REGRESSION: Final = "regression"
IMPROVED: Final = "improved"
STEADY: Final = "steady"
TOO_LITTLE_HISTORY: Final = "too little history"
NOT_MEASURED: Final = "not measured"


@dataclass(frozen=True)
class TrendPolicy:
    """How far back to look and what counts as a regression (named in the report)."""

    runs: int = 10
    threshold_pct: float = 25.0
    floor_ms: float = 20.0
    min_history: int = 3

    def describe(self) -> str:
        """The rule in words, printed next to the trends table."""
        return (f"compared with the median of the last {self.runs} runs of this host pair; a p50 or p95 "
                f"more than {self.threshold_pct:g}% and at least {self.floor_ms:g} ms above it is a "
                f"regression; at least {self.min_history} comparable runs are needed to flag one")

    def exceeds(self, now: float, baseline: float) -> bool:
        """`now` is worse than `baseline` by more than both the threshold and the floor."""
        return now - baseline > max(self.floor_ms, abs(baseline) * self.threshold_pct / 100.0)


@dataclass(frozen=True)
class PastRun:
    """One earlier run's records, as read from its results.json."""

    run_id: str
    started_at: str
    pair: tuple[str, ...]
    records: tuple[MigrationRecord, ...]


@dataclass(frozen=True)
class TrendRow:
    """One (group, metric): this run's percentiles beside the history's."""

    group: str
    metric: str
    label: str
    n: int
    p50: float | None
    p95: float | None
    history_runs: int
    history_p50: float | None
    history_p95: float | None
    status: str
    reasons: tuple[str, ...] = ()

    @property
    def regressed(self) -> bool:
        return self.status == REGRESSION


@dataclass(frozen=True)
class Trends:
    """The comparison of one run with its history."""

    pair: tuple[str, ...]
    policy: TrendPolicy
    compared_runs: tuple[str, ...]
    rows: tuple[TrendRow, ...]
    skipped: tuple[str, ...] = field(default=())

    @property
    def regressions(self) -> list[TrendRow]:
        return [r for r in self.rows if r.regressed]

    def to_dict(self) -> dict[str, Any]:
        """The "trends" section of results.json (docs/results-schema.md)."""
        return {
            "pair": list(self.pair),
            "policy": {"runs": self.policy.runs, "threshold_pct": self.policy.threshold_pct,
                       "floor_ms": self.policy.floor_ms, "min_history": self.policy.min_history,
                       "rule": self.policy.describe()},
            "compared_runs": list(self.compared_runs),
            "regressions": len(self.regressions),
            "rows": [{"group": r.group, "metric": r.metric, "n": r.n, "p50": r.p50, "p95": r.p95,
                      "history_runs": r.history_runs, "history_p50": r.history_p50,
                      "history_p95": r.history_p95, "status": r.status, "reasons": list(r.reasons)}
                     for r in self.rows],
            "skipped": list(self.skipped),
        }


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks.

    The same definition as numpy's default, so figures can be checked with
    it; with one value, that value (a single round trip is its own p95).
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0..100")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def group_of(record: MigrationRecord) -> str:
    """Which migrations are comparable across nights: kind, mode and the dirty rate asked for."""
    base = f"{record.kind}/{record.mode}"
    rate = record.dirty_rate_asked_mib_s
    return base if rate is None else f"{base} @{rate} MiB/s dirty"


def pair_of(records: Iterable[MigrationRecord], run: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    """The host pair as its sorted host names.

    Unordered, because a round trip migrates both ways and a night's run
    h1->h2 is the same pair as h2->h1; from run's explicit src/dst when
    both are set, else from the hosts the migrations used.
    """
    run = run or {}
    src, dst = run.get("src"), run.get("dst")
    if isinstance(src, str) and isinstance(dst, str) and src and dst:
        return tuple(sorted({src, dst}))
    return tuple(sorted({h for r in records for h in (r.src, r.dst) if h}))


def _values(records: Iterable[MigrationRecord]) -> dict[tuple[str, str], list[float]]:
    """(group, metric key) -> the figures of the successful migrations."""
    out: dict[tuple[str, str], list[float]] = {}
    for record in records:
        if not record.ok:
            continue
        for key, _label, read in METRICS:
            value = read(record)
            if value is not None:
                out.setdefault((group_of(record), key), []).append(value)
    return out


def _past_pair_records(doc: Mapping[str, Any], records: Sequence[MigrationRecord],
                      pair: Sequence[str]) -> list[MigrationRecord] | None:
    """A past run's records of the hosts *pair* when it certified several pairs; None for a run of one pair.

    Every entry of those two hosts counts (h1-h2 and h2-h1 alike), as one past run.
    """
    entries = doc.get("pairs")
    if not isinstance(entries, list) or len(entries) < 2:
        return None
    picked: list[MigrationRecord] = []
    for entry in entries:
        if not isinstance(entry, dict) or tuple(sorted({str(entry.get("src")), str(entry.get("dst"))})) != tuple(pair):
            continue
        picked += [records[i] for i in entry.get("migrations", []) if isinstance(i, int) and 0 <= i < len(records)]
    return picked


def load_history(reports_root: Path, *, pair: Sequence[str], exclude: Path | None = None,
                 before: str | None = None) -> tuple[list[PastRun], list[str]]:
    """Earlier runs of `pair` under reports_root/*/results.json, oldest first, and why others were skipped.

    `exclude` is this run's own directory; `reports/latest` is a link to a
    run already listed and is never read twice.  Runs started after
    `before` (ISO 8601) are ignored, so re-rendering an old run compares it
    with its own past.  Runs of another pair are left out silently: they
    are not a problem, just not this pair's history.
    """
    runs: list[PastRun] = []
    skipped: list[str] = []
    if not reports_root.is_dir():
        return runs, skipped
    own = exclude.resolve() if exclude is not None else None
    for run_dir in sorted(reports_root.iterdir()):
        if run_dir.name == LATEST_NAME or run_dir.is_symlink() or not run_dir.is_dir():
            continue
        if own is not None and run_dir.resolve() == own:
            continue
        path = run_dir / RESULTS_NAME
        if not path.is_file():
            continue
        try:
            doc, records = read_run(path)
        except (OSError, ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError
            skipped.append(f"{run_dir.name}: {exc}")
            continue
        raw_run = doc.get("run")
        run: dict[str, Any] = raw_run if isinstance(raw_run, dict) else {}
        several = _past_pair_records(doc, records, pair)
        if several is not None:  # a night of several pairs: only its entries of these two hosts
            if not several:
                continue
            records = several
        elif tuple(pair) != pair_of(records, run):
            continue
        started = str(run.get("started_at") or "")
        if before is not None and started and started > before:
            continue
        runs.append(PastRun(str(run.get("run_id") or run_dir.name), started,
                            tuple(pair) if several else pair_of(records, run), tuple(records)))
    runs.sort(key=lambda r: (r.started_at, r.run_id))
    return runs, skipped


def _status(p50: float, p95: float, h50: float, h95: float, policy: TrendPolicy) -> tuple[str, tuple[str, ...]]:
    pairs = (("p50", p50, h50), ("p95", p95, h95))
    worse = tuple(f"{name} {now:,.0f} ms vs {then:,.0f} ms ({_change(now, then)})"
                  for name, now, then in pairs if policy.exceeds(now, then))
    if worse:
        return REGRESSION, worse
    better = tuple(f"{name} {now:,.0f} ms vs {then:,.0f} ms ({_change(now, then)})"
                   for name, now, then in pairs if policy.exceeds(then, now))
    return (IMPROVED, better) if better else (STEADY, ())


def _row(group: str, key: str, label: str, now: list[float], past: list[list[float]],
         policy: TrendPolicy) -> TrendRow:
    p50 = percentile(now, 50) if now else None
    p95 = percentile(now, 95) if now else None
    past = [v for v in past if v]
    h50 = statistics.median(percentile(v, 50) for v in past) if past else None
    h95 = statistics.median(percentile(v, 95) for v in past) if past else None
    status: str
    reasons: tuple[str, ...]
    if p50 is None or p95 is None:
        status, reasons = NOT_MEASURED, ("no figure in this run",)
    elif h50 is None or h95 is None or len(past) < policy.min_history:
        status = TOO_LITTLE_HISTORY
        reasons = (f"{len(past)} comparable run(s) in the history, {policy.min_history} needed",)
    else:
        status, reasons = _status(p50, p95, h50, h95, policy)
    return TrendRow(group=group, metric=key, label=label, n=len(now), p50=p50, p95=p95,
                    history_runs=len(past), history_p50=h50, history_p95=h95, status=status, reasons=reasons)


def _change(now: float, then: float) -> str:
    if then == 0:
        return f"{now - then:+,.0f} ms"
    return f"{(now - then) / abs(then) * 100:+.0f}%"


def compare(records: Sequence[MigrationRecord], history: Sequence[PastRun], policy: TrendPolicy,
            *, pair: Sequence[str] | None = None, skipped: Sequence[str] = ()) -> Trends:
    """This run's records against the last `policy.runs` runs of `history` (oldest first).

    A row per (group, metric) measured in this run; groups that only the
    history has are not rows (this run did not test them).  Each history
    run counts once per group, through its own percentiles, so a night with
    ten round trips does not outweigh a night with one.
    """
    recent = list(history)[-policy.runs:] if policy.runs > 0 else []
    now_values = _values(records)
    past_values = [_values(run.records) for run in recent]
    groups = list(dict.fromkeys(group_of(r) for r in records if r.ok))
    rows: list[TrendRow] = []
    for group in groups:
        for key, label, _read in METRICS:
            now = now_values.get((group, key), [])
            past = [pv.get((group, key), []) for pv in past_values]
            rows.append(_row(group, key, label, now, past, policy))
    return Trends(tuple(pair) if pair is not None else pair_of(records), policy,
                  tuple(run.run_id for run in recent), tuple(rows), tuple(skipped))
