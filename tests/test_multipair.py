"""Several host pairs in one run: ids, xdist groups, per-pair verdicts, the matrix and results.json.

Inner sessions load the harness's real plugins (fixtures.pairs, report,
verdict, hosts) with a RunConfig of several pairs; the hosts are stand-ins
but for an unreachable one, which goes through the real host fixture's ssh
to 127.0.0.9 where nothing listens (refused at once: no sshd, no lab).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.plugin_session import run_with_plugins
from virtmig.migration.records import MigrationRecord
from virtmig.report.matrix import Matrix, render_html, render_text, suite_of
from virtmig.report.results_json import write_run
from virtmig.report.trends import load_history

pytest_plugins = ["pytester"]

CONFTEST = '''
from __future__ import annotations
import os
from pathlib import Path, PurePosixPath
import pytest
from fixtures.hosts import _reached
from fixtures.options import RUN_CONFIG_KEY
from virtmig.config import GuestShape, GuestSite, RunConfig
from virtmig.guestconfig import parse_guest_ips, parse_guest_network
from virtmig.pairs import HostPair

@pytest.hookimpl(trylast=True)  # after fixtures.options made the lab's RunConfig
def pytest_configure(config):
    pairs = tuple(HostPair(*p.split(":")) for p in os.environ["INNER_PAIRS"].split(","))
    config.stash[RUN_CONFIG_KEY] = RunConfig(
        src=pairs[0].src, dst=pairs[0].dst, nfs_server=None, export=None, mount_point=PurePosixPath("/mnt/nfs"),
        ssh_config=Path(os.environ["INNER_SSH_CONFIG"]), lab=False,
        guest=GuestSite(parse_guest_network("bridge:br0"), parse_guest_ips("192.0.2.50-192.0.2.53/24")),
        guest_shape=GuestShape(), pairs=pairs if len(pairs) > 1 else ())

def _host(name, host_pair, run_config):
    if name.startswith("dead"):
        yield from _reached(name, host_pair, run_config)
    else:
        yield name

@pytest.fixture(scope="session")
def src_host(host_pair, run_config):
    yield from _host(host_pair.src, host_pair, run_config)

@pytest.fixture(scope="session")
def dst_host(host_pair, run_config):
    yield from _host(host_pair.dst, host_pair, run_config)
'''

LIVE = '''
import json, os
import pytest
from virtmig.migration.records import MigrationRecord

@pytest.mark.parametrize("mode", ["p2p", "direct"])
def test_round_trip(mode, src_host, dst_host, host_pair, migration_log, request, worker_id):
    mark = request.node.get_closest_marker("xdist_group")
    with open(os.environ["INNER_LOG"], "a") as log:
        log.write(json.dumps([request.node.nodeid, host_pair.label, worker_id, mark.args[0] if mark else None])
                  + "\\n")
    migration_log.add(MigrationRecord(test_id=request.node.nodeid, kind="live", mode=mode, src=src_host,
                                      dst=dst_host, domain="vm", started_at="2099-12-31T23:59:59+00:00", wall_s=1.0,
                                      ok=True, storage="nfs-mount", stats={"downtime_ms": 120.0}))
'''

PREFLIGHT = '''
def test_hosts_answer(src_host, dst_host):
    assert src_host and dst_host
'''


def _inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, pairs: str, *args: str) -> pytest.RunResult:
    pytester.makeconftest(CONFTEST)
    suites = pytester.mkpydir("suites")
    for name, text in (("live", LIVE), ("preflight", PREFLIGHT)):
        (suites / name).mkdir(exist_ok=True)
        (suites / name / "__init__.py").write_text("")
        (suites / name / f"test_{name}.py").write_text(text)
    ssh_config = pytester.path / "ssh_config"
    ssh_config.write_text("Host dead\n    HostName 127.0.0.9\n    Port 9\n    ConnectTimeout 5\n")
    monkeypatch.setenv("INNER_PAIRS", pairs)
    monkeypatch.setenv("INNER_SSH_CONFIG", str(ssh_config))
    monkeypatch.setenv("INNER_LOG", str(pytester.path / "ran.jsonl"))
    return run_with_plugins(pytester, monkeypatch, "-p", "fixtures.options", "-p", "fixtures.pairs",
                            "-p", "fixtures.report", "-p", "fixtures.verdict", "-p", "no:cacheprovider",
                            "-p", "no:randomly", *args)


def _ran(pytester: pytest.Pytester) -> list[list[str | None]]:
    lines = (pytester.path / "ran.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_one_pair_keeps_todays_ids_and_no_group(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    result = _inner(pytester, monkeypatch, "h1:h2", "suites/live", "-k", "round_trip and p2p")
    result.assert_outcomes(passed=1, deselected=1)
    assert [row[0] for row in _ran(pytester)] == ["suites/live/test_live.py::test_round_trip[p2p]"]
    assert _ran(pytester)[0][3] is None  # no xdist group: a single pair runs as before
    assert "virtmig verdict for h1 -> h2: CERTIFIED" in result.stdout.str()
    assert "virtmig matrix" not in result.stdout.str()


def test_several_pairs_carry_the_pair_in_ids_and_groups(pytester: pytest.Pytester,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    result = _inner(pytester, monkeypatch, "h1:h2,h2:h1", "suites/live", "--collect-only", "-q")
    ids = [line for line in result.stdout.lines if "::" in line]
    assert ids == [f"suites/live/test_live.py::test_round_trip[{mode}-{pair}]"
                   for pair in ("h1-h2", "h2-h1") for mode in ("p2p", "direct")]


def test_under_xdist_each_pair_is_one_group_on_one_worker(pytester: pytest.Pytester,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    result = _inner(pytester, monkeypatch, "h1:h2,h3:h4", "suites/live", "-n", "2", "--dist", "loadgroup")
    result.assert_outcomes(passed=4)
    ran = _ran(pytester)
    for nodeid, label, _worker, group in ran:
        assert group == label and str(nodeid).endswith(f"-{label}]@{label}")  # xdist adds @group
    workers = {label: {w for _n, lab, w, _g in ran if lab == label} for label in ("h1-h2", "h3-h4")}
    assert all(len(w) == 1 for w in workers.values()), workers
    order = [str(n) for n, lab, _w, _g in ran if lab == "h1-h2"]
    assert order == sorted(order, key=lambda n: "direct" in n)  # p2p then direct: in order, on one worker


def test_an_unreachable_pair_is_reported_and_fails_the_run_while_the_other_certifies(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    html = pytester.path / "reports" / "night" / "report.html"
    result = _inner(pytester, monkeypatch, "h1:h2,h1:dead", "suites", f"--html={html}", "--self-contained-html")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    out = result.stdout.str()
    assert "virtmig verdict for h1 -> h2: CERTIFIED" in out
    assert "virtmig verdict for h1 -> dead: UNREACHABLE" in out
    assert "pair h1-dead unreachable: ssh dead" in out
    assert sum(1 for line in result.stdout.lines if line.startswith("ERROR suites/")) == 3  # each of its tests
    page = html.read_text()
    assert page.index('class="virtmig-matrix"') < page.index('id="virtmig-pair-h1-h2"')
    assert '<tr data-pair="h1-dead"><th>h1-dead</th><td class="bad" data-suite="preflight">' in page
    assert '<td class="ok" data-suite="live"><a href="#virtmig-pair-h1-h2">passed</a>' in page
    doc = json.loads((html.parent / "results.json").read_text())
    entries = {p["label"]: p for p in doc["pairs"]}
    assert entries["h1-h2"]["verdict"] == "CERTIFIED"
    assert entries["h1-h2"]["suites"]["live"] == "passed" and entries["h1-h2"]["suites"]["offline"] == "not run"
    assert entries["h1-h2"]["migrations"] == [0, 1] and entries["h1-h2"]["summary"]["ok"] == 2
    assert entries["h1-dead"]["verdict"] == "UNREACHABLE"
    assert "unreachable: ssh dead" in entries["h1-dead"]["unreachable"]
    assert set(entries["h1-dead"]["suites"].values()) == {"unreachable"}
    assert doc["run"]["verdict"] == "NOT CERTIFIED" and doc["summary"]["total"] == 2  # the fields of one pair


def test_matrix_cells_and_rendering() -> None:
    matrix = Matrix()
    for pair, suite, outcome in (("a-b", "live", "passed"), ("a-b", "live", "failed"), ("a-b", "preflight", "passed"),
                                 ("b-c", "live", "skipped"), ("b-c", "faults", "passed")):
        matrix.add(pair, suite, outcome)
    matrix.mark_unreachable("c-d", "virtmig: pair c-d unreachable: ssh d: refused")
    assert matrix.suites == ["preflight", "live", "offline", "permissions", "selinux", "faults"]
    assert [matrix.cell("a-b", s) for s in ("preflight", "live", "offline")] == ["passed", "failed", "not run"]
    assert matrix.cell("b-c", "live") == "skipped" and matrix.cell("c-d", "live") == "unreachable"
    page = render_html(matrix, {"a-b": ("NOT CERTIFIED", "bad"), "b-c": ("CERTIFIED, REGRESSED", "warn")},
                       order=["a-b", "b-c", "c-d", "e-f"])
    assert page.index('data-pair="a-b"') < page.index('data-pair="b-c"') < page.index('data-pair="e-f"')
    assert '<td class="warn virtmig-matrix-verdict"><a href="#virtmig-pair-b-c">CERTIFIED, REGRESSED</a>' in page
    assert '<td class="bad" data-suite="live"><a href="#virtmig-pair-a-b">failed</a>' in page
    assert "NOT RUN" in page  # e-f: in the run, never reported
    text = render_text(matrix, {"a-b": ("NOT CERTIFIED", "bad")})
    assert text[0].split()[:3] == ["pair", "preflight", "live"] and text[1].split()[:3] == ["a-b", "passed", "failed"]
    assert suite_of("suites/live/test_x.py::t[p2p-a-b]") == "live" and suite_of("tests/test_x.py::t") is None


def _record(src: str, dst: str, downtime: float) -> MigrationRecord:
    return MigrationRecord(test_id="t", kind="live", mode="p2p", src=src, dst=dst, domain="vm",
                           started_at="2024-05-01T10:00:00+00:00", wall_s=1.0, ok=True, storage="nfs-mount",
                           stats={"downtime_ms": downtime})


def test_trends_of_a_pair_read_a_past_night_of_several_pairs_through_its_entries(tmp_path: Path) -> None:
    records = [_record("h1", "h2", 100), _record("h3", "h4", 900)]
    pairs = [{"label": "h1-h2", "src": "h1", "dst": "h2", "migrations": [0]},
             {"label": "h3-h4", "src": "h3", "dst": "h4", "migrations": [1]}]
    write_run(records, tmp_path / "night1", run_meta={"run_id": "night1", "started_at": "2024-05-01T10:00:00+00:00"},
              sections={"pairs": pairs})
    write_run([_record("h2", "h1", 50)], tmp_path / "single",
              run_meta={"run_id": "single", "started_at": "2024-05-02T10:00:00+00:00"})
    history, skipped = load_history(tmp_path, pair=("h1", "h2"))
    assert skipped == []
    seen = [(r.run_id, [(x.stats or {})["downtime_ms"] for x in r.records]) for r in history]
    assert seen == [("night1", [100]), ("single", [50])]
    assert [r.run_id for r in load_history(tmp_path, pair=("h3", "h4"))[0]] == ["night1"]


def test_a_regressed_pair_alone_turns_amber_and_fails_the_run(pytester: pytest.Pytester,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    for night in range(3):  # h1-h2 took 10 ms three nights running; h3-h4 has no history
        write_run([_record("h1", "h2", 10), _record("h2", "h1", 10)], pytester.path / "reports" / f"past{night}",
                  run_meta={"run_id": f"past{night}", "started_at": f"2024-05-0{night + 1}T10:00:00+00:00"})
    html = pytester.path / "reports" / "night" / "report.html"
    junit = html.parent / "junit.xml"
    result = _inner(pytester, monkeypatch, "h1:h2,h3:h4", "suites/live", "--fail-on-regression",
                    f"--html={html}", "--self-contained-html", f"--junitxml={junit}")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    out = result.stdout.str()
    assert "virtmig verdict for h1 -> h2: CERTIFIED, REGRESSED" in out
    assert "virtmig verdict for h3 -> h4: CERTIFIED" in out and "h3 -> h4: CERTIFIED, REGRESSED" not in out
    assert '<td class="warn virtmig-matrix-verdict"><a href="#virtmig-pair-h1-h2">CERTIFIED, REGRESSED</a>' in (
        html.read_text())
    assert "regression of h1-h2, " in junit.read_text() and "regression of h3-h4" not in junit.read_text()
    entries = {p["label"]: p for p in json.loads((html.parent / "results.json").read_text())["pairs"]}
    assert entries["h1-h2"]["verdict"] == "CERTIFIED, REGRESSED" and entries["h3-h4"]["verdict"] == "CERTIFIED"
    assert entries["h1-h2"]["trends"]["regressions"] >= 1 and entries["h3-h4"]["trends"]["regressions"] == 0
