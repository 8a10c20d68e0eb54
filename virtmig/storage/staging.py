"""Put the guest's files on shared storage as the user QEMU runs as.

On an NFS export with root_squash, root on a hypervisor is `nobody` to the
server: files must be created by the qemu user (the way libvirt itself
creates them there), and they then already have the owner that dynamic
ownership would give them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from virtmig.host import Host

#: The qemu user's name on common distributions, most specific first.
QEMU_USERS = ("libvirt-qemu", "qemu")


@dataclass(frozen=True)
class QemuIdentity:
    user: str
    uid: int
    gid: int

    def setpriv(self) -> list[str]:
        """Command prefix that runs the rest as this user (util-linux, every distribution)."""
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups"]


def qemu_identity(host: Host, user: str | None = None) -> QemuIdentity:
    """The user QEMU runs as on `host` (given, or the distribution's default)."""
    for name in (user,) if user else QEMU_USERS:
        uid = host.run("id", "-u", name, check=False)
        if uid.ok:
            gid = host.run("id", "-g", name).stdout.strip()
            return QemuIdentity(name, int(uid.stdout), int(gid))
    raise LookupError(f"no qemu user ({user or ' or '.join(QEMU_USERS)}) on {host.name}")


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
    files = BootFiles(root / "vmlinuz", root / "initrd.img")
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
