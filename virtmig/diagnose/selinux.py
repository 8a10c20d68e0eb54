"""SELinux state of a host, read and changed through the `Host` interface.

Kept beside the diagnosis because it is evidence first: `getenforce`,
`getsebool virt_use_nfs` and the context of the shared mount decide whether
a `Permission denied` is SELinux's.  A host without the SELinux tools (a
Debian default install, the lab) reports mode None: "absent", which the
suite turns into a skip with that reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from virtmig.diagnose.evidence import parse_getenforce, parse_getsebool
from virtmig.host import Host

VIRT_USE_NFS = "virt_use_nfs"


@dataclass(frozen=True)
class SelinuxState:
    """getenforce's word (None: tools absent) and virt_use_nfs (None: unknown)."""

    host: str
    mode: str | None
    virt_use_nfs: bool | None

    @property
    def enforcing(self) -> bool:
        return self.mode == "Enforcing"

    def unavailable_reason(self) -> str | None:
        """Why SELinux cases cannot run here, or None if SELinux is active."""
        if self.mode is None:
            return f"SELinux is absent on {self.host} (no getenforce: SELinux userland not installed)"
        if self.mode == "Disabled":
            return f"SELinux is disabled on {self.host} (getenforce: Disabled)"
        return None


def selinux_state(host: Host) -> SelinuxState:
    """Read the host's SELinux mode and virt_use_nfs."""
    mode = parse_getenforce(host.run("getenforce", check=False))
    use_nfs = None
    if mode not in (None, "Disabled"):
        use_nfs = parse_getsebool(host.run("getsebool", VIRT_USE_NFS, check=False))
    return SelinuxState(host.name, mode, use_nfs)


def file_context(host: Host, path: str) -> str:
    """The SELinux context of *path* (`stat -c %C`), e.g. system_u:object_r:nfs_t:s0."""
    return host.run("stat", "-c", "%C", "--", path).stdout.strip()


def context_type(context: str) -> str:
    """The type field of a context: 'system_u:object_r:nfs_t:s0' -> 'nfs_t'."""
    parts = context.split(":")
    return parts[2] if len(parts) >= 3 else ""


def set_boolean(host: Host, name: str, value: bool) -> None:
    """Set a boolean until reboot (no -P): a crashed run leaves no lasting change."""
    host.run("setsebool", name, "1" if value else "0")
