"""The report's environment and trends sections, through a real inner pytest session.

The inner session is the plugin as `make certify` uses it (fixtures.report
and fixtures.verdict, pytest-html, a suites/ path so the verdict counts it),
with the host pair replaced by recorded facts: the module's tests request
`src_host`/`dst_host` as the suites do (stand-ins here) and the module
overrides `host_environment`, which is exactly where the real one gathers.
Earlier nights are results.json files written beside it, so the trends
section has a history to compare with.  The browser test reuses this run.
"""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest
from _pytest.pytester import RunResult

from tests.plugin_session import run_with_plugins
from virtmig.migration.records import MigrationRecord
from virtmig.report.results_json import read_run, write_run

pytest_plugins = ["pytester"]

REPO_ROOT = Path(__file__).resolve().parent.parent
RUN_ID = "20991231T235959Z"

INNER_TESTS = '''
import json

import pytest
from virtmig.environment import HostFacts, PairEnvironment
from virtmig.migration.records import MigrationRecord
from virtmig.report import MIB

ENV_MODE = {env_mode!r}
WITH_OFFLINE = {offline!r}
UNSAFE = '--unsafe: lab NFS mount is a FUSE client (fuse.nfs); libvirt 9.0 only trusts kernel NFS'


@pytest.fixture(scope="session")
def src_host():
    return "h1"  # stands in for virtmig.host.Host; the suites request the hosts like this


@pytest.fixture(scope="session")
def dst_host():
    return "h2"


@pytest.fixture(scope="session")
def host_environment():
    if ENV_MODE == "broken":
        raise RuntimeError("libvirtd on h2 refused the connection")
    common = dict(os="Debian GNU/Linux 12 (bookworm)", cpu_model="AMD EPYC 7713 64-Core Processor",
                  cpu_count=2, libvirt_cpu="AMD EPYC-Milan", libvirt_version="9.0.0", qemu_version="7.2.19")
    return PairEnvironment(
        HostFacts("h1", hostname="h1", kernel="6.1.0-18-amd64", host_uuid="uuid-1", **common),
        HostFacts("h2", hostname="h2", kernel="6.1.0-21-amd64", host_uuid="uuid-2", **common),
        "2099-12-31T23:59:59+00:00")


GUEST = {{"network": "bridge:vmbr0", "address": "192.0.2.50/24", "gateway": "192.0.2.1", "mac": "52:54:00:ab:cd:ef",
         "virt_type": "kvm", "virt_type_why": "auto: both hosts' domain capabilities offer KVM",
         "cpu": "EPYC-Rome (+2 feature policies)", "cpu_xml": "<cpu/>",
         "cpu_why": "baseline: libvirt's baseline for kvm over both hosts' CPUs", "memory_mib": 1024, "vcpus": 2}}


def rec(test_id, downtime, ok=True, src="h1", dst="h2"):
    return MigrationRecord(
        test_id=test_id, kind="live", mode="p2p", src=src, dst=dst, domain="vm",
        started_at="2099-12-31T23:59:59+00:00", wall_s=3.1, ok=ok, storage="nfs-mount",
        stats={{"downtime_ms": downtime, "time_elapsed_ms": 3000, "data_processed_bytes": 300 * MIB,
               "memory_bytes_per_s": 100 * MIB, "memory_iteration": 3}} if ok else None,
        probe={{"longest_gap_ms": downtime + 35, "lost": 1}} if ok else None,
        progress=[{{"time_elapsed_ms": t, "memory_remaining_bytes": r * MIB, "memory_iteration": n}}
                  for t, r, n in ((50, 0, 0), (100, 256, 1), (1500, 90, 2), (2900, 4, 3))] if ok else [],
        notes=[UNSAFE],
        dirty_rate_asked_mib_s=8, error=None if ok else "operation failed: migration cancelled")


@pytest.mark.parametrize("trip", range(4))
def test_round_trip(migration_log, src_host, dst_host, request, trip):
    # as fixtures.guest's domain_xml files the guest it started
    request.node.user_properties.append(("virtmig_guest", json.dumps(GUEST)))
    there, back = 240 + 10 * trip, 250 + 10 * trip
    migration_log.add(rec(request.node.nodeid + " hop 1", there))
    migration_log.add(rec(request.node.nodeid + " hop 2", back, src="h2", dst="h1"))


def test_unrelated(migration_log):
    if WITH_OFFLINE:  # an outage of another order: a cold move of 31 s
        migration_log.add(MigrationRecord(
            test_id="suites/offline/t.py::test_cold", kind="cold", mode="cold", src="h1", dst="h2", domain="vm",
            started_at="2099-12-31T23:59:59+00:00", wall_s=33.0, ok=True, storage="nfs-mount",
            stats={{"downtime_ms": 31000, "time_elapsed_ms": 31000}}, probe={{"longest_gap_ms": 31800}},
            notes=[UNSAFE]))
'''


@dataclass(frozen=True)
class SyntheticRun:
    """What one inner session left: its outcome, report and results."""

    result: RunResult
    html: Path
    run_dir: Path


