"""Per-node file systems: private copies of /etc and /var paths, and their configs.

Each node sees its own /etc/ssh, /etc/hosts and (on hypervisors) /etc/libvirt,
/var/lib/libvirt, /var/log/libvirt and /var/cache/libvirt: copies kept under
the node's state dir and bind-mounted over the system paths inside the node's
mount namespace only.  The machine's own files are never written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import uuid
from pathlib import Path

from virtmig.guest.image import GUEST_CACHE
from virtmig.journal import JOURNAL_ROOT
from virtmig.lab.netns import Node, sh
from virtmig.lab.topology import (
    DEFAULT_SITE,
    KNOWN_HOSTS,
    LAB_ROOT,
    SHARED_DIR,
    SHARED_MOUNT,
    SSH_CONFIG,
    SSH_KEY,
    SSH_WRAPPER,
    LabNode,
    Site,
)

#: System path -> name of the node's private copy.  Copied from the machine
#: at `up` so the node starts with the distribution's defaults.
HYPERVISOR_BINDS = {
    "/etc/libvirt": "etc-libvirt",
    "/var/lib/libvirt": "var-lib-libvirt",
    "/var/log/libvirt": "var-log-libvirt",
    "/var/cache/libvirt": "var-cache-libvirt",
}
COMMON_BINDS = {"/etc/ssh": "etc-ssh", "/etc/hosts": "hosts"}
#: Directories each hypervisor gets of its own, empty, with the machine's owner
#: and mode: where the harness makes its mount points (/mnt/nfs).  Shared, one
#: pair's teardown removing the /mnt/nfs it made detached every other node's
#: mount there (the kernel lazily detaches other mount namespaces' mounts on a
#: removed directory), and two pairs of a night broke each other's storage.
PRIVATE_DIRS = {"/mnt": "mnt"}

#: libvirt's QEMU capability cache, kept across labs: probing QEMU cold costs
#: about 15 s per host on this kind of machine.
CAPS_CACHE = GUEST_CACHE.parent / "qemu-capabilities"

#: QEMU runs unprivileged, as on a distribution's default install, so the
#: permission failure modes are real.
QEMU_USER = "libvirt-qemu"
QEMU_GROUP = "libvirt-qemu"


def make_lab_key() -> None:
    """The controller's key pair, also given to each host for peer-to-peer ssh."""
    SSH_KEY.parent.mkdir(parents=True, exist_ok=True)
    sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "virtmig-lab", "-f", str(SSH_KEY)])


def prepare_node(spec: LabNode, site: Site = DEFAULT_SITE) -> None:
    """Create the node's private copies and write its configs (names and addresses: the site's)."""
    state = spec.state_dir
    if state.exists():
        shutil.rmtree(state)
    state.mkdir(parents=True)
    binds = dict(COMMON_BINDS)
    if spec.hypervisor:
        binds.update(HYPERVISOR_BINDS)
    for system_path, copy in binds.items():
        shutil.copytree(system_path, state / copy, symlinks=True) if Path(system_path).is_dir() \
            else shutil.copy2(system_path, state / copy)
    _prepare_ssh(spec, state / "etc-ssh", site.nodes)
    (state / "hosts").write_text(_hosts_file(spec, site.nodes))
    if spec.hypervisor:
        _prepare_libvirt(spec, state)
        for system_path, copy in PRIVATE_DIRS.items():
            machine = os.stat(system_path)
            (state / copy).mkdir()
            os.chown(state / copy, machine.st_uid, machine.st_gid)
            (state / copy).chmod(stat.S_IMODE(machine.st_mode))


#: Where the harness journals its changes on a host (virtmig.journal): each node
#: gets its own, as separate machines have, bound over this path; the path is
#: made on this machine if absent (JOURNAL_MOUNTPOINT_MADE says so, for `down`).
JOURNAL_MOUNTPOINT = Path(JOURNAL_ROOT).parent
JOURNAL_MOUNTPOINT_MADE = LAB_ROOT / "made-journal-mountpoint"


def prepare_journal_mountpoint() -> None:
    """Make the journal's mount point on this machine if absent, noting that the lab made it."""
    if not JOURNAL_MOUNTPOINT.exists():
        JOURNAL_MOUNTPOINT.mkdir(parents=True)
        JOURNAL_MOUNTPOINT_MADE.write_text(f"{JOURNAL_MOUNTPOINT}\n")


def remove_journal_mountpoint() -> None:
    """Remove the journal's mount point if the lab made it (and nothing was put in it since)."""
    if JOURNAL_MOUNTPOINT_MADE.exists():
        with contextlib.suppress(OSError):
            JOURNAL_MOUNTPOINT.rmdir()


