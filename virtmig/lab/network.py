"""The lab's links: a root-namespace bridge, a veth per node, a guest bridge per host.

(The default site's names and addresses; another site, `virtmig.lab.site`, has its own.)

    root ns:  vmlab0 (198.18.0.1/24)  --  vm-h1-o  ==veth==  h1: eth0 -- br0 (198.18.0.11/24) -- guest tap
                                      --  vm-h2-o  ==veth==  h2: eth0 -- br0 (198.18.0.12/24) -- guest tap
                                      --  ...         (h3 .. h6 at .13 .. .16 with `up --hypervisors N`)
                                      --  vm-nfs-o ==veth==  nfs: eth0 (198.18.0.10/24)

A guest's tap joins its host's br0, so the guest sits on the same L2 segment
wherever it runs and keeps its address when it moves; QEMU's announce after a
migration updates both bridges' forwarding tables.  No node has a default
route: nothing the lab sends can leave 198.18.0.0/24.
"""

from __future__ import annotations

import json

from virtmig.lab.netns import Node, sh
from virtmig.lab.topology import BRIDGE, DEFAULT_SITE, GUEST_BRIDGE, Site

__all__ = ["GUEST_BRIDGE", "create_bridge", "link_exists", "pin_bridge_address", "plug", "remove_links", "wire_node"]


def link_exists(name: str) -> bool:
    return sh(["ip", "link", "show", name], check=False).returncode == 0


def create_bridge(site: Site = DEFAULT_SITE) -> None:
    """The root-namespace bridge, with the controller's address in the site's subnet."""
    sh(["ip", "link", "add", BRIDGE, "type", "bridge", "stp_state", "0", "forward_delay", "0"])
    sh(["ip", "addr", "add", f"{site.controller_ip}/{site.prefix_len}", "dev", BRIDGE])
    sh(["ip", "link", "set", BRIDGE, "up"])


def plug(node: Node) -> None:
    """A veth from the root bridge into the node's namespace, named eth0 there: the node's link to the lab."""
    spec = node.spec
    inner = f"vm-{spec.name}-i"
    sh(["ip", "link", "add", spec.veth_outer, "type", "veth", "peer", "name", inner])
    sh(["ip", "link", "set", spec.veth_outer, "master", BRIDGE, "up"])
    sh(["ip", "link", "set", inner, "netns", spec.netns])
    node.run(["ip", "link", "set", "lo", "up"])
    node.run(["ip", "link", "set", inner, "name", "eth0"])


def wire_node(node: Node, site: Site = DEFAULT_SITE) -> None:
    """Connect a node to the root bridge and give it its address (on the site's VM bridge, for a hypervisor)."""
    spec = node.spec
    plug(node)
    address = f"{spec.ip}/{site.prefix_len}"
    if spec.hypervisor:
        bridge = site.vm_bridge
        node.run(["ip", "link", "add", bridge, "type", "bridge", "stp_state", "0", "forward_delay", "0"])
        node.run(["ip", "link", "set", "eth0", "master", bridge, "up"])
        pin_bridge_address(node, bridge, "eth0")
        node.run(["ip", "addr", "add", address, "dev", bridge])
        node.run(["ip", "link", "set", bridge, "up"])
    else:
        node.run(["ip", "addr", "add", address, "dev", "eth0"])
        node.run(["ip", "link", "set", "eth0", "up"])


def pin_bridge_address(node: Node, bridge: str, port: str) -> None:
    """Give *bridge* its uplink *port*'s MAC for good, as a hypervisor's network configuration does.

    A bridge whose address was never set takes the lowest MAC among its
    ports and changes it when a port joins.  libvirt names a guest's tap
    fe:54:00:... after the guest's MAC, so when a migration's destination
    QEMU plugs its tap into a bridge whose uplink MAC sorts above that, the
    bridge (and the host's address on it) takes the tap's MAC, which is also
    the MAC of the *source's* tap: the source then delivers every frame for
    the destination host to itself.  Seen on the lab with its random veth
    MACs: the destination QEMU started, no byte moved, and libvirt's
    peer-to-peer connection died of keepalive timeout 30 s later ("client
    socket is closed").  An address set explicitly is kept.
    """
    mac = json.loads(node.run(["ip", "-j", "link", "show", "dev", port]).stdout)[0]["address"]
    node.run(["ip", "link", "set", bridge, "address", mac])


def remove_links(site: Site = DEFAULT_SITE) -> None:
    """Delete the root bridge and every outer veth of *site* (the peers go with them)."""
    for spec in site.nodes:
        if link_exists(spec.veth_outer):
            sh(["ip", "link", "del", spec.veth_outer], check=False)
    if link_exists(BRIDGE):
        sh(["ip", "link", "del", BRIDGE], check=False)