def write_history(reports: Path, nights: int = 4, downtime: float = 100.0) -> list[str]:
    """Earlier runs of the pair h1/h2 with quiet downtimes; returns their run ids."""
    ids = []
    for night in range(1, nights + 1):
        run_id = f"2024050{night}T020000Z"
        records = [MigrationRecord(test_id=f"suites/live/t.py::test[{trip}]", kind="live", mode="p2p",
                                   src="h1", dst="h2", domain="vm", started_at=f"2024-05-0{night}T02:00:00+00:00",
                                   wall_s=3.0, ok=True, storage="nfs-mount",
                                   stats={"downtime_ms": downtime + trip, "time_elapsed_ms": 3000},
                                   probe={"longest_gap_ms": downtime + 30 + trip}, dirty_rate_asked_mib_s=8)
                   for trip in range(4)]
        write_run(records, reports / run_id,
                  run_meta={"run_id": run_id, "started_at": f"2024-05-0{night}T02:00:00+00:00"})
        ids.append(run_id)
    return ids


def synthetic_run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, *args: str,
                  env_mode: str = "ok", history: bool = True, offline: bool = False) -> SyntheticRun:
    """Run the inner suite as suites/live/test_synthetic.py with --html into reports/<RUN_ID>/.

    offline=True adds a cold move (31 s outage) to the 8 live hops.
    """
    suite = pytester.mkpydir("suites") / "live"
    suite.mkdir()
    (suite / "__init__.py").write_text("")
    (suite / "test_synthetic.py").write_text(INNER_TESTS.format(env_mode=env_mode, offline=offline))
    reports = pytester.path / "reports"
    if history:
        write_history(reports)
    run_dir = reports / RUN_ID
    html = run_dir / "report.html"
    result = run_with_plugins(pytester, monkeypatch, "-p", "fixtures.report", "-p", "fixtures.verdict",
                              "-p", "no:cacheprovider", f"--html={html}", "--self-contained-html", "suites", *args)
    return SyntheticRun(result, html, run_dir)


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_environment_and_trends_reach_report_and_results(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, xdist: list[str]
) -> None:
    run = synthetic_run(pytester, monkeypatch, *xdist)
    run.result.assert_outcomes(passed=5)
    run.result.stdout.fnmatch_lines([
        "*virtmig environment: src h1: kernel 6.1.0-18-amd64, libvirt 9.0.0, QEMU 7.2.19, CPU AMD EPYC 7713*",
        "*virtmig environment: differs between the hosts: kernel*",
        "*virtmig guest: network bridge:vmbr0, address 192.0.2.50/24, gateway 192.0.2.1, MAC 52:54:00:ab:cd:ef*",
        "*virtmig guest: kvm (auto: both hosts' domain capabilities offer KVM)*",
        "*virtmig guest: CPU EPYC-Rome (+2 feature policies) (baseline: libvirt's baseline for kvm*), 1024 MiB, "
        "2 vCPU(s)*",
        "*virtmig trends: 2 regression(s) against 4 earlier run(s) of h1 / h2*",
    ])

    doc, records = read_run(run.run_dir / "results.json")
    assert len(records) == 8
    env = doc["environment"]
    assert env["src"]["kernel"] == "6.1.0-18-amd64" and env["dst"]["kernel"] == "6.1.0-21-amd64"
    assert env["differences"] == ["kernel"]
    trends = doc["trends"]
    assert trends["pair"] == ["h1", "h2"] and doc["run"]["pair"] == ["h1", "h2"]
    assert trends["compared_runs"] == [f"2024050{n}T020000Z" for n in range(1, 5)]
    by_metric = {r["metric"]: r for r in trends["rows"]}
    assert by_metric["libvirt_downtime_ms"]["status"] == "regression"
    assert by_metric["libvirt_downtime_ms"]["p50"] == pytest.approx(260.0)
    assert by_metric["libvirt_downtime_ms"]["history_p50"] == pytest.approx(101.5)
    assert by_metric["probe_gap_ms"]["status"] == "regression"
    assert by_metric["total_time_ms"]["status"] == "steady"
    assert trends["regressions"] == 2

    assert doc["guest"]["virt_type"] == "kvm" and doc["guest"]["address"] == "192.0.2.50/24"
    page = run.html.read_text()
    assert "<h2>Guest used</h2>" in page and "<td>bridge:vmbr0</td>" in page
    assert "baseline: libvirt&#x27;s baseline for kvm" in page
    assert '<table class="virtmig-environment">' in page
    assert "<th>kernel (differs)</th>" in page
    assert page.count('<tr class="regression">') == 2
    assert "more than 25% and at least 20 ms" in page
    assert "CERTIFIED" in page


