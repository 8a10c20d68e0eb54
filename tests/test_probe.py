"""Downtime probe: pure gap analysis, and a real UDP echo on loopback.

The loopback test pauses the echo server for ~300 ms and checks that the
probe reports it: a probe that always says "0 ms" would pass every
migration, so it has to be shown to fail when it should.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from virtmig.guest.probe import (
    AgentError,
    ProbeLog,
    Sample,
    UdpEchoProbe,
    agent_command,
    probe_gap,
    summarize,
)

MS = 1_000_000
T0 = 5_000_000_000  # arbitrary monotonic origin


def timeline(n: int, *, interval_ms: int = 10, rtt_ms: int = 1, lost: range = range(0)) -> list[Sample]:
    return [
        (T0 + i * interval_ms * MS, None if i in lost else T0 + (i * interval_ms + rtt_ms) * MS)
        for i in range(n)
    ]


# --- pure analysis ---------------------------------------------------------


def test_steady_stream_gap_is_one_interval() -> None:
    gap = probe_gap(timeline(100))
    assert gap.duration_ms == pytest.approx(10)
    assert (gap.first_lost_seq, gap.last_lost_seq, gap.lost) == (None, None, 0)


def test_outage_in_the_middle() -> None:
    samples = timeline(100, lost=range(10, 30))
    gap = probe_gap(samples)
    # From seq 9's reply to seq 30's: 21 intervals.
    assert gap.duration_ms == pytest.approx(210)
    assert gap.start_ns == samples[9][1]
    assert gap.end_ns == samples[30][1]
    assert (gap.first_lost_seq, gap.last_lost_seq, gap.lost) == (10, 29, 20)


def test_no_replies_at_all_spans_the_whole_window() -> None:
    samples = timeline(50, lost=range(50))
    gap = probe_gap(samples)
    assert gap.start_ns == samples[0][0]
    assert gap.end_ns == samples[-1][0]
    assert (gap.first_lost_seq, gap.last_lost_seq, gap.lost) == (0, 49, 50)


def test_replies_only_before_runs_to_window_end() -> None:
    samples = timeline(50, lost=range(20, 50))
    gap = probe_gap(samples, window_end_ns=T0 + 600 * MS)
    assert gap.start_ns == samples[19][1]
    assert gap.end_ns == T0 + 600 * MS
    assert (gap.first_lost_seq, gap.last_lost_seq, gap.lost) == (20, 49, 30)


def test_replies_only_after_start_at_first_send() -> None:
    samples = timeline(50, lost=range(0, 20))
    gap = probe_gap(samples)
    assert gap.start_ns == samples[0][0]
    assert gap.end_ns == samples[20][1]
    assert (gap.first_lost_seq, gap.last_lost_seq) == (0, 19)


def test_late_out_of_order_reply_does_not_split_the_gap() -> None:
    samples = timeline(100, lost=range(10, 30))
    # seq 12's reply straggles in after seq 30's: the guest was not back then.
    back = samples[30][1]
    assert back is not None
    samples[12] = (samples[12][0], back + 1 * MS)
    gap = probe_gap(samples)
    assert gap.duration_ms == pytest.approx(210)
    assert (gap.first_lost_seq, gap.last_lost_seq, gap.lost) == (10, 29, 19)


def test_in_order_reply_during_outage_does_split_it() -> None:
    samples = timeline(100, lost=range(10, 30))
    samples[20] = (samples[20][0], samples[20][0] + 1 * MS)
    gap = probe_gap(samples)
    assert gap.duration_ms == pytest.approx(110)  # seq 9 -> seq 20
    assert (gap.first_lost_seq, gap.last_lost_seq) == (10, 19)


def test_empty() -> None:
    gap = probe_gap([])
    assert gap.duration_ns == 0 and gap.lost == 0


def test_log_ignores_duplicates_and_strays() -> None:
    log = ProbeLog()
    s0 = log.sent(T0)
    s1 = log.sent(T0 + 10 * MS)
    log.received(s0, T0, T0 + 1 * MS)
    log.received(s0, T0, T0 + 2 * MS)  # duplicate: first reply wins
    log.received(7, T0, T0 + 3 * MS)  # never sent
    log.received(s1, T0 + 999, T0 + 4 * MS)  # send time does not match ours
    assert log.samples() == [(T0, T0 + 1 * MS), (T0 + 10 * MS, None)]
    assert (log.duplicates, log.stray) == (1, 2)


def test_summarize() -> None:
    samples = timeline(100, rtt_ms=2, lost=range(40, 60))
    samples[0] = (samples[0][0], samples[0][0] + 8 * MS)
    r = summarize(samples, interval_s=0.01, duplicates=3)
    assert (r.sent, r.received, r.lost, r.duplicates) == (100, 80, 20, 3)
    assert r.rtt_p50_ms == pytest.approx(2)
    assert r.rtt_max_ms == pytest.approx(8)
    assert r.longest_gap_ms == pytest.approx(210)
    assert (r.gap_first_lost_seq, r.gap_last_lost_seq, r.gap_lost) == (40, 59, 20)
    assert r.longest_send_gap_ms == pytest.approx(10)
    assert r.interval_ms == pytest.approx(10)
    assert r.to_dict()["longest_gap_ms"] == r.longest_gap_ms


def test_probe_payload_never_looks_like_a_command() -> None:
    from virtmig.guest.probe import _PAYLOAD

    assert _PAYLOAD.size == 16
    assert _PAYLOAD.pack(2**40, time.monotonic_ns())[:1] != b"!"


# --- real UDP on loopback --------------------------------------------------


class EchoAgent:
    """Stand-in for virtmig/guest/guest_agent.c: echo, '!ping' -> 'ok pong', pause."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.02)
        self.port: int = self.sock.getsockname()[1]
        self.paused = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            if self.paused.is_set():
                continue  # an outage: datagrams vanish
            if data.startswith(b"!ping"):
                self.sock.sendto(b"ok pong\n", peer)
            elif data.startswith(b"!ram-verify"):
                self.sock.sendto(b"fail ram-verify s1 offset=4096\n", peer)
            elif data.startswith(b"!"):
                self.sock.sendto(b"err unknown command\n", peer)
            else:
                self.sock.sendto(data, peer)

    def __enter__(self) -> EchoAgent:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def agent() -> Iterator[EchoAgent]:
    with EchoAgent() as a:
        yield a


