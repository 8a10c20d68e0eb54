"""Domain state names: the one table, spelled as virsh prints them, read through libvirt's own test driver."""

from __future__ import annotations

from collections.abc import Iterator

import libvirt
import pytest

from virtmig.guest import domains

NAME = "virtmig-state-names"
XML = f"<domain type='test'><name>{NAME}</name><memory>1024</memory><os><type>hvm</type></os></domain>"


@pytest.fixture
def conn() -> Iterator[libvirt.virConnect]:
    """libvirt's in-process test driver: real state transitions, no daemon."""
    conn = libvirt.open("test:///default")
    try:
        yield conn
    finally:
        dom = domains.lookup(conn, NAME)
        if dom is not None:  # the test driver refuses remove()'s NVRAM flag; undo by hand
            if dom.isActive():
                dom.destroy()
            dom.undefine()
        conn.close()


def test_state_names_follow_the_domain_through_its_states(conn: libvirt.virConnect) -> None:
    assert domains.state_name(conn, NAME) == "absent"
    dom = domains.define_and_start(conn, XML)
    assert domains.state_name(conn, NAME) == "running"
    dom.suspend()
    assert domains.state_name(conn, NAME) == "paused"
    dom.destroy()
    assert domains.state_name(conn, NAME) == "shut off"  # defined, not running: what virsh list --all shows
