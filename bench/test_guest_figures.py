"""Benchmark of the test guest: how long it takes to boot, and how fast its agent answers.

Run with `make bench` (pytest -s, so the figures print); needs root, QEMU
and gcc, like the boot tests in tests/test_guest_build.py, which check the
same guest's behaviour and leave these figures to this file:

* boot to first ping and to the agent answering (TCG, 128 MiB);
* echo round trips: idle, with the dirtier at 20 MiB/s, and while a
  ram-write runs on the agent's worker (a starved echo would fake downtime);
* how much the dirtier really dirties in 1.2 s at 8 MiB/s.

No timed asserts: a slow night is a figure to read, not a failure.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator

import pytest

from bench.goals import GoalTable
from tests.guest_vm import NETNS, BootedGuest, boot_guest, netns_socket, status_fields

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def booted_guest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BootedGuest]:
    with boot_guest(tmp_path_factory.mktemp("guest")) as booted:
        yield booted


def _spread(rtts: list[float]) -> str:
    p99 = sorted(rtts)[max(0, int(len(rtts) * 0.99) - 1)]
    return f"median {statistics.median(rtts):.3f} p99 {p99:.3f} max {max(rtts):.3f}"


def test_guest_figures(booted_guest: BootedGuest, goal_table: GoalTable) -> None:
    agent = booted_guest.agent
    print("\n== test guest under TCG ==")
    print(f"boot to ping {booted_guest.ping_after_s:.2f} s, to agent {booted_guest.agent_after_s:.2f} s; "
          f"initrd {booted_guest.image.initrd.stat().st_size} bytes")
    goal_table.add("guest boot to first answer (TCG)", "<= 5 s", f"{booted_guest.agent_after_s:.2f} s",
                   booted_guest.agent_after_s <= 5.0)
    print(f"echo rtt ms, idle: {_spread(agent.echo_rtts_ms(200))}")

    agent.ask("!dirty 20")
    try:
        print(f"echo rtt ms, dirtying 20 MiB/s: {_spread(agent.echo_rtts_ms(100))}")
    finally:
        agent.ask("!dirty 0")
    with netns_socket(NETNS) as cmd_sock:
        cmd_sock.settimeout(10)
        cmd_sock.sendto(b"!ram-write bench", agent.addr)
        during_write = agent.echo_rtts_ms(30)
        cmd_sock.recvfrom(512)
    print(f"echo rtt ms, during a ram-write: {_spread(during_write)}")

    before = int(status_fields(agent.ask("!status"))["dirtied_mib"])
    agent.ask("!dirty 8")
    try:
        time.sleep(1.2)
        after = int(status_fields(agent.ask("!status"))["dirtied_mib"])
    finally:
        agent.ask("!dirty 0")
    print(f"dirtier at 8 MiB/s: {after - before} MiB dirtied in 1.2 s")