def test_probe_against_echo_loses_nothing(agent: EchoAgent) -> None:
    with UdpEchoProbe("127.0.0.1", agent.port, interval_s=0.005) as probe:
        time.sleep(0.5)
    r = probe.result
    assert r.sent >= 50
    assert r.lost == 0, r
    assert r.stray == 0 and r.send_errors == 0
    assert r.longest_gap_ms < 100
    assert r.rtt_max_ms is not None and r.rtt_max_ms < 100


def test_probe_sees_a_300ms_outage(agent: EchoAgent) -> None:
    probe = UdpEchoProbe("127.0.0.1", agent.port, interval_s=0.005)
    probe.start()
    time.sleep(0.3)
    agent.paused.set()
    time.sleep(0.3)
    agent.paused.clear()
    time.sleep(0.3)
    r = probe.stop()
    assert 250 <= r.longest_gap_ms <= 450, r
    assert r.gap_lost >= 30
    assert r.gap_first_lost_seq is not None and r.gap_last_lost_seq is not None
    assert r.gap_last_lost_seq - r.gap_first_lost_seq + 1 >= r.gap_lost
    assert r.lost == r.gap_lost  # the only losses are in the outage
    assert r.longest_send_gap_ms < 100  # the probe itself kept sending


def test_probe_rate_does_not_drift(agent: EchoAgent) -> None:
    with UdpEchoProbe("127.0.0.1", agent.port, interval_s=0.01) as probe:
        time.sleep(1.0)
    sends = [s for s, _ in probe.samples()]
    # Absolute deadlines: 1 s at 10 ms is 100 sends (+1 for t=0), not fewer.
    assert 95 <= len(sends) <= 102
    assert sends[-1] - sends[0] <= 1.0e9 + 20 * MS


def test_stop_is_idempotent_and_result_needs_stop(agent: EchoAgent) -> None:
    probe = UdpEchoProbe("127.0.0.1", agent.port, interval_s=0.01, drain_s=0.05)
    with pytest.raises(RuntimeError):
        _ = probe.result
    probe.start()
    time.sleep(0.05)
    first = probe.stop()
    assert probe.stop() is first


def test_agent_command_ping(agent: EchoAgent) -> None:
    assert agent_command("127.0.0.1", agent.port, "ping") == "ok pong"
    assert agent_command("127.0.0.1", agent.port, "!ping") == "ok pong"


def test_agent_command_fail_raises(agent: EchoAgent) -> None:
    with pytest.raises(AgentError, match="err unknown command"):
        agent_command("127.0.0.1", agent.port, "explode")
    with pytest.raises(AgentError, match="fail ram-verify s1 offset=4096"):
        agent_command("127.0.0.1", agent.port, "ram-verify s1")


def test_agent_command_times_out(agent: EchoAgent) -> None:
    agent.paused.set()
    start = time.monotonic()
    with pytest.raises(AgentError, match="did not answer"):
        agent_command("127.0.0.1", agent.port, "ping", timeout=0.1, retries=2)
    assert 0.15 <= time.monotonic() - start < 1.0


def test_agent_command_closed_port() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(AgentError, match="did not answer"):
        agent_command("127.0.0.1", port, "ping", timeout=0.1, retries=2)