def bind_node(node: Node) -> None:
    """Mount the node's private copies and a fresh /run inside its namespace."""
    spec = node.spec
    binds = dict(COMMON_BINDS)
    if spec.hypervisor:
        binds.update(HYPERVISOR_BINDS)
        binds.update(PRIVATE_DIRS)
    for system_path, copy in binds.items():
        node.bind(spec.state_dir / copy, system_path)
    journal = spec.state_dir / "var-lib-virtmig"
    journal.mkdir(mode=0o755, exist_ok=True)
    node.bind(journal, str(JOURNAL_MOUNTPOINT))
    node.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run"])
    node.run(["mkdir", "-p", "/run/sshd", "/run/libvirt", "/run/lock"])
    if spec.hypervisor:
        # /dev/kvm here is root-only and not a usable KVM; libvirt re-probes
        # QEMU at every lookup when it sees a /dev/kvm that QEMU cannot use.
        # Hide it inside the host, as on a machine without KVM.
        node.bind(spec.state_dir / "no-kvm", "/dev/kvm")
        node.run(["mkdir", "-p", str(SHARED_MOUNT)])
        node.bind(SHARED_DIR, str(SHARED_MOUNT))


def host_keys(spec: LabNode) -> str:
    """known_hosts lines for a node's host key, under its name and address."""
    pub = (spec.state_dir / "etc-ssh" / "ssh_host_ed25519_key.pub").read_text().split()
    return f"{spec.name},{spec.ip} {pub[0]} {pub[1]}\n"


def write_controller_ssh(site: Site = DEFAULT_SITE) -> None:
    """The ssh config, known_hosts and wrapper the harness uses to reach the lab (and a site's own ssh config)."""
    nodes = site.nodes
    KNOWN_HOSTS.write_text("".join(host_keys(n) for n in nodes))
    SSH_CONFIG.write_text("".join(_ssh_config_entry(n, SSH_KEY, KNOWN_HOSTS) for n in nodes))
    SSH_WRAPPER.write_text(f'#!/bin/sh\nexec ssh -F {SSH_CONFIG} "$@"\n')
    SSH_WRAPPER.chmod(0o755)
    if site.ssh_config is not None:
        site.ssh_config.parent.mkdir(parents=True, exist_ok=True)
        site.ssh_config.write_text(site_admin_ssh_config(site))
    for spec in nodes:  # every node may ssh to every other (peer-to-peer migration)
        etc_ssh = spec.state_dir / "etc-ssh"
        (etc_ssh / "lab_known_hosts").write_text(KNOWN_HOSTS.read_text())


def site_admin_ssh_config(site: Site) -> str:
    """An ssh config for *site* as its admin would write one: an alias and a long name, HostName, User, key.

    Unlike the lab's own SSH_CONFIG (strict host keys, batch mode, short
    timeouts), this carries none of the lab's settings, so a run given it
    proves the harness needs nothing beyond what a site's file has.  The host
    keys are the lab's known_hosts (a site admin's would be ~/.ssh/known_hosts,
    which the lab must not write).
    """
    head = f"# ssh config for the lab standing in for a site ({site.subnet}), as a site admin writes one\n\n"
    return head + "".join(
        f"Host {n.name} {n.name}.site.test\n"
        f"    HostName {n.ip}\n"
        "    User root\n"
        f"    IdentityFile {SSH_KEY}\n"
        f"    UserKnownHostsFile {KNOWN_HOSTS}\n\n"
        for n in site.nodes
    )


def _ssh_config_entry(spec: LabNode, key: Path, known_hosts: Path) -> str:
    return (
        f"Host {spec.name}\n"
        f"    HostName {spec.ip}\n"
        "    User root\n"
        f"    IdentityFile {key}\n"
        "    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {known_hosts}\n"
        "    StrictHostKeyChecking yes\n"
        "    BatchMode yes\n"
        "    ConnectTimeout 5\n\n"
    )


def _prepare_ssh(spec: LabNode, etc_ssh: Path, nodes: tuple[LabNode, ...]) -> None:
    for old in etc_ssh.glob("ssh_host_*"):
        old.unlink()
    sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(etc_ssh / "ssh_host_ed25519_key")])
    shutil.copy2(SSH_KEY, etc_ssh / "lab_id_ed25519")
    (etc_ssh / "lab_id_ed25519").chmod(0o600)
    (etc_ssh / "lab_authorized_keys").write_text(Path(f"{SSH_KEY}.pub").read_text())
    (etc_ssh / "lab_authorized_keys").chmod(0o644)
    (etc_ssh / "sshd_config").write_text(
        "# virtmig lab: key authentication only, on the node's lab address.\n"
        f"ListenAddress {spec.ip}\n"
        "HostKey /etc/ssh/ssh_host_ed25519_key\n"
        "PermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UsePAM no\n"
        "AuthorizedKeysFile /etc/ssh/lab_authorized_keys\n"
        "PidFile none\n"
        "Subsystem sftp internal-sftp\n"
        "MaxStartups 50:30:100\n"
        "LogLevel ERROR\n"
    )
    # libvirtd opens ssh itself for peer-to-peer migration: it reads this file.
    (etc_ssh / "ssh_config").write_text(
        "".join(_ssh_config_entry(n, Path("/etc/ssh/lab_id_ed25519"), Path("/etc/ssh/lab_known_hosts"))
                for n in nodes)
    )


