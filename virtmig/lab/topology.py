"""Names, addresses and paths of the embedded lab, in one place.

Everything the lab creates is derived from these constants so that `down`
can find and remove exactly what `up` made, even after a crash.

Addresses are from 198.18.0.0/15 (RFC 2544, the benchmarking range) on links
that exist only inside namespaces the lab creates; there is no default route,
so no lab traffic can leave this machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from virtmig.guest.probe import AGENT_PORT

#: Root of everything the lab keeps on disk (per-host /etc copies, keys, pids).
#: Not under /tmp: sshd's StrictModes refuses keys below a world-writable dir.
LAB_ROOT = Path("/var/lib/virtmig-lab")

#: Bridge in the root namespace joining the hosts; the controller's address is on it.
BRIDGE = "vmlab0"
PREFIX_LEN = 24
CONTROLLER_IP = "198.18.0.1"

#: Prefix of every network namespace the lab creates.
NETNS_PREFIX = "virtmig-"


@dataclass(frozen=True)
class LabNode:
    """One namespace of the lab: a hypervisor host or the NFS server."""

    name: str
    ip: str
    hypervisor: bool

    @property
    def netns(self) -> str:
        return f"{NETNS_PREFIX}{self.name}"

    @property
    def veth_outer(self) -> str:
        """Root-namespace end of the host's link (enslaved to BRIDGE)."""
        return f"vm-{self.name}-o"

    @property
    def state_dir(self) -> Path:
        """Per-host copies of /etc/libvirt, /var/lib/libvirt, /etc/ssh, ..."""
        return LAB_ROOT / "hosts" / self.name


NFS = LabNode("nfs", "198.18.0.10", hypervisor=False)
H1 = LabNode("h1", "198.18.0.11", hypervisor=True)
H2 = LabNode("h2", "198.18.0.12", hypervisor=True)
NODES: tuple[LabNode, ...] = (NFS, H1, H2)
HYPERVISORS: tuple[LabNode, ...] = (H1, H2)

#: The test guest's address on the lab (handed to runs as the default --guest-ip,
#: by fixtures.options); it keeps it when it moves between h1 and h2.
GUEST_IP = "198.18.0.100"
#: The lab guest's CPU (handed to runs as the default --guest-cpu): TCG emulates qemu64 on any host.
LAB_GUEST_CPU = "qemu64"
#: MAC of guests the lab's own tests start by hand (a run's guest derives its MAC: virtmig.guestconfig).
GUEST_MAC = "52:54:00:12:00:64"
#: UDP port of the guest agent (the guest's own, named here for the lab's tools).
GUEST_AGENT_PORT = AGENT_PORT

#: Lab directory shown at the same path on both hypervisors (bind mount),
#: used before the NFS mount exists; libvirt calls it unsafe, rightly.
SHARED_DIR = LAB_ROOT / "shared"
SHARED_MOUNT = Path("/srv/virtmig-shared")

#: Directory the NFS server exports.
EXPORT_DIR = Path("/srv/virtmig-export")

SSH_CONFIG = LAB_ROOT / "ssh_config"
KNOWN_HOSTS = LAB_ROOT / "known_hosts"
SSH_KEY = LAB_ROOT / "id_ed25519"
#: Wrapper around ssh that adds `-F SSH_CONFIG`; libvirt runs it via the
#: `command=` parameter of qemu+ssh URIs.
SSH_WRAPPER = LAB_ROOT / "ssh"

#: Lock held by whoever uses the lab (a pytest session, `up`, `down`); outside
#: LAB_ROOT because `down` removes LAB_ROOT.
LAB_LOCK = Path("/var/lib/virtmig-lab.lock")