def test_trends_off_and_threshold_from_options(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    run = synthetic_run(pytester, monkeypatch, "--trend-runs", "0")
    run.result.assert_outcomes(passed=5)
    doc, _ = read_run(run.run_dir / "results.json")
    assert doc["trends"] is None
    assert "Not compared: --trend-runs 0." in run.html.read_text()


def test_a_generous_threshold_flags_nothing(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    run = synthetic_run(pytester, monkeypatch, "--trend-threshold", "500")
    doc, _ = read_run(run.run_dir / "results.json")
    assert doc["trends"]["regressions"] == 0
    assert doc["trends"]["policy"]["threshold_pct"] == 500.0
    assert "No regression against 4 earlier run(s)" in run.html.read_text()


def test_environment_failure_is_reported_and_does_not_fail_tests(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = synthetic_run(pytester, monkeypatch, env_mode="broken", history=False)
    run.result.assert_outcomes(passed=5)
    doc, _ = read_run(run.run_dir / "results.json")
    assert doc["environment"] is None
    page = run.html.read_text()
    assert "Not gathered: RuntimeError: libvirtd on h2 refused the connection." in page
    assert "Not compared: " not in page and "too little history" in page


@pytest.mark.parametrize("args, message", [
    (["--trend-runs", "-1"], "*--trend-runs: -1: must be between 0 and 1000*"),
    (["--trend-runs", "ten"], "*--trend-runs: 'ten' is not a whole number*"),
    (["--trend-threshold", "0"], "*--trend-threshold: 0: must be between 1 and 1000*"),
])
def test_bad_trend_options_are_usage_errors(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    pytester.syspathinsert(REPO_ROOT)
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest("-p", "fixtures.report", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_tests_without_the_hosts_gather_nothing(pytester: pytest.Pytester) -> None:
    pytester.syspathinsert(REPO_ROOT)
    pytester.makepyfile(test_x='''
import pytest

@pytest.fixture(scope="session")
def host_environment():
    raise AssertionError("must not be gathered: no test uses the hosts")

def test_x(migration_log):
    pass
''')
    html = pytester.path / "reports" / "r1" / "report.html"
    result = pytester.runpytest("-p", "fixtures.report", "-p", "no:cacheprovider", f"--html={html}")
    result.assert_outcomes(passed=1)
    assert json.loads((html.parent / "results.json").read_text())["environment"] is None


def test_junit_xml_carries_the_tests_and_the_environment(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    junit = pytester.path / "reports" / RUN_ID / "junit.xml"
    run = synthetic_run(pytester, monkeypatch, f"--junitxml={junit}")
    run.result.assert_outcomes(passed=5)
    root = ET.parse(junit).getroot()
    cases = root.findall(".//testcase")
    assert len(cases) == 5 and not root.findall(".//failure")
    props = [p for p in root.iter("property") if p.get("name") == "virtmig_environment"]
    assert len(props) == 1, "filed once, with the first test that used the hosts"
    assert json.loads(props[0].get("value", ""))["dst"]["kernel"] == "6.1.0-21-amd64"


def test_make_certify_writes_report_results_and_junit_in_one_run_dir() -> None:
    # -n prints the commands without running them; RUN fixes the run directory's name.
    out = subprocess.run(["make", "-n", "certify", "RUN=20240501T000000Z"], cwd=REPO_ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert "--html=reports/20240501T000000Z/report.html --self-contained-html" in out
    assert "--junitxml=reports/20240501T000000Z/junit.xml" in out


def test_fail_on_regression_turns_the_night_red_in_exit_status_and_junit(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The history regresses (tests/test_report_sections.write_history): with the flag, CI must see it."""
    junit = pytester.path / "reports" / RUN_ID / "junit.xml"
    run = synthetic_run(pytester, monkeypatch, "--fail-on-regression", f"--junitxml={junit}")
    run.result.assert_outcomes(passed=5, failed=2)
    assert run.result.ret == pytest.ExitCode.TESTS_FAILED
    failures = ET.parse(junit).getroot().findall(".//testcase/failure")
    assert len(failures) == 2, "one failing case per regressed metric"
    texts = sorted(f.get("message", "") + (f.text or "") for f in failures)
    assert all("regression of h1 / h2" in t and "p50" in t for t in texts), texts
    assert any("libvirt downtime" in t for t in texts) and any("probe longest gap" in t for t in texts)
    page = run.html.read_text()
    assert 'class="virtmig-verdict warn"' in page and "CERTIFIED, REGRESSED" in page
    assert json.loads((run.run_dir / "results.json").read_text())["run"]["exit_status"] == 1
    run.result.stdout.fnmatch_lines(["*virtmig verdict for *: CERTIFIED, REGRESSED*"])


def test_without_fail_on_regression_a_regression_is_reported_but_does_not_fail(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = synthetic_run(pytester, monkeypatch)
    run.result.assert_outcomes(passed=5)
    assert run.result.ret == pytest.ExitCode.OK
    page = run.html.read_text()
    assert "2 regression(s)" in page and 'class="virtmig-verdict ok"' in page


def test_each_run_rewrites_the_index_of_every_night(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    run = synthetic_run(pytester, monkeypatch)
    index = pytester.path / "reports" / "index.html"
    page = index.read_text()
    assert page.count("h1 -&gt; h2") >= 5, "4 nights of history and this run"
    assert f'<a href="{RUN_ID}/report.html">{RUN_ID}</a>' in page
    assert json.loads((run.run_dir / "results.json").read_text())["run"]["verdict"] == "CERTIFIED"
    run.result.stdout.fnmatch_lines(["*virtmig: every night: *index.html"])
