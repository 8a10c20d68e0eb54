"""The host pair's verdict: CERTIFIED or NOT CERTIFIED, with every reason and its evidence.

An operator reads the first lines of a report and nothing else, so the
verdict comes first and carries its own reasons: each failed preflight check
with what it saw and the fix, each failed test in suites/ with its diagnosis.
Pure: built from what the pytest plugin collected (fixtures/verdict.py).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from virtmig.preflight import CheckResult

#: user_properties keys (they travel from xdist workers with each report).
CHECK_PROPERTY = "virtmig_check"
DIAGNOSIS_PROPERTY = "virtmig_diagnosis"
#: A metric that regressed against the pair's own trend (--fail-on-regression).
REGRESSION_PROPERTY = "virtmig_regression"


@dataclass(frozen=True)
class FailedTest:
    """A failed test of the certification suites, with its diagnosis if one was made."""

    nodeid: str
    message: str
    diagnosis: str | None = None


@dataclass(frozen=True)
class FaultOutcome:
    """One fault case of the fault suite: its kind, whether the guest came through safe, and how."""

    kind: str
    ok: bool
    detail: str


@dataclass
class Verdict:
    """Collected over a run; `certified` once nothing failed and something ran."""

    checks: list[CheckResult] = field(default_factory=list)
    failures: list[FailedTest] = field(default_factory=list)
    passed_tests: int = 0
    #: Metrics worse than the pair's own history; with --fail-on-regression they fail the run.
    regressions: list[str] = field(default_factory=list)
    #: The fault suite's cases that ran, and those that did not (each with its reason).
    faults: list[FaultOutcome] = field(default_factory=list)
    faults_not_run: list[str] = field(default_factory=list)
    #: Why the pair's host could not be reached (None: it could); such a pair is never certified.
    unreachable: str | None = None

    @property
    def certified(self) -> bool:
        return (self.unreachable is None and not self.failures and all(c.ok for c in self.checks)
                and (self.passed_tests > 0 or bool(self.checks)))

    @property
    def word(self) -> str:
        if self.unreachable is not None:
            return "UNREACHABLE"
        if not self.certified:
            return "NOT CERTIFIED"
        return "CERTIFIED, REGRESSED" if self.regressions else "CERTIFIED"

    @property
    def css(self) -> str:
        """ok (green), warn (amber: works, but slower than its own history) or bad (red)."""
        if not self.certified:
            return "bad"
        return "warn" if self.regressions else "ok"

    def reasons(self) -> list[str]:
        """One line per reason the pair is not certified."""
        if self.unreachable is not None:  # its tests all error with the same line: say it once
            return [self.unreachable]
        out = [f"preflight {c.name}: {'; '.join(c.evidence)}" + (f" -- fix: {c.fix}" if c.fix else "")
               for c in self.checks if not c.ok]
        out += [f"{f.nodeid}: {f.diagnosis or f.message}" for f in self.failures]
        out += self.regressions
        if not self.checks and not self.passed_tests and not self.failures:
            out.append("nothing was checked")
        return out

    def fault_tolerance(self) -> str | None:
        """The verdict's fault-tolerance row (None: the fault suite was not part of the run)."""
        if not self.faults and not self.faults_not_run:
            return None
        survived = sum(1 for f in self.faults if f.ok)
        row = f"fault tolerance: the guest came through {survived} of {len(self.faults)} faults safe"
        if not self.faults:
            row = "fault tolerance: not tested"
        if self.faults_not_run:
            row += f" ({len(self.faults_not_run)} not run)"
        return row

    def fault_lines(self) -> list[str]:
        """One line per fault case: each that ran, then each that did not and why."""
        return ([f"{'pass' if f.ok else 'FAIL'} {f.detail}" for f in self.faults]
                + [f"not run: {why}" for why in self.faults_not_run])

    def text(self, pair: str) -> str:
        lines = [f"virtmig verdict for {pair}: {self.word}"]
        row = self.fault_tolerance()
        if row is not None:
            lines += [f"  {row}"] + [f"    {line}" for line in self.fault_lines()]
        return "\n".join(lines + [f"  - {r}" for r in self.reasons()])


STYLE = """<style>
.virtmig-verdict{border:3px solid;padding:.5em 1em;margin:1em 0}
.virtmig-verdict.ok{border-color:#2a7d2a}.virtmig-verdict.bad{border-color:#b22}
.virtmig-verdict.warn{border-color:#d98c00;background:#fff6e0}
.virtmig-verdict h2{margin:.2em 0}.virtmig-verdict.ok h2{color:#2a7d2a}.virtmig-verdict.bad h2{color:#b22}
.virtmig-verdict.warn h2{color:#a36a00}
.virtmig-verdict pre{white-space:pre-wrap;margin:.2em 0 .6em 1em}
</style>"""


def render_html(verdict: Verdict, pair: str, anchor: str | None = None) -> str:
    """The verdict block that opens the HTML report (*anchor*: its id, for the pair matrix's links)."""
    e = html.escape
    ident = "" if anchor is None else f' id="{e(anchor)}"'
    parts = [STYLE, f'<div class="virtmig-verdict {verdict.css}"{ident}><h2>{e(pair)}: {verdict.word}</h2>']
    if verdict.unreachable is not None:
        parts.append(f"<p><b>unreachable:</b> {e(verdict.unreachable)}</p></div>")
        return "".join(parts)
    if verdict.checks:
        parts.append("<h3>Preflight</h3><ul>")
        for c in verdict.checks:
            mark = "pass" if c.ok else "FAIL"
            fix = f"<br><b>fix:</b> {e(c.fix)}" if c.fix and not c.ok else ""
            parts.append(f"<li><b>{mark}</b> {e(c.name)}{fix}<pre>{e(chr(10).join(c.evidence))}</pre></li>")
        parts.append("</ul>")
    if verdict.failures:
        parts.append("<h3>Failed tests</h3><ul>")
        for f in verdict.failures:
            detail = f.diagnosis or f.message
            parts.append(f"<li><b>{e(f.nodeid)}</b><pre>{e(detail)}</pre></li>")
        parts.append("</ul>")
    if (row := verdict.fault_tolerance()) is not None:
        parts.append(f"<h3>Fault tolerance</h3><p>{e(row)}</p><ul>")
        parts.extend(f"<li>{e(line)}</li>" for line in verdict.fault_lines())
        parts.append("</ul>")
    if verdict.regressions:
        parts.append("<h3>Regressed against the pair's own trend</h3><ul>")
        parts.extend(f"<li>{e(r)}</li>" for r in verdict.regressions)
        parts.append("</ul>")
    if not verdict.certified and not verdict.failures and not any(not c.ok for c in verdict.checks):
        parts.append("<p>Nothing was checked.</p>")
    parts.append(f"<p>{verdict.passed_tests} certification tests passed.</p></div>")
    return "".join(parts)
