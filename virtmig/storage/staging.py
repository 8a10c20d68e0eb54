"""Put the guest's files on shared storage as the user QEMU runs as.

On an NFS export with root_squash, root on a hypervisor is `nobody` to the
server: files must be created by the qemu user (the way libvirt itself
creates them there), and they then already have the owner that dynamic
ownership would give them.  Who that user is: virtmig.storage.qemu_user.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from virtmig.host import Host
from virtmig.storage.qemu_user import QemuIdentity


def put_as(host: Host, who: QemuIdentity, local: Path, remote: PurePosixPath, mode: int = 0o644) -> None:
    """Copy a local file to `remote` on `host`, created by `who`."""
    tmp = host.run("mktemp", "-p", "/var/tmp", "virtmig-stage.XXXXXX").stdout.strip()
    try:
        host.put(local, tmp, mode=0o644)
        host.run(*who.setpriv(), "cp", tmp, str(remote))
        host.run(*who.setpriv(), "chmod", f"{mode:o}", str(remote))
    finally:
        host.run("rm", "-f", tmp, check=False)


def run_as(host: Host, who: QemuIdentity, *argv: str, check: bool = True) -> None:
    host.run(*who.setpriv(), *argv, check=check)


#: Where boot files go on each host when the disk needs no mount (QEMU's NFS client).
LOCAL_BOOT_DIR = PurePosixPath("/var/lib/libvirt/boot/virtmig")


@dataclass(frozen=True)
class BootFiles:
    kernel: PurePosixPath
    initrd: PurePosixPath


def stage_boot_files(host: Host, who: QemuIdentity | None, kernel: Path, initrd: Path,
                     root: PurePosixPath) -> BootFiles:
    """Kernel and initrd into `root` on `host`: as `who` on shared storage, as root locally."""
    files = BootFiles(root / "kernel", root / "initrd.img")
    if who is None:
        host.run("mkdir", "-p", str(root))
        host.put(kernel, str(files.kernel), mode=0o644)
        host.put(initrd, str(files.initrd), mode=0o644)
    else:
        run_as(host, who, "mkdir", "-p", str(root))
        put_as(host, who, kernel, files.kernel)
        put_as(host, who, initrd, files.initrd)
    return files


def nfs_url(server: str, path: PurePosixPath) -> str:
    """QEMU's URL for a file on an NFS server (its libnfs block driver)."""
    return f"nfs://{server}{path}"


def create_nfs_disk(host: Host, who: QemuIdentity, server: str, path: PurePosixPath, mib: int) -> None:
    """Create a raw image over NFS with QEMU's own client, as the qemu user (no mount needed)."""
    run_as(host, who, "qemu-img", "create", "-q", "-f", "raw", nfs_url(server, path), f"{mib}M")
