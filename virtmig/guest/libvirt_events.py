"""libvirt's event loop and keepalive: a dead peer is noticed in seconds, not when TCP gives up.

Without an event loop registered before a connection is opened, libvirt's
client sends no keepalive probes and learns that the other end died only
when a call's socket errors, which on a silent network is TCP's own
timeout (many minutes).  `start_event_loop` registers libvirt's default
implementation once per process and runs it on a daemon thread; every
connection `virtmig.guest.domains.open_connection` makes then gets
`setKeepAlive(KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT)`, so a peer that stops
answering is declared dead after about interval x (count + 1) seconds and
the call waiting on it fails.

A connection that died between tests (a libvirtd restarted, an ssh tunnel
cut) is re-opened in place by `reopen_if_dead`, so the next test gets a
working connection instead of the last test's failure.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

import libvirt

#: Seconds between keepalive probes, and how many may go unanswered before the connection is closed.
KEEPALIVE_INTERVAL_S = 5
KEEPALIVE_COUNT = 5

_lock = threading.Lock()
_thread: threading.Thread | None = None


def start_event_loop() -> None:
    """Register libvirt's default event loop and run it on a daemon thread (once per process)."""
    global _thread  # noqa: PLW0603 - one loop per process, as libvirt allows one implementation
    with _lock:
        if _thread is not None:
            return
        libvirt.virEventRegisterDefaultImpl()
        _thread = threading.Thread(target=_run, name="virtmig-libvirt-events", daemon=True)
        _thread.start()


def event_loop_running() -> bool:
    """Whether the loop runs in this process (events are delivered only then)."""
    return _thread is not None and _thread.is_alive()


def _run() -> None:
    while True:  # each call dispatches one round of events; it blocks in poll() until there are some
        libvirt.virEventRunDefaultImpl()


def keep_alive(conn: libvirt.virConnect) -> bool:
    """Have *conn* send keepalive probes (the event loop must be running: `start_event_loop`).

    False for a driver without a peer to probe (libvirt's test:// driver
    says VIR_ERR_NO_SUPPORT); every remote connection (qemu+ssh://) has one.
    """
    try:
        conn.setKeepAlive(KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
            raise
        return False
    return True


def reopen_if_dead(conn: libvirt.virConnect, opener: Callable[[], libvirt.virConnect]) -> bool:
    """Give *conn* a fresh connection from *opener* if it has died; True if it did.

    The same virConnect object keeps being the fixtures' and tests' handle:
    the new connection's C handle is moved into it (and out of the new
    Python wrapper, whose finaliser would otherwise close it), and the dead
    one is closed.
    """
    if conn.isAlive():
        return False
    fresh = opener()
    dead, conn._o = conn._o, fresh._o  # noqa: SLF001 - the binding's handle, moved on purpose
    fresh._o = None  # noqa: SLF001
    with contextlib.suppress(libvirt.libvirtError):  # it is dead: closing only frees it
        libvirt.libvirtmod.virConnectClose(dead)
    return True
