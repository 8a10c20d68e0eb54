"""The report as a person sees it: opened in headless Chromium, charts and tables must render.

String checks on the HTML prove the markup is there, not that a browser
draws it: pytest-html 4 builds its results table in JavaScript, and an SVG
with a broken viewBox or a table inside a collapsed block is in the DOM but
invisible.  So the report of a real inner session (tests/test_report_sections.py's
synthetic suite, with a history that regresses) is loaded from a file:// URL
in Debian's chromium and checked three ways:

* the DOM after scripts ran (`--dump-dom`): the verdict, the pytest-html rows,
  the virtmig tables and charts;
* layout: a copy of the report carries a small script that measures, after
  load, the boxes and computed styles of those elements and writes them
  into the page, so `--dump-dom` returns what was laid out and visible;
* a screenshot (`--screenshot`), kept as an artifact at
  reports/test-artifacts/report-screenshot.png, checked to be a full-size,
  not blank, PNG.

No network: the page is self-contained and loaded from disk, Chromium runs
with its background networking off and a host resolver that resolves
nothing, and the test asserts the page loads no external resource.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import lxml.html
import pytest

from tests.test_report_sections import REPO_ROOT, synthetic_run

pytest_plugins = ["pytester"]

ARTIFACTS = REPO_ROOT / "reports" / "test-artifacts"
SCREENSHOT = ARTIFACTS / "report-screenshot.png"
WINDOW = (1400, 3000)
CHROMIUM_TIMEOUT_S = 120

#: Runs as root (hence --no-sandbox), offline: nothing may reach the network.
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-default-apps",
    "--disable-extensions", "--no-proxy-server", "--host-resolver-rules=MAP * ~NOTFOUND",
    "--hide-scrollbars",
)

#: Appended to a copy of the report: measures what was laid out, after pytest-html's script ran.
PROBE = """<script>
window.addEventListener("load", function () {
  function box(el) {
    if (!el) return null;
    var r = el.getBoundingClientRect(), s = getComputedStyle(el);
    return {w: r.width, h: r.height, x: r.left, display: s.display, visibility: s.visibility,
            text: (el.innerText || el.textContent || "").slice(0, 300)};
  }
  function all(sel) { return Array.prototype.slice.call(document.querySelectorAll(sel)); }
  var out = {
    verdict: box(document.querySelector(".virtmig-verdict h2")),
    charts: all("svg.virtmig-chart").map(function (svg) {
      var b = svg.getBBox(), r = box(svg);
      r.label = svg.getAttribute("aria-label");
      r.content = [b.width, b.height];
      return r;
    }),
    migrations: all("table.virtmig-migrations tbody tr").map(box),
    shared_note: box(document.querySelector("p.virtmig-shared-note")),
    environment: all("table.virtmig-environment tbody tr").map(box),
    trends: all("table.virtmig-trends tbody tr").map(function (tr) {
      var r = box(tr); r.cls = tr.className; return r;
    }),
    results: all("#results-table > tbody.results-table-row").map(box),
    page_width: document.documentElement.scrollWidth
  };
  var pre = document.createElement("pre");
  pre.id = "virtmig-render-probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def chromium_binary() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("Debian's chromium is not installed (debian-packages.txt lists it; `make deps` installs it)")
    return found


def run_chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    """Chromium with FLAGS and a fresh profile; its whole process group is ended on a timeout."""
    profile.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HOME": str(profile)}  # nothing written to the real home
    cmd = [chromium_binary(), *FLAGS, f"--user-data-dir={profile}", *args]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                          start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=CHROMIUM_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(f"chromium did not finish in {CHROMIUM_TIMEOUT_S} s: {err[-2000:]}")
    result = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    assert result.returncode == 0, f"chromium failed (rc={result.returncode}): {err[-2000:]}"
    return result


def dump_dom(page: Path, profile: Path) -> str:
    return run_chromium(["--virtual-time-budget=5000", "--dump-dom", page.as_uri()], profile).stdout


def png_info(path: Path) -> tuple[int, int, int]:
    """(width, height, distinct byte values in the decompressed image data) of a PNG file."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    idat, pos = b"", 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


def external_resources(tree: Any) -> list[str]:
    """URLs the page would load (scripts, styles, images, frames) that are not inline or on disk."""
    found = []
    for attr in ("src", "href"):
        for el in tree.xpath(f"//script[@{attr}] | //link[@{attr}] | //img[@{attr}] | //iframe[@{attr}] "
                             f"| //source[@{attr}] | //video[@{attr}] | //object[@data]"):
            url = (el.get(attr) or "").strip()
            if url and not url.startswith(("data:", "#", "file:")):
                found.append(f"<{el.tag} {attr}={url}>")
    return found


@pytest.fixture
def report(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A report with 8 live hops and a cold move, the environment, a regressing trend and the verdict."""
    run = synthetic_run(pytester, monkeypatch, offline=True)
    run.result.assert_outcomes(passed=5)
    return run.html


def test_report_renders_in_chromium(report: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = report.read_text()

    # 1. The DOM after scripts ran.
    tree = lxml.html.fromstring(dump_dom(report, tmp_path / "profile-dom"))
    assert external_resources(lxml.html.fromstring(page)) == []
    verdict = tree.xpath("//div[contains(@class, 'virtmig-verdict')]/h2")
    assert [h.text_content() for h in verdict] == ["h1 (lab) -> h2 (lab): CERTIFIED"]
    rendered = tree.xpath("//table[@id='results-table']/tbody[contains(@class, 'results-table-row')]")
    assert len(rendered) == 5, "pytest-html's script did not build one row per test"
    assert len(tree.xpath("//table[contains(@class, 'virtmig-migrations')]/tbody/tr")) == 9
    charts = tree.xpath("//*[local-name()='svg' and contains(@class, 'virtmig-chart')]")
    # Live and offline outages never share an axis.
    assert [c.get("aria-label") for c in charts] == [
        "Downtime per live migration", "Live downtime per mode: p50, min–max",
        "Outage per offline move", "Offline outage per kind: p50, min–max", "Remaining memory during migration"]
    bars = charts[0].xpath(".//*[local-name()='rect' and @height > 0]")
    assert len(bars) >= 16 + 2, "libvirt and probe bar for each of 8 live hops, and the legend"
    assert max(float(b.get("height")) for b in bars) > 40, "live bars squashed: an offline outage on their axis?"
    assert "31,000" not in lxml.html.tostring(charts[0], encoding="unicode")
    # Per mode: the p50 with min–max whiskers, libvirt's figure beside the probe's.
    p50s = charts[1].xpath(".//*[local-name()='g' and @class='virtmig-p50']/*[local-name()='title']")
    assert sorted(t.text_content().split(":")[0] for t in p50s) == [
        "live/p2p libvirt downtime", "live/p2p probe longest gap"]
    assert all("p50" in t.text_content() and "min–max" in t.text_content() for t in p50s)
    # Remaining memory from the first sample the job really reports: no line starts on the 0 MiB axis.
    memory = charts[4]
    lines = memory.xpath(".//*[local-name()='polyline']")
    assert len(lines) == 8
    axis_y = {round(float(y)) for y in memory.xpath(".//*[local-name()='line']/@y1")}
    starts = {round(float(line.get("points").split()[0].split(",")[1])) for line in lines}
    assert max(axis_y) not in starts, "a line starts at 0 MiB remaining"
    # Notes every record shares are said once, above the table.
    shared = tree.xpath("//p[contains(@class, 'virtmig-shared-note')]")
    assert len(shared) == 1 and "--unsafe" in shared[0].text_content()
    notes_cells = tree.xpath("//table[contains(@class, 'virtmig-migrations')]/tbody/tr/td[last()]")
    assert not any("--unsafe" in td.text_content() for td in notes_cells)

    # 2. What was laid out and visible.
    probed = report.with_name("report-probed.html")
    probed.write_text(page.replace("</body>", PROBE + "</body>"))
    probe_tree = lxml.html.fromstring(dump_dom(probed, tmp_path / "profile-probe"))
    (pre,) = probe_tree.xpath("//pre[@id='virtmig-render-probe']")
    seen: dict[str, Any] = json.loads(pre.text_content())

    def visible(b: dict[str, Any] | None) -> bool:
        return b is not None and b["w"] > 0 and b["h"] > 0 and b["display"] != "none" and b["visibility"] == "visible"

    assert visible(seen["verdict"]) and "CERTIFIED" in seen["verdict"]["text"]
    assert len(seen["charts"]) == 5 and all(visible(c) for c in seen["charts"]), seen["charts"]
    assert all(c["content"][0] > 100 and c["content"][1] > 50 for c in seen["charts"]), "a chart drew nothing"
    assert len(seen["migrations"]) == 9 and all(visible(r) for r in seen["migrations"])
    assert max(r["h"] for r in seen["migrations"]) < 60, "a row grew tall: a long note repeated in each row?"
    assert visible(seen["shared_note"]) and "--unsafe" in seen["shared_note"]["text"]
    assert len(seen["environment"]) >= 5 and all(visible(r) for r in seen["environment"])
    assert any("6.1.0-21-amd64" in r["text"] for r in seen["environment"])
    regressed = [r for r in seen["trends"] if r["cls"] == "regression"]
    assert len(regressed) == 2 and all(visible(r) for r in regressed)
    assert len(seen["results"]) == 5 and all(visible(r) for r in seen["results"])

    # 3. The screenshot, kept for people to look at.
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = tmp_path / "report-screenshot.png"
    run_chromium([f"--screenshot={shot}", f"--window-size={WINDOW[0]},{WINDOW[1]}", report.as_uri()],
                 tmp_path / "profile-shot")
    width, height, distinct = png_info(shot)
    assert (width, height) == WINDOW
    assert distinct > 64, f"the screenshot looks blank ({distinct} distinct byte values)"
    shutil.copyfile(shot, SCREENSHOT)
    shutil.copyfile(report, ARTIFACTS / "report-under-test.html")
    with capsys.disabled():
        print(f"\nreport screenshot: {SCREENSHOT}")
