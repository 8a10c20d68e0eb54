"""Inline SVG charts of migration records, as strings.

The HTML report must stay one self-contained file that opens anywhere
(an archived CI artefact, a mail attachment), so charts are plain SVG with
no script, no stylesheet link and no font download; hover text comes from
SVG `<title>` elements, which browsers show natively.  Output depends only
on the records and parameters (no randomness, no clock, fixed number
formatting), so a report can be regenerated and diffed.  All text goes
through `_esc`, because test ids carry user-chosen parameters.
"""

from __future__ import annotations

import html
import math
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from virtmig.migration.records import MigrationRecord
from virtmig.report import DASH, MIB, downtime_ms, fmt, probe_gap_ms, progress_points, short_label

#: Colour-blind-safe-ish categorical palette (Tableau 10).
PALETTE: Final = (
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
)
LIBVIRT_COLOUR: Final = "#4e79a7"
PROBE_COLOUR: Final = "#f28e2b"
BUDGET_COLOUR: Final = "#c0392b"
FAIL_COLOUR: Final = "#c0392b"

# Characters XML 1.0 forbids even when escaped; a test id could carry them.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _esc(text: object) -> str:
    """Text safe inside SVG/HTML elements and attributes, and valid XML."""
    return html.escape(_XML_INVALID.sub("\ufffd", str(text)), quote=True)


def _n(value: float) -> str:
    """A coordinate: one decimal, never "-0.0", so output is byte-stable."""
    text = f"{value:.1f}"
    return "0.0" if text == "-0.0" else text


def nice_ticks(lo: float, hi: float, max_ticks: int = 6) -> list[float]:
    """Round tick values (1/2/5 x 10^k steps) covering [lo, hi]."""
    if not math.isfinite(lo) or not math.isfinite(hi) or hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(1, max_ticks - 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.floor(lo / step) * step
    ticks: list[float] = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < hi:
        ticks.append(round(value, 10))
    return ticks


def _tick_label(value: float) -> str:
    return fmt(value, 0 if value == int(value) else 1)


@dataclass(frozen=True)
class _Plot:
    """A plot area in pixels and the data range it maps."""

    left: float
    top: float
    width: float
    height: float
    x_lo: float
    x_hi: float
    y_lo: float
    y_hi: float

    def x(self, v: float) -> float:
        return self.left + (v - self.x_lo) / (self.x_hi - self.x_lo) * self.width

    def y(self, v: float) -> float:
        return self.top + self.height - (v - self.y_lo) / (self.y_hi - self.y_lo) * self.height

    @property
    def bottom(self) -> float:
        return self.top + self.height

    def y_axis(self, ticks: Sequence[float], label: str) -> list[str]:
        """Left axis with gridlines and a rotated label."""
        out = [f'<line x1="{_n(self.left)}" y1="{_n(self.top)}" x2="{_n(self.left)}" '
               f'y2="{_n(self.bottom)}" stroke="#333"/>']
        for t in ticks:
            y = self.y(t)
            out.append(f'<line x1="{_n(self.left)}" y1="{_n(y)}" x2="{_n(self.left + self.width)}" '
                       f'y2="{_n(y)}" stroke="#e5e5e5"/>')
            out.append(f'<line x1="{_n(self.left - 4)}" y1="{_n(y)}" x2="{_n(self.left)}" '
                       f'y2="{_n(y)}" stroke="#333"/>')
            out.append(f'<text x="{_n(self.left - 6)}" y="{_n(y + 4)}" '
                       f'text-anchor="end">{_esc(_tick_label(t))}</text>')
        cx, cy = self.left - 48, self.top + self.height / 2
        out.append(f'<text x="{_n(cx)}" y="{_n(cy)}" text-anchor="middle" '
                   f'transform="rotate(-90 {_n(cx)} {_n(cy)})">{_esc(label)}</text>')
        return out

    def x_axis(self, ticks: Sequence[float] | None, label: str) -> list[str]:
        """Bottom axis; ticks=None draws only the baseline (categorical axes)."""
        out = [f'<line x1="{_n(self.left)}" y1="{_n(self.bottom)}" x2="{_n(self.left + self.width)}" '
               f'y2="{_n(self.bottom)}" stroke="#333"/>']
        for t in ticks or ():
            x = self.x(t)
            out.append(f'<line x1="{_n(x)}" y1="{_n(self.bottom)}" x2="{_n(x)}" '
                       f'y2="{_n(self.bottom + 4)}" stroke="#333"/>')
            out.append(f'<text x="{_n(x)}" y="{_n(self.bottom + 16)}" '
                       f'text-anchor="middle">{_esc(_tick_label(t))}</text>')
        if label:
            out.append(f'<text x="{_n(self.left + self.width / 2)}" y="{_n(self.bottom + 34)}" '
                       f'text-anchor="middle">{_esc(label)}</text>')
        return out

    def budget_line(self, budget_ms: float | None) -> list[str]:
        if budget_ms is None or not self.y_lo <= budget_ms <= self.y_hi:
            return []
        y = self.y(budget_ms)
        return [
            f'<line x1="{_n(self.left)}" y1="{_n(y)}" x2="{_n(self.left + self.width)}" y2="{_n(y)}" '
            f'stroke="{BUDGET_COLOUR}" stroke-width="1.5" stroke-dasharray="6 4"/>',
            f'<text x="{_n(self.left + self.width - 4)}" y="{_n(y - 4)}" text-anchor="end" '
            f'fill="{BUDGET_COLOUR}">{_esc(f"budget {fmt(budget_ms)} ms")}</text>',
        ]


def _document(width: float, height: float, title: str, body: Sequence[str]) -> str:
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{_n(width)}" height="{_n(height)}" '
            f'viewBox="0 0 {_n(width)} {_n(height)}" role="img" aria-label="{_esc(title)}" '
            f'font-family="sans-serif" font-size="11" class="virtmig-chart">')
    caption = (f'<text x="{_n(width / 2)}" y="16" text-anchor="middle" font-size="13" font-weight="bold">'
               f'{_esc(title)}</text>')
    return "\n".join([head, f"<title>{_esc(title)}</title>", caption, *body, "</svg>"])


