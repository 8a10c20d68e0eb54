"""The report's "Where the outage goes" section, from records carrying a breakdown (virtmig.report.outage_table)."""

from __future__ import annotations

import lxml.html

from virtmig.migration.records import MigrationRecord
from virtmig.report import DASH, outage_table


def hop(mode: str, src: str, dst: str, **outage: float | str | None) -> MigrationRecord:
    return MigrationRecord(test_id=f"t[{mode}]", kind="live", mode=mode, src=src, dst=dst, domain="vm",
                           started_at="2026-12-02T06:00:00Z", wall_s=2.0, ok=True, storage="nfs-mount",
                           outage=dict(outage) or None)


RECORDS = [
    hop("p2p", "h1", "h2", lead_ms=4.0, paused_ms=270.0, return_ms=60.0, announce_ms=40.0,
        announced_to_answer_ms=20.0, gap_ms=334.0, libvirt_downtime_ms=271.0),
    hop("p2p", "h2", "h1", lead_ms=2.0, paused_ms=260.0, return_ms=74.0, announce_ms=34.0,
        announced_to_answer_ms=40.0, gap_ms=336.0, libvirt_downtime_ms=260.0),
    hop("direct", "h1", "h2", lead_ms=3.0, paused_ms=200.0, return_ms=50.0, gap_ms=253.0,
        announce_note="no capture on h2's br0: no tcpdump on this host"),
    hop("cold", "h1", "h2"),  # no breakdown (an offline move): left out
]


def test_each_mode_gets_the_median_of_each_segment() -> None:
    modes = outage_table.per_mode(RECORDS)
    assert list(modes) == ["p2p", "direct"]
    assert modes["p2p"]["announce_ms"] == 37.0 and modes["p2p"]["paused_ms"] == 265.0
    assert modes["direct"]["announce_ms"] is None and modes["direct"]["return_ms"] == 50.0


def test_the_section_shows_modes_then_hops_and_says_why_an_announcement_was_not_seen() -> None:
    page = lxml.html.fromstring(outage_table.render_html(RECORDS))
    modes = page.xpath("//table[contains(@class, 'virtmig-outage-modes')]/tbody/tr")
    hops = page.xpath("//table[contains(@class, 'virtmig-outage-hops')]/tbody/tr")
    assert [r[0].text_content() for r in modes] == ["p2p", "direct"]
    assert [r[0].text_content() for r in hops] == ["p2p h1 → h2", "p2p h2 → h1", "direct h1 → h2"]
    heads = [th.text_content() for th in page.xpath("//table[contains(@class, 'virtmig-outage-hops')]/thead/tr/th")]
    assert hops[0][heads.index("resumed → announced (ms)")].text_content() == "40.0"
    assert hops[2][heads.index("resumed → announced (ms)")].text_content() == DASH
    note = page.xpath("//p[@class='virtmig-outage-note']")
    assert [p.text_content() for p in note] == [
        "Announcement not seen: no capture on h2's br0: no tcpdump on this host"]


def test_a_run_without_live_hops_says_so() -> None:
    page = lxml.html.fromstring(outage_table.render_html([hop("cold", "h1", "h2")]))
    assert page.xpath("//p[@class='virtmig-outage-missing']") and not page.xpath("//table")
    assert outage_table.summary_text([]) == []
