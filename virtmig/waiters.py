"""All polling in one place, so every timeout says the same useful things.

A bare `TimeoutError` after a migration test sat for two minutes says
nothing; `WaitTimeout` names what was awaited, which state, how long it
waited and what it saw last. Fixtures, suites, the storage layer and the
lab call these helpers rather than writing their own sleep loops (the
tempest "waiters" pattern), so timeouts and intervals are tuned and reported
uniformly, and every wait checks the condition it waits for.

This module is the bottom layer: it imports no libvirt and nothing of the
guest or storage layers, because the lab's stand-ins for system tools
(`exportfs`, `mount.nfs`) run as small scripts inside the lab's nodes and
wait too.  A wait that needs a layer's code takes it as an argument (the
export lister, the probe), or lives in that layer built on `wait_for`
(`virtmig.guest.waits.wait_for_agent`, which needs the agent client).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from virtmig.host import CommandResult, Host

T = TypeVar("T")


class WaitTimeout(TimeoutError):  # noqa: N818 - a TimeoutError by type; callers know it by this name
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
        except Exception as exc:  # noqa: BLE001 - the timeout is the news; keep it
            observed = f"(describe failed: {exc!r})"
    raise WaitTimeout(target, state, time.monotonic() - start, observed)


def call_bounded(call: Callable[[], T], *, target: str, state: str, timeout: float) -> T:
    """`call()` on a daemon thread, waited for at most *timeout*; WaitTimeout naming *target* if it has not returned.

    Why: some calls have no deadline of their own and can block for ever,
    e.g. a libvirt call whose daemon-side worker is stuck on a stalled NFS
    server (libvirtd still answers keepalives, so the connection looks
    alive).  A teardown must go on past it; the thread is left to finish
    whenever the server comes back.  The call's own exception is re-raised.
    """
    outcome: list[tuple[bool, object]] = []
    done = threading.Event()

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            outcome.append((False, exc))
        finally:
            done.set()

    threading.Thread(target=run, name=f"virtmig-bounded: {target}", daemon=True).start()
    wait_for(lambda: True if done.is_set() else None, target=target, state=state, timeout=timeout,
             interval=0.05, describe=lambda: "the call had not returned")
    ok, value = outcome[0]
    if not ok:
        raise value  # type: ignore[misc]
    return value  # type: ignore[return-value]


def _exit_text(result: CommandResult) -> str:
    """A failed command's status and the last line of its stderr, for a timeout's "last observed"."""
    lines = result.stderr.strip().splitlines()
    return f"`{result.command}` exited {result.rc}" + (f": {lines[-1]}" if lines else "")


def wait_for_command(host: Host, *argv: str, target: str, state: str, timeout: float,
                     interval: float = 0.5, command_timeout: float | None = None) -> CommandResult:
    """Run `argv` on `host` until it exits 0; return that run's result.

    For conditions a host can test with a command of its own (a file a user
    can open, a socket that listens): the command is the check.  On timeout
    the message gives the last run's exit status and stderr.
    """
    last: list[CommandResult] = []

    def succeeded() -> CommandResult | None:
        result = host.run(*argv, check=False, timeout=command_timeout)
        last[:] = [result]
        return result if result.ok else None

    return wait_for(succeeded, target=target, state=state, timeout=timeout, interval=interval,
                    describe=lambda: _exit_text(last[0]) if last else "no run")


def wait_for_export_listing(observers: Sequence[Host], server: str, path: str, *, listed: bool,
                            exported_to: Callable[[Host, str], list[str]], timeout: float,
                            interval: float = 0.3) -> None:
    """Wait until every observer's export list of `server` has `path` (or, listed=False, no longer has it).

    `exported_to(host, server)` reads the list as `host` sees it (the storage
    layer's `showmount -e`): a server may list an export only to the clients
    it lets mount it, so each host looks for itself.  Its errors propagate.
    """
    last: dict[str, list[str]] = {}

    def settled() -> bool | None:
        for host in observers:
            last[host.name] = exported_to(host, server)
            if (path in last[host.name]) != listed:
                return None
        return True

    wait_for(settled, target=f"{path} in `showmount -e {server}` on {', '.join(h.name for h in observers)}",
             state="listed" if listed else "withdrawn", timeout=timeout, interval=interval,
             describe=lambda: "; ".join(f"{h}: {paths}" for h, paths in last.items()))


class AnsweringProbe(Protocol):
    """What `wait_for_probe_answer` needs of a running probe (`virtmig.guest.probe.UdpEchoProbe`)."""

    @property
    def target(self) -> tuple[str, int]: ...

    def answered_since(self, t_ns: int) -> bool: ...


def wait_for_probe_answer(probe: AnsweringProbe, after_ns: int, timeout: float, interval: float = 0.005) -> bool:
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
