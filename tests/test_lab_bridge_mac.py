"""On the lab: a hypervisor's VM bridge keeps its MAC when a guest's tap joins it.

A bridge whose address was never set takes the lowest MAC of its ports.
When the destination QEMU of a migration plugged its tap (libvirt names it
fe:54:00:... after the guest's MAC) into a br0 whose uplink's random MAC
sorted above it, the host's address moved to the tap's MAC, the MAC of the
source's tap too, and the source kept every frame for the destination to
itself: peer-to-peer migrations failed with "client socket is closed" after
libvirt's 30 s keepalive, no byte moved (`virtmig.lab.network.pin_bridge_address`).
Here a port with a MAC below any random one joins each hypervisor's bridge,
as such a tap would; the bridge must keep its uplink's address.
"""

from __future__ import annotations

import json

from virtmig.lab.topology import DEFAULT_SITE, GUEST_BRIDGE, SSH_CONFIG
from virtmig.sshhost import SshHost

#: RFC 7042's documentation MAC: lower than any address the kernel draws for a veth (those set 0x02).
LOW_MAC = "00:00:5e:00:53:01"
PORT = "vmt-port"


def _mac(host: SshHost, dev: str) -> str:
    address: str = json.loads(host.run("ip", "-j", "link", "show", "dev", dev).stdout)[0]["address"]
    return address


def test_a_port_with_a_lower_mac_does_not_take_over_the_bridge(lab_up: None) -> None:
    for spec in (n for n in DEFAULT_SITE.nodes if n.hypervisor):
        with SshHost(spec.name, SSH_CONFIG) as host:
            uplink = _mac(host, "eth0")
            assert _mac(host, GUEST_BRIDGE) == uplink, spec.name
            host.run("ip", "link", "add", PORT, "address", LOW_MAC, "type", "veth", "peer", "name", "vmt-peer")
            try:
                host.run("ip", "link", "set", PORT, "master", GUEST_BRIDGE, "up")
                assert _mac(host, GUEST_BRIDGE) == uplink, f"{spec.name}: {GUEST_BRIDGE} took a joining port's MAC"
            finally:
                host.run("ip", "link", "del", PORT)  # its peer goes with it
