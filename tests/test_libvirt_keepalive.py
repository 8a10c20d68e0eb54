"""On the lab: libvirt's keepalive notices a silent peer, and a dead connection is re-opened in place.

The peer is made silent without touching the lab: the qemu+ssh connection's
ssh client is this process's own child, and it is stopped (SIGSTOP), so no
byte moves either way, as on a cut network.  libvirt's keepalive (interval
x (count + 1) seconds) must then declare the connection dead; after the
ssh client is killed, `reopen_if_dead` gives the same handle a working
connection.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import pytest

from virtmig.guest.domains import open_connection
from virtmig.guest.libvirt_events import KEEPALIVE_COUNT, KEEPALIVE_INTERVAL_S, keep_alive, reopen_if_dead
from virtmig.sshhost import SshHost
from virtmig.waiters import wait_for


def _ssh_children() -> set[int]:
    """PIDs of ssh clients whose parent is this process (libvirt spawns them for qemu+ssh)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, rest = stat.read_text().split(" (", 1)
        except OSError:
            continue
        comm, _, fields = rest.rpartition(") ")
        if comm == "ssh" and int(fields.split()[1]) == os.getpid():
            found.add(int(pid))
    return found


@pytest.mark.lab
def test_a_silent_peer_is_noticed_by_keepalive_and_the_connection_reopened(lab: bool, src_host: SshHost) -> None:
    assert lab
    before = _ssh_children()
    conn = open_connection(src_host.libvirt_uri())
    (tunnel,) = _ssh_children() - before
    assert conn.isAlive() and conn.getHostname() == "h1"
    os.kill(tunnel, signal.SIGSTOP)
    try:
        wait_for(lambda: True if not conn.isAlive() else None, target="a connection through a stopped ssh",
                 state="declared dead by keepalive", timeout=KEEPALIVE_INTERVAL_S * (KEEPALIVE_COUNT + 1) + 15)
    finally:  # libvirt ends and reaps its ssh when it declares the connection dead; else we do
        with contextlib.suppress(ProcessLookupError):
            os.kill(tunnel, signal.SIGKILL)
            os.kill(tunnel, signal.SIGCONT)
    assert reopen_if_dead(conn, lambda: open_connection(src_host.libvirt_uri()))
    assert conn.isAlive() and conn.getHostname() == "h1"
    assert not reopen_if_dead(conn, lambda: open_connection(src_host.libvirt_uri()))
    conn.close()


def test_a_connection_without_a_peer_needs_no_keepalive() -> None:
    """libvirt's test driver has no peer: keepalive is not supported there, and that is no error."""
    conn = open_connection("test:///default")
    try:
        assert not keep_alive(conn)
    finally:
        conn.close()
