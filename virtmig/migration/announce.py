"""When the guest's first announcement crossed the destination's bridge: the point that cuts a hop's return in two.

Why: the outage breakdown (virtmig.migration.breakdown) ends with
"destination resumed -> first answer".  That segment is two things: QEMU's
self-announce (RARP frames from the guest's MAC; or the guest's own
gratuitous ARP when virtio-net negotiates GUEST_ANNOUNCE) telling the
bridges where the MAC now lives, then the network and the probe's next
echo.  A capture on the destination's bridge sees the first such frame,
so the report can say which of the two grew.

How: tcpdump on the destination host, over the host's SSH connection
(`Host.open_channel`), filtered to ARP/RARP from the guest's MAC, started
before the job and read after it.  Its times (-tt) are the destination
kernel's receive stamps on that host's realtime clock; they are moved onto
the controller's monotonic clock with the offset measured for that host
(virtmig.migration.clocks), whose uncertainty they then carry.  The script
ends tcpdump when the channel's stdin closes, so a killed controller (SSH
gone) leaves no capture running on the host.

Where it cannot run (no tcpdump on the host, a network whose bridge is not
known, a capture that does not start) the hop records why, and the
breakdown keeps its one return segment: a missing instrument is a note,
never a failed migration.  The parsing is pure (`announce_times`,
`to_controller_mono_ns`); only `AnnounceCapture` touches a host.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

import libvirt

from virtmig.guestconfig import GuestNetwork
from virtmig.host import ChannelHost, CommandTimeout, LineChannel

#: tcpdump on the bridge for ARP/RARP from the MAC; ends when our stdin closes.  $1 bridge, $2 MAC.
CAPTURE_SCRIPT = r"""
command -v tcpdump >/dev/null 2>&1 || { echo "virtmig-capture: no tcpdump on this host"; exit 0; }
tcpdump -i "$1" -nn -tt -l "ether src $2 and (arp or rarp)" 2>&1 &
pid=$!
read -r _ || true
kill "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
exit 0
"""
#: How long tcpdump may take to say it listens (it opens the interface and compiles the filter).
START_TIMEOUT_S = 10.0
#: After the job: how long to wait for one more line before the capture is taken as read.
DRAIN_TIMEOUT_S = 0.5

_STAMP = re.compile(r"^(\d{9,}\.\d{1,9})\s")


@dataclass(frozen=True)
class AnnounceTarget:
    """Where to watch a hop's announcement: the destination host, the guest's network on it, the guest's MAC."""

    host: ChannelHost
    network: GuestNetwork
    mac: str


def announce_times(lines: Iterable[str]) -> list[float]:
    """The receive times (host realtime, s) of the captured frames, in order; other lines are tcpdump's chatter."""
    return [float(m.group(1)) for line in lines if (m := _STAMP.match(line))]


def to_controller_mono_ns(host_epoch_s: float, offset_ms: float, real_minus_mono_ns: int) -> int:
    """A host realtime stamp on the controller's monotonic clock (offset: host minus controller, ms)."""
    return round(host_epoch_s * 1e9 - offset_ms * 1e6) - real_minus_mono_ns


def bridge_of(network: GuestNetwork, conn: libvirt.virConnect) -> str:
    """The host bridge the guest's NIC joins on the host *conn* manages (a libvirt network names its own)."""
    if network.kind == "bridge":
        return network.name
    return str(conn.networkLookupByName(network.name).bridgeName())


class AnnounceCapture:
    """tcpdump on the destination's bridge for one hop: `start` before the job, `stop` after it.

    `unavailable` says why there is no capture (then `stop` returns []).
    """

    def __init__(self, target: AnnounceTarget, bridge: str) -> None:
        self.target, self.bridge = target, bridge
        self.unavailable: str | None = None
        self._channel: LineChannel | None = None
        self._chatter: list[str] = []

    def start(self) -> None:
        host = self.target.host
        channel = host.open_channel(CAPTURE_SCRIPT, args=(self.bridge, self.target.mac))
        try:
            first = channel.read_line(START_TIMEOUT_S)
            if first.startswith("tcpdump: verbose output suppressed"):  # its usual first words, on stderr
                first = channel.read_line(START_TIMEOUT_S)
        except (CommandTimeout, ConnectionError) as exc:
            channel.close()
            self.unavailable = f"tcpdump on {host.name} did not start: {exc}"
            return
        if not first.startswith("listening on"):
            channel.close()
            self.unavailable = f"no capture on {host.name}'s {self.bridge}: {first.removeprefix('virtmig-capture: ')}"
            return
        self._channel = channel

    def stop(self) -> list[float]:
        """Every frame seen (host realtime, s), read until tcpdump has been quiet for DRAIN_TIMEOUT_S."""
        channel, self._channel = self._channel, None
        if channel is None:
            return []
        lines = []
        try:
            while True:
                lines.append(channel.read_line(DRAIN_TIMEOUT_S))
        except (CommandTimeout, ConnectionError):
            pass
        finally:
            channel.close()
        return announce_times(lines)


def real_minus_mono_ns() -> int:
    """The controller's realtime minus its monotonic clock, now (to move realtime stamps onto monotonic)."""
    return time.time_ns() - time.monotonic_ns()
