"""Pure parts of the live/offline measurement: modes, progress line, clock offsets, options, table cells."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from tests.echo_agent import EchoAgent, until
from tests.replay import ReplayHost
from virtmig.config import (
    ConfigError,
    DefaultPair,
    GuestShape,
    GuestSite,
    build_run_config,
    check_dirty_rate,
    check_round_trips,
)
from virtmig.guest.probe import UdpEchoProbe
from virtmig.guestconfig import parse_guest_ip, parse_guest_network
from virtmig.localhost import LocalHost
from virtmig.migration import clocks, modes
from virtmig.migration.jobstats import JobProgress
from virtmig.migration.records import MigrationRecord
from virtmig.migration.runner import postcopy_blocker, progress_line
from virtmig.report import tables
from virtmig.waiters import wait_for_probe_answer

# --- modes ------------------------------------------------------------------


def test_matrix_ids_are_unique_and_readable() -> None:
    names = [m.name for m in modes.LIVE_MATRIX]
    assert names == ["p2p", "direct", "p2p-tunnelled", "postcopy", "auto-converge", "bandwidth-limit",
                     "max-downtime"]
    assert all(m.flags & libvirt.VIR_MIGRATE_LIVE for m in modes.LIVE_MATRIX)
    assert not any(m.flags & libvirt.VIR_MIGRATE_UNSAFE for m in modes.LIVE_MATRIX), "unsafe comes from storage"


def test_modes_carry_what_they_are_named_for() -> None:
    assert modes.POSTCOPY.flags & libvirt.VIR_MIGRATE_POSTCOPY and modes.POSTCOPY.postcopy_after_first_pass
    assert modes.AUTO_CONVERGE.flags & libvirt.VIR_MIGRATE_AUTO_CONVERGE
    assert modes.BANDWIDTH_LIMIT.params == {libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: modes.BANDWIDTH_LIMIT_MIB_S}
    assert modes.MAX_DOWNTIME.max_downtime_ms == modes.MAX_DOWNTIME_MS
    assert not modes.DIRECT.peer_to_peer and modes.TUNNELLED.peer_to_peer
    assert "max_downtime=50ms" in modes.MAX_DOWNTIME.describe()
    assert modes.P2P.with_flags(libvirt.VIR_MIGRATE_COMPRESSED, "zip").name == "p2p-zip"


def test_progress_line() -> None:
    line = progress_line(JobProgress(job_type=1, memory_remaining_bytes=3 * 2**20, memory_bytes_per_s=60 * 2**20,
                                     memory_iteration=2))
    assert line == "migrating: 3.0 MiB left, 60.0 MiB/s, pass 2"
    assert "setting up" in progress_line(JobProgress(job_type=1, time_elapsed_ms=100, memory_remaining_bytes=0,
                                                     memory_iteration=0))


# --- clock offsets ----------------------------------------------------------


def test_offset_from_one_exchange() -> None:
    off = clocks.offset_from_exchange("h1", 100.0, 100.5, 100.2)
    assert off.offset_ms == pytest.approx(400)
    assert off.uncertainty_ms == pytest.approx(100) and off.rtt_ms == pytest.approx(200)
    with pytest.raises(ValueError):
        clocks.offset_from_exchange("h1", 100.2, 100.0, 100.0)


def test_measure_offset_finds_a_skew_within_its_uncertainty() -> None:
    # This machine's real `date`, against a controller clock 2.5 s behind it.
    off = clocks.measure_offset(LocalHost(), now=lambda: time.time() - 2.5)
    assert abs(off.offset_ms - 2500) <= off.uncertainty_ms + 1


def test_measure_offset_refuses_garbage() -> None:
    host = ReplayHost("h1", {"date +%s.%N": (0, "date: invalid\n", "")})
    with pytest.raises(ValueError, match="printed"):
        clocks.measure_offset(host, samples=1)
    assert host.calls == ["date +%s.%N"]


def test_best_of_takes_the_shortest_round_trip() -> None:
    a, b = clocks.offset_from_exchange("h", 0, 5, 10), clocks.offset_from_exchange("h", 0, 0.05, 0.1)
    assert clocks.best_of([a, b]) is b


# --- options ----------------------------------------------------------------


def test_round_trips_and_dirty_rate_are_validated() -> None:
    assert check_round_trips(3) == 3 and check_dirty_rate(0) == 0
    for bad in (0, -1, 10_000):
        with pytest.raises(ConfigError, match="--round-trips"):
            check_round_trips(bad)
    with pytest.raises(ConfigError, match="--dirty-rate"):
        check_dirty_rate(-1)
    guest = GuestSite(parse_guest_network("bridge:br0"), parse_guest_ip("198.18.0.100/24"))
    lab = DefaultPair("h1", "h2", "nfs", "/srv/virtmig-export", clocks_path(), guest, GuestShape(cpu="qemu64"))
    rc = build_run_config(None, None, None, None, "/mnt/nfs", None, lab, round_trips=2, dirty_rate_mib_s=16)
    assert (rc.round_trips, rc.dirty_rate_mib_s) == (2, 16)


def clocks_path() -> Path:
    return Path("/nonexistent/ssh_config")  # lab mode never reads it


pytest_plugins = ["pytester"]


def test_bad_round_trips_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("-p", "fixtures.options", "--round-trips", "0")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*--round-trips*between 1 and*"])
    result = pytester.runpytest("-p", "fixtures.options", "--dirty-rate", "fast")
    result.stderr.fnmatch_lines(["*--dirty-rate*not a whole number*"])


# --- report cells -----------------------------------------------------------


def record(**kw: object) -> MigrationRecord:
    base: dict[str, object] = dict(test_id="t", kind="live", mode="p2p", src="h1", dst="h2", domain="d",
                                   started_at="x", wall_s=1.0, ok=True, storage="s",
                                   stats={"downtime_ms": 200, "dirty_rate_bytes_per_s": 9 * 2**20},
                                   probe={"longest_gap_ms": 500, "lost": 0})
    base.update(kw)
    return MigrationRecord(**base)  # type: ignore[arg-type]


def test_table_shows_asked_rate_beside_measured_and_flags_disagreement() -> None:
    row = tables.migration_row(1, record(dirty_rate_asked_mib_s=8, downtime_agreement={"agrees": False}))
    assert '<td class="num">9.0 (8)</td>' in row
    assert "500 (disagrees)" in row
    plain = tables.migration_row(1, record())
    assert '<td class="num">9.0</td>' in plain and "disagrees" not in plain


# --- waiting for the guest to answer after the move -------------------------


@pytest.fixture
def echo_server() -> Iterator[EchoAgent]:
    """The guest agent's stand-in on loopback (tests/echo_agent.py): silent while `paused` is set."""
    with EchoAgent() as agent:
        yield agent


