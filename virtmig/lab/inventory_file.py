"""The lab's Ansible inventory: the file a site's lab keeps, written for the lab at `up`.

Why: a night of many pairs reads the site's hosts from its Ansible
inventory (`--inventory FILE`), so the lab must hand one over as a site
would, in Ansible's standard INI form, for ansible-core's own parser (or
`ansible-inventory`, or `ansible all -m ping`) to read unchanged:

    [hypervisors]
    h1 ansible_host=198.18.0.11 ansible_user=root
    ...
    [nfs_servers]
    nfs ansible_host=198.18.0.10 ansible_user=root

    [hypervisors:vars]
    virtmig_nfs_server=nfs
    virtmig_export=/srv/virtmig-export
    virtmig_mount_point=/mnt/nfs
    virtmig_guest_network=bridge:br0
    virtmig_guest_ips=198.18.0.100-198.18.0.107/24

    [all:vars]
    ansible_ssh_private_key_file=/var/lib/virtmig-lab/id_ed25519
    ansible_ssh_common_args='-o UserKnownHostsFile=/var/lib/virtmig-lab/known_hosts -o StrictHostKeyChecking=yes'

The `[all:vars]` are how Ansible itself reaches the lab (its key and host
keys live under the lab's root, not in ~/.ssh); every value in the file is
one token (the site's paths refuse whitespace and quotes), but the common
ssh arguments, quoted as Ansible's INI parser unquotes them.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from virtmig.lab.topology import INVENTORY, KNOWN_HOSTS, SSH_KEY, LabNode, Site

#: The inventory's group of hypervisors (what `--group` picks) and of the NFS server.
HYPERVISOR_GROUP = "hypervisors"
NFS_GROUP = "nfs_servers"


def render(site: Site) -> str:
    """The inventory of *site*'s nodes, groups and the storage a run provisions, as Ansible INI."""
    def host_line(node: LabNode) -> str:
        return f"{node.name} ansible_host={node.ip} ansible_user=root\n"

    ssh_args = f"-o UserKnownHostsFile={KNOWN_HOSTS} -o StrictHostKeyChecking=yes"
    return (
        "# virtmig lab inventory: written by `python -m virtmig.lab up`, removed by `down`\n"
        f"[{HYPERVISOR_GROUP}]\n"
        + "".join(host_line(n) for n in site.hypervisors)
        + f"\n[{NFS_GROUP}]\n"
        + host_line(site.nfs)
        + f"\n[{HYPERVISOR_GROUP}:vars]\n"
        f"virtmig_nfs_server={site.nfs.name}\n"
        f"virtmig_export={site.export}\n"
        f"virtmig_mount_point={site.mount_point}\n"
        f"virtmig_guest_network=bridge:{site.vm_bridge}\n"
        f"virtmig_guest_ips={site.guest_pool}\n"
        "\n[all:vars]\n"
        f"ansible_ssh_private_key_file={SSH_KEY}\n"
        f"ansible_ssh_common_args={shlex.quote(ssh_args)}\n"
    )


def write(site: Site, path: Path = INVENTORY) -> Path:
    """Write *site*'s inventory at *path* (the lab's root: `down` removes it with the rest); the path."""
    path.write_text(render(site))
    path.chmod(0o644)
    return path
