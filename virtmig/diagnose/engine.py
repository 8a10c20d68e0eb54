"""`diagnose(error_text, evidence)`: the named cause of a failure and its fix.

Pure: no host is touched, so every branch is unit-tested on recorded text.
The message picks a rule from `causes.RULES`; where the message is shared by
several causes (EACCES, ENOENT, EROFS) the evidence decides, in the order an
operator would check: SELinux denials first (they look exactly like DAC
ones), then the path walk as the qemu user (a parent without search
permission hides everything below it), then read-only storage (a ro export
refuses writes with EACCES, not EROFS, when the client checks access
first), then NFS squashing (root itself refused a file it owns or any mode
would let it read), then the image's own owner and mode.  A missing image
is weighed the same way: found under another shared mount point (the mount
path differs) or under none (not mounted).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from virtmig.diagnose.causes import Cause, Family, match, paths_in, qemu_ids_in
from virtmig.diagnose.evidence import Evidence, PathCheck, avc_field


@dataclass(frozen=True)
class Diagnosis:
    """What broke (cause, one-line summary), how to fix it, and what showed it."""

    cause: Cause
    summary: str
    fix: str
    evidence_lines: tuple[str, ...]

    def text(self) -> str:
        """The diagnosis as a report section."""
        lines = [f"cause: {self.cause.name} -- {self.summary}", f"fix: {self.fix}"]
        lines += [f"  evidence: {line}" for line in self.evidence_lines]
        return "\n".join(lines)


#: The fix for each cause; {host}, {path}, {dir}, {user}, {ids}, {mountpoint}, {expected},
#: {server_path} are filled in.
FIXES: dict[Cause, str] = {
    Cause.SELINUX_VIRT_USE_NFS: "setsebool -P virt_use_nfs 1 (on {host})",
    Cause.SELINUX_LABEL: "relabel the image for QEMU: restorecon -Rv {dir}, or chcon -t svirt_image_t {path}; "
                         "on NFS: setsebool -P virt_use_nfs 1 (on {host})",
    Cause.DAC_PARENT_NOT_SEARCHABLE: "chmod o+x {dir} (on {host}); every directory above the image must be "
                                     "searchable by the qemu user ({user})",
    Cause.DAC_IMAGE_NOT_ACCESSIBLE: "chown {user} {path} (mode 0600 or 0660), or let libvirt do it: "
                                    "dynamic_ownership = 1 in qemu.conf and no <seclabel relabel='no'/> on the disk",
    Cause.NFS_ROOT_SQUASH: "on the NFS server: chown {ids} {server_path} (numeric ids, the qemu user's on {host}; "
                           "mode 0600 or 0660): root_squash makes the server refuse libvirt's own chown from the "
                           "host; or export with no_root_squash (insecure: root on the hosts is root on the export)",
    Cause.READ_ONLY_STORAGE: "export and mount the storage read-write (rw in /etc/exports, no ro mount option), "
                             "or mark the disk <readonly/> if it is meant to be read-only",
    Cause.DESTINATION_NOT_MOUNTED: "mount the shared storage on {host} at {mountpoint}, the same path as on the "
                                   "source (and add it to /etc/fstab)",
    Cause.MOUNT_PATH_DIFFERS: "mount the export at the same path on both hosts: on {host} it is at {mountpoint}, "
                              "but the domain's disk is {path}: mount it at {expected} on {host} (and in "
                              "/etc/fstab), or give the guest a path valid on both hosts",
    Cause.IMAGE_MISSING: "the image is not at {path} on {host}: correct the domain XML or restore the file",
    Cause.STORAGE_NOT_SHARED: "put the disks on storage libvirt knows is shared (NFS, GFS2, OCFS2, CephFS) at the "
                              "same path on both hosts; or copy them (--copy-storage-all); --unsafe only if it "
                              "really is shared",
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
    Cause.PERMISSION_DENIED_UNEXPLAINED: "check {path} as the qemu user on {host}: "
                                         "setpriv --reuid={user} --init-groups test -r {path}; ausearch -m avc",
    Cause.UNKNOWN: "no known message: read /var/log/libvirt/qemu/<domain>.log on both hosts",
}


#: QEMU's error for the destination's last step of a migration: resuming the guest.
RESUME_FAILED = "unable to execute QEMU command 'cont'"
RESUME_NOTE = ("the destination failed only when resuming the guest, after it had taken its memory: "
               "with --persistent libvirt has defined the guest there already, and leaves it shut off "
               "(virsh undefine it on the destination)")


def diagnose(error_text: str, evidence: Evidence | None = None) -> Diagnosis:
    """The cause of the failure that printed *error_text*, weighed against *evidence*."""
    ev = evidence or Evidence()
    path = (paths_in(error_text) or [ev.path or ""])[0] or None
    found = match(error_text)
    lines: list[str] = []
    if found is None:
        cause = Cause.UNKNOWN
    else:
        rule, m = found
        lines.append(f"message [{rule.name}]: {m.group(0)}")
        target = rule.target
        if target is Family.PERMISSION_DENIED:
            cause, why = _permission(ev, path, error_text)
        elif target is Family.NO_SUCH_FILE:
            cause, why = _missing(ev, path)
        elif target is Family.READ_ONLY:
            cause, why = Cause.READ_ONLY_STORAGE, _read_only_why(ev, ev.target if ev.path == path else path)
        else:
            assert isinstance(target, Cause)
            cause, why = target, ""
        if why:
            lines.append(why)
    if RESUME_FAILED in error_text:
        lines.append(RESUME_NOTE)
    lines += ev.lines() if evidence is not None else []
    return Diagnosis(cause, cause.value, _fix(cause, ev, path, error_text), tuple(lines))


def _avc_for(ev: Evidence, path: str | None) -> str | None:
    """The newest AVC denial by a QEMU process (on the image, if its name is known)."""
    name = posixpath.basename(path) if path else None
    candidates = [a for a in ev.avc if (avc_field(a, "comm") or "").startswith("qemu")
                  or "svirt" in (avc_field(a, "scontext") or "")]
    named = [a for a in candidates if name and avc_field(a, "name") == name]
    chosen = named or candidates
    return chosen[-1] if chosen else None


def _permission(ev: Evidence, path: str | None, text: str) -> tuple[Cause, str]:
    avc = _avc_for(ev, path)
    if avc is not None and (avc_field(avc, "permissive") != "1"):
        tcontext = avc_field(avc, "tcontext") or ""
        if ":nfs_t:" in tcontext and ev.virt_use_nfs is not True:
            return Cause.SELINUX_VIRT_USE_NFS, f"AVC denial on nfs_t with virt_use_nfs {_onoff(ev.virt_use_nfs)}"
        return Cause.SELINUX_LABEL, f"AVC denial, target context {tcontext}"
    dirs = [c for c in ev.path_checks if c.kind == "directory"]
    blocked = next((c for c in dirs if c.search is False), None)
    if blocked is not None:
        return Cause.DAC_PARENT_NOT_SEARCHABLE, (
            f"{blocked.path} (mode {blocked.mode}, owner {blocked.owner}) is not searchable by {ev.qemu_user}")
    own = ev.path == path  # the evidence is about the path the message names
    image = ev.image_check if own else next((c for c in ev.path_checks if c.path == path), None)
    target = ev.target if own else path
    mount = ev.mount_of(target) if target else None
    shared = mount is not None and mount.shared
    unreadable = image is not None and not image.missing and (image.read is False or image.write is False)
    read_only = _read_only_why(ev, target) if image is not None and image.write is False else ""
    if not read_only and shared and image is not None and image.write is False and _owner_may_write(ev, image):
        read_only = (f"{image.path} is mode {image.mode} owner {image.owner} (the qemu user), yet the server "
                     f"refuses {ev.qemu_user} write access: the export is read-only")
    if read_only:
        return Cause.READ_ONLY_STORAGE, read_only
    squashed = "root_squash" in ev.export_options or "all_squash" in ev.export_options
    root_refused = shared and ev.root_read is False
    squash_suspected = root_refused or (shared and squashed and ev.root_read is None)
    if "NFS: ACCESS denied" in text or (unreadable and squash_suspected):
        if root_refused and mount is not None:
            return Cause.NFS_ROOT_SQUASH, (
                f"{target} is on {mount.mountpoint} ({mount.fstype} from {mount.source}) and root on {ev.host} "
                "cannot open it either, although root passes any file mode: the server maps root to nobody "
                "(root_squash), so it also refused libvirt's chown to the qemu user")
        return Cause.NFS_ROOT_SQUASH, (
            f"{path} is on {mount.fstype if mount else 'NFS'} exported with "
            f"{','.join(o for o in ev.export_options if 'squash' in o) or 'root_squash'}")
    if unreadable and image is not None:
        return Cause.DAC_IMAGE_NOT_ACCESSIBLE, (
            f"{image.path} is mode {image.mode} owner {image.owner}: {ev.qemu_user} may not open it read-write")
    return Cause.PERMISSION_DENIED_UNEXPLAINED, ""


def _owner_may_write(ev: Evidence, image: PathCheck) -> bool:
    """The qemu user owns *image* and its mode lets the owner write: only the server can be refusing."""
    if ev.qemu_ids is None or not image.mode.isdigit():
        return False
    return image.owner.split(":")[0] == str(ev.qemu_ids[0]) and bool(int(image.mode, 8) & 0o200)


def _missing(ev: Evidence, path: str | None) -> tuple[Cause, str]:
    if not path or not ev.mounts:
        return Cause.IMAGE_MISSING, ""
    mount = ev.mount_of(path)
    if mount is not None and mount.shared:
        return Cause.IMAGE_MISSING, f"{path} is under the shared mount {mount.mountpoint}, but absent"
    if ev.found_at is not None and ev.path == path:  # searched: the evidence decides
        moved = _relocated(ev, path)
        if moved is not None:
            found, where, _ = moved
            return Cause.MOUNT_PATH_DIFFERS, f"{path} is missing, but {found} exists on the shared mount {where}"
        return Cause.DESTINATION_NOT_MOUNTED, (
            f"{path} is missing: {_deepest_dir(ev, path)} is on {mount.mountpoint if mount else '?'} "
            f"({mount.fstype if mount else '?'}), not on shared storage, and no shared mount holds the image")
    shared = [m for m in ev.mounts if m.shared]
    if shared:
        where = ", ".join(f"{m.mountpoint} ({m.source})" for m in shared)
        return Cause.MOUNT_PATH_DIFFERS, f"{path} is on {mount.fstype if mount else '?'}; shared storage is at {where}"
    return Cause.DESTINATION_NOT_MOUNTED, (
        f"{path} is on {mount.mountpoint if mount else '?'} ({mount.fstype if mount else '?'}); "
        "no shared file system is mounted")


def _relocated(ev: Evidence, path: str) -> tuple[str, str, str] | None:
    """(where the image is, the shared mount point holding it, where that mount should be) for a
    missing image found under another mount point; the longest matching tail wins."""
    best: tuple[int, tuple[str, str, str]] | None = None
    for found in ev.found_at or ():
        m = ev.mount_of(found)
        if m is None or not m.shared:
            continue
        tail = found[len(m.mountpoint.rstrip("/")):]
        if path.endswith(tail) and (best is None or len(tail) > best[0]):
            best = (len(tail), (found, m.mountpoint, path[: len(path) - len(tail)] or "/"))
    return best[1] if best else None


def _deepest_dir(ev: Evidence, path: str) -> str:
    """The deepest directory of *path* that exists on the host (where the mount is missing)."""
    dirs = [c.path for c in ev.path_checks if c.kind == "directory" and (path + "/").startswith(c.path.rstrip("/")
                                                                                            + "/")]
    return max(dirs, key=len) if dirs else posixpath.dirname(path)


def _read_only_why(ev: Evidence, path: str | None) -> str:
    mount = ev.mount_of(path) if path else None
    if mount is not None and mount.read_only:
        return f"{mount.mountpoint} is mounted ro"
    if "ro" in ev.export_options:
        return "the export is ro"
    return ""


def _onoff(value: bool | None) -> str:
    return "unknown" if value is None else ("on" if value else "off")


def _fix(cause: Cause, ev: Evidence, path: str | None, text: str) -> str:
    blocked = next((c.path for c in ev.path_checks if c.kind == "directory" and c.search is False), None)
    ids = qemu_ids_in(text) or ev.qemu_ids
    mountpoint, expected = "the source's mount point", "the source's mount point"
    moved = _relocated(ev, path) if path and ev.found_at and ev.path == path else None
    if cause is Cause.MOUNT_PATH_DIFFERS and moved is not None:
        mountpoint, expected = moved[1], moved[2]
    elif cause is Cause.MOUNT_PATH_DIFFERS:
        mountpoint = ", ".join(m.mountpoint for m in ev.mounts if m.shared) or mountpoint
    elif cause is Cause.DESTINATION_NOT_MOUNTED and path:
        mountpoint = (_deepest_dir(ev, path) if ev.found_at is not None and ev.path == path
                      else f"the directory holding {path} (as on the source)")
    return FIXES[cause].format(
        host=ev.host or "the failing host", path=path or "the image",
        dir=blocked or (posixpath.dirname(path) if path else "the image's directory"),
        user=ev.qemu_user or "the qemu user", ids=f"{ids[0]}:{ids[1]}" if ids else ev.qemu_user or "qemu",
        mountpoint=mountpoint, expected=expected, server_path=_server_path(ev, path),
    )


def _server_path(ev: Evidence, path: str | None) -> str:
    """The image as the NFS server names it (`server:/export/rel`), from the mount it is on."""
    target = ev.target if path is not None and ev.path == path else path
    mount = ev.mount_of(target) if target else None
    if target is None or mount is None or not mount.shared:
        return target or "the image"
    rel = target[len(mount.mountpoint.rstrip("/")):]
    return mount.source.rstrip("/") + rel
