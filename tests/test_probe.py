"""Downtime probe: pure gap analysis, its send schedule, and a real UDP echo on loopback.

The loopback test swallows a run of the probe's datagrams and checks that
the probe reports exactly those lost and an outage at least as long as the
test held it: a probe that always says "0 ms" would pass every migration,
so it has to be shown to fail when it should.

No assertion here depends on how fast this machine is: outages are made
of datagrams, bounds are times the test itself read on the probe's clock,
and the send schedule runs on a clock that steps by a fixed amount per
reading.  The loopback figures (gap against a 300 ms outage, send rate,
round trips) are printed by bench/test_probe_resolution.py.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from tests.echo_agent import EchoAgent, until
from virtmig.guest import probe as probe_module
from virtmig.guest.probe import (
    AgentError,
    ProbeLog,
    Sample,
    UdpEchoProbe,
    agent_command,
    probe_gap,
    summarize,
)
from virtmig.guest.probe_sender import Reply, Scheduling, Sent, Stray, parse_event, sender_binary

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
    payload = probe_module._PAYLOAD
    assert payload.size == 16
    assert payload.pack(2**40, time.monotonic_ns())[:1] != b"!"


# --- the send schedule, on a clock that steps per reading ----------------------


class SteppingClock:
    """A monotonic clock for the probe's sender: each reading is `step_ns` after the last.

    The sender reads it twice per loop turn when nothing answers, so its
    schedule in this clock's time is the same on an idle or a loaded
    machine.  `stall_at`: one reading that jumps `stall_ns` further (the
    sender descheduled for that long).  The sender takes it from its
    environment (probe_sender.c: VIRTMIG_PROBE_STEPPING_CLOCK) and then never sleeps.
    """

    def __init__(self, step_ns: int, stall_at: int | None = None, stall_ns: int = 0) -> None:
        self.step_ns, self.stall_at, self.stall_ns = step_ns, stall_at, stall_ns

    def env(self) -> dict[str, str]:
        spec = f"{T0} {self.step_ns} {self.stall_at or 0} {self.stall_ns}"
        return dict(os.environ, VIRTMIG_PROBE_STEPPING_CLOCK=spec)


@pytest.fixture
def sink() -> Iterator[int]:
    """A UDP port that takes datagrams and never answers (no ICMP, no replies to read)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def run_on(clock: SteppingClock, port: int, sends: int, interval_s: float) -> list[int]:
    """Run the probe's sender on `clock` until it has sent `sends` datagrams; their send times."""
    proc = subprocess.Popen([str(sender_binary()), "127.0.0.1", str(port), str(int(interval_s * 1e9)), "0", "0"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=clock.env())
    assert proc.stdout is not None and proc.stdin is not None
    times: list[int] = []
    try:
        for line in proc.stdout:
            event = parse_event(line)
            if isinstance(event, Sent):
                assert event.seq == len(times) and event.error is None
                times.append(event.send_ns)
                if len(times) == sends:
                    break
    finally:
        proc.stdin.close()
        proc.stdout.close()
        proc.wait()
    return times


def test_sends_stay_on_absolute_deadlines(sink: int) -> None:
    """Send k goes at the first loop turn at or after start + k*interval: never early, never a slot late."""
    interval, step = 1 * MS, 300_000  # a turn (two readings) every 0.6 ms, well inside an interval
    sends = run_on(SteppingClock(step), sink, 200, interval / 1e9)
    for k, sent in enumerate(sends):
        deadline = T0 + k * interval
        assert deadline <= sent < deadline + 2 * step, (k, sent - deadline)
    # The point of absolute deadlines: 200 sends span 199 intervals, not 199 * (interval + lag).
    assert sends[199] - sends[0] < 199 * interval + 2 * step


def test_a_stalled_probe_skips_the_missed_slots_instead_of_bursting(sink: int) -> None:
    interval, step, stall = 1 * MS, 300_000, 5_500_000  # a 5.5-interval stall at the 60th reading
    clock = SteppingClock(step, stall_at=60, stall_ns=stall)
    sends = run_on(clock, sink, 60, interval / 1e9)
    slots = [(s - T0) // interval for s in sends]
    assert all(b > a for a, b in itertools.pairwise(slots)), "two sends in one slot: a burst"
    skipped = [(a, b) for a, b in itertools.pairwise(slots) if b - a > 1]
    assert len(skipped) == 1 and skipped[0][1] - skipped[0][0] >= 5, slots
    after = slots.index(skipped[0][1])
    for k in range(after + 1, len(sends)):  # back on the grid after the first late send
        assert slots[k] * interval + T0 <= sends[k] < slots[k] * interval + T0 + 2 * step
    summary = summarize([(s, None) for s in sends], interval_s=interval / 1e9)
    assert summary.longest_send_gap_ms * MS >= stall, "the stall must show as the longest send gap"


# --- real UDP on loopback --------------------------------------------------


@pytest.fixture
def agent() -> Iterator[EchoAgent]:
    with EchoAgent() as a:
        yield a


def answered(probe: UdpEchoProbe) -> int:
    return sum(recv is not None for _, recv in probe.samples())


def reply_read(probe: UdpEchoProbe, seq: int) -> bool:
    """Whether the probe has read the reply to `seq` (safe while it runs)."""
    samples = probe.samples()
    return len(samples) > seq and samples[seq][1] is not None


def test_probe_against_echo_loses_nothing(agent: EchoAgent) -> None:
    with UdpEchoProbe("127.0.0.1", agent.port, interval_s=0.005) as probe:
        until(lambda: answered(probe) >= 50, "50 replies")
    r, samples = probe.result, probe.samples()
    last = max(seq for seq, (_, recv) in enumerate(samples) if recv is not None)
    assert r.sent == len(samples) and r.received >= 50
    # Nothing lost up to the last reply; only sends the stop cut off may lack one.
    assert [seq for seq, (_, recv) in enumerate(samples) if recv is None] == list(range(last + 1, len(samples)))
    assert r.lost == len(samples) - 1 - last
    assert r.stray == 0 and r.send_errors == 0 and r.duplicates == 0
    assert [seq for seq, _ in agent.log.echoed] == list(range(len(agent.log.echoed))), "sent in seq order"
    assert all(recv > send for send, recv in samples if recv is not None)
    assert r.rtt_p50_ms is not None and r.rtt_max_ms is not None and 0 < r.rtt_p50_ms <= r.rtt_max_ms


def test_probe_sees_an_outage() -> None:
    """Seqs 20.. vanish until the test releases them; the probe reports exactly those, for at least that long."""
    first = 20
    with EchoAgent(drop_from=first) as agent, UdpEchoProbe("127.0.0.1", agent.port, interval_s=0.005) as probe:
        until(lambda: reply_read(probe, first - 1), f"the reply to seq {first - 1}")
        read = time.monotonic_ns()  # the last reply before the outage has been read by now
        before = probe_gap(probe.samples()[:first])  # every gap before the outage
        until(lambda: len(agent.log.dropped) >= 20 and time.monotonic_ns() - read > before.duration_ns,
              "20 datagrams lost, and an outage longer than any gap before it")
        released = time.monotonic_ns()
        agent.release()
        until(lambda: probe.answered_since(released), "a reply to a datagram sent after the release")
        back = time.monotonic_ns()
    r, samples = probe.result, probe.samples()
    dropped = [seq for seq, _ in agent.log.dropped]
    last = dropped[-1]
    assert dropped == list(range(first, last + 1)) and len(dropped) >= 20

    # Up to the first reply after the outage, the probe lost exactly what the agent swallowed.
    assert [seq for seq, (_, recv) in enumerate(samples[:last + 2]) if recv is None] == dropped
    outage = probe_gap(samples[:last + 2])
    assert (outage.first_lost_seq, outage.last_lost_seq, outage.lost) == (first, last, len(dropped))
    assert (outage.start_ns, outage.end_ns) == (samples[first - 1][1], samples[last + 1][1])
    # As long as the test held it, and no longer than from the last send before it to the test seeing it end.
    assert released - read <= outage.duration_ns <= back - samples[first - 1][0]

    # The whole run's report: the outage in full; any other loss is a send the stop cut off.
    assert r.longest_gap_ms >= outage.duration_ms
    answered_seqs = [seq for seq, (_, recv) in enumerate(samples) if recv is not None]
    lost = [seq for seq, (_, recv) in enumerate(samples) if recv is None]
    assert lost == dropped + list(range(answered_seqs[-1] + 1, len(samples)))
    assert r.lost == len(lost) and r.stray == 0 and r.send_errors == 0


def test_stop_is_idempotent_and_result_needs_stop(agent: EchoAgent) -> None:
    probe = UdpEchoProbe("127.0.0.1", agent.port, interval_s=0.01, drain_s=0.05)
    with pytest.raises(RuntimeError):
        _ = probe.result
    probe.start()
    until(lambda: len(probe.samples()) >= 1, "a send")
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
    """Silence: `retries` attempts, each waiting `timeout`, then the error; no more attempts after it."""
    agent.paused.set()
    with pytest.raises(AgentError, match=r"did not answer '!ping' \(2 attempts of 0.1 s"):
        agent_command("127.0.0.1", agent.port, "ping", timeout=0.1, retries=2)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # a marker sent after agent_command returned
        s.sendto(b"!marker", ("127.0.0.1", agent.port))
    until(lambda: b"!marker" in agent.log.commands, "the marker")
    assert agent.log.commands == [b"!ping", b"!ping", b"!marker"]


def test_agent_command_closed_port() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(AgentError, match="did not answer"):
        agent_command("127.0.0.1", port, "ping", timeout=0.1, retries=2)


def test_the_probes_sender_says_how_it_was_scheduled_and_leaves_the_interpreter_alone(agent: EchoAgent) -> None:
    """The sends come from the native sender (virtmig.guest.probe_sender): no GIL tuning here any more."""
    before = sys.getswitchinterval()
    first = UdpEchoProbe("127.0.0.1", agent.port, interval_s=0.005)
    second = UdpEchoProbe("127.0.0.1", agent.port, interval_s=0.005)
    first.start()
    second.start()
    time.sleep(0.05)
    assert sys.getswitchinterval() == before
    first.stop()
    second.stop()
    # root may have SCHED_FIFO; anyone else is told why not.  Either way the sender asked.
    expected = "SCHED_FIFO" if _fifo_permitted() else "SCHED_OTHER"
    assert first.scheduling.startswith(expected), first.scheduling
    assert first.result.sent > 0 and first.result.received == first.result.sent - first.result.lost


def _fifo_permitted() -> bool:
    """Whether this process may use SCHED_FIFO: ask for it on a throwaway thread."""
    got: list[bool] = []

    def attempt() -> None:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
            got.append(True)
        except PermissionError:
            got.append(False)

    t = threading.Thread(target=attempt)
    t.start()
    t.join()
    return got[0]


def test_sender_events_are_parsed_line_by_line() -> None:
    assert parse_event("s 7 123\n") == Sent(7, 123)
    assert parse_event("e 8 130 113\n") == Sent(8, 130, error=113)
    assert parse_event("r 7 123 456\n") == Reply(7, 123, 456)
    assert parse_event("x 999\n") == Stray(999)
    assert parse_event("p SCHED_FIFO 10\n") == Scheduling("SCHED_FIFO 10")
    for bad in ("", "s 7", "r 1 2", "q 1 2 3", "s seven 1"):
        with pytest.raises(ValueError):
            parse_event(bad)
