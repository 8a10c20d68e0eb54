"""The guest's announcement on the destination's bridge: tcpdump's lines read, stamps moved onto our clock,
and the capture itself against a real tcpdump on a bridge in a private network namespace.

The breakdown's cut at the announcement is in tests/test_breakdown.py; the
lab's live suite checks every hop's return is cut (tests/test_lab.py).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import time
from collections.abc import Iterator, Sequence

import pytest

from virtmig.guestconfig import GuestNetwork
from virtmig.host import LineChannel
from virtmig.localhost import LocalHost
from virtmig.migration.announce import AnnounceCapture, AnnounceTarget, announce_times, to_controller_mono_ns

#: What tcpdump -nn -tt -l prints (stderr's lines too) for QEMU's RARP self-announce and a guest's gratuitous ARP.
TCPDUMP_LINES = [
    "tcpdump: verbose output suppressed, use -v[v]... for full protocol decode",
    "listening on br0, link-type EN10MB (Ethernet), snapshot length 262144 bytes",
    "1796191100.016710 ARP, Reverse Request who-is 52:54:00:05:e2:5b tell 52:54:00:05:e2:5b, length 46",
    "1796191100.066812 ARP, Request who-has 198.18.0.100 tell 198.18.0.100, length 28",
]


def test_the_frames_times_are_read_and_the_chatter_left_out() -> None:
    assert announce_times(TCPDUMP_LINES) == [1796191100.016710, 1796191100.066812]


def test_a_host_stamp_lands_on_our_monotonic_clock_through_the_offset() -> None:
    # The host's clock is 40 ms ahead of ours; our realtime is 100 s ahead of our monotonic clock.
    assert to_controller_mono_ns(1000.040, offset_ms=40.0, real_minus_mono_ns=100 * 10**9) == 900 * 10**9


class NetnsHost(LocalHost):
    """This machine, its channels' scripts run inside one network namespace (`ip netns exec`)."""

    def __init__(self, ns: str) -> None:
        super().__init__()
        self.ns = ns

    def open_channel(self, script: str, *, args: Sequence[str] = ()) -> LineChannel:
        wrapper = 'ns=$1; script=$2; shift 2; exec ip netns exec "$ns" sh -c "$script" sh "$@"'
        return super().open_channel(wrapper, args=(self.ns, script, *args))


@pytest.fixture
def private_bridge() -> Iterator[str]:
    """A bridge in a network namespace of our own (nothing leaves it); the namespace is removed afterwards."""
    if shutil.which("tcpdump") is None:
        pytest.skip("no tcpdump (Debian package tcpdump; make deps installs it)")
    ns = f"virtmig-announce-{time.monotonic_ns() % 10**6}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "add", "vbr0", "type", "bridge"], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", "vbr0", "up"], check=True)
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def send_rarp(ns: str, mac: str) -> None:
    """One RARP request from *mac*, as QEMU's self-announce sends it, onto the namespace's bridge."""
    raw = bytes.fromhex(mac.replace(":", ""))
    frame = b"\xff" * 6 + raw + struct.pack("!H", 0x8035)
    frame += struct.pack("!HHBBH", 1, 0x0800, 6, 4, 3) + raw + b"\0" * 4 + raw + b"\0" * 4
    code = ("import socket; s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind(('vbr0', 0)); "
            f"s.send(bytes.fromhex('{frame.hex()}'))")
    subprocess.run(["ip", "netns", "exec", ns, "python3", "-c", code], check=True)


def test_a_real_tcpdump_sees_the_guests_rarp_only_and_ends_with_the_channel(private_bridge: str) -> None:
    mac = "52:54:00:aa:bb:cc"
    capture = AnnounceCapture(AnnounceTarget(NetnsHost(private_bridge), GuestNetwork("bridge", "vbr0"), mac), "vbr0")
    capture.start()
    assert capture.unavailable is None
    before = time.time()
    send_rarp(private_bridge, "52:54:00:00:00:01")  # another guest's: filtered out
    send_rarp(private_bridge, mac)
    seen = capture.stop()
    assert len(seen) == 1 and before - 1 <= seen[0] <= time.time() + 1, seen
    time.sleep(0.2)
    left = subprocess.run(["ip", "netns", "pids", private_bridge], capture_output=True, text=True).stdout.split()
    assert not left, f"processes left in the namespace after the capture: {left}"


def test_a_bridge_that_is_not_there_is_said_not_raised(private_bridge: str) -> None:
    target = AnnounceTarget(NetnsHost(private_bridge), GuestNetwork("bridge", "nosuch0"), "52:54:00:aa:bb:cc")
    capture = AnnounceCapture(target, "nosuch0")
    capture.start()
    assert capture.unavailable and "no capture on" in capture.unavailable and "nosuch0" in capture.unavailable
    assert capture.stop() == []
