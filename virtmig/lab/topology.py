"""Names, addresses and paths of the embedded lab, in one place.

Everything the lab creates is derived from these constants so that `down`
can find and remove exactly what `up` made, even after a crash.

Addresses are from 198.18.0.0/15 (RFC 2544, the benchmarking range) on links
that exist only inside namespaces the lab creates; there is no default route,
so no lab traffic can leave this machine.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path, PurePosixPath

from virtmig.config import DEFAULT_MOUNT_POINT
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

#: How many hypervisors a lab may have (`up --hypervisors N`, a site file's list).  Two: the
#: one pair every run needs.  Six: a ring of six pairs, and their addresses (.11-.16) stay below
#: the real-kernel host k1 (.20) and the guests (.100 on).
MIN_HYPERVISORS = 2
MAX_HYPERVISORS = 6
#: The last octet of the first hypervisor's address; the others follow (.11, .12, ...).
FIRST_HYPERVISOR_OCTET = 11


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
#: How many guest addresses the lab offers from GUEST_IP on: one per pair of a night (--pairs) or xdist worker.
GUEST_POOL = 8
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

#: Name of the host-side guest bridge inside each hypervisor namespace.
GUEST_BRIDGE = "br0"

SSH_CONFIG = LAB_ROOT / "ssh_config"
#: The lab's Ansible inventory (virtmig.lab.inventory_file), written at `up`: a night's runs read it.
INVENTORY = LAB_ROOT / "inventory.ini"
KNOWN_HOSTS = LAB_ROOT / "known_hosts"
SSH_KEY = LAB_ROOT / "id_ed25519"
#: Wrapper around ssh that adds `-F SSH_CONFIG`; libvirt runs it via the
#: `command=` parameter of qemu+ssh URIs.
SSH_WRAPPER = LAB_ROOT / "ssh"

#: Lock held by whoever uses the lab (a pytest session, `up`, `down`); outside
#: LAB_ROOT because `down` removes LAB_ROOT.
LAB_LOCK = Path("/var/lib/virtmig-lab.lock")


@dataclass(frozen=True)
class Site:
    """One topology the lab can stand in for: names, subnet, VM bridge, export and mount point.

    Why: the harness must certify any site's pair with only a user's options,
    so the lab can be raised as another site (`python -m virtmig.lab up --site
    FILE`) in which no value is the default one.  The root bridge (BRIDGE),
    the namespace prefix and LAB_ROOT are the lab's machinery, not the site's,
    and stay the same so that `down` finds everything after a crash.
    Addresses follow from the subnet: controller .1, NFS server .10, the
    hypervisors .11, .12, ... (two to six of them), the default guest .100.
    """

    nfs_name: str
    hypervisor_names: tuple[str, ...]
    subnet: IPv4Network
    vm_bridge: str
    export: PurePosixPath
    mount_point: PurePosixPath
    #: Where a site admin's ssh config for the site is written (None: only the lab's own SSH_CONFIG).
    ssh_config: Path | None = None

    def __post_init__(self) -> None:
        """Refuse a count the addresses cannot hold (the site file and the command line say so first, in words)."""
        if not MIN_HYPERVISORS <= len(self.hypervisor_names) <= MAX_HYPERVISORS:
            raise ValueError(f"a lab has {MIN_HYPERVISORS} to {MAX_HYPERVISORS} hypervisors, "
                             f"not {len(self.hypervisor_names)}")

    def _address(self, index: int) -> str:
        return str(self.subnet.network_address + index)

    @property
    def nfs(self) -> LabNode:
        return LabNode(self.nfs_name, self._address(10), hypervisor=False)

    @property
    def hypervisors(self) -> tuple[LabNode, ...]:
        return tuple(LabNode(name, self._address(FIRST_HYPERVISOR_OCTET + i), hypervisor=True)
                     for i, name in enumerate(self.hypervisor_names))

    @property
    def nodes(self) -> tuple[LabNode, ...]:
        return (self.nfs, *self.hypervisors)

    @property
    def prefix_len(self) -> int:
        return self.subnet.prefixlen

    @property
    def controller_ip(self) -> str:
        return self._address(1)

    @property
    def guest_ip(self) -> IPv4Address:
        return self.subnet.network_address + 100

    @property
    def guest_pool(self) -> str:
        """The guests' addresses as --guest-ips spells them: guest_ip and the next GUEST_POOL - 1."""
        return f"{self.guest_ip}-{self.guest_ip + GUEST_POOL - 1}/{self.prefix_len}"

    def to_dict(self) -> dict[str, object]:
        return {"nfs": self.nfs_name, "hypervisors": list(self.hypervisor_names), "subnet": str(self.subnet),
                "vm_bridge": self.vm_bridge, "export": str(self.export), "mount_point": str(self.mount_point),
                "ssh_config": str(self.ssh_config) if self.ssh_config else None}

    @classmethod
    def from_dict(cls, raw: dict[str, object]) -> Site:
        """The inverse of to_dict (the lab's state file; a user's file goes through virtmig.lab.site)."""
        names = tuple(str(n) for n in raw["hypervisors"])  # type: ignore[attr-defined]
        return cls(str(raw["nfs"]), names, IPv4Network(str(raw["subnet"])), str(raw["vm_bridge"]),
                   PurePosixPath(str(raw["export"])), PurePosixPath(str(raw["mount_point"])),
                   Path(str(raw["ssh_config"])) if raw.get("ssh_config") else None)


#: The lab as it has always been: today's names and addresses.  Its mount point
#: is the one a default run mounts the export at (fixtures.options).
DEFAULT_SITE = Site(NFS.name, (H1.name, H2.name), IPv4Network(f"{CONTROLLER_IP}/{PREFIX_LEN}", strict=False),
                    GUEST_BRIDGE, PurePosixPath(str(EXPORT_DIR)), DEFAULT_MOUNT_POINT)


def with_hypervisors(count: int) -> Site:
    """The default lab with *count* hypervisors h1..hN (`up --hypervisors N`); two is DEFAULT_SITE itself.

    Why: a night of many pairs (a ring, a mesh) needs more hosts than the
    one pair, and everything else (subnet, bridge, export, the NFS server)
    stays the default lab's, so a lab of N is the default lab with more hosts.
    ValueError for a count outside MIN_HYPERVISORS..MAX_HYPERVISORS.
    """
    if not MIN_HYPERVISORS <= count <= MAX_HYPERVISORS:
        raise ValueError(f"--hypervisors must be {MIN_HYPERVISORS} to {MAX_HYPERVISORS}, not {count}")
    return replace(DEFAULT_SITE, hypervisor_names=tuple(f"h{i}" for i in range(1, count + 1)))
