"""The report's trends section: this run's p50/p95 beside the history's, regressions first in view.

A reader scanning a nightly report wants one line: "no regression against
the last 10 nights" or "live/p2p libvirt downtime p95 regressed".  So the
section opens with that sentence and the rule that produced it (threshold
and floor, from `TrendPolicy.describe`), then the table, with regressed
rows marked.  Everything is escaped: run ids and modes come from disk.
"""

from __future__ import annotations

import html
from typing import Final

from virtmig.report import fmt
from virtmig.report.trends import IMPROVED, REGRESSION, TrendRow, Trends

COLUMNS: Final = ("group", "metric", "n", "p50 (ms)", "p95 (ms)", "history runs",
                  "history p50 (ms)", "history p95 (ms)", "status", "why")

STYLE: Final = """<style>
.virtmig-trends { border-collapse: collapse; margin: 8px 0 16px; font-size: 12px; }
.virtmig-trends th, .virtmig-trends td { border: 1px solid #ccc; padding: 3px 6px; vertical-align: top; color: #222; }
.virtmig-trends th { background: #f2f2f2; text-align: left; }
.virtmig-trends td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.virtmig-trends tr.regression td { background: #fdecea; }
.virtmig-trends tr.regression td.status { color: #c0392b; font-weight: bold; }
.virtmig-trends tr.improved td.status { color: #2a7d2a; }
p.virtmig-trends-headline.bad { color: #c0392b; font-weight: bold; }
</style>"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def headline(trends: Trends) -> str:
    """One sentence: how many regressions, against how many runs."""
    runs = len(trends.compared_runs)
    pair = " / ".join(trends.pair) or "this host pair"
    if not trends.rows:
        return f"No successful migration in this run to compare with {runs} earlier run(s) of {pair}."
    bad = trends.regressions
    if not bad:
        return f"No regression against {runs} earlier run(s) of {pair}."
    what = "; ".join(f"{r.group} {r.label}" for r in bad)
    return f"{len(bad)} regression(s) against {runs} earlier run(s) of {pair}: {what}."


def _row(row: TrendRow) -> str:
    css = {REGRESSION: "regression", IMPROVED: "improved"}.get(row.status, "other")
    cells = [
        f"<td>{_e(row.group)}</td>",
        f"<td>{_e(row.label)}</td>",
        f'<td class="num">{row.n}</td>',
        f'<td class="num">{_e(fmt(row.p50))}</td>',
        f'<td class="num">{_e(fmt(row.p95))}</td>',
        f'<td class="num">{row.history_runs}</td>',
        f'<td class="num">{_e(fmt(row.history_p50))}</td>',
        f'<td class="num">{_e(fmt(row.history_p95))}</td>',
        f'<td class="status">{_e(row.status)}</td>',
        f"<td>{_e('; '.join(row.reasons))}</td>",
    ]
    return f'<tr class="{css}">' + "".join(cells) + "</tr>"


def render_html(trends: Trends | None, *, problem: str | None = None) -> str:
    """The whole section; `problem` says why there are no trends (e.g. turned off)."""
    parts = [STYLE, "<h2>Trends</h2>"]
    if trends is None:
        parts.append(f"<p>Not compared: {_e(problem or 'no results to compare')}.</p>")
        return "".join(parts)
    css = "bad" if trends.regressions else "ok"
    parts.append(f'<p class="virtmig-trends-headline {css}">{_e(headline(trends))}</p>')
    parts.append(f'<p class="virtmig-trends-rule">Rule: {_e(trends.policy.describe())}.</p>')
    if trends.compared_runs:
        parts.append(f"<p>Runs compared: {_e(', '.join(trends.compared_runs))}.</p>")
    head = "".join(f"<th>{_e(c)}</th>" for c in COLUMNS)
    body = "\n".join(_row(r) for r in trends.rows) or f'<tr><td colspan="{len(COLUMNS)}">nothing to compare</td></tr>'
    parts.append(f'<table class="virtmig-trends">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>')
    if trends.skipped:
        parts.append("<p>Results not read:</p><ul>")
        parts.extend(f"<li>{_e(s)}</li>" for s in trends.skipped)
        parts.append("</ul>")
    return "".join(parts)


def summary_text(trends: Trends) -> list[str]:
    """Lines for the terminal summary: the headline, then each regression's reasons."""
    lines = [headline(trends)]
    lines += [f"  {r.group} {r.label}: {'; '.join(r.reasons)}" for r in trends.regressions]
    return lines