def _hosts_file(spec: LabNode, nodes: tuple[LabNode, ...]) -> str:
    lines = ["127.0.0.1 localhost", f"127.0.1.1 {spec.name}-loopback"]
    lines += [f"{n.ip} {n.name}" for n in nodes]
    return "\n".join(lines) + "\n"


def _prepare_libvirt(spec: LabNode, state: Path) -> None:
    etc = state / "etc-libvirt"
    # A distribution's default network would start dnsmasq on a private range;
    # the lab has no use for it and must send nothing outside 198.18.0.0/15.
    shutil.rmtree(etc / "qemu" / "networks", ignore_errors=True)
    host_uuid = uuid.uuid5(uuid.NAMESPACE_DNS, f"{spec.name}.virtmig-lab")
    with (etc / "libvirtd.conf").open("a") as f:
        f.write(f'\n# virtmig lab\nhost_uuid = "{host_uuid}"\nlog_outputs = "3:stderr"\n')
    with (etc / "qemu.conf").open("a") as f:
        f.write(
            "\n# virtmig lab\n"
            f'user = "{QEMU_USER}"\ngroup = "{QEMU_GROUP}"\n'
            'stdio_handler = "file"\n'
            # libvirt's per-domain /dev would try to move the lab's /dev/kvm
            # bind mount into it ("Unable to move ... mount to /dev/kvm").
            "namespaces = []\n"
            # Remembering owners needs virtlockd's metadata locks, which the
            # lab does not run; without it, the DAC driver's locking open of an
            # image on the lab's FUSE NFS mount fails ("unable to open ...").
            "remember_owner = 0\n"
            f'migration_address = "{spec.ip}"\nmigration_host = "{spec.ip}"\n'
        )
    (state / "no-kvm").write_text("")
    (state / "no-kvm").chmod(0o600)
    caps = state / "var-cache-libvirt" / "qemu" / "capabilities"
    if CAPS_CACHE.is_dir() and not caps.exists():
        shutil.copytree(CAPS_CACHE, caps)


def save_caps_cache(spec: LabNode) -> None:
    """Keep libvirt's QEMU capability cache for the next lab."""
    caps = spec.state_dir / "var-cache-libvirt" / "qemu" / "capabilities"
    if caps.is_dir() and any(caps.iterdir()) and not CAPS_CACHE.exists():
        shutil.copytree(caps, CAPS_CACHE)


def add_controller_host(spec: LabNode, host_key: str, identity: Path) -> None:
    """Let the harness reach one more lab host (the real-kernel VM) over SSH, as every other host.

    host_key: its sshd's public key line ("ssh-ed25519 AAAA... comment"); identity: the key root logs in with.
    """
    remove_controller_host(spec)
    kind, key = host_key.split()[:2]
    with KNOWN_HOSTS.open("a") as f:
        f.write(f"{spec.name},{spec.ip} {kind} {key}\n")
    with SSH_CONFIG.open("a") as f:
        f.write(_ssh_config_entry(spec, identity, KNOWN_HOSTS))


def remove_controller_host(spec: LabNode) -> None:
    """Undo add_controller_host (nothing to do when the files or the entries are not there)."""
    if KNOWN_HOSTS.exists():
        lines = KNOWN_HOSTS.read_text().splitlines(keepends=True)
        KNOWN_HOSTS.write_text("".join(ln for ln in lines if not ln.startswith(f"{spec.name},")))
    if SSH_CONFIG.exists():
        blocks = SSH_CONFIG.read_text().split("\n\n")
        SSH_CONFIG.write_text("\n\n".join(b for b in blocks if not b.startswith(f"Host {spec.name}\n")))


def add_hosts_entry(spec: LabNode) -> None:
    """Name one more host in every lab node's /etc/hosts (a bound copy: the nodes see it at once)."""
    for hosts in (LAB_ROOT / "hosts").glob("*/hosts"):
        if hosts.parent.name != spec.name:
            hosts.write_text(_without_entry(hosts.read_text(), spec) + f"{spec.ip} {spec.name}\n")


def remove_hosts_entry(spec: LabNode) -> None:
    """Undo add_hosts_entry."""
    for hosts in (LAB_ROOT / "hosts").glob("*/hosts"):
        hosts.write_text(_without_entry(hosts.read_text(), spec))


def _without_entry(text: str, spec: LabNode) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if line != f"{spec.ip} {spec.name}\n")
