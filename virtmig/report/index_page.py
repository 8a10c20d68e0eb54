"""reports/index.html: every night under reports/, each pair's verdict, its p50 downtime over the nights.

A lab reads this page first in the morning: which pairs were certified last
night, and whether a pair is drifting.  It is rebuilt from the results.json
files after each run (so it never disagrees with them), self-contained (no
script, no external resource) and opened from the file system, where links
to each night's report are relative.  Pure apart from `write_index`.
"""

from __future__ import annotations

import html
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from virtmig.report import DASH, downtime_ms, fmt
from virtmig.report.results_json import LATEST_NAME, RESULTS_NAME, read_run
from virtmig.report.trends import pair_of

INDEX_NAME: Final = "index.html"
SPARK_W: Final = 160
SPARK_H: Final = 36


@dataclass(frozen=True)
class Night:
    """One run of one pair, as the index shows it."""

    run_id: str
    started_at: str
    pair: str
    verdict: str
    exit_status: int | None
    p50_downtime_ms: float | None
    migrations: int
    report: str | None  # path of the night's HTML report, relative to reports/


def _p50_live_downtime(records: Sequence[Any]) -> float | None:
    # A faulted migration's downtime measures the fault, not the pair's night: left out.
    values = [v for r in records if r.kind == "live" and not r.fault and (v := downtime_ms(r)) is not None]
    return statistics.median(values) if values else None


def _verdict_word(run: dict[str, Any]) -> str:
    verdict = run.get("verdict")
    if isinstance(verdict, str) and verdict:
        return verdict
    status = run.get("exit_status")
    return "passed" if status == 0 else ("failed" if isinstance(status, int) else DASH)


def read_nights(reports_root: Path) -> tuple[list[Night], list[str]]:
    """Every run's Night, oldest first, and the runs that could not be read (with why)."""
    nights: list[Night] = []
    unreadable: list[str] = []
    if not reports_root.is_dir():
        return nights, unreadable
    for run_dir in sorted(reports_root.iterdir()):
        if run_dir.name == LATEST_NAME or run_dir.is_symlink() or not (run_dir / RESULTS_NAME).is_file():
            continue
        try:
            doc, records = read_run(run_dir / RESULTS_NAME)
        except (OSError, ValueError, TypeError) as exc:
            unreadable.append(f"{run_dir.name}: {exc}")
            continue
        raw = doc.get("run")
        run: dict[str, Any] = raw if isinstance(raw, dict) else {}
        report = run.get("html_report")
        rel = None
        if isinstance(report, str) and report:  # this run's own report is written after the index
            rel = os.path.relpath(report, reports_root)
        status = run.get("exit_status")
        night = Night(
            run_id=run_dir.name, started_at=str(run.get("started_at") or ""),
            pair=" -> ".join(pair_of(records, run)) or DASH, verdict=_verdict_word(run),
            exit_status=status if isinstance(status, int) else None,
            p50_downtime_ms=_p50_live_downtime(records), migrations=len(records), report=rel,
        )
        nights.extend(_per_pair(night, doc.get("pairs"), records))
    nights.sort(key=lambda n: (n.started_at, n.run_id))
    return nights, unreadable


def _per_pair(night: Night, pairs: object, records: Sequence[Any]) -> list[Night]:
    """A run of several pairs (results.json's `pairs`) as one Night per pair, each with its own figures.

    The pair is named by its sorted hosts, as a run of one pair is (`pair_of`), so
    each pair's line continues its own history whichever way the night paired it.
    """
    if not isinstance(pairs, list) or len(pairs) < 2:
        return [night]
    out = []
    for entry in pairs:
        mine = [records[i] for i in entry.get("migrations", []) if isinstance(i, int) and 0 <= i < len(records)]
        hosts = sorted({str(entry.get("src")), str(entry.get("dst"))})
        verdict = entry.get("verdict")
        out.append(replace(night, pair=" -> ".join(hosts), verdict=verdict if isinstance(verdict, str) else DASH,
                           p50_downtime_ms=_p50_live_downtime(mine), migrations=len(mine)))
    return out


