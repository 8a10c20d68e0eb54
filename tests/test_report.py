"""The report: tables, SVG charts, results.json and the pytest plugin.

Operators only ever see the report, so it must render whatever a run left
behind (a failed migration without statistics, a probe that did not run,
test ids with markup in them) and must stay valid XML/HTML.  The pytester
tests run a real inner session, with and without xdist, because records
reach the controller only through pytest's report plumbing.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from tests.plugin_session import run_with_plugins
from virtmig.migration.records import MigrationRecord
from virtmig.report import DASH, MIB, dirty_rate_bytes_per_s, progress_points, svg, tables
from virtmig.report.results_json import (
    RESULTS_SCHEMA_VERSION,
    read_run,
    update_latest,
    write_run,
)

pytest_plugins = ["pytester"]

REPO_ROOT = Path(__file__).resolve().parent.parent
SVG_NS = "{http://www.w3.org/2000/svg}"
NASTY_ID = "tests/test_x.py::test_mig[<script>alert('x')</script>&\"]"


def make_record(test_id: str = "suites/live/test_live.py::test_p2p[0]", **overrides: Any) -> MigrationRecord:
    """A plausible successful live migration, shaped like the real to_dict() outputs."""
    values: dict[str, Any] = dict(
        test_id=test_id, kind="live", mode="p2p", src="h1", dst="h2", domain="vm1",
        started_at="2024-05-01T10:00:00+00:00", wall_s=3.2, ok=True, storage="nfs-mount",
        stats={
            "downtime_ms": 120, "time_elapsed_ms": 3100, "data_processed_bytes": 1024 * MIB,
            "memory_bytes_per_s": 400 * MIB, "memory_dirty_rate_pages_per_s": 2560,
            "memory_page_size_bytes": 4096, "dirty_rate_bytes_per_s": 10 * MIB, "memory_iteration": 4,
        },
        probe={"sent": 400, "received": 397, "lost": 3, "interval_ms": 10.0,
               "longest_gap_ms": 180.6, "rtt_p50_ms": 0.3, "rtt_max_ms": 2.0},
        progress=[
            {"job_type": 2, "time_elapsed_ms": t, "memory_remaining_bytes": rem * MIB,
             "memory_bytes_per_s": 400 * MIB, "data_remaining_bytes": rem * MIB, "memory_iteration": 1}
            for t, rem in ((100, 1024), (1100, 600), (2100, 150), (3000, 8))
        ],
    )
    values.update(overrides)
    return MigrationRecord(**values)


def failed_record() -> MigrationRecord:
    return make_record("suites/live/test_live.py::test_direct[1]", mode="direct", ok=False,
                       error="operation failed: <migration> & 'cancelled'", stats=None, probe=None, progress=[])


def parse_svg(text: str) -> ET.Element:
    root = ET.fromstring(text)
    assert root.tag == f"{SVG_NS}svg"
    return root


# --- tables ----------------------------------------------------------------

def test_notes_every_record_shares_are_said_once_above_the_table() -> None:
    unsafe = "--unsafe: lab NFS mount is a FUSE client"
    records = [make_record(notes=[unsafe, "probe thread stalled"]), make_record(notes=[unsafe])]
    table = tables.migrations_table(records)
    assert table.count(unsafe) == 1
    assert table.index("Every migration: --unsafe") < table.index("<table")
    assert "probe thread stalled" in table.split("<table", 1)[1]  # a note of one row stays in its row
    alone = tables.migrations_table([make_record(notes=[unsafe])])
    assert "Every migration" not in alone and unsafe in alone


def test_the_downtime_budget_is_for_live_migrations_only() -> None:
    cold = make_record(kind="cold", mode="cold", stats={"downtime_ms": 31_000}, probe={"longest_gap_ms": 31_800.0})
    slow_live = make_record(stats={"downtime_ms": 900})
    assert tables.summary_counts([cold, slow_live], budget_ms=500)["over_budget"] == 1
    assert "over-budget" not in tables.migration_row(1, cold, budget_ms=500)
    assert "over-budget" in tables.migration_row(2, slow_live, budget_ms=500)


def test_table_row_shows_figures_in_display_units() -> None:
    row = tables.migration_row(1, make_record())
    assert "<td>h1 → h2</td>" in row
    assert '<td class="num">120</td>' in row
    assert "181 (+3 lost)" in row
    assert '<td class="num">3,100</td>' in row
    assert '<td class="num">1,024.0</td>' in row  # data moved, MiB
    assert '<td class="num">400.0</td>' in row  # throughput
    assert '<td class="num">10.0</td>' in row  # dirty rate
    assert '<td class="num">4</td>' in row  # passes


def test_table_missing_figures_are_dashes_not_zeros() -> None:
    row = tables.migration_row(2, failed_record())
    assert 'class="failed"' in row
    assert row.count(f'<td class="num">{DASH}</td>') == 8  # the probe-from column too: no probe ran
    assert "&lt;migration&gt; &amp; &#x27;cancelled&#x27;" in row
    assert "<migration>" not in row


def test_table_escapes_test_ids_and_notes() -> None:
    record = make_record(NASTY_ID, notes=["<img src=x onerror=alert(1)>"], storage="<nfs>")
    html = tables.migrations_table([record])
    assert "<script>" not in html and "<img" not in html and "<nfs>" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;&quot;" in html


def test_table_marks_figures_over_budget() -> None:
    html = tables.migrations_table([make_record(), make_record(stats={"downtime_ms": 900})], budget_ms=500)
    assert html.count("over-budget") == 1


def test_legacy_key_names_still_read() -> None:
    record = make_record(stats={"total_time_ms": 50, "memory_bps": MIB, "iterations": 2,
                                "memory_dirty_rate_pages_per_s": 256, "memory_page_size": 4096},
                         progress=[{"t_ms": 5, "memory_remaining_bytes": MIB}])
    row = tables.migration_row(1, record)
    assert '<td class="num">50</td>' in row and '<td class="num">2</td>' in row
    assert dirty_rate_bytes_per_s(record) == MIB
    assert progress_points(record) == [(5.0, float(MIB))]


def test_non_numbers_in_stats_do_not_crash() -> None:
    record = make_record(stats={"downtime_ms": "n/a", "time_elapsed_ms": True, "memory_iteration": float("nan")},
                         probe={"longest_gap_ms": None}, progress=[{"time_elapsed_ms": None}, "junk"])
    row = tables.migration_row(1, record)
    assert row.count(f'<td class="num">{DASH}</td>') == 7
    for chart in (svg.progress_chart([record]), svg.downtime_chart([record]),
                  svg.downtime_distribution([record])):
        parse_svg(chart)


def test_summary_counts() -> None:
    records = [make_record(), failed_record(), make_record(stats={"downtime_ms": 600}, probe=None)]
    assert tables.summary_counts(records, budget_ms=500) == {
        "total": 3, "ok": 2, "failed": 1, "no_stats": 1, "no_probe": 2, "over_budget": 1}
    assert tables.summary_counts([])["total"] == 0
    assert "3 migrations: 2 ok, 1 failed" in tables.summary_line(records, budget_ms=500)


# --- charts ----------------------------------------------------------------

CHART_INPUTS = {
    "empty": [],
    "one": [make_record()],
    "mixed": [make_record(), failed_record(), make_record(NASTY_ID, mode="p2p-tunnelled")],
    "many": [make_record(f"t::test[{i}]", stats={"downtime_ms": 50 + 37 * i}) for i in range(25)],
}


@pytest.mark.parametrize("name", sorted(CHART_INPUTS))
@pytest.mark.parametrize("chart", [svg.progress_chart, svg.downtime_chart, svg.downtime_distribution])
def test_charts_are_well_formed_and_deterministic(chart: Any, name: str) -> None:
    records = CHART_INPUTS[name]
    text = chart(records)
    parse_svg(text)
    assert chart(records) == text
    assert "<script" not in text and "href" not in text


def test_chart_text_is_escaped_and_survives_parsing() -> None:
    root = parse_svg(svg.downtime_chart([make_record(NASTY_ID)]))
    titles = [t.text for t in root.iter(f"{SVG_NS}title")]
    assert any(t and NASTY_ID in t for t in titles)
    assert not list(root.iter(f"{SVG_NS}script"))


def test_control_characters_in_ids_keep_xml_valid() -> None:
    parse_svg(svg.downtime_chart([make_record("t::test[\x00\x1b]")]))


def test_downtime_chart_bars_and_budget_line() -> None:
    root = parse_svg(svg.downtime_chart([make_record(), failed_record()], budget_ms=500))
    rects = [r for r in root.iter(f"{SVG_NS}rect") if r.find(f"{SVG_NS}title") is not None]
    assert len(rects) == 2  # the failed migration has no bars, only dashes
    dashed = [ln for ln in root.iter(f"{SVG_NS}line") if ln.get("stroke-dasharray")]
    assert len(dashed) == 1
    assert "budget 500 ms" in svg.downtime_chart([make_record()], budget_ms=500)
    assert "stroke-dasharray" not in svg.downtime_chart([make_record()], budget_ms=None)


def test_progress_chart_one_line_per_migration_with_samples() -> None:
    records = [make_record(), failed_record(), make_record("t::single", progress=[
        {"time_elapsed_ms": 10, "memory_remaining_bytes": MIB}])]
    root = parse_svg(svg.progress_chart(records))
    assert len(list(root.iter(f"{SVG_NS}polyline"))) == 1
    assert len(list(root.iter(f"{SVG_NS}circle"))) == 1
    assert "no progress samples" in svg.progress_chart([failed_record()])


def test_distribution_groups_by_kind_and_mode() -> None:
    records = [make_record(stats={"downtime_ms": d}) for d in (100, 140, 90, 300)]
    records.append(make_record(mode="direct"))
    text = svg.downtime_distribution(records)
    parse_svg(text)
    assert "live/p2p" in text and "live/direct" in text and "n=4" in text
    assert "p50 120 ms" in text and "min–max 90–300 ms" in text


def test_live_and_offline_outages_never_share_an_axis() -> None:
    live = [make_record(stats={"downtime_ms": d}) for d in (200, 240)]
    cold = make_record("suites/offline/test_offline.py::test_cold", kind="cold", mode="cold",
                       stats={"downtime_ms": 31_000}, probe={"longest_gap_ms": 32_000.0})
    charts = svg.downtime_charts([live[0], cold, live[1]], budget_ms=500)
    titles = [parse_svg(c).get("aria-label") for c in charts]
    assert titles == ["Downtime per live migration", "Live downtime per mode: p50, min–max",
                      "Outage per offline move", "Offline outage per kind: p50, min–max"]
    live_chart, _, offline_chart, _ = charts
    assert "31,000" not in live_chart and "#2 test_cold" in offline_chart  # numbered as in the table
    assert "#1 test_p2p[0]" in live_chart and "#3 test_p2p[0]" in live_chart
    assert "budget 500 ms" in live_chart and "budget" not in offline_chart
    bars = [float(r.get("height", 0)) for r in parse_svg(live_chart).iter(f"{SVG_NS}rect")]
    assert max(bars) > 40, "live bars on their own scale (beside a 31 s outage they would be under 2 px)"


def test_only_one_family_gives_only_its_charts() -> None:
    assert len(svg.downtime_charts([make_record()])) == 2
    assert [parse_svg(c).get("aria-label") for c in svg.downtime_charts([])] == ["Downtime per migration"]


def test_remaining_memory_starts_at_the_first_sample_the_job_reports() -> None:
    record = make_record(progress=[
        {"time_elapsed_ms": 100, "memory_remaining_bytes": 0, "memory_iteration": 0},
        {"time_elapsed_ms": 200, "memory_remaining_bytes": 0, "memory_iteration": 0},
        {"time_elapsed_ms": 300, "memory_remaining_bytes": 256 * MIB, "memory_iteration": 1},
        {"time_elapsed_ms": 900, "memory_remaining_bytes": 0, "memory_iteration": 3},
    ])
    assert progress_points(record) == [(300, 256 * MIB), (900, 0)]  # a final 0 is real: it converged
    started_in_pass_1 = make_record(progress=[
        {"time_elapsed_ms": 100, "memory_remaining_bytes": 0, "memory_iteration": 1}])
    assert progress_points(started_in_pass_1) == [(100, 0)]
    never_reported = make_record(progress=[{"time_elapsed_ms": 100, "memory_remaining_bytes": 0}])
    assert progress_points(never_reported) == []


def test_nice_ticks_cover_range() -> None:
    assert svg.nice_ticks(0, 1000) == [0, 200, 400, 600, 800, 1000]
    ticks = svg.nice_ticks(0, 3.7)
    assert ticks[0] == 0 and ticks[-1] >= 3.7
    assert svg.nice_ticks(0, 0)[-1] > 0


# --- results.json and reports/latest -----------------------------------------

def test_results_json_round_trips(tmp_path: Path) -> None:
    records = [make_record(), failed_record(), make_record(NASTY_ID)]
    path = write_run(records, tmp_path / "run1", run_meta={"run_id": "run1", "started_at": "s", "exit_status": 0})
    assert path == tmp_path / "run1" / "results.json"
    doc, back = read_run(path)
    assert back == records
    assert doc["schema_version"] == RESULTS_SCHEMA_VERSION
    assert doc["run"]["run_id"] == "run1" and doc["run"]["src"] == "h1" and doc["run"]["dst"] == "h2"
    assert doc["run"]["finished_at"]
    assert doc["summary"]["failed"] == 1
    raw = json.loads(path.read_text())
    assert [MigrationRecord.from_json(json.dumps(m)) for m in raw["migrations"]] == records
    assert not list(tmp_path.glob("run1/.*"))  # no temp file left behind


def test_results_json_run_meta_wins_and_mixed_hosts_are_null(tmp_path: Path) -> None:
    records = [make_record(), make_record(src="h2", dst="h1")]
    doc, _ = read_run(write_run(records, tmp_path, run_meta={}))
    assert doc["run"]["src"] is None and doc["run"]["dst"] is None
    doc, _ = read_run(write_run(records, tmp_path, run_meta={"src": "a", "dst": "b"}))
    assert (doc["run"]["src"], doc["run"]["dst"]) == ("a", "b")


def test_latest_symlink_follows_the_newest_run(tmp_path: Path) -> None:
    root = tmp_path / "reports"
    first, second = root / "20240501T100000Z", root / "20240501T110000Z"
    for d in (first, second):
        d.mkdir(parents=True)
    link = update_latest(root, first)
    assert link == root / "latest" and link.is_symlink()
    assert os.readlink(link) == first.name  # relative: the tree can be moved
    update_latest(root, second)
    assert link.resolve() == second.resolve()
    assert sorted(p.name for p in root.iterdir()) == sorted([first.name, second.name, "latest"])


def test_latest_never_replaces_a_real_directory(tmp_path: Path) -> None:
    (tmp_path / "latest").mkdir()
    with pytest.raises(FileExistsError):
        update_latest(tmp_path, tmp_path / "run")


# --- the plugin, in a real inner session ---------------------------------------

INNER_TESTS = '''
import pytest
from virtmig.migration.records import MigrationRecord

def rec(test_id, downtime):
    return MigrationRecord(
        test_id=test_id, kind="live", mode="p2p", src="h1", dst="h2", domain="vm",
        started_at="2024-05-01T10:00:00+00:00", wall_s=1.5, ok=True, storage="nfs-mount",
        stats={"downtime_ms": downtime, "time_elapsed_ms": 2000},
        probe={"longest_gap_ms": downtime + 40, "lost": 0},
        progress=[{"time_elapsed_ms": 100, "memory_remaining_bytes": 2**30},
                  {"time_elapsed_ms": 1900, "memory_remaining_bytes": 2**20}])

@pytest.fixture
def late(migration_log, request):
    yield
    migration_log.add(rec(request.node.nodeid + " (teardown)", 77))

@pytest.mark.parametrize("name", ["a<b>&c", "plain"])
def test_mig(migration_log, request, name):
    migration_log.add(rec(request.node.nodeid, 111))
    assert len(migration_log.records) == 1

def test_added_in_teardown(late):
    pass

def test_without_migration():
    pass
'''


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_plugin_puts_records_in_html_and_results(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, xdist: list[str]
) -> None:
    pytester.makepyfile(test_inner=INNER_TESTS)
    run_dir = pytester.path / "reports" / "20240501T100000Z"
    html_path = run_dir / "r.html"
    result = run_with_plugins(pytester, monkeypatch, "-p", "fixtures.report", "-p", "no:cacheprovider", *xdist,
                              f"--html={html_path}", "--self-contained-html")
    result.assert_outcomes(passed=4)
    if xdist:
        result.stdout.fnmatch_lines(["*created: 2/2 workers*"])  # really ran on workers
    result.stdout.fnmatch_lines(["*virtmig: 3 migrations, results: *results.json"])

    page = html_path.read_text()
    assert 'class="virtmig-migrations"' in page and "<svg" in page
    assert "<td>test_inner.py::test_mig[a&lt;b&gt;&amp;c]</td>" in page
    assert "<td>test_inner.py::test_added_in_teardown (teardown)</td>" in page
    assert "downtime (ms)</th>" in page
    assert "3 migrations: 3 ok, 0 failed" in page

    doc, records = read_run(run_dir / "results.json")
    assert sorted(r.test_id for r in records) == [
        "test_inner.py::test_added_in_teardown (teardown)",
        "test_inner.py::test_mig[a<b>&c]",
        "test_inner.py::test_mig[plain]",
    ]  # each exactly once, although every phase's report carries them
    assert doc["run"]["run_id"] == run_dir.name and doc["run"]["exit_status"] == 0
    assert (pytester.path / "reports" / "latest").resolve() == run_dir.resolve()


def test_plugin_without_html_or_migrations_writes_nothing(pytester: pytest.Pytester) -> None:
    pytester.syspathinsert(REPO_ROOT)
    pytester.makepyfile(test_plain="def test_ok(migration_log):\n    assert migration_log.records == []\n")
    result = pytester.runpytest("-p", "fixtures.report", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert not (pytester.path / "reports").exists()