def answered(probe: UdpEchoProbe) -> int:
    return sum(recv is not None for _, recv in probe.samples())


def test_probe_is_kept_running_until_the_guest_answers_again(echo_server: EchoAgent) -> None:
    agent, log = echo_server, echo_server.log
    resumed: list[int] = []
    with UdpEchoProbe("127.0.0.1", agent.port, interval_s=0.005, drain_s=0.05) as probe:
        until(lambda: answered(probe) >= 10, "10 replies")
        agent.paused.set()
        until(lambda: len(log.dropped) >= 3 and answered(probe) == len(log.echoed),
              "silent, and every reply sent before that read")
        returned = time.monotonic_ns()  # "migrate() returned" while the guest is still silent

        def come_back() -> None:  # only once datagrams sent after the return went unanswered
            until(lambda: sum(sent >= returned for _, sent in log.dropped) >= 3, "3 datagrams lost after the return")
            resumed.append(time.monotonic_ns())
            agent.paused.clear()

        guest = threading.Thread(target=come_back)
        guest.start()
        try:
            came_back = wait_for_probe_answer(probe, returned, timeout=30)
            result = probe.stop()
        finally:
            guest.join()
    assert came_back and resumed, "the guest answered again, and the wait saw it"
    # Without the wait the gap would have been cut at the return; it runs on until the guest answered again.
    assert result.longest_gap_ms * 1e6 >= resumed[0] - returned > 0
    late = [recv for sent, recv in probe.samples() if sent >= returned and recv is not None]
    assert late and late[0] > resumed[0], "the answer waited for came after the guest was back"


def test_waiting_for_an_answer_that_never_comes_gives_up(echo_server: EchoAgent) -> None:
    echo_server.paused.set()
    with UdpEchoProbe("127.0.0.1", echo_server.port, interval_s=0.005, drain_s=0.01) as probe:
        assert not wait_for_probe_answer(probe, time.monotonic_ns(), timeout=0.2)


def test_postcopy_blocker() -> None:
    files = {"/proc/sys/vm/unprivileged_userfaultfd": "0\n",
             "/etc/libvirt/qemu.conf": '#user = "x"\nuser = "libvirt-qemu"\n'}
    assert "libvirt-qemu" in (postcopy_blocker(files.__getitem__) or "")
    files["/proc/sys/vm/unprivileged_userfaultfd"] = "1\n"
    assert postcopy_blocker(files.__getitem__) is None
    files.update({"/proc/sys/vm/unprivileged_userfaultfd": "0", "/etc/libvirt/qemu.conf": 'user = "root"\n'})
    assert postcopy_blocker(files.__getitem__) is None
