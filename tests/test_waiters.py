"""Waiters: a timeout must say what, which state, how long, and what was seen."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator

import libvirt
import pytest

from virtmig.waiters import WaitTimeout, wait_for, wait_for_agent, wait_for_domain_state


def test_returns_first_non_none_value() -> None:
    values = iter([None, None, "ready"])
    assert wait_for(lambda: next(values), target="thing", state="ready", timeout=5, interval=0.01) == "ready"


def test_falsy_values_count_as_done() -> None:
    assert wait_for(lambda: 0, target="counter", state="zero", timeout=1) == 0


def test_timeout_message_names_target_state_elapsed_and_last_value() -> None:
    seen = {"n": 0}

    def never() -> int | None:
        seen["n"] += 1
        return None

    start = time.monotonic()
    with pytest.raises(WaitTimeout) as info:
        wait_for(
            never,
            target="domain virtmig-guest on h2",
            state="running",
            timeout=0.3,
            interval=0.05,
            describe=lambda: f"paused after {seen['n']} polls",
        )
    elapsed = time.monotonic() - start
    err = info.value
    msg = str(err)
    assert "domain virtmig-guest on h2" in msg
    assert "running" in msg
    assert re.search(r"after \d+\.\d s", msg)
    assert f"paused after {seen['n']} polls" in msg
    assert isinstance(err, TimeoutError)
    assert (err.target, err.state) == ("domain virtmig-guest on h2", "running")
    assert 0.3 <= err.elapsed <= elapsed
    assert seen["n"] >= 5  # polled throughout, and once at the deadline


def test_zero_timeout_still_looks_once() -> None:
    assert wait_for(lambda: "x", target="t", state="s", timeout=0) == "x"


def test_without_describe_message_says_so() -> None:
    with pytest.raises(WaitTimeout, match="predicate returned None"):
        wait_for(lambda: None, target="t", state="s", timeout=0.05, interval=0.01)


def test_failing_describe_does_not_hide_the_timeout() -> None:
    def broken() -> str:
        raise RuntimeError("connection closed")

    with pytest.raises(WaitTimeout, match="describe failed.*connection closed"):
        wait_for(lambda: None, target="t", state="s", timeout=0.05, interval=0.01, describe=broken)


def test_predicate_errors_propagate() -> None:
    def boom() -> None:
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        wait_for(boom, target="t", state="s", timeout=1)


class FakeDomain:
    """Reports `states` in turn, then repeats the last one."""

    def __init__(self, *states: tuple[int, int]) -> None:
        self._states = list(states)

    def state(self, flags: int = 0) -> list[int]:
        if len(self._states) > 1:
            return list(self._states.pop(0))
        return list(self._states[0])

    def name(self) -> str:
        return "virtmig-guest"


def test_domain_state_reached_returns_reason() -> None:
    dom = FakeDomain(
        (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_MIGRATION),
        (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_MIGRATED),
    )
    reason = wait_for_domain_state(dom, libvirt.VIR_DOMAIN_RUNNING, timeout=2, interval=0.01)
    assert reason == libvirt.VIR_DOMAIN_RUNNING_MIGRATED


def test_domain_state_timeout_uses_state_names() -> None:
    dom = FakeDomain((libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_MIGRATION))
    with pytest.raises(WaitTimeout) as info:
        wait_for_domain_state(dom, libvirt.VIR_DOMAIN_RUNNING, timeout=0.1, interval=0.02)
    msg = str(info.value)
    assert "domain virtmig-guest" in msg
    assert "to be running" in msg
    assert f"paused (reason {libvirt.VIR_DOMAIN_PAUSED_MIGRATION})" in msg


@pytest.fixture
def late_agent() -> Iterator[int]:
    """A UDP agent on loopback that starts answering '!ping' after 0.3 s."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.02)
    ready_at = time.monotonic() + 0.3
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(512)
            except TimeoutError:
                continue
            if data.startswith(b"!ping") and time.monotonic() >= ready_at:
                sock.sendto(b"ok pong\n", peer)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield sock.getsockname()[1]
    stop.set()
    t.join()
    sock.close()


def test_wait_for_agent(late_agent: int) -> None:
    assert wait_for_agent("127.0.0.1", late_agent, timeout=5, interval=0.05) == "ok pong"


def test_wait_for_agent_timeout_reports_last_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(WaitTimeout) as info:
        wait_for_agent("127.0.0.1", port, timeout=0.2, interval=0.05)
    msg = str(info.value)
    assert f"guest agent 127.0.0.1:{port}" in msg
    assert "answering !ping" in msg
    assert "did not answer" in msg
