"""The night at a glance: a pair x suite matrix, each cell passed, failed, skipped or not run.

A lab that certifies many pairs reads the night from one table before any
detail: which pair failed, in which suite.  Each cell is judged from the
outcomes of that pair's tests in that suite (a failure anywhere makes it
red, else a pass makes it green, else skipped), a pair whose host did not
answer ssh is "unreachable" in every cell, and a certified pair slower than
its own trend turns amber in its verdict cell.  Cells link to the pair's
verdict block (`anchor`), where the reasons are.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

#: The matrix's columns, in the order a night runs them; a suite outside these gets a column after them.
SUITES: Final = ("preflight", "live", "offline", "permissions", "selinux")

PASSED: Final = "passed"
FAILED: Final = "failed"
SKIPPED: Final = "skipped"
NOT_RUN: Final = "not run"
UNREACHABLE: Final = "unreachable"

_CSS: Final = {PASSED: "ok", FAILED: "bad", SKIPPED: "skip", NOT_RUN: "none", UNREACHABLE: "bad"}


def suite_of(nodeid: str) -> str | None:
    """The suite a test belongs to ("suites/live/test_x.py::t" -> "live"); None outside suites/."""
    parts = nodeid.split("::", 1)[0].split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "suites" else None


def anchor(label: str) -> str:
    """The HTML id of a pair's verdict block (labels are ssh names and '-': safe as ids)."""
    return f"virtmig-pair-{label}"


@dataclass
class Matrix:
    """Outcomes per (pair, suite), filed from test reports as they arrive."""

    pairs: list[str] = field(default_factory=list)
    outcomes: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    unreachable: dict[str, str] = field(default_factory=dict)

    def add(self, pair: str, suite: str, outcome: str) -> None:
        """One report's outcome ("passed", "failed", "skipped") for *pair* in *suite*."""
        if pair not in self.pairs:
            self.pairs.append(pair)
        self.outcomes.setdefault((pair, suite), set()).add(outcome)

    def mark_unreachable(self, pair: str, why: str) -> None:
        if pair not in self.pairs:
            self.pairs.append(pair)
        self.unreachable.setdefault(pair, why)

    @property
    def suites(self) -> list[str]:
        seen = {suite for _pair, suite in self.outcomes}
        return [s for s in SUITES] + sorted(seen - set(SUITES))

    def cell(self, pair: str, suite: str) -> str:
        if pair in self.unreachable:
            return UNREACHABLE
        seen = self.outcomes.get((pair, suite), set())
        if FAILED in seen:
            return FAILED
        if PASSED in seen:
            return PASSED
        return SKIPPED if SKIPPED in seen else NOT_RUN

    def to_dict(self, pair: str) -> dict[str, str]:
        """The pair's row, suite -> cell, for results.json."""
        return {suite: self.cell(pair, suite) for suite in self.suites}


STYLE: Final = """<style>
table.virtmig-matrix{border-collapse:collapse;margin:1em 0}
table.virtmig-matrix th,table.virtmig-matrix td{border:1px solid #999;padding:.3em .8em;text-align:center}
table.virtmig-matrix td.ok{background:#cfeccf}table.virtmig-matrix td.bad{background:#f4c7c7}
table.virtmig-matrix td.warn{background:#ffe2a8}table.virtmig-matrix td.skip{background:#eee;color:#555}
table.virtmig-matrix td.none{color:#999}table.virtmig-matrix td a{color:inherit}
</style>"""


def render_html(matrix: Matrix, verdicts: Mapping[str, tuple[str, str]], order: Sequence[str] = ()) -> str:
    """The matrix table: one row per pair, one column per suite, then the pair's verdict.

    *verdicts* maps a pair to (word, css) of its verdict; *order* lists the run's pairs first (a pair with
    no report at all still gets its row, every cell "not run").
    """
    e = html.escape
    pairs = list(dict.fromkeys([*order, *matrix.pairs]))
    head = "".join(f"<th>{e(s)}</th>" for s in matrix.suites)
    rows = []
    for pair in pairs:
        link = f'href="#{e(anchor(pair))}"'
        cells = []
        for suite in matrix.suites:
            state = matrix.cell(pair, suite)
            cells.append(f'<td class="{_CSS[state]}" data-suite="{e(suite)}"><a {link}>{e(state)}</a></td>')
        word, css = verdicts.get(pair, ("NOT RUN", "none"))
        cells.append(f'<td class="{e(css)} virtmig-matrix-verdict"><a {link}>{e(word)}</a></td>')
        rows.append(f'<tr data-pair="{e(pair)}"><th>{e(pair)}</th>{"".join(cells)}</tr>')
    return (f'{STYLE}<h2>Pairs and suites</h2><table class="virtmig-matrix"><thead><tr><th>pair</th>{head}'
            f'<th>verdict</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


def render_text(matrix: Matrix, verdicts: Mapping[str, tuple[str, str]], order: Sequence[str] = ()) -> list[str]:
    """The same matrix as terminal lines (fixed-width columns)."""
    pairs = list(dict.fromkeys([*order, *matrix.pairs]))
    width = max([len(p) for p in pairs] + [4])
    cols = [*matrix.suites, "verdict"]
    widths = [max(len(c), 11) for c in cols]
    lines = ["pair".ljust(width) + "  " + "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    for pair in pairs:
        cells = [matrix.cell(pair, s) for s in matrix.suites] + [verdicts.get(pair, ("NOT RUN", ""))[0]]
        lines.append(pair.ljust(width) + "  " + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)))
    return lines