def sparkline(values: Sequence[float | None], label: str) -> str:
    """A small inline SVG of p50 downtime over the nights; gaps where a night had none."""
    known = [v for v in values if v is not None]
    e = html.escape
    head = (f'<svg class="virtmig-spark" xmlns="http://www.w3.org/2000/svg" width="{SPARK_W}" height="{SPARK_H}" '
            f'viewBox="0 0 {SPARK_W} {SPARK_H}" role="img" aria-label="{e(label)}"><title>{e(label)}</title>')
    if not known:
        return head + f'<text x="4" y="{SPARK_H - 12}" fill="#666" font-size="10">no live downtime</text></svg>'
    top = max(known) * 1.1 or 1.0
    step = (SPARK_W - 8) / max(1, len(values) - 1)
    points = []
    for k, v in enumerate(values):
        if v is None:
            continue
        x, y = 4 + k * step, SPARK_H - 4 - (v / top) * (SPARK_H - 8)
        points.append(f"{x:.1f},{y:.1f}")
    body = [f'<polyline points="{" ".join(points)}" fill="none" stroke="#4e79a7" stroke-width="1.5"/>']
    last_x, last_y = points[-1].split(",")
    body.append(f'<circle cx="{last_x}" cy="{last_y}" r="2.5" fill="#4e79a7"/>')
    return head + "".join(body) + "</svg>"


STYLE: Final = """<style>
body{font-family:sans-serif;font-size:13px;margin:1em 2em}
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f2f2f2}td.CERTIFIED{color:#2a7d2a;font-weight:bold}td.bad{color:#b22;font-weight:bold}
td.warn{color:#a36a00;font-weight:bold}td.num{text-align:right;font-variant-numeric:tabular-nums}
</style>"""


def _verdict_css(word: str) -> str:
    """Green, amber or red; a run from before verdicts were recorded says only passed or failed."""
    if word in ("CERTIFIED", "passed"):
        return "CERTIFIED"
    if word.startswith("CERTIFIED"):
        return "warn"
    return "bad" if word in ("NOT CERTIFIED", "failed") else ""


def render_index(nights: Sequence[Night], unreadable: Sequence[str] = ()) -> str:
    """The whole page: per pair, its latest verdict and sparkline, then every night."""
    e = html.escape
    parts = ["<!DOCTYPE html>", '<html><head><meta charset="utf-8"><title>virtmig: nights</title>', STYLE,
             "</head><body>", "<h1>virtmig: every night</h1>"]
    if not nights:
        parts.append("<p>No run has written results yet.</p>")
    pairs: dict[str, list[Night]] = {}
    for night in nights:
        pairs.setdefault(night.pair, []).append(night)
    if pairs:
        parts.append('<h2>Pairs</h2><table class="virtmig-pairs"><thead><tr><th>pair</th><th>last verdict</th>'
                     "<th>last night</th><th>nights</th><th>p50 live downtime over the nights (ms)</th>"
                     "</tr></thead><tbody>")
        for pair, runs in pairs.items():
            last = runs[-1]
            series = [n.p50_downtime_ms for n in runs]
            parts.append(
                f'<tr><td>{e(pair)}</td><td class="{_verdict_css(last.verdict)}">{e(last.verdict)}</td>'
                f"<td>{e(last.run_id)}</td><td class=\"num\">{len(runs)}</td>"
                f"<td>{sparkline(series, f'{pair}: p50 live downtime per night')} "
                f"{e(fmt(last.p50_downtime_ms))}</td></tr>")
        parts.append("</tbody></table>")
        parts.append('<h2>Nights</h2><table class="virtmig-nights"><thead><tr><th>run</th><th>started</th>'
                     "<th>pair</th><th>verdict</th><th>migrations</th><th>p50 live downtime (ms)</th>"
                     "</tr></thead><tbody>")
        for night in reversed(nights):
            run = f'<a href="{e(night.report)}">{e(night.run_id)}</a>' if night.report else e(night.run_id)
            parts.append(
                f"<tr><td>{run}</td><td>{e(night.started_at)}</td><td>{e(night.pair)}</td>"
                f'<td class="{_verdict_css(night.verdict)}">{e(night.verdict)}</td>'
                f'<td class="num">{night.migrations}</td><td class="num">{e(fmt(night.p50_downtime_ms))}</td></tr>')
        parts.append("</tbody></table>")
    for problem in unreadable:
        parts.append(f'<p class="virtmig-problem">unreadable: {e(problem)}</p>')
    parts.append("</body></html>")
    return "\n".join(parts)


def write_index(reports_root: Path) -> Path:
    """Rebuild reports/index.html from every results.json below it (atomically); return its path."""
    nights, unreadable = read_nights(reports_root)
    target = reports_root / INDEX_NAME
    tmp = reports_root / f".{INDEX_NAME}.{os.getpid()}.tmp"
    tmp.write_text(render_index(nights, unreadable))
    os.replace(tmp, target)
    return target