def _empty(title: str, message: str, width: float = 480) -> str:
    return _document(width, 60, title, [
        f'<text x="{_n(width / 2)}" y="42" text-anchor="middle" fill="#666">{_esc(message)}</text>'])


def _swatch(x: float, y: float, colour: str, label: str) -> list[str]:
    return [f'<rect x="{_n(x)}" y="{_n(y - 9)}" width="12" height="10" fill="{colour}"/>',
            f'<text x="{_n(x + 16)}" y="{_n(y)}">{_esc(label)}</text>']


def progress_chart(records: Sequence[MigrationRecord], *, width: float = 720, height: float = 320) -> str:
    """Remaining guest memory over time, one line per migration.

    Shows whether pre-copy converged (a falling line), stalled (a plateau:
    the guest dirties memory as fast as it is sent) or fell back to a last
    big pass; numbers (#k) match the migrations table.
    """
    title = "Remaining memory during migration"
    series = [(i, r, progress_points(r)) for i, r in enumerate(records, 1)]
    series = [(i, r, pts) for i, r, pts in series if pts]
    if not series:
        return _empty(title, "no progress samples recorded")
    x_max = max(t for _, _, pts in series for t, _ in pts)
    y_max = max(m for _, _, pts in series for _, m in pts) / MIB
    x_ticks = nice_ticks(0.0, x_max)
    y_ticks = nice_ticks(0.0, y_max)
    plot = _Plot(64, 32, width - 84, height - 82, 0.0, x_ticks[-1], 0.0, y_ticks[-1])
    body = [*plot.y_axis(y_ticks, "remaining memory (MiB)"), *plot.x_axis(x_ticks, "time since job start (ms)")]
    legend_top = height - 4
    for row, (i, record, pts) in enumerate(series):
        colour = PALETTE[(i - 1) % len(PALETTE)]
        coords = " ".join(f"{_n(plot.x(t))},{_n(plot.y(m / MIB))}" for t, m in pts)
        tip = f"#{i} {record.test_id}: {len(pts)} samples"
        if len(pts) == 1:
            cx, cy = coords.split(",")
            body.append(f'<circle cx="{cx}" cy="{cy}" r="3" fill="{colour}"><title>{_esc(tip)}</title></circle>')
        else:
            body.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.5">'
                        f"<title>{_esc(tip)}</title></polyline>")
        y = legend_top + 16 * (row + 1)
        body.append(f'<line x1="{_n(plot.left)}" y1="{_n(y - 4)}" x2="{_n(plot.left + 16)}" y2="{_n(y - 4)}" '
                    f'stroke="{colour}" stroke-width="2"/>')
        body.append(f'<text x="{_n(plot.left + 22)}" y="{_n(y)}">{_esc(f"#{i} {record.test_id}")}</text>')
    return _document(width, height + 16 * len(series) + 8, title, body)


#: Outages of different orders never share an axis: a live migration's
#: downtime is some hundred milliseconds, an offline move's outage (shut
#: down, move, boot) tens of seconds; on one axis every live bar vanishes.
FAMILIES: Final = (
    ("live", "Downtime per live migration", "Live downtime per mode: p50, min–max"),
    ("offline", "Outage per offline move", "Offline outage per kind: p50, min–max"),
)


def family(record: MigrationRecord) -> str:
    """`live`, or `offline` for the moves that stop the guest (offline, cold, save-restore)."""
    return "live" if record.kind == "live" else "offline"


