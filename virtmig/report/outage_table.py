"""The report's "Where the outage goes" section: each live hop's probe gap cut into segments, and per mode.

Why: libvirt's downtime and the probe's gap disagree by tens of ms on
every hop, and only the segments say which part grew when one does (see
virtmig.migration.breakdown): lead (last answer -> source stopped), paused
(-> destination resumed: libvirt's downtime), then the return, cut where a
capture saw it at the guest's first announcement on the destination's
bridge.  Per hop from the records' `outage`, then per mode the median of
each segment, so a regression shows in one column.
"""

from __future__ import annotations

import html
import statistics
from collections.abc import Mapping, Sequence
from typing import Any, Final

from virtmig.migration.records import MigrationRecord
from virtmig.report import DASH

TITLE: Final = "Where the outage goes"

#: (key in the record's outage, column heading), in time order along the outage.
SEGMENTS: Final = (
    ("lead_ms", "last answer → source stopped"),
    ("paused_ms", "stopped → destination resumed"),
    ("announce_ms", "resumed → announced"),
    ("announced_to_answer_ms", "announced → first answer"),
    ("return_ms", "resumed → first answer"),
    ("gap_ms", "probe gap"),
    ("libvirt_downtime_ms", "libvirt downtime"),
)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _ms(value: object) -> str:
    return f"{value:.1f}" if isinstance(value, (int, float)) else DASH


def hops(records: Sequence[MigrationRecord]) -> list[MigrationRecord]:
    """The records that carry a breakdown (live hops whose outage the probe saw end)."""
    return [r for r in records if r.outage]


def per_mode(records: Sequence[MigrationRecord]) -> dict[str, dict[str, float | None]]:
    """mode -> segment key -> median over that mode's hops (None where no hop had the segment)."""
    out: dict[str, dict[str, float | None]] = {}
    for mode in dict.fromkeys(r.mode for r in hops(records)):
        outages = [r.outage for r in hops(records) if r.mode == mode and r.outage]
        out[mode] = {key: _median([o.get(key) for o in outages]) for key, _ in SEGMENTS}
    return out


def _median(values: Sequence[Any]) -> float | None:
    numbers = [float(v) for v in values if isinstance(v, (int, float))]
    return statistics.median(numbers) if numbers else None


def _unseen(records: Sequence[MigrationRecord]) -> list[str]:
    """Why announcements were not seen, each reason once (e.g. no tcpdump on a host)."""
    return list(dict.fromkeys(str(r.outage["announce_note"]) for r in hops(records)
                              if r.outage and r.outage.get("announce_note")))


def render_html(records: Sequence[MigrationRecord]) -> str:
    """The section: per mode (medians), then per hop; says so when no hop was broken down."""
    parts = [f"<h2>{TITLE}</h2>"]
    if not hops(records):
        parts.append('<p class="virtmig-outage-missing">No live hop in this run was broken down '
                     "(none ran, or the probe never saw the guest answer after one).</p>")
        return "".join(parts)
    head = "".join(f"<th>{_e(label)} (ms)</th>" for _, label in SEGMENTS)
    parts.append('<table class="virtmig-migrations virtmig-outage virtmig-outage-modes"><thead><tr>'
                 f"<th>mode (median)</th>{head}</tr></thead><tbody>")
    for mode, medians in per_mode(records).items():
        cells = "".join(f"<td>{_ms(medians[key])}</td>" for key, _ in SEGMENTS)
        parts.append(f"<tr><th>{_e(mode)}</th>{cells}</tr>")
    parts.append("</tbody></table>")
    parts.append(f'<table class="virtmig-migrations virtmig-outage virtmig-outage-hops"><thead><tr><th>hop</th>{head}'
                 "</tr></thead><tbody>")
    for r in hops(records):
        outage: Mapping[str, Any] = r.outage or {}
        cells = "".join(f"<td>{_ms(outage.get(key))}</td>" for key, _ in SEGMENTS)
        parts.append(f"<tr><th>{_e(r.mode)} {_e(r.src)} → {_e(r.dst)}</th>{cells}</tr>")
    parts.append("</tbody></table>")
    for why in _unseen(records):
        parts.append(f'<p class="virtmig-outage-note">Announcement not seen: {_e(why)}</p>')
    return "".join(parts)


def summary_text(records: Sequence[MigrationRecord]) -> list[str]:
    """One line per mode for the terminal summary: the median segments, in ms."""
    return [f"{mode}: " + ", ".join(f"{label} {_ms(medians[key])}" for key, label in SEGMENTS)
            for mode, medians in per_mode(records).items()]
