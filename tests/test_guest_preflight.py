"""Preflight of the guest's place on the network: the network on both hosts, the address free.

Hosts are replayed (tests/replay.py) with what `test -d`, `ip -o -4 addr`
and `ping` print; libvirt networks come from libvirt's own test driver,
whose default host has one active network, "default".
"""

from __future__ import annotations

from collections.abc import Iterator

import libvirt
import pytest

from tests.replay import ReplayHost
from virtmig import preflight
from virtmig.guestconfig import GuestNetwork

ADDRS = ("1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n"
         "3: br0    inet 192.0.2.11/24 brd 192.0.2.255 scope global br0\\       valid_lft forever\n")
PING = "ping -n -q -c 3 -i 0.2 -W 1 192.0.2.50"
SILENT = (1, "3 packets transmitted, 0 received, 100% packet loss, time 410ms\n", "")
ANSWERS = (0, "3 packets transmitted, 3 received, 0% packet loss, time 402ms\n", "")


@pytest.fixture
def conn() -> Iterator[libvirt.virConnect]:
    c = libvirt.open("test:///default")
    yield c
    c.close()


def host(name: str, *, bridge: bool = True, ping: tuple[int, str, str] = SILENT, addrs: str = ADDRS) -> ReplayHost:
    return ReplayHost(name, {
        "test -d /sys/class/net/br0/bridge": (0 if bridge else 1, "", ""),
        "ip -o -4 addr show": (0, addrs, ""),
        PING: ping,
    })


def pair(src: ReplayHost, dst: ReplayHost, conn: libvirt.virConnect, network: GuestNetwork,
         ip: str = "192.0.2.50") -> preflight.Pair:
    return preflight.Pair(src, dst, conn, conn, guest_network=network, guest_ip=ip)


def test_bridge_on_both_hosts_passes(conn: libvirt.virConnect) -> None:
    result = preflight.check_guest_network(pair(host("h1"), host("h2"), conn, GuestNetwork("bridge", "br0")))
    assert result.ok and result.evidence == ("h1: bridge br0 present", "h2: bridge br0 present")


def test_a_bridge_missing_on_one_host_names_that_host_and_the_fix(conn: libvirt.virConnect) -> None:
    result = preflight.check_guest_network(pair(host("h1"), host("h2", bridge=False), conn,
                                                GuestNetwork("bridge", "br0")))
    assert not result.ok
    assert "h2: bridge br0 missing" in result.evidence
    assert result.fix is not None and result.fix.startswith("create bridge br0 on h2 ")


def test_a_libvirt_network_is_looked_up_through_libvirt(conn: libvirt.virConnect) -> None:
    ok = preflight.check_guest_network(pair(host("h1"), host("h2"), conn, GuestNetwork("network", "default")))
    assert ok.ok and ok.evidence[0] == "h1: libvirt network default active"
    missing = preflight.check_guest_network(pair(host("h1"), host("h2"), conn, GuestNetwork("network", "vmnet")))
    assert not missing.ok and missing.evidence[1].startswith("h2: libvirt network vmnet missing")
    assert missing.fix is not None and "define and start libvirt network vmnet on h1, h2" in missing.fix


def test_a_free_address_passes(conn: libvirt.virConnect) -> None:
    result = preflight.check_guest_address(pair(host("h1"), host("h2"), conn, GuestNetwork("bridge", "br0")))
    assert result.ok, result
    assert "0 received" in result.evidence[0]


def test_an_address_that_answers_is_refused(conn: libvirt.virConnect) -> None:
    result = preflight.check_guest_address(pair(host("h1", ping=ANSWERS), host("h2"), conn,
                                                GuestNetwork("bridge", "br0")))
    assert not result.ok
    assert result.fix is not None and result.fix.startswith("192.0.2.50 already answers")


def test_a_hosts_own_address_is_refused_before_any_ping(conn: libvirt.virConnect) -> None:
    src, dst = host("h1"), host("h2")
    result = preflight.check_guest_address(pair(src, dst, conn, GuestNetwork("bridge", "br0"), ip="192.0.2.11"))
    assert not result.ok and result.evidence == ("h1 has 192.0.2.11 on one of its interfaces",)
    assert all("ping" not in call for call in src.calls + dst.calls)


def test_no_ping_on_the_host_is_a_failure_not_a_free_address(conn: libvirt.virConnect) -> None:
    result = preflight.check_guest_address(pair(host("h1", ping=(127, "", "ping: not found")), host("h2"), conn,
                                                GuestNetwork("bridge", "br0")))
    assert not result.ok and result.fix == "install ping (iputils-ping) on h1"


# -- the --probe-from host ----------------------------------------------------------------------------

PYTHON_VERSION = "python3 -c 'import sys; print('\"'\"'%d.%d'\"'\"' % sys.version_info[:2])'"


ROUTE = "ip -o route get 192.0.2.50"
ROUTED = (0, "192.0.2.50 dev br0 src 192.0.2.11 uid 0 \\    cache \n", "")
UNROUTED = (2, "", "RTNETLINK answers: Network is unreachable\n")


def probe_pair(conn: libvirt.virConnect, probe_host: ReplayHost | None) -> preflight.Pair:
    return preflight.Pair(host("h1"), host("h2"), conn, conn, guest_ip="192.0.2.50", probe_host=probe_host)


def test_without_probe_from_the_controller_probes_and_nothing_is_asked(conn: libvirt.virConnect) -> None:
    result = preflight.check_probe_host(probe_pair(conn, None))
    assert result.ok and result.evidence == ("the controller probes the guest (no --probe-from)",)


def test_a_probe_host_with_python3_and_a_route_to_the_guest_passes(conn: libvirt.virConnect) -> None:
    nas = ReplayHost("nas", {PYTHON_VERSION: (0, "3.11\n", ""), ROUTE: ROUTED})
    result = preflight.check_probe_host(probe_pair(conn, nas))
    assert result.ok and result.evidence == ("nas: python3 3.11",
                                             "nas: route to 192.0.2.50: 192.0.2.50 dev br0 src 192.0.2.11 uid 0 "
                                             "\\    cache")


def test_a_probe_host_with_no_route_to_the_guest_is_named_with_the_fix(conn: libvirt.virConnect) -> None:
    nas = ReplayHost("nas", {PYTHON_VERSION: (0, "3.11\n", ""), ROUTE: UNROUTED})
    result = preflight.check_probe_host(probe_pair(conn, nas))
    assert not result.ok
    assert result.evidence[-1] == "nas: route to 192.0.2.50: RTNETLINK answers: Network is unreachable"
    assert result.fix == "give nas an address on the guest's network, or probe from a host on it"


def test_a_probe_host_without_python3_is_named_with_the_fix(conn: libvirt.virConnect) -> None:
    result = preflight.check_probe_host(probe_pair(conn, ReplayHost("nas")))
    assert not result.ok and result.evidence == ("nas: python3 not found",)
    assert result.fix is not None and result.fix.startswith("install python3 on nas")


def test_a_probe_host_with_an_old_python3_is_refused(conn: libvirt.virConnect) -> None:
    nas = ReplayHost("nas", {PYTHON_VERSION: (0, "3.7\n", "")})
    result = preflight.check_probe_host(probe_pair(conn, nas))
    assert not result.ok and result.fix is not None and "python3 >= 3.10 on nas" in result.fix