def _by_family(records: Sequence[MigrationRecord]) -> list[tuple[str, str, list[tuple[int, MigrationRecord]]]]:
    """(per-migration title, per-mode title, [(table number, record)]) of each family that has records."""
    out = []
    for name, title, mode_title in FAMILIES:
        members = [(i, r) for i, r in enumerate(records, 1) if family(r) == name]
        if members:
            out.append((title, mode_title, members))
    return out


def downtime_charts(records: Sequence[MigrationRecord], *, budget_ms: float | None = 500.0) -> list[str]:
    """One per-migration chart and one per-mode chart for each family of outage, each on its own axis.

    The budget line belongs to live downtime only.
    """
    if not records:
        return [downtime_chart(records, budget_ms=budget_ms)]
    charts = []
    for title, mode_title, members in _by_family(records):
        budget = budget_ms if family(members[0][1]) == "live" else None
        rs = [r for _, r in members]
        charts.append(downtime_chart(rs, budget_ms=budget, title=title, numbers=[i for i, _ in members]))
        charts.append(downtime_distribution(rs, budget_ms=budget, title=mode_title))
    return charts


def downtime_chart(
    records: Sequence[MigrationRecord], *, budget_ms: float | None = 500.0, bar_group_px: float = 44,
    title: str = "Downtime per migration", numbers: Sequence[int] | None = None,
) -> str:
    """Per-migration downtime: libvirt's figure next to the probe's longest gap.

    libvirt measures CPUs-paused time on the hosts; the probe measures what
    a client of the guest saw, including network re-convergence after the
    switch.  A probe bar much taller than the libvirt bar points at the
    network, not at QEMU.  The dashed line is the operator's budget.
    `numbers` are the migrations table's #k of the records (default 1..n).
    """
    if not records:
        return _empty(title, "no migrations recorded")
    values = [(downtime_ms(r), probe_gap_ms(r)) for r in records]
    known = [v for pair in values for v in pair if v is not None]
    top = max([*known, budget_ms or 0.0, 1.0])
    y_ticks = nice_ticks(0.0, top * 1.08)
    plot_w = max(360.0, bar_group_px * len(records))
    # Wide left margin: the first rotated label reaches left of its bar group.
    plot = _Plot(120, 44, plot_w, 220, 0.0, float(len(records)), 0.0, y_ticks[-1])
    body = [*_swatch(plot.left, 34, LIBVIRT_COLOUR, "libvirt downtime"),
            *_swatch(plot.left + 130, 34, PROBE_COLOUR, "probe longest gap"),
            *plot.y_axis(y_ticks, "downtime (ms)"), *plot.x_axis(None, "")]
    bar_w = min(16.0, bar_group_px * 0.36)
    numbers = list(numbers) if numbers is not None else list(range(1, len(records) + 1))
    for idx, (record, (libvirt_v, probe_v)) in enumerate(zip(records, values, strict=True)):
        centre = plot.x(idx + 0.5)
        number = numbers[idx]
        for offset, colour, value, what in ((-bar_w, LIBVIRT_COLOUR, libvirt_v, "libvirt downtime"),
                                            (0.0, PROBE_COLOUR, probe_v, "probe longest gap")):
            x = centre + offset
            tip = f"#{number} {record.test_id}: {what} {fmt(value)} ms"
            if value is None:
                body.append(f'<text x="{_n(x + bar_w / 2)}" y="{_n(plot.bottom - 3)}" text-anchor="middle" '
                            f'fill="#666">{DASH}<title>{_esc(tip)}</title></text>')
                continue
            y = plot.y(value)
            body.append(f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(bar_w)}" height="{_n(plot.bottom - y)}" '
                        f'fill="{colour}"><title>{_esc(tip)}</title></rect>')
        if not record.ok:
            failed = _esc(f"#{number} failed: {record.error or DASH}")
            body.append(f'<text x="{_n(centre)}" y="{_n(plot.bottom - 16)}" text-anchor="middle" fill="{FAIL_COLOUR}" '
                        f'font-weight="bold">✗<title>{failed}</title></text>')
        label = f"#{number} {short_label(record, 24)}"
        ly = plot.bottom + 12
        fill = "" if record.ok else f' fill="{FAIL_COLOUR}"'
        body.append(f'<text x="{_n(centre)}" y="{_n(ly)}" text-anchor="end" '
                    f'transform="rotate(-45 {_n(centre)} {_n(ly)})"{fill}>'
                    f"{_esc(label)}<title>{_esc(record.test_id)}</title></text>")
    body.extend(plot.budget_line(budget_ms))
    return _document(plot.left + plot_w + 20, plot.bottom + 130, title, body)


