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
