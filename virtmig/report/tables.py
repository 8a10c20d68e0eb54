"""The migrations table and run counts for the HTML report.

One row per migration, in the order the records arrived, numbered (#k) the
same way as the charts so a bar or a line can be traced back to its row.
Every value is escaped: test ids, error messages and notes come from
parameters, libvirt and hosts, none of which the report controls.
A figure that was not measured shows as a dash, never as 0.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Final

from virtmig.migration.records import MigrationRecord
from virtmig.report import (
    DASH,
    MIB,
    data_moved_bytes,
    dirty_rate_bytes_per_s,
    downtime_ms,
    fmt,
    passes,
    probe_gap_ms,
    probe_lost,
    throughput_bytes_per_s,
    total_time_ms,
)

COLUMNS: Final = (
    "#", "test", "kind", "mode", "src → dst", "ok", "libvirt downtime (ms)", "probe longest gap (ms)",
    "probe from: interval / worst send gap (ms)", "total time (ms)", "data moved (MiB)", "passes", "throughput (MiB/s)",
    "dirty rate (MiB/s), measured (asked)",
    "storage", "notes",
)

#: Scoped to .virtmig-* classes so it cannot restyle pytest-html's own tables.
STYLE: Final = """<style>
.virtmig-migrations { border-collapse: collapse; margin: 8px 0 16px; font-size: 12px; }
.virtmig-migrations th, .virtmig-migrations td { border: 1px solid #ccc; padding: 3px 6px; vertical-align: top; }
.virtmig-migrations th { background: #f2f2f2; text-align: left; }
.virtmig-migrations td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.virtmig-migrations tr.failed td { background: #fdecea; }
.virtmig-migrations td.over-budget { color: #c0392b; font-weight: bold; }
.virtmig-migrations td.notes { max-width: 40em; white-space: pre-wrap; word-break: break-word; }
.virtmig-charts svg { margin: 8px 16px 8px 0; vertical-align: top; }
.virtmig-shared-note { font-size: 12px; margin: 4px 0; color: #444; }
</style>"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _cell(text: str, css: str = "") -> str:
    cls = f' class="{css}"' if css else ""
    return f"<td{cls}>{_e(text)}</td>"


def _num(value: float | None, digits: int = 0, *, over: bool = False) -> str:
    return _cell(fmt(value, digits), "num over-budget" if over else "num")


def _mib(value: float | None) -> float | None:
    return None if value is None else value / MIB


def _gap_text(record: MigrationRecord) -> str:
    gap, lost = probe_gap_ms(record), probe_lost(record)
    if gap is None:
        return DASH
    text = fmt(gap) if not lost else f"{fmt(gap)} (+{fmt(lost)} lost)"
    agreement = record.downtime_agreement or {}
    # The detail (both figures, the tolerance) is in the notes.
    return f"{text} (disagrees)" if agreement.get("agrees") is False else text


def probe_from_text(record: MigrationRecord) -> str:
    """Where the probe ran and its resolution: the interval asked and the worst gap between its own sends.

    Side by side for every row whichever host probed, so a remote probe's
    resolution (`--probe-from`, `virtmig.guest.relay`) reads against the
    controller's; a remote one adds how well its clock was put on ours.
    """
    probe = record.probe
    if not probe:
        return DASH
    where = str(probe.get("vantage") or "controller")
    text = f"{where}: {fmt(probe.get('interval_ms'), 1)} / {fmt(probe.get('longest_send_gap_ms'), 1)}"
    if (uncertainty := probe.get("clock_uncertainty_ms")) is not None:
        text += f" (clock ± {fmt(uncertainty, 3)})"
    return text


def _dirty_text(record: MigrationRecord) -> str:
    """libvirt's measured dirty rate, with the rate the harness asked for beside it."""
    measured = fmt(_mib(dirty_rate_bytes_per_s(record)), 1)
    asked = record.dirty_rate_asked_mib_s
    return measured if asked is None else f"{measured} ({fmt(asked)})"


def shared_notes(records: Sequence[MigrationRecord]) -> list[str]:
    """The notes every record carries (in the first record's order); said once, above the table.

    A run's storage reason (`--unsafe: ...`) is the same on every hop;
    repeated in each row it made the table four times taller.  One record
    alone keeps its notes in its row.
    """
    if len(records) < 2:
        return []
    common = set.intersection(*(set(map(str, r.notes)) for r in records))
    seen: list[str] = []
    for note in map(str, records[0].notes):
        if note in common and note not in seen:
            seen.append(note)
    return seen


def _notes_text(record: MigrationRecord, shared: Sequence[str] = ()) -> str:
    parts = [str(n) for n in record.notes if str(n) not in shared]
    if record.error:
        parts.insert(0, f"error: {record.error}")
    return "\n".join(parts) if parts else ""


def _over(value: float | None, budget_ms: float | None) -> bool:
    return value is not None and budget_ms is not None and value > budget_ms


def live_budget(record: MigrationRecord, budget_ms: float | None) -> float | None:
    """The downtime budget applies to live migrations; an offline move's outage is not downtime."""
    return budget_ms if record.kind == "live" else None


def migration_row(index: int, record: MigrationRecord, *, budget_ms: float | None = None,
                  shared: Sequence[str] = ()) -> str:
    """One <tr>; `index` is the 1-based number the charts use; `shared` notes are left out (said above)."""
    down, gap = downtime_ms(record), probe_gap_ms(record)
    budget_ms = live_budget(record, budget_ms)
    cells = [
        _cell(f"#{index}", "num"),
        _cell(record.test_id),
        _cell(record.kind),
        _cell(record.mode),
        _cell(f"{record.src} → {record.dst}"),
        _cell("✓" if record.ok else "✗", "ok" if record.ok else "fail"),
        _num(down, over=_over(down, budget_ms)),
        _cell(_gap_text(record), "num over-budget" if _over(gap, budget_ms) else "num"),
        _cell(probe_from_text(record), "num"),
        _num(total_time_ms(record)),
        _num(_mib(data_moved_bytes(record)), 1),
        _num(passes(record)),
        _num(_mib(throughput_bytes_per_s(record)), 1),
        _cell(_dirty_text(record), "num"),
        _cell(record.storage),
        _cell(_notes_text(record, shared), "notes"),
    ]
    row_class = "ok" if record.ok else "failed"
    return f'<tr class="{row_class}">' + "".join(cells) + "</tr>"


def migrations_table(records: Sequence[MigrationRecord], *, budget_ms: float | None = None) -> str:
    """The whole table, after the notes every row shares; cells over `budget_ms` are highlighted."""
    head = "".join(f"<th>{_e(c)}</th>" for c in COLUMNS)
    shared = shared_notes(records)
    if records:
        rows = "\n".join(migration_row(i, r, budget_ms=budget_ms, shared=shared) for i, r in enumerate(records, 1))
    else:
        rows = f'<tr><td colspan="{len(COLUMNS)}">no migrations recorded</td></tr>'
    above = "".join(f'<p class="virtmig-shared-note">Every migration: {_e(n)}</p>\n' for n in shared)
    return (f'{above}<table class="virtmig-migrations">\n<thead><tr>{head}</tr></thead>\n'
            f"<tbody>\n{rows}\n</tbody>\n</table>")


def summary_counts(records: Sequence[MigrationRecord], *, budget_ms: float | None = None) -> dict[str, int]:
    """Counts an operator checks first, also written to results.json.

    total, ok, failed; no_stats (libvirt left no completed-job statistics),
    no_probe (no external measurement); over_budget: live migrations whose
    libvirt downtime or probe gap exceeded `budget_ms` (0 when no budget is given).
    """
    return {
        "total": len(records),
        "ok": sum(1 for r in records if r.ok),
        "failed": sum(1 for r in records if not r.ok),
        "no_stats": sum(1 for r in records if not r.stats),
        "no_probe": sum(1 for r in records if not r.probe),
        "over_budget": sum(
            1 for r in records
            if _over(downtime_ms(r), live_budget(r, budget_ms)) or _over(probe_gap_ms(r), live_budget(r, budget_ms))
        ),
    }


def summary_line(records: Sequence[MigrationRecord], *, budget_ms: float | None = None) -> str:
    """One escaped sentence of counts, for the top of the report."""
    c = summary_counts(records, budget_ms=budget_ms)
    text = f"{c['total']} migrations: {c['ok']} ok, {c['failed']} failed"
    if budget_ms is not None:
        text += f", {c['over_budget']} over the {fmt(budget_ms)} ms downtime budget"
    if c["no_stats"]:
        text += f", {c['no_stats']} without libvirt statistics"
    return f'<p class="virtmig-summary">{_e(text)}.</p>'
