"""reports/index.html: every night, each pair's verdict and its p50 downtime over the nights."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import lxml.html

from virtmig.migration.records import MigrationRecord
from virtmig.report.index_page import INDEX_NAME, read_nights, render_index, sparkline, write_index
from virtmig.report.results_json import write_run


def night(reports: Path, run_id: str, pair: tuple[str, str], downtimes: list[float], verdict: str | None,
          *, report: bool = True, exit_status: int = 0) -> Path:
    run_dir = reports / run_id
    records = [MigrationRecord(test_id=f"suites/live/t.py::test[{k}]", kind="live", mode="p2p", src=pair[0],
                               dst=pair[1], domain="vm", started_at=f"{run_id}", wall_s=3.0, ok=True,
                               storage="nfs-mount", stats={"downtime_ms": d, "time_elapsed_ms": 3000})
               for k, d in enumerate(downtimes)]
    html_report = run_dir / "report.html"
    write_run(records, run_dir, run_meta={"run_id": run_id, "started_at": f"2024-05-{run_id[6:8]}T02:00:00+00:00",
                                          "exit_status": exit_status, "verdict": verdict,
                                          "html_report": str(html_report) if report else None})
    if report:
        html_report.write_text("<html></html>")
    return run_dir


def test_every_night_and_every_pair_with_its_latest_verdict(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    night(reports, "20240501T020000Z", ("h1", "h2"), [200, 220, 240], "CERTIFIED")
    night(reports, "20240502T020000Z", ("h1", "h2"), [300, 320], "CERTIFIED, REGRESSED", exit_status=1)
    night(reports, "20240502T030000Z", ("h3", "h4"), [100], "NOT CERTIFIED", exit_status=1, report=False)
    (reports / "latest").symlink_to("20240502T020000Z")
    (reports / "broken").mkdir()
    (reports / "broken" / "results.json").write_text("{not json")

    nights, unreadable = read_nights(reports)
    assert [(n.run_id, n.pair, n.verdict, n.p50_downtime_ms) for n in nights] == [
        ("20240501T020000Z", "h1 -> h2", "CERTIFIED", 220),
        ("20240502T020000Z", "h1 -> h2", "CERTIFIED, REGRESSED", 310),
        ("20240502T030000Z", "h3 -> h4", "NOT CERTIFIED", 100),
    ]  # latest is a link to a night already listed: not read twice
    assert len(unreadable) == 1 and unreadable[0].startswith("broken:")

    page = write_index(reports).read_text()
    tree = lxml.html.fromstring(page)
    rows = tree.xpath("//table[@class='virtmig-pairs']/tbody/tr")
    pairs = [[c.text_content().strip() for c in tr.xpath("td")[:4]] for tr in rows]
    assert pairs == [["h1 -> h2", "CERTIFIED, REGRESSED", "20240502T020000Z", "2"],
                     ["h3 -> h4", "NOT CERTIFIED", "20240502T030000Z", "1"]]
    assert tree.xpath("//table[@class='virtmig-pairs']/tbody/tr[1]/td[2]/@class") == ["warn"]
    assert tree.xpath("//table[@class='virtmig-pairs']/tbody/tr[2]/td[2]/@class") == ["bad"]
    links = tree.xpath("//table[@class='virtmig-nights']//a/@href")
    assert links == ["20240502T020000Z/report.html", "20240501T020000Z/report.html"]  # relative: opens from disk
    assert not tree.xpath("//script | //link | //img"), "self-contained"
    assert "unreadable: broken:" in page
    assert (reports / INDEX_NAME).is_file()


def test_sparkline_draws_each_night_and_leaves_gaps() -> None:
    svg = ET.fromstring(sparkline([100.0, None, 300.0], "h1 -> h2"))
    (line,) = svg.iter("{http://www.w3.org/2000/svg}polyline")
    assert len(line.get("points", "").split()) == 2
    ys = [float(p.split(",")[1]) for p in line.get("points", "").split()]
    assert ys[0] > ys[1], "the higher downtime is drawn higher"
    assert "no live downtime" in sparkline([None, None], "x")


def test_no_nights_yet(tmp_path: Path) -> None:
    assert "No run has written results yet." in render_index(*read_nights(tmp_path / "missing"))


def test_a_night_of_several_pairs_lists_each_pair_with_its_own_verdict_and_downtime(tmp_path: Path) -> None:
    """results.json's `pairs` (a night of many pairs) gives one line per pair, each continuing its own history."""
    reports = tmp_path / "reports"
    night(reports, "20240501T020000Z", ("h1", "h2"), [200.0], "CERTIFIED")  # an earlier night of one pair
    records = [MigrationRecord(test_id=f"t[{i}]", kind="live", mode="p2p", src=s, dst=d, domain=f"vm-{s}-{d}",
                               started_at="x", wall_s=3.0, ok=True, storage="nfs-mount", stats={"downtime_ms": ms})
               for i, (s, d, ms) in enumerate([("h1", "h2", 210.0), ("h2", "h1", 230.0), ("h3", "h4", 400.0),
                                               ("h4", "h3", 420.0)])]
    pairs = [{"label": "h1-h2", "src": "h1", "dst": "h2", "verdict": "CERTIFIED", "migrations": [0, 1]},
             {"label": "h3-h4", "src": "h3", "dst": "h4", "verdict": "NOT CERTIFIED", "migrations": [2, 3]}]
    write_run(records, reports / "20240502T020000Z",
              run_meta={"run_id": "20240502T020000Z", "started_at": "2024-05-02T02:00:00+00:00", "exit_status": 1,
                        "verdict": "NOT CERTIFIED", "html_report": None},
              sections={"pairs": pairs})
    nights, unreadable = read_nights(reports)
    assert not unreadable
    second = [n for n in nights if n.run_id == "20240502T020000Z"]
    assert [(n.pair, n.verdict, n.p50_downtime_ms, n.migrations) for n in second] == [
        ("h1 -> h2", "CERTIFIED", 220.0, 2), ("h3 -> h4", "NOT CERTIFIED", 410.0, 2)]
    page = render_index(nights, unreadable)
    assert "h3 -&gt; h4" in page or "h3 -> h4" in page
    assert [n.pair for n in nights].count("h1 -> h2") == 2  # the pair's line goes on from its earlier night
