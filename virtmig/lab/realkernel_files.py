"""The files the lab writes into the real-kernel node's root file system, each saying why.

Pure text, so the image's cache key covers them and unit tests read them.
Debian's own /etc/libvirt/qemu.conf and libvirtd.conf are all comments, so
the lab's versions replace them whole.
"""

from __future__ import annotations

#: root's authorized keys in the image: the node's own login key, made at build time beside the image.
AUTHORIZED_KEYS = "/root/.ssh/authorized_keys"
#: The node's own kernel NFS export, mounted on itself at NFS_MOUNT.
EXPORT = "/srv/vm"
NFS_MOUNT = "/mnt/nfs"
#: The node's Linux bridge for guests (as the lab's hypervisors have: `--guest-network bridge:br0`).
VM_BRIDGE = "br0"

#: Directories made in the root file system before labelling.
DIRECTORIES: tuple[str, ...] = (EXPORT, NFS_MOUNT, "/root/.ssh")


def rootfs_files(address: str, prefix_len: int, hostname: str, host_uuid: str) -> dict[str, str]:
    """Absolute path -> contents, for a node at *address*/*prefix_len* named *hostname*."""
    return {
        "/etc/hostname": f"{hostname}\n",
        "/etc/hosts": f"127.0.0.1 localhost\n{address} {hostname}\n",
        "/etc/fstab": (
            "# virtmig lab real-kernel node: root is /dev/vda (the kernel command line mounts it rw).\n"
            "/dev/vda / ext4 rw,errors=remount-ro 0 1\n"
        ),
        "/etc/selinux/config": (
            "# virtmig lab: enforcing from boot (the kernel command line says enforcing=1 as well).\n"
            "SELINUX=enforcing\nSELINUXTYPE=default\n"
        ),
        "/etc/systemd/network/10-br0.netdev": (
            "# The guests' bridge; the NIC is its port, so guests sit on the lab's network as on h1 and h2.\n"
            f"[NetDev]\nName={VM_BRIDGE}\nKind=bridge\n\n[Bridge]\nSTP=no\nForwardDelaySec=0\n"
        ),
        "/etc/systemd/network/20-nic.network": (
            f"[Match]\nType=ether\nKind=!*\n\n[Network]\nBridge={VM_BRIDGE}\n"
        ),
        "/etc/systemd/network/30-br0.network": (
            "# The lab address, no gateway and no DHCP: nothing can route out of the lab.\n"
            f"[Match]\nName={VM_BRIDGE}\n\n[Network]\nAddress={address}/{prefix_len}\n"
            "LinkLocalAddressing=no\nIPv6AcceptRA=no\nConfigureWithoutCarrier=yes\n"
        ),
        "/etc/ssh/sshd_config.d/virtmig-lab.conf": (
            "# virtmig lab: root by key only (the node's login key, kept beside the cached image).\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "UseDNS no\nMaxStartups 50:30:100\n"
        ),
        "/etc/libvirt/qemu.conf": (
            "# virtmig lab real-kernel node.\n"
            "# libvirt's private mount namespace per domain is denied by Debian's policy\n"
            "# (virtd_t { unmount }: \"Cannot delete directory '/run/libvirt/qemu/1-...shm'\").\n"
            "namespaces = []\n"
            f'migration_address = "{address}"\nmigration_host = "{address}"\n'
        ),
        "/etc/libvirt/libvirtd.conf": (
            "# virtmig lab: a host UUID of its own (the VM's SMBIOS has none), as the lab's other hosts have.\n"
            f'host_uuid = "{host_uuid}"\n'
        ),
        # root's systemd user manager kept running (loginctl enable-linger root): without it logind stops
        # user@0 ten seconds after root's last session, and the next ssh login waits for it to start again
        # (measured under TCG: 3.3-4.1 s for `ssh k1 true` after an idle pause, 1.3-1.7 s with linger).
        "/var/lib/systemd/linger/root": "",
        "/etc/exports": (
            "# virtmig lab: the node's own kernel export, mounted on itself at /mnt/nfs (lab up).\n"
            f"{EXPORT} localhost(rw,sync,no_subtree_check,no_root_squash)\n"
        ),
    }
