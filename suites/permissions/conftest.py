"""Wiring for the permission cases: a per-host local directory in front of the shared image.

`/var/lib/libvirt` is local to each hypervisor (in the lab too: bound per
host), so a directory there can differ between source and destination while
the image behind it stays the one on shared storage.  Each case points the
guest's disk at `<gate>/disk.raw`, sets up the gate per host, and removes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import libvirt
import pytest

from virtmig import domains
from virtmig.host import Host
from virtmig.lab.topology import GUEST_AGENT_PORT, GUEST_IP
from virtmig.waiters import wait_for_agent

GATE_ROOT = "/var/lib/libvirt/virtmig-perm"
BOOT_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class Gate:
    """The case's disk path, the same string on both hosts, set up differently on each."""

    dir: str
    disk: str


@pytest.fixture
def gate(request: pytest.FixtureRequest, src_host: Host, dst_host: Host) -> Iterator[Gate]:
    name = request.node.name.replace("[", "-").replace("]", "")
    d = f"{GATE_ROOT}/{name}"
    for host in (src_host, dst_host):
        host.run("rm", "-rf", d)
        host.run("mkdir", "-p", "-m", "0755", d)
    yield Gate(d, f"{d}/disk.raw")
    for host in (src_host, dst_host):
        host.run("rm", "-rf", d, check=False)


def with_disk(xml: str, shared_disk: str, disk: str, *, relabel: bool = True) -> str:
    """The domain XML with its disk at *disk*; relabel=False adds a per-disk DAC <seclabel relabel='no'/>,
    which turns dynamic ownership off for that disk without touching qemu.conf."""
    old = f"<source file='{shared_disk}'/>"
    assert old in xml, f"disk source {old} not in the domain XML"
    seclabel = "" if relabel else "<seclabel model='dac' relabel='no'/>"
    return xml.replace(old, f"<source file='{disk}'>{seclabel}</source>")


def start_on(conn: libvirt.virConnect, other: libvirt.virConnect, xml: str, name: str) -> None:
    """Start the case's guest on *conn* (removing any leftover on both) and wait until it answers."""
    for c in (conn, other):
        domains.remove(c, name)
    domains.define_and_start(conn, xml)
    wait_for_agent(GUEST_IP, GUEST_AGENT_PORT, timeout=BOOT_TIMEOUT_S)


@pytest.fixture
def case_cleanup(src_conn: libvirt.virConnect, dst_conn: libvirt.virConnect, domain_name: str) -> Iterator[None]:
    """Whatever happens, the case's guest is gone from both hosts afterwards."""
    yield
    for conn in (src_conn, dst_conn):
        domains.remove(conn, domain_name)