def _box(centre: float, plot: _Plot, values: Sequence[float], colour: str, what: str, group: str) -> list[str]:
    """The p50 as a bar, min–max as a whisker, every value as a dot.

    The p50 is what a mode usually costs; the whisker shows its worst and
    best hop, which is what a maintenance window must allow for.
    """
    ordered = sorted(values)
    median = statistics.median(ordered)
    lo, hi = ordered[0], ordered[-1]
    half = 9.0
    tip = f"{group} {what}: n={len(ordered)}, p50 {fmt(median)} ms, min–max {fmt(lo)}–{fmt(hi)} ms"
    out = [
        f'<g class="virtmig-p50"><title>{_esc(tip)}</title>',
        f'<rect x="{_n(centre - half)}" y="{_n(plot.y(median))}" width="{_n(2 * half)}" '
        f'height="{_n(max(1.0, plot.bottom - plot.y(median)))}" fill="{colour}" fill-opacity="0.35"/>',
        f'<line x1="{_n(centre)}" y1="{_n(plot.y(hi))}" x2="{_n(centre)}" y2="{_n(plot.y(lo))}" stroke="{colour}"/>',
        f'<line x1="{_n(centre - half / 2)}" y1="{_n(plot.y(hi))}" x2="{_n(centre + half / 2)}" '
        f'y2="{_n(plot.y(hi))}" stroke="{colour}"/>',
        f'<line x1="{_n(centre - half / 2)}" y1="{_n(plot.y(lo))}" x2="{_n(centre + half / 2)}" '
        f'y2="{_n(plot.y(lo))}" stroke="{colour}"/>',
        f'<line x1="{_n(centre - half)}" y1="{_n(plot.y(median))}" x2="{_n(centre + half)}" '
        f'y2="{_n(plot.y(median))}" stroke="{colour}" stroke-width="2"/>',
    ]
    for k, v in enumerate(values):
        # Fixed spread instead of random jitter keeps the output reproducible.
        dx = ((k % 5) - 2) * 3.0
        out.append(f'<circle cx="{_n(centre + dx)}" cy="{_n(plot.y(v))}" r="2.5" fill="{colour}" '
                   f'fill-opacity="0.8"><title>{_esc(f"{fmt(v)} ms")}</title></circle>')
    out.append("</g>")
    return out


def _mode_group(record: MigrationRecord) -> str:
    return f"{record.kind}/{record.mode}"


def downtime_distribution(
    records: Sequence[MigrationRecord],
    *,
    budget_ms: float | None = 500.0,
    group_by: Callable[[MigrationRecord], str] = _mode_group,
    title: str = "Downtime distribution over round trips",
) -> str:
    """Spread of downtime over repeated migrations (round trips), per group.

    One migration's downtime says little; the spread over round trips shows
    whether a mode is reliably inside the budget or only on average.
    Groups (by default kind/mode) keep the order in which they first appear.
    """
    groups: dict[str, tuple[list[float], list[float]]] = {}
    for record in records:
        libvirt_vals, probe_vals = groups.setdefault(group_by(record), ([], []))
        if (v := downtime_ms(record)) is not None:
            libvirt_vals.append(v)
        if (v := probe_gap_ms(record)) is not None:
            probe_vals.append(v)
    groups = {k: pair for k, pair in groups.items() if pair[0] or pair[1]}
    if not groups:
        return _empty(title, "no downtime figures recorded")
    known = [v for a, b in groups.values() for v in (*a, *b)]
    y_ticks = nice_ticks(0.0, max([*known, budget_ms or 0.0, 1.0]) * 1.08)
    group_px = 120.0
    plot = _Plot(64, 44, max(320.0, group_px * len(groups)), 220, 0.0, float(len(groups)), 0.0, y_ticks[-1])
    body = [*_swatch(plot.left, 34, LIBVIRT_COLOUR, "libvirt downtime"),
            *_swatch(plot.left + 130, 34, PROBE_COLOUR, "probe longest gap"),
            *plot.y_axis(y_ticks, "downtime (ms)"), *plot.x_axis(None, "")]
    for idx, (name, (libvirt_vals, probe_vals)) in enumerate(groups.items()):
        centre = plot.x(idx + 0.5)
        if libvirt_vals:
            body.extend(_box(centre - 22, plot, libvirt_vals, LIBVIRT_COLOUR, "libvirt downtime", name))
        if probe_vals:
            body.extend(_box(centre + 22, plot, probe_vals, PROBE_COLOUR, "probe longest gap", name))
        n = max(len(libvirt_vals), len(probe_vals))
        body.append(f'<text x="{_n(centre)}" y="{_n(plot.bottom + 16)}" text-anchor="middle">{_esc(name)}</text>')
        body.append(f'<text x="{_n(centre)}" y="{_n(plot.bottom + 30)}" text-anchor="middle" '
                    f'fill="#666">{_esc(f"n={n}")}</text>')
    body.extend(plot.budget_line(budget_ms))
    return _document(plot.left + plot.width + 20, plot.bottom + 44, title, body)
