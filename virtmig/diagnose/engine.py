"""`diagnose(error_text, evidence)`: the named cause of a failure and its fix.

Pure: no host is touched, so every branch is unit-tested on recorded text.
The message picks a rule from `causes.RULES`; where the message is shared by
several causes (EACCES, ENOENT, EROFS) the evidence decides.

The evidence is read once: `facts_of` derives every fact a decision or a fix
needs (which directory blocks the qemu user, which mount the image is on,
whether root was refused it, where a missing image turned up, ...) into one
`Facts`.  `DECISIONS` then picks the cause from those facts, and the reason
and the fix are both rendered from the same object, so a cause and its fix
cannot weigh the evidence differently.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass

from virtmig.diagnose.causes import Cause, Family, match
from virtmig.diagnose.evidence import Evidence
from virtmig.diagnose.facts import Facts, facts_of


@dataclass(frozen=True)
class Diagnosis:
    """What broke (cause, one-line summary), how to fix it, and what showed it.

    reason: the evidence that decided the cause (also the second of
    evidence_lines); empty when the message alone names the cause.
    """

    cause: Cause
    summary: str
    fix: str
    evidence_lines: tuple[str, ...]
    reason: str = ""

    def text(self) -> str:
        """The diagnosis as a report section."""
        lines = [f"cause: {self.cause.name} -- {self.summary}", f"fix: {self.fix}"]
        lines += [f"  evidence: {line}" for line in self.evidence_lines]
        return "\n".join(lines)


#: The fix for each cause.  Each {name} is one fact, filled in by `_placeholders`.
FIXES: dict[Cause, str] = {
    Cause.SELINUX_VIRT_USE_NFS: "setsebool -P virt_use_nfs 1 (on {host})",
    Cause.SELINUX_LABEL: "relabel the image for QEMU: restorecon -Rv {dir}, or chcon -t svirt_image_t {path}; "
                         "on NFS: setsebool -P virt_use_nfs 1 (on {host})",
    Cause.DAC_PARENT_NOT_SEARCHABLE: "chmod o+x {blocked} (on {host}); every directory above the image must be "
                                     "searchable by the qemu user ({user})",
    Cause.DAC_IMAGE_NOT_ACCESSIBLE: "chown {user} {file} (mode 0600 or 0660), or let libvirt do it: "
                                    "dynamic_ownership = 1 in qemu.conf and no <seclabel relabel='no'/> on the disk",
    Cause.NFS_ROOT_SQUASH: "on the NFS server: chown {ids} {server_path} (numeric ids, the qemu user's on {host}; "
                           "mode 0600 or 0660): root_squash makes the server refuse libvirt's own chown from the "
                           "host; or export with no_root_squash (insecure: root on the hosts is root on the export)",
    Cause.READ_ONLY_STORAGE: "export and mount {storage} read-write (rw in /etc/exports, no ro mount option), "
                             "or mark the disk <readonly/> if it is meant to be read-only",
    Cause.DESTINATION_NOT_MOUNTED: "mount the shared storage on {host} at {mount_dir}, the same path as on the "
                                   "source (and add it to /etc/fstab)",
    Cause.MOUNT_PATH_DIFFERS: "mount the export at the same path on both hosts: on {host} it is at {mountpoint}, "
                              "but the domain's disk is {path}: mount it at {expected} on {host} (and in "
                              "/etc/fstab), or give the guest a path valid on both hosts",
    Cause.IMAGE_MISSING: "the image is not at {path} on {host}: correct the domain XML or restore the file",
    Cause.STORAGE_NOT_SHARED: "put the disks on storage libvirt knows is shared (NFS, GFS2, OCFS2, CephFS) at the "
                              "same path on both hosts; or copy them (--copy-storage-all); if it really is shared "
                              "but of a kind libvirt does not recognise (a FUSE client, say), run virtmig with "
                              "--storage-is-shared, which migrates with --unsafe only after virtmig's own "
                              "shared-storage check has passed",
    Cause.FS_TYPE_NOT_RECOGNISED: "libvirt retries as the qemu user only on a kernel NFS (or other known shared) "
                                  "mount: use a kernel NFS mount for saved state, or let root write there "
                                  "(an export without root_squash, flagged insecure)",
    Cause.SAME_HOST_UUID: "give each host its own host_uuid in /etc/libvirt/libvirtd.conf (uuidgen) and restart "
                          "libvirtd: the hosts report the same SMBIOS UUID",
    Cause.CPU_INCOMPATIBLE: "use a guest CPU model both hosts provide (virsh hypervisor-cpu-baseline over both "
                            "hosts' CPUs, <cpu mode='custom'>); host-passthrough only between identical hosts",
    Cause.LIBVIRT_DAEMON_UNREACHABLE: "start the daemon that owns the socket in the message (virtlogd, libvirtd "
                                      "or virtqemud: systemctl start ...) on {host}",
    Cause.SSH_HOST_KEY: "add the peer's host key to root's known_hosts on the source (ssh root@PEER once and "
                        "check the fingerprint): libvirtd opens ssh itself in peer-to-peer migration",
    Cause.SSH_AUTH: "install the source root's public key in the destination's authorized_keys",
    Cause.SSH_REFUSED: "start sshd on the peer, or open TCP port 22 in its firewall",
    Cause.MIGRATION_PORT_BLOCKED: "open TCP 49152-49215 on the destination (firewall-cmd --add-port=49152-49215/tcp)"
                                  ", or set migration_port_min/max in qemu.conf to an open range",
    Cause.NAME_RESOLUTION: "make each host's name resolve on the other to its non-loopback address (DNS or "
                           "/etc/hosts), or set migration_host in the destination's qemu.conf",
    Cause.SELINUX_MIGRATION_SOCKET: "on the source: semodule -DB, retry, ausearch -m avc shows virtd_t denied "
                                    "{{ create }} on the domain's tcp_socket (and netlink_route_socket); allow it "
                                    "with a local module: (allow virtd_t virt_domain (tcp_socket (create setopt "
                                    "connect getattr))) and (allow virtd_t virt_domain (netlink_route_socket (create "
                                    "bind getattr write nlmsg_read read))), semodule -i, then semodule -B",
    Cause.PERMISSION_DENIED_UNEXPLAINED: "check {path} as the qemu user on {host}: "
                                         "setpriv --reuid={user} --init-groups test -r {path}; ausearch -m avc",
    Cause.UNKNOWN: "no known message: read /var/log/libvirt/qemu/<domain>.log on both hosts",
}


#: QEMU's error for the destination's last step of a migration: resuming the guest.
RESUME_FAILED = "unable to execute QEMU command 'cont'"
RESUME_NOTE = ("the destination failed only when resuming the guest, after it had taken its memory: "
               "with --persistent libvirt has defined the guest there already, and leaves it shut off "
               "(virsh undefine it on the destination)")


# -- the decision: for a message shared by several causes, the first that holds --

#: For each family of shared messages, its causes in the order an operator
#: would check them; the first whose test holds is the cause.
DECISIONS: dict[Family, tuple[tuple[Cause, Callable[[Facts], bool]], ...]] = {
    Family.PERMISSION_DENIED: (
        # SELinux first: its denials print exactly what DAC ones do
        (Cause.SELINUX_VIRT_USE_NFS, lambda f: f.avc_on_nfs and f.virt_use_nfs is not True),
        (Cause.SELINUX_LABEL, lambda f: f.avc_context is not None),
        # a parent without search permission hides everything below it
        (Cause.DAC_PARENT_NOT_SEARCHABLE, lambda f: f.blocked is not None),
        # a ro export refuses writes with EACCES, not EROFS, when the client checks access first
        (Cause.READ_ONLY_STORAGE, lambda f: f.write_refused and (f.read_only_mount or f.read_only_export
                                                                 or f.owner_refused)),
        # root itself refused a file any mode would let it open: the server squashes root
        (Cause.NFS_ROOT_SQUASH, lambda f: f.refused and f.squash_suspected),
        (Cause.DAC_IMAGE_NOT_ACCESSIBLE, lambda f: f.refused),
        (Cause.PERMISSION_DENIED_UNEXPLAINED, lambda f: True),
    ),
    Family.NO_SUCH_FILE: (
        # nothing to weigh: the message is taken at its word
        (Cause.IMAGE_MISSING, lambda f: f.path is None or not f.mounts_known),
        # the shared storage is there; the image is not on it
        (Cause.IMAGE_MISSING, lambda f: f.path_on_shared),
        (Cause.MOUNT_PATH_DIFFERS, lambda f: f.relocated is not None),
        # searched under every shared mount: the storage holding it is not mounted
        (Cause.DESTINATION_NOT_MOUNTED, lambda f: f.searched),
        # not searched: shared storage mounted elsewhere is the likelier
        (Cause.MOUNT_PATH_DIFFERS, lambda f: bool(f.shared_mounts)),
        (Cause.DESTINATION_NOT_MOUNTED, lambda f: True),
    ),
    Family.READ_ONLY: (
        (Cause.READ_ONLY_STORAGE, lambda f: True),
    ),
}


def decide(family: Family, facts: Facts) -> Cause:
    """The first cause of *family* whose test holds for *facts*."""
    return next(cause for cause, holds in DECISIONS[family] if holds(facts))


def diagnose(error_text: str, evidence: Evidence | None = None) -> Diagnosis:
    """The cause of the failure that printed *error_text*, weighed against *evidence*."""
    facts = facts_of(error_text, evidence or Evidence())
    found = match(error_text)
    lines: list[str] = []
    cause, why = Cause.UNKNOWN, ""
    if found is not None:
        rule, m = found
        lines.append(f"message [{rule.name}]: {m.group(0)}")
        if isinstance(rule.target, Family):
            cause = decide(rule.target, facts)
            why = reason_for(cause, facts)
        else:
            cause = rule.target
        if why:
            lines.append(why)
    if RESUME_FAILED in error_text:
        lines.append(RESUME_NOTE)
    lines += evidence.lines() if evidence is not None else []
    return Diagnosis(cause, cause.value, fix_for(cause, facts), tuple(lines), why)


# -- the reason and the fix: both rendered from the same facts ------------------

def reason_for(cause: Cause, f: Facts) -> str:
    """The evidence that decided *cause* among its family, in one line ("" if none).

    Access causes speak of the file QEMU opened and its mount; a missing
    image's causes of the path the domain names and the mount that path is on.
    """
    file_mp, file_fs = (f.file_mount.mountpoint, f.file_mount.fstype) if f.file_mount else ("?", "?")
    path_mp, path_fs = (f.path_mount.mountpoint, f.path_mount.fstype) if f.path_mount else ("?", "?")
    if cause is Cause.SELINUX_VIRT_USE_NFS:
        return f"AVC denial of {f.avc_denied} on nfs_t with virt_use_nfs {_onoff(f.virt_use_nfs)}"
    if cause is Cause.SELINUX_LABEL:
        return f"AVC denial of {f.avc_denied}, target context {f.avc_context}"
    if cause is Cause.DAC_PARENT_NOT_SEARCHABLE and f.blocked is not None:
        return (f"{f.blocked.path} (mode {f.blocked.mode}, owner {f.blocked.owner}) is not searchable by "
                f"{f.user or 'the qemu user'}")
    if cause is Cause.READ_ONLY_STORAGE:
        if f.read_only_mount:
            return f"{file_mp} is mounted ro"
        if f.read_only_export:
            return "the export is ro"
        if f.owner_refused and f.file_check is not None:
            return (f"{f.file_check.path} is mode {f.file_check.mode} owner {f.file_check.owner} (the qemu user), "
                    f"yet the server refuses {f.user or 'the qemu user'} write access: the export is read-only")
    if cause is Cause.NFS_ROOT_SQUASH:
        if f.root_refused and f.file_mount is not None:
            return (f"{f.file} is on {file_mp} ({file_fs} from {f.file_mount.source}) and root on {f.host} "
                    "cannot open it either, although root passes any file mode: the server maps root to nobody "
                    "(root_squash), so it also refused libvirt's chown to the qemu user")
        squash = ",".join(o for o in f.export_options if "squash" in o) or "root_squash"
        return f"{f.file} is on {file_fs if f.file_mount else 'NFS'} exported with {squash}"
    if cause is Cause.DAC_IMAGE_NOT_ACCESSIBLE and f.file_check is not None:
        return (f"{f.file_check.path} is mode {f.file_check.mode} owner {f.file_check.owner}: "
                f"{f.user or 'the qemu user'} may not open it read-write")
    if cause is Cause.IMAGE_MISSING and f.path and f.mounts_known and f.path_on_shared:
        return f"{f.path} is under the shared mount {path_mp}, but absent"
    if cause is Cause.MOUNT_PATH_DIFFERS:
        if f.relocated is not None:
            return f"{f.path} is missing, but {f.relocated.found} exists on the shared mount {f.relocated.mountpoint}"
        where = ", ".join(f"{m.mountpoint} ({m.source})" for m in f.shared_mounts)
        return f"{f.path} is on {path_fs}; shared storage is at {where}"
    if cause is Cause.DESTINATION_NOT_MOUNTED:
        if f.mount_dir is not None:
            return (f"{f.path} is missing: {f.mount_dir} is on {path_mp} ({path_fs}), not on shared storage, "
                    "and no shared mount holds the image")
        return f"{f.path} is on {path_mp} ({path_fs}); no shared file system is mounted"
    return ""


def fix_for(cause: Cause, f: Facts) -> str:
    """The fix for *cause*, naming what the facts name."""
    return FIXES[cause].format_map(_placeholders(f))


def _placeholders(f: Facts) -> dict[str, str]:
    """Every {name} a fix may use, each read from one fact (or a placeholder phrase when unknown)."""
    source_mount = "the source's mount point"
    if f.mount_dir is not None:
        mount_dir = f.mount_dir
    elif f.path:
        mount_dir = f"the directory holding {f.path} (as on the source)"
    else:
        mount_dir = source_mount
    return {
        "host": f.host or "the failing host",
        "user": f.user or "the qemu user",
        "ids": f"{f.ids[0]}:{f.ids[1]}" if f.ids else f.user or "qemu",
        "path": f.path or "the image",
        "dir": posixpath.dirname(f.path) if f.path else "the image's directory",
        "file": f.file_check.path if f.file_check is not None else f.file or "the image",
        "blocked": f.blocked.path if f.blocked is not None else "the blocking directory",
        "server_path": _server_path(f),
        "storage": (f"{f.file_mount.source} (at {f.file_mount.mountpoint} on {f.host or 'the failing host'})"
                    if f.file_mount is not None else "the storage"),
        "mount_dir": mount_dir,
        "mountpoint": (f.relocated.mountpoint if f.relocated is not None
                       else ", ".join(m.mountpoint for m in f.shared_mounts) or source_mount),
        "expected": f.relocated.expected if f.relocated is not None else source_mount,
    }


def _server_path(f: Facts) -> str:
    """The file as the NFS server names it (`server:/export/rel`), from the mount it is on."""
    if f.file is None or f.file_mount is None or not f.file_on_shared:
        return f.file or "the image"
    return f.file_mount.source.rstrip("/") + f.file[len(f.file_mount.mountpoint.rstrip("/")):]


def _onoff(value: bool | None) -> str:
    return "unknown" if value is None else ("on" if value else "off")
