"""What can break a migration, and the exact text libvirt, QEMU and ssh print for it.

The table is the whole knowledge base: each `Rule` is a regular expression
over the error text, copied from the message formats of libvirt 9.0, QEMU 7.2,
libnfs and OpenSSH, and the cause it points to.  Several messages do not
decide the cause on their own (`Permission denied` is printed alike for DAC
and SELinux, `No such file or directory` alike for a missing image and an
unmounted export): their rules name a *family*, and `virtmig.diagnose.engine`
decides within it from host evidence.  Operators extend the table, not the
code, when they meet a new message.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class Cause(enum.Enum):
    """A named reason a migration (or a guest start) failed."""

    SELINUX_VIRT_USE_NFS = "SELinux denies libvirt/QEMU access to NFS (virt_use_nfs is off)"
    SELINUX_LABEL = "SELinux denies libvirt/QEMU access to the image (wrong label)"
    DAC_PARENT_NOT_SEARCHABLE = "a parent directory is not searchable by the qemu user"
    DAC_IMAGE_NOT_ACCESSIBLE = "the image's owner/mode does not let the qemu user open it"
    NFS_ROOT_SQUASH = "root_squash on the NFS export: libvirt (root) cannot chown or read the image"
    READ_ONLY_STORAGE = "the storage is read-only (read-only export or mount)"
    DESTINATION_NOT_MOUNTED = "the shared storage is not mounted on the host"
    MOUNT_PATH_DIFFERS = "the shared storage is mounted at a different path on the host"
    IMAGE_MISSING = "the image does not exist at the path in the domain XML"
    STORAGE_NOT_SHARED = "libvirt does not consider the disk's storage shared"
    FS_TYPE_NOT_RECOGNISED = ("root could not create the file and libvirt, not recognising the storage as NFS, "
                              "did not retry as the qemu user")
    SAME_HOST_UUID = "both hosts report the same host UUID"
    CPU_INCOMPATIBLE = "the guest CPU is not available on the destination"
    LIBVIRT_DAEMON_UNREACHABLE = "a libvirt daemon socket is not there (daemon not running)"
    SSH_HOST_KEY = "ssh does not know (or distrusts) the peer's host key"
    SSH_AUTH = "ssh key authentication to the peer was refused"
    SSH_REFUSED = "nothing accepts ssh connections on the peer"
    MIGRATION_PORT_BLOCKED = "the destination's migration port cannot be reached"
    NAME_RESOLUTION = "a host name does not resolve (or resolves to loopback)"
    SELINUX_MIGRATION_SOCKET = ("SELinux denies libvirtd the migration socket it creates under the domain's label "
                                "(a dontaudit rule hides the denial)")
    PERMISSION_DENIED_UNEXPLAINED = "permission denied, and the evidence does not say by whom"
    UNKNOWN = "no known message in the error"


class Family(enum.Enum):
    """A message shared by several causes; the evidence picks one."""

    PERMISSION_DENIED = "permission denied"
    NO_SUCH_FILE = "no such file or directory"
    READ_ONLY = "read-only file system"


@dataclass(frozen=True)
class Rule:
    """One known message: `pattern` (searched, case-sensitive) -> a cause or a family."""

    name: str
    pattern: re.Pattern[str]
    target: Cause | Family


def _rule(name: str, regex: str, target: Cause | Family) -> Rule:
    return Rule(name, re.compile(regex), target)


#: Paths quoted in libvirt/QEMU messages (used to know what to inspect).
PATH_PATTERNS: tuple[re.Pattern[str], ...] = (
    # libvirt storage_source.c virStorageSourceReportBrokenChain
    re.compile(r"Cannot access storage file '([^']+)'"),
    # QEMU block/file-posix.c raw_open_common: "Could not open '%s'"
    re.compile(r"Could not open '([^']+)'"),
    # libvirt 9.0 on Debian 12 when SELinux denies libvirtd itself (captured):
    # "unable to stat: /mnt/nfs/test.img: Permission denied"
    re.compile(r"unable to stat: (/[^\n]*?): [A-Z][a-z]+"),
    # libvirt security_selinux.c: "unable to set security context '%s' on '%s'" (seen on k1, the lab's SELinux host)
    re.compile(r"unable to set security context '[^']*' on '([^']+)'"),
    # libvirt security_dac.c: "unable to set user and group to '%ld:%ld' on '%s'"
    re.compile(r"unable to set user and group to '[^']*' on '([^']+)'"),
    # libvirt virfile.c / storage: "cannot open file '%s'", "unable to open '%s'"
    re.compile(r"(?:cannot|unable to) open (?:file )?'([^']+)'"),
)

#: First match wins: specific messages before the generic errno texts.
RULES: tuple[Rule, ...] = (
    # libvirt 9.0 qemu_migration.c qemuMigrationSrcIsSafe (VIR_ERR_MIGRATE_UNSAFE: "Unsafe migration: %s")
    _rule("unsafe-migration", r"Migration without shared storage is unsafe", Cause.STORAGE_NOT_SHARED),
    # libvirt 9.0 virfile.c virQEMUFileOpenAs, when virFileIsSharedFS fails after root got EACCES/EPERM:
    # "Failed to create file '%s': couldn't determine fs type" (also "Failed to open file ...")
    _rule("fs-type-unknown", r"couldn't determine fs type", Cause.FS_TYPE_NOT_RECOGNISED),
    # qemu_migration_cookie.c: "Attempt to migrate guest to the same host %1$s"
    _rule("same-host", r"Attempt to migrate guest to the same host", Cause.SAME_HOST_UUID),
    # cpu/cpu_x86.c: "guest CPU doesn't match specification: missing features: %s";
    # VIR_ERR_CPU_INCOMPATIBLE: "the CPU is incompatible with host CPU: %s"
    _rule("cpu-mismatch", r"guest CPU doesn't match specification", Cause.CPU_INCOMPATIBLE),
    _rule("cpu-incompatible", r"the CPU is incompatible with host CPU", Cause.CPU_INCOMPATIBLE),
    # OpenSSH: "Host key verification failed." (also "REMOTE HOST IDENTIFICATION HAS CHANGED")
    _rule("ssh-host-key", r"Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED",
          Cause.SSH_HOST_KEY),
    # OpenSSH: "Permission denied (publickey,password)." -- before the generic EACCES rule
    _rule("ssh-auth", r"Permission denied \((?:publickey|password|keyboard-interactive|gssapi)[^)]*\)",
          Cause.SSH_AUTH),
    # OpenSSH: "ssh: connect to host h2 port 22: Connection refused"
    _rule("ssh-refused", r"connect to host \S+ port \d+: Connection refused", Cause.SSH_REFUSED),
    # libvirt virnetsocket.c: "unable to connect to server at '%s:%s': Connection refused"
    _rule("migration-port", r"unable to connect to server at '[^']*:(?:\d+)': (?:Connection refused|No route to host"
          r"|Connection timed out)", Cause.MIGRATION_PORT_BLOCKED),
    # libvirt virnetsocket.c: "Failed to connect socket to '%s': %s" (virtlogd-sock, libvirt-sock, ...)
    _rule("daemon-socket", r"Failed to connect socket to '[^']+'", Cause.LIBVIRT_DAEMON_UNREACHABLE),
    # libvirt: "Unable to resolve address '%s' service '%s': %s"; ssh: "Could not resolve hostname";
    # qemu_migration.c: "hostname on destination resolved to localhost, but migration requires an FQDN"
    _rule("name-resolution", r"Unable to resolve address|Could not resolve hostname|resolved to localhost",
          Cause.NAME_RESOLUTION),
    # libnfs (QEMU's nfs driver): "NFS: ACCESS denied. Required access rw-. Allowed access r--"
    _rule("libnfs-access", r"NFS: ACCESS denied", Cause.NFS_ROOT_SQUASH),
    # security_dac.c, when chown fails with an errno it does not swallow
    _rule("dac-chown", r"unable to set user and group to '[^']*' on '[^']+': Operation not permitted",
          Cause.NFS_ROOT_SQUASH),
    # virnetsocket.c virNetSocketNewConnectTCP: "Unable to create socket"; the source's libvirtd creates the
    # migration stream's socket labelled as the domain (seen on k1, Debian 12 refpolicy: virtd_t { create } on
    # svirt_t tcp_socket, dontaudited; SELinux is the one to deny a root daemon's socket())
    _rule("migration-socket", r"Unable to create socket: Permission denied", Cause.SELINUX_MIGRATION_SOCKET),
    _rule("erofs", r"Read-only file system", Family.READ_ONLY),
    # storage_source.c: "Cannot access storage file '%s' (as uid:%u, gid:%u): %s";
    # QEMU: "Could not open '%s': Permission denied"; any other EACCES
    _rule("eacces", r"Permission denied", Family.PERMISSION_DENIED),
    _rule("enoent", r"No such file or directory", Family.NO_SUCH_FILE),
)


def match(error_text: str) -> tuple[Rule, re.Match[str]] | None:
    """The first rule whose pattern occurs in *error_text*, with its match."""
    for rule in RULES:
        found = rule.pattern.search(error_text)
        if found:
            return rule, found
    return None


def paths_in(error_text: str) -> list[str]:
    """Paths the error quotes (in order, without duplicates): what to inspect on the host."""
    seen: list[str] = []
    for pattern in PATH_PATTERNS:
        for found in pattern.finditer(error_text):
            path = found.group(1)
            if path.startswith("/") and path not in seen:
                seen.append(path)
    return seen


_AS_UID = re.compile(r"\(as uid:(\d+), gid:(\d+)\)")


def qemu_ids_in(error_text: str) -> tuple[int, int] | None:
    """(uid, gid) libvirt tried the access as, when its message says so."""
    found = _AS_UID.search(error_text)
    return (int(found.group(1)), int(found.group(2))) if found else None
