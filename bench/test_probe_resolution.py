"""Benchmark of the probe itself, on loopback: how closely it times an outage, and how steadily it sends.

Run with `make bench` (pytest -s, so the figures print); needs no lab.  These
are the timing figures the unit tests in tests/test_probe.py and
tests/test_measure_helpers.py deliberately do not assert, because a loaded
machine changes them without anything being wrong:

* a 300 ms outage (the agent stand-in drops everything), as the probe's
  longest gap, with the datagrams lost in it and the probe's own worst
  stall between sends;
* one second of sending at 10 ms: how many sends, over how long (absolute
  deadlines should give 101 over 1000 ms);
* half a second of echoes at 5 ms: round trips and the longest gap with no
  outage at all, i.e. the probe's floor;
* the probe kept running after a "migration" returned, as the measurement
  does, and the gap it then reports against the outage the agent made;
* how long an `agent_command` to a silent agent takes with timeout 0.1 s
  and 2 attempts.

No timed asserts: a slow night is a figure to read, not a failure.
"""

from __future__ import annotations

import contextlib
import threading
import time

from tests.echo_agent import EchoAgent
from virtmig.guest.probe import AgentError, UdpEchoProbe, agent_command
from virtmig.waiters import wait_for_probe_answer


def test_probe_resolution_on_loopback() -> None:
    print("\n== probe resolution on loopback ==")
    with EchoAgent() as agent:
        probe = UdpEchoProbe("127.0.0.1", agent.port, interval_s=0.005)
        probe.start()
        time.sleep(0.3)
        agent.paused.set()
        time.sleep(0.3)
        agent.paused.clear()
        time.sleep(0.3)
        r = probe.stop()
        print(f"300 ms outage at 5 ms: longest gap {r.longest_gap_ms:.1f} ms, {r.gap_lost} lost in it "
              f"(seq {r.gap_first_lost_seq}..{r.gap_last_lost_seq}), {r.lost} lost in all; "
              f"longest send gap {r.longest_send_gap_ms:.1f} ms")

        with UdpEchoProbe("127.0.0.1", agent.port, interval_s=0.01) as steady:
            time.sleep(1.0)
        sends = [s for s, _ in steady.samples()]
        print(f"1 s at 10 ms: {len(sends)} sends over {(sends[-1] - sends[0]) / 1e6:.1f} ms "
              f"(absolute deadlines: 101 over 1000 ms)")

        with UdpEchoProbe("127.0.0.1", agent.port, interval_s=0.005) as idle:
            time.sleep(0.5)
        i = idle.result
        print(f"0.5 s of echoes at 5 ms: {i.sent} sent, {i.lost} lost, rtt p50 {i.rtt_p50_ms or float('nan'):.3f} ms "
              f"max {i.rtt_max_ms or float('nan'):.3f} ms, longest gap {i.longest_gap_ms:.1f} ms, "
              f"longest send gap {i.longest_send_gap_ms:.1f} ms")

        with UdpEchoProbe("127.0.0.1", agent.port, interval_s=0.005, drain_s=0.05) as kept:
            time.sleep(0.1)
            agent.paused.set()
            time.sleep(0.05)
            returned = time.monotonic_ns()  # "migrate() returned" while the guest is still silent
            threading.Timer(0.3, agent.paused.clear).start()
            came_back = wait_for_probe_answer(kept, returned, timeout=5)
            k = kept.stop()
        print(f"probe kept running after the return: answered again {came_back}, longest gap "
              f"{k.longest_gap_ms:.1f} ms for a 350 ms outage (cut at the return it would be ~50 ms)")

        agent.paused.set()
        start = time.monotonic()
        with contextlib.suppress(AgentError):
            agent_command("127.0.0.1", agent.port, "ping", timeout=0.1, retries=2)
        print(f"agent_command to a silent agent, 2 x 0.1 s: gave up after {time.monotonic() - start:.3f} s")
