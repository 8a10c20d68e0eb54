"""Pure parts of the live/offline measurement: modes, progress line, clock offsets, options, table cells."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import libvirt
import pytest

from tests.echo_agent import EchoAgent, until
from tests.replay import ReplayHost
from virtmig.config import DefaultPair, GuestShape, GuestSite, build_run_config
from virtmig.guest.probe import UdpEchoProbe
from virtmig.guestconfig import parse_guest_ip, parse_guest_network
from virtmig.host import LineChannel
from virtmig.localhost import LocalHost
from virtmig.migration import clocks, modes
from virtmig.migration.jobstats import JobProgress
from virtmig.migration.measure import GuestAccess, Measurement
from virtmig.migration.records import MigrationRecord
from virtmig.migration.runner import postcopy_blocker, progress_line
from virtmig.option_values import ConfigError, check_dirty_rate, check_round_trips
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
    assert modes.POSTCOPY.flags & libvirt.VIR_MIGRATE_POSTCOPY and modes.POSTCOPY.switch_to_postcopy
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


def test_offset_is_the_middle_of_the_kept_intervals_intersection() -> None:
    # The 10 ms exchange bounds the offset to [395, 405], the 6 ms one to [396, 402]: together
    # [396, 402], so 399 +- 3; the 200 ms exchange (which would allow 300..500) is not among the 2 kept.
    ms = 1_000_000
    ex = [clocks.Exchange(0, 405 * ms, 10 * ms), clocks.Exchange(100 * ms, 502 * ms, 106 * ms),
          clocks.Exchange(0, 500 * ms, 200 * ms)]
    off = clocks.offset_from_exchanges("h1", ex, keep=2)
    assert off.offset_ms == pytest.approx(399) and off.uncertainty_ms == pytest.approx(3)
    assert off.rtt_ms == pytest.approx(6) and (off.samples, off.kept, off.consistent) == (3, 2, True)
    with pytest.raises(ValueError, match="backwards"):
        clocks.offset_from_exchanges("h1", [clocks.Exchange(10, 5, 0)])
    with pytest.raises(ValueError, match="no clock samples"):
        clocks.offset_from_exchanges("h1", [])


def test_disjoint_intervals_fall_back_to_the_shortest_exchange() -> None:
    # A clock that stepped 50 ms between two exchanges: no offset fits both.
    ms = 1_000_000
    off = clocks.offset_from_exchanges("h1", [clocks.Exchange(0, 1 * ms, 2 * ms), clocks.Exchange(0, 51 * ms, 3 * ms)])
    assert not off.consistent
    assert off.offset_ms == pytest.approx(0) and off.uncertainty_ms == pytest.approx(1)


def test_host_clock_finds_a_skew_within_its_uncertainty() -> None:
    # This machine's real clock loop (python3), against a controller clock 2.5 s behind it.
    with clocks.HostClock(LocalHost(), now=lambda: time.time_ns() - 2_500_000_000) as clock:
        first, second = clock.measure(), clock.measure()  # the same channel serves both
    assert clock.method == "python3"
    for off in (first, second):
        assert abs(off.offset_ms - 2500) <= off.uncertainty_ms
        assert off.consistent and off.samples == clocks.SAMPLES and off.kept == clocks.KEEP
    assert off.chrony is not None and off.chrony["status"]  # chrony or the reason it is absent


def test_host_clock_without_skew_is_zero_within_a_millisecond() -> None:
    # One kernel clock on both ends: the bound must hold 0, and a local pipe is fast enough for <1 ms.
    off = clocks.measure_offset(LocalHost())
    assert abs(off.offset_ms) <= off.uncertainty_ms
    assert off.uncertainty_ms < 1.0


def test_the_date_fallback_loop_answers_too() -> None:
    # Hosts without python3 answer through `date`; run the loop's fallback half alone.
    fallback = clocks.CLOCK_LOOP[clocks.CLOCK_LOOP.index("echo date"):]
    channel = LocalHost().open_channel(fallback)
    try:
        assert channel.read_line(5) == "date"
        before = time.time_ns()
        answer = int(channel.exchange("t", 5))
        assert before <= answer <= time.time_ns()
    finally:
        channel.close()


def test_a_clock_loop_printing_garbage_is_named() -> None:
    class Garbage(LocalHost):
        def open_channel(self, script: str, *, args: Sequence[str] = ()) -> LineChannel:
            return super().open_channel("echo odd; while read -r _; do echo nonsense; done")

    with pytest.raises(ValueError, match="odd.*printed 'nonsense'"):
        clocks.measure_offset(Garbage("h9"))


def test_chrony_tracking_is_parsed_with_its_sign() -> None:
    text = ("Reference ID    : C0A80001 (ntp.example)\nStratum         : 3\n"
            "System time     : 0.000123456 seconds slow of NTP time\nLast offset     : +0.000010000 seconds\n"
            "RMS offset      : 0.000020000 seconds\nLeap status     : Normal\n")
    got = clocks.parse_chrony_tracking(text)
    assert got["system_time_ms"] == pytest.approx(-0.123456)
    assert got["leap_status"] == "Normal" and got["stratum"] == "3"
    fast = clocks.parse_chrony_tracking("System time     : 0.001 seconds fast of NTP time\n")
    assert fast["system_time_ms"] == pytest.approx(1.0)
    absent = ReplayHost("h1", {"chronyc tracking": (127, "", "chronyc: not found\n")})
    assert clocks.chrony_tracking(absent) == {"status": "chronyc not installed"}
    down = ReplayHost("h1", {"chronyc tracking": (1, "", "506 Cannot talk to daemon\n")})
    assert "Cannot talk" in clocks.chrony_tracking(down)["status"]


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


def test_after_a_failed_move_only_a_guest_that_answers_is_asked_to_verify(echo_server: EchoAgent) -> None:
    """finish(verify=None): a failed migration's guest is verified where it answers, not waited on when it is gone."""
    asked: list[str] = []

    def agent(text: str) -> str:
        asked.append(text)
        verb, seed = text.split()
        return f"ok {verb} {seed}" + (" 0123abcd" if verb.endswith("-write") else "")

    access = GuestAccess("127.0.0.1", echo_server.port, answer_timeout_s=0.3)
    for silent in (False, True):
        asked.clear()
        with Measurement(access, "seed1", ("ram", "disk"), agent=agent) as meas:
            if silent:
                echo_server.paused.set()
            meas.finish(verify=None)
        echo_server.paused.clear()
        verified = [a for a in asked if "-verify" in a]
        assert meas.answered_after is not silent
        assert verified == ([] if silent else ["ram-verify seed1", "disk-verify seed1"]), asked
