"""The verdict's fault-tolerance row, through a real inner pytest session of a suites/faults module.

The row is built from what travels with the test reports (the records'
`fault` field, the skips' reasons, a failure before any record), so it is
shown here the way `make certify` builds it, not from a hand-made Verdict.
"""

from __future__ import annotations

import pytest

from tests.plugin_session import run_with_plugins

pytest_plugins = ["pytester"]

INNER = '''
import pytest
from virtmig.migration.injection import FaultRecord
from virtmig.migration.records import MigrationRecord

@pytest.mark.parametrize("kind", ["network-cut", "libvirtd-killed", "nfs-stalled"])
def test_fault(kind, migration_log):
    if kind == "nfs-stalled":
        pytest.skip("no NFS server in this run")
    if kind == "libvirtd-killed":
        raise RuntimeError("the destination never answered")
    fault = FaultRecord(kind, "cut", 1.1, 4.2, 6.0, 1.8, 84.0, "completed", "h2", ("h2: dropping",))
    migration_log.add(MigrationRecord(
        test_id=f"suites/faults/t.py::test_fault[{kind}]#hop1", kind="live", mode="p2p-16MiB/s+" + kind,
        src="h1", dst="h2", domain="vm", started_at="2099-12-31T23:59:59+00:00", wall_s=9.0, ok=True,
        storage="nfs-mount", fault=fault.to_dict()))
'''


def test_each_fault_case_is_a_line_of_the_fault_tolerance_row(pytester: pytest.Pytester,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    suite = pytester.mkpydir("suites") / "faults"
    suite.mkdir()
    (suite / "__init__.py").write_text("")
    (suite / "test_inner.py").write_text(INNER)
    html = pytester.path / "reports" / "r" / "report.html"
    result = run_with_plugins(pytester, monkeypatch, "-p", "fixtures.report", "-p", "fixtures.verdict",
                              "-p", "no:cacheprovider", f"--html={html}", "--self-contained-html", "suites")
    result.assert_outcomes(passed=1, failed=1, skipped=1)
    out = result.stdout.str()
    assert "fault tolerance: the guest came through 1 of 2 faults safe (1 not run)" in out
    assert "pass network-cut: injected at 1.1 s, lifted at 4.2 s into the migration" in out
    assert "FAIL libvirtd-killed (call): suites/faults/test_inner.py:11: RuntimeError" in out
    assert "not run: nfs-stalled: no NFS server in this run" in out
    assert "<h3>Fault tolerance</h3>" in html.read_text()
