"""Waiters: a timeout must say what, which state, how long, and what was seen."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from virtmig.guest.waits import wait_for_agent
from virtmig.host import Host
from virtmig.lab.netns import is_alive, terminate
from virtmig.localhost import LocalHost
from virtmig.waiters import WaitTimeout, call_bounded, wait_for, wait_for_command, wait_for_export_listing


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
    assert seen["n"] >= 2  # looked at the start and again at the deadline (how often between is load-dependent)


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


def test_importing_waiters_loads_neither_libvirt_nor_the_probe() -> None:
    """The lab's helper scripts (exportfs, mount.nfs stand-ins) import waiters inside the lab's nodes."""
    code = ("import sys, virtmig.waiters; "
            "print(sorted(m for m in ('libvirt', 'virtmig.guest.probe') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"


def test_wait_for_command_returns_the_first_successful_run(tmp_path: Path) -> None:
    flag = tmp_path / "ready"
    timer = threading.Timer(0.2, flag.touch)
    timer.start()
    try:
        result = wait_for_command(LocalHost("h2"), "test", "-e", str(flag), target=f"{flag} on h2", state="present",
                                  timeout=5, interval=0.02)
    finally:
        timer.cancel()
    assert result.ok
    assert flag.exists()


def test_wait_for_command_timeout_names_the_last_exit_and_stderr(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(WaitTimeout) as info:
        wait_for_command(LocalHost("h2"), "cat", str(missing), target=f"{missing} on h2", state="readable",
                         timeout=0.1, interval=0.02)
    msg = str(info.value)
    assert f"{missing} on h2" in msg
    assert "to be readable" in msg
    assert "exited 1" in msg
    assert "No such file or directory" in msg


def test_export_listing_waits_until_every_observer_sees_it() -> None:
    polls = {"h1": 0, "h2": 0}

    def exported_to(host: Host, server: str) -> list[str]:
        assert server == "nas"
        polls[host.name] += 1
        return ["/srv/vm"] if polls[host.name] >= (2 if host.name == "h1" else 4) else ["/srv/other"]

    wait_for_export_listing((LocalHost("h1"), LocalHost("h2")), "nas", "/srv/vm", listed=True,
                            exported_to=exported_to, timeout=5, interval=0.01)
    assert polls["h2"] == 4  # h1 saw it first; the wait went on until h2 did


def test_export_listing_timeout_says_what_each_observer_saw() -> None:
    with pytest.raises(WaitTimeout) as info:
        wait_for_export_listing((LocalHost("h1"),), "nas", "/srv/vm", listed=False,
                                exported_to=lambda host, server: ["/srv/vm"], timeout=0.05, interval=0.01)
    msg = str(info.value)
    assert "/srv/vm in `showmount -e nas` on h1" in msg
    assert "to be withdrawn" in msg
    assert "h1: ['/srv/vm']" in msg


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


# -- the lab's own waits: each checks its condition ------------------------------------------


def test_terminate_waits_until_the_processes_are_gone() -> None:
    proc = subprocess.Popen(["sleep", "60"])
    terminate([proc.pid], grace=5)
    assert not is_alive(proc.pid)
    proc.wait()


def test_a_process_that_ignores_sigterm_survives_the_first_wait_and_is_killed() -> None:
    # SIG_IGN survives exec: `sleep` ignores SIGTERM too, so only the escalation to SIGKILL ends it.
    proc = subprocess.Popen(["sh", "-c", "trap '' TERM; echo ready; exec sleep 60"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        terminate([proc.pid], grace=0.2)
        assert not is_alive(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def test_call_bounded_returns_the_value_or_raises_the_calls_own_error() -> None:
    assert call_bounded(lambda: 42, target="the answer", state="returned", timeout=5) == 42
    with pytest.raises(ZeroDivisionError):
        call_bounded(lambda: 1 // 0, target="a division", state="returned", timeout=5)


def test_a_call_that_never_returns_is_given_up_naming_it() -> None:
    release = threading.Event()
    try:
        with pytest.raises(WaitTimeout, match=r"waiting for removal of domain g to be destroyed.*had not returned"):
            call_bounded(release.wait, target="removal of domain g", state="destroyed", timeout=0.2)
    finally:
        release.set()
