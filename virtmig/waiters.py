"""All polling in one place, so every timeout says the same useful things.

A bare `TimeoutError` after a migration test sat for two minutes says
nothing; `WaitTimeout` names what was awaited, which state, how long it
waited and what it saw last. Fixtures and suites call these helpers rather
than writing their own sleep loops (the tempest "waiters" pattern), so
timeouts and intervals are tuned and reported uniformly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, TypeVar

import libvirt

from virtmig.guest.probe import AgentError, UdpEchoProbe, agent_command

T = TypeVar("T")

#: libvirt's virDomainState values as virsh prints them.
DOMAIN_STATE_NAMES: dict[int, str] = {
    libvirt.VIR_DOMAIN_NOSTATE: "no state",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "in shutdown",
    libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "pmsuspended",
}


class WaitTimeout(TimeoutError):
    """A wait_for* gave up; the message says what, which state, and last seen."""

    def __init__(self, target: str, state: str, elapsed: float, last_observed: str) -> None:
        self.target = target
        self.state = state
        self.elapsed = elapsed
        self.last_observed = last_observed
        super().__init__(
            f"timed out after {elapsed:.1f} s waiting for {target} to be {state}; "
            f"last observed: {last_observed}"
        )


class _HasState(Protocol):
    """The part of libvirt.virDomain the waiters use (fakes are easy)."""

    def state(self, flags: int = 0) -> list[int]: ...

    def name(self) -> str: ...


def wait_for(
    predicate: Callable[[], T | None],
    *,
    target: str,
    state: str,
    timeout: float,
    interval: float = 0.2,
    describe: Callable[[], str] | None = None,
) -> T:
    """Poll `predicate` until it returns something other than None; return it.

    The predicate runs at least once, and once more at the deadline, so a
    short timeout never fails without a look. Exceptions from the predicate
    propagate: a waiter that swallows errors turns a crash into a timeout.
    `describe` is called only on timeout, to report the last observed value;
    without it the message says the predicate returned None.
    """
    start = time.monotonic()
    deadline = start + timeout
    while True:
        value = predicate()
        if value is not None:
            return value
        now = time.monotonic()
        if now >= deadline:
            break
        time.sleep(min(interval, deadline - now))
    observed = "predicate returned None"
    if describe is not None:
        try:
            observed = describe()
        except Exception as exc:  # the timeout is the news; keep it
            observed = f"(describe failed: {exc!r})"
    raise WaitTimeout(target, state, time.monotonic() - start, observed)


def domain_state_name(state: int) -> str:
    return DOMAIN_STATE_NAMES.get(state, f"state {state}")


def wait_for_domain_state(dom: _HasState, state: int, timeout: float, interval: float = 0.2) -> int:
    """Wait until `dom.state()` is `state` (a VIR_DOMAIN_* value); returns the reason.

    libvirt errors (e.g. the domain vanished from this host) propagate.
    """
    last: list[int] = []

    def check() -> int | None:
        nonlocal last
        last = list(dom.state())
        return last[1] if last[0] == state else None

    def describe() -> str:
        if not last:
            return "nothing"
        return f"{domain_state_name(last[0])} (reason {last[1]})"

    return wait_for(
        check,
        target=f"domain {dom.name()}",
        state=domain_state_name(state),
        timeout=timeout,
        interval=interval,
        describe=describe,
    )


def wait_for_agent(ip: str, port: int, timeout: float, interval: float = 0.5) -> str:
    """Wait until the guest agent answers `!ping`; returns its reply."""
    last_error = "no attempt"

    def ping() -> str | None:
        nonlocal last_error
        try:
            return agent_command(ip, port, "ping", timeout=min(1.0, max(timeout, 0.05)), retries=1)
        except AgentError as exc:
            last_error = str(exc)
            return None

    return wait_for(
        ping,
        target=f"guest agent {ip}:{port}",
        state="answering !ping",
        timeout=timeout,
        interval=interval,
        describe=lambda: last_error,
    )


def wait_for_probe_answer(probe: UdpEchoProbe, after_ns: int, timeout: float, interval: float = 0.005) -> bool:
    """Wait until the running probe gets a reply to a datagram sent at/after `after_ns`.

    Called when a migration (or a restore, or a boot) returns: the guest may
    not answer yet, and stopping the probe then would cut the outage short.
    Returns False instead of raising on timeout, because the probe's result
    is still worth recording; the caller reports the truncated gap.
    """
    try:
        wait_for(lambda: True if probe.answered_since(after_ns) else None,
                 target=f"probe {probe.target[0]}:{probe.target[1]}", state="answered after the operation",
                 timeout=timeout, interval=interval)
    except WaitTimeout:
        return False
    return True
