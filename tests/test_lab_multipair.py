"""Several host pairs certified in one run on the lab: per-pair verdicts, the matrix and results.json.

Until the lab has more hypervisors, the pairs are h1 -> h2 and h2 -> h1:
they share both hosts, so they take turns (`fixtures.hosts.host_turn`),
each with its own guest.  The unreachable pair names a host the inner run's
ssh config aliases to 127.0.0.9, port 9, where nothing listens; it is made
with `tests/pairs_plugin.py` (the lab's --pairs may name only its own
hypervisors).  The inner runs are lab runs that take the lab's lock
themselves, so the lab is raised once per module by `fresh_lab`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.inner_run import known_tcg_bug, output_tail, run_suite
from virtmig.lab.topology import SSH_CONFIG

pytestmark = pytest.mark.lab

ROUND_TRIP_P2P = ("-k", "round_trip and p2p and not tunnelled")
DEAD_HOST = "dead"


def _results(html: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((html.parent / "results.json").read_text())
    return doc


def _xfail_on_known_bug(doc: dict[str, Any]) -> None:
    failed = [m for m in doc["migrations"] if not m["ok"]]
    if failed and (bug := known_tcg_bug(doc["migrations"])):
        pytest.xfail(bug)


def _pair_certified(doc: dict[str, Any], label: str, src: str, dst: str) -> None:
    entry = next(p for p in doc["pairs"] if p["label"] == label)
    assert entry["verdict"] == "CERTIFIED", entry["reasons"]
    assert entry["suites"]["live"] == "passed" and entry["suites"]["offline"] == "not run"
    hops = [doc["migrations"][i] for i in entry["migrations"]]
    assert [(h["src"], h["dst"]) for h in hops] == [(src, dst), (dst, src)]
    assert all(h["ok"] for h in hops), [h["error"] for h in hops]


def test_two_pairs_certified_in_one_run(fresh_lab: None, tmp_path: Path) -> None:
    proc, html = run_suite(tmp_path, "suites/live", *ROUND_TRIP_P2P, "--pairs", "h1:h2,h2:h1", timeout=1500)
    doc = _results(html)
    _xfail_on_known_bug(doc)
    assert proc.returncode == 0, output_tail(proc)
    for src, dst in (("h1", "h2"), ("h2", "h1")):
        assert f"virtmig verdict for {src} (lab) -> {dst} (lab): CERTIFIED" in proc.stdout, output_tail(proc)
    _pair_certified(doc, "h1-h2", "h1", "h2")
    _pair_certified(doc, "h2-h1", "h2", "h1")
    guests = {doc["migrations"][p["migrations"][0]]["domain"] for p in doc["pairs"]}
    assert guests == {"virtmig-guest-h1-h2", "virtmig-guest-h2-h1"}  # each pair its own guest
    page = html.read_text()
    assert page.index('class="virtmig-matrix"') < page.index('id="virtmig-pair-h1-h2"') < page.index(
        'id="virtmig-pair-h2-h1"')
    for label in ("h1-h2", "h2-h1"):
        assert f'<td class="ok" data-suite="live"><a href="#virtmig-pair-{label}">passed</a>' in page
    assert doc["run"]["verdict"] == "CERTIFIED" and doc["summary"]["total"] == 4  # the single-pair fields


def test_an_unreachable_pair_does_not_sink_the_other(fresh_lab: None, tmp_path: Path) -> None:
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(f"Host {DEAD_HOST}\n    HostName 127.0.0.9\n    Port 9\n    ConnectTimeout 5\n\n"
                          + SSH_CONFIG.read_text())
    proc, html = run_suite(tmp_path, "suites/live", *ROUND_TRIP_P2P, "-p", "tests.pairs_plugin",
                           "--test-pairs", f"h1:h2,h1:{DEAD_HOST}", "--test-ssh-config", str(ssh_config),
                           timeout=1200)
    doc = _results(html)
    _xfail_on_known_bug(doc)
    assert proc.returncode == 1, output_tail(proc)
    assert "virtmig verdict for h1 (lab) -> h2 (lab): CERTIFIED" in proc.stdout, output_tail(proc)
    assert f"virtmig verdict for h1 (lab) -> {DEAD_HOST} (lab): UNREACHABLE" in proc.stdout, output_tail(proc)
    assert f"pair h1-{DEAD_HOST} unreachable: ssh {DEAD_HOST}" in proc.stdout
    _pair_certified(doc, "h1-h2", "h1", "h2")
    dead = next(p for p in doc["pairs"] if p["label"] == f"h1-{DEAD_HOST}")
    assert dead["verdict"] == "UNREACHABLE" and dead["migrations"] == []
    assert set(dead["suites"].values()) == {"unreachable"}
    assert f'<tr data-pair="h1-{DEAD_HOST}">' in html.read_text()
