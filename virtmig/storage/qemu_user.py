"""Who QEMU runs as on a host: the one lookup, for staging, the storage checks, preflight and diagnosis.

Everything virtmig does on shared storage is done as this user, because
that is who opens the guest's disk: on an export with root_squash, root on
a hypervisor is `nobody` to the server and may not even see what QEMU can.
A lookup that guessed differently in different places would check one user
and run another, so there is one order, here:

1. the user the operator named (`--qemu-user`), and only that one;
2. qemu.conf's `user` setting, which is what libvirt starts QEMU as;
3. the distributions' built-in defaults, `libvirt-qemu` (Debian, Ubuntu)
   then `qemu` (RHEL, Fedora, SUSE), the first the host knows.

Ids come from the passwd database through `getent`, so users from NSS
(LDAP, SSSD) count as on the hypervisor itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from virtmig.host import Host

QEMU_CONF = "/etc/libvirt/qemu.conf"
#: The qemu user's name on common distributions, most specific first.
QEMU_USERS = ("libvirt-qemu", "qemu")
#: A lookup reads two small files; a host that takes longer is not answering.
LOOKUP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class QemuIdentity:
    """The qemu user's name and numeric ids on one host (NFS carries the numbers)."""

    user: str
    uid: int
    gid: int

    def setpriv(self) -> list[str]:
        """Command prefix that runs the rest as this user (util-linux, every distribution)."""
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups"]


def parse_qemu_conf(text: str) -> tuple[str | None, bool | None]:
    """(user, dynamic_ownership) set in qemu.conf; None where left at the default.

    libvirt takes `+N` as a numeric uid; the `+` is dropped, since getent and
    id(1) take the number as it is.
    """
    user: str | None = None
    dyn: bool | None = None
    for line in text.splitlines():
        found = re.match(r'\s*user\s*=\s*"([^"]*)"', line)
        if found:
            user = found.group(1).lstrip("+")
        found = re.match(r"\s*dynamic_ownership\s*=\s*(\d+)", line)
        if found:
            dyn = found.group(1) != "0"
    return user, dyn


def _passwd_entry(host: Host, name: str) -> QemuIdentity | None:
    """`name` (a user name or uid) in the host's passwd database; None if it has no such user."""
    got = host.run("getent", "passwd", name, check=False, timeout=LOOKUP_TIMEOUT_S)
    fields = got.stdout.strip().split("\n")[0].split(":")
    if not got.ok or len(fields) < 4 or not fields[2].isdigit() or not fields[3].isdigit():
        return None
    return QemuIdentity(fields[0], int(fields[2]), int(fields[3]))


def find_qemu_identity(host: Host, user: str | None = None) -> QemuIdentity | None:
    """The user QEMU runs as on `host`, by the module's order; None if the host has no such user.

    An explicit `user` is the only candidate: a named user that does not
    exist is a finding (or a typo), never a reason to check someone else.
    """
    if user:
        return _passwd_entry(host, user)
    configured, _ = parse_qemu_conf(host.run("cat", QEMU_CONF, check=False, timeout=LOOKUP_TIMEOUT_S).stdout)
    if configured:
        return _passwd_entry(host, configured)
    for name in QEMU_USERS:
        found = _passwd_entry(host, name)
        if found is not None:
            return found
    return None


def qemu_identity(host: Host, user: str | None = None) -> QemuIdentity:
    """As `find_qemu_identity`, for callers that cannot go on without the user (LookupError)."""
    found = find_qemu_identity(host, user)
    if found is None:
        wanted = user or f"qemu.conf's user or {' or '.join(QEMU_USERS)}"
        raise LookupError(f"no qemu user ({wanted}) on {host.name}; name it with --qemu-user")
    return found
