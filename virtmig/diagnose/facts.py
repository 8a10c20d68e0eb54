"""The facts a diagnosis reads, derived once from the error text and the host evidence.

`Evidence` is what a host showed, raw: a path walk, mounts, export options,
AVC records.  A cause, the reason given for it and its fix all need the same
handful of conclusions drawn from it (which directory blocks the qemu user,
which mount the image is on, whether root itself was refused it, where a
missing image turned up).  `facts_of` draws each of them once, into one
`Facts`, so that the decision and the texts rendered from it cannot weigh
the evidence differently.  Pure, like the rest of the engine.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from virtmig.diagnose.causes import paths_in, qemu_ids_in
from virtmig.diagnose.evidence import Evidence, Mount, PathCheck, avc_field
from virtmig.diagnose.selinux import context_type


@dataclass(frozen=True)
class Relocation:
    """A missing image found under another shared mount point than the domain's path expects."""

    found: str  # where the image is
    mountpoint: str  # the shared mount holding it
    expected: str  # where that mount would have to be for the domain's path


@dataclass(frozen=True)
class Facts:
    """Everything a decision, a reason or a fix reads, each fact computed once by `facts_of`.

    "The image" is the file the message names; "the file" is the one behind
    it (symbolic links resolved) when the evidence was gathered about it.
    """

    host: str
    user: str | None  # the qemu user
    path: str | None  # the image the message names, else the one the evidence is about
    file: str | None  # the file behind `path`
    file_check: PathCheck | None  # the path walk's entry for `file` (None: not walked)
    file_mount: Mount | None  # the mount `file` is on
    path_mount: Mount | None  # the mount `path` itself is on (for a missing image: where it was looked for)
    shared_mounts: tuple[Mount, ...]  # every shared file system mounted on the host
    mounts_known: bool
    export_options: tuple[str, ...]
    ids: tuple[int, int] | None  # the qemu user's uid:gid, as the message or the evidence says

    # SELinux
    avc_context: str | None  # target context of an enforced AVC denial of QEMU or libvirtd (None: no such denial)
    avc_denied: str | None  # who was denied what, e.g. "libvirtd (virtd_t) { getattr }"
    avc_on_nfs: bool  # ... and it is on an NFS file (nfs_t)
    virt_use_nfs: bool | None

    # DAC, NFS
    blocked: PathCheck | None  # the first directory on the way the qemu user may not search
    refused: bool  # the qemu user may not open the file read-write
    write_refused: bool  # ... and in particular may not write it
    read_only_mount: bool  # the file's mount is mounted ro
    read_only_export: bool  # the export's options say ro
    owner_refused: bool  # the qemu user owns the file, its mode lets the owner write, and the share refuses
    root_refused: bool  # root itself could not open the file on shared storage (root passes any mode)
    squash_suspected: bool  # root_refused, or the export squashes root and root was not tried

    # a missing image
    searched: bool  # the shared mounts were searched for the image
    relocated: Relocation | None  # found under another shared mount point
    mount_dir: str | None  # when searched: the deepest directory of `path` that exists (where a mount is missing)

    @property
    def file_on_shared(self) -> bool:
        return self.file_mount is not None and self.file_mount.shared

    @property
    def path_on_shared(self) -> bool:
        return self.path_mount is not None and self.path_mount.shared


def facts_of(error_text: str, ev: Evidence) -> Facts:
    """The facts *ev* shows about the image *error_text* names (or, if it names none, the evidence's)."""
    path = (paths_in(error_text) or [ev.path or ""])[0] or None
    own = ev.path == path  # the evidence is about this very image: its resolved file and search apply
    file = ev.target if own else path
    check = ev.image_check if own else next((c for c in ev.path_checks if c.path == path), None)
    mount = ev.mount_of(file) if file else None
    on_shared = mount is not None and mount.shared
    avc = _avc_for(ev, path)
    context = (avc_field(avc, "tcontext") or "") if avc is not None and avc_field(avc, "permissive") != "1" else None
    refused = check is not None and not check.missing and (check.read is False or check.write is False)
    write_refused = check is not None and check.write is False
    squashing = "root_squash" in ev.export_options or "all_squash" in ev.export_options
    root_refused = on_shared and ev.root_read is False
    searched = own and path is not None and ev.found_at is not None
    return Facts(
        host=ev.host, user=ev.qemu_user, path=path, file=file, file_check=check, file_mount=mount,
        path_mount=ev.mount_of(path) if path else None,
        shared_mounts=tuple(m for m in ev.mounts if m.shared), mounts_known=bool(ev.mounts),
        export_options=ev.export_options, ids=qemu_ids_in(error_text) or ev.qemu_ids,
        avc_context=context, avc_denied=_denied(avc) if context is not None else None,
        avc_on_nfs=context is not None and ":nfs_t:" in context,
        virt_use_nfs=ev.virt_use_nfs,
        blocked=next((c for c in ev.path_checks if c.kind == "directory" and c.search is False), None),
        refused=refused, write_refused=write_refused,
        read_only_mount=mount is not None and mount.read_only,
        read_only_export="ro" in ev.export_options,
        owner_refused=on_shared and write_refused and check is not None and _owner_may_write(ev, check),
        root_refused=root_refused,
        squash_suspected=root_refused or (on_shared and squashing and ev.root_read is None),
        searched=searched,
        relocated=_relocated(ev, path) if searched and path else None,
        mount_dir=_deepest_dir(ev, path) if searched and path else None,
    )


#: SELinux domains of the processes that open a guest's image: QEMU (svirt_t, svirt_tcg_t), and libvirtd
#: itself (virtd_t), which Debian's policy confines too, so it is denied first, at stat (captured).
_IMAGE_OPENERS = (":svirt_t:", ":svirt_tcg_t:", ":virtd_t:")


def _avc_for(ev: Evidence, path: str | None) -> str | None:
    """The newest AVC denial of QEMU or libvirtd (on the image, if its name or path is known)."""
    name = posixpath.basename(path) if path else None
    candidates = [a for a in ev.avc if (avc_field(a, "comm") or "").startswith("qemu")
                  or any(d in (avc_field(a, "scontext") or "") for d in _IMAGE_OPENERS)]
    named = [a for a in candidates
             if name and (avc_field(a, "name") == name or avc_field(a, "path") == path)]
    chosen = named or candidates
    return chosen[-1] if chosen else None


def _denied(avc: str | None) -> str | None:
    """Who an AVC record denied what: 'libvirtd (virtd_t) { getattr }', 'qemu (svirt_t) { read write }'."""
    if avc is None:
        return None
    domain = context_type(avc_field(avc, "scontext") or "")
    who = "libvirtd" if domain == "virtd_t" else "qemu" if domain.startswith("svirt") else avc_field(avc, "comm")
    perms = re.search(r"denied\s+\{([^}]*)\}", avc)
    return f"{who} ({domain}) {{{perms.group(1) if perms else ' ? '}}}"


def _owner_may_write(ev: Evidence, check: PathCheck) -> bool:
    """The qemu user owns the file and its mode lets the owner write: only the server can be refusing."""
    if ev.qemu_ids is None or not check.mode.isdigit():
        return False
    return check.owner.split(":")[0] == str(ev.qemu_ids[0]) and bool(int(check.mode, 8) & 0o200)


def _relocated(ev: Evidence, path: str) -> Relocation | None:
    """Where a missing image was found under another shared mount point; the longest matching tail wins."""
    best: tuple[int, Relocation] | None = None
    for found in ev.found_at or ():
        m = ev.mount_of(found)
        if m is None or not m.shared:
            continue
        tail = found[len(m.mountpoint.rstrip("/")):]
        if path.endswith(tail) and (best is None or len(tail) > best[0]):
            best = (len(tail), Relocation(found, m.mountpoint, path[: len(path) - len(tail)] or "/"))
    return best[1] if best else None


def _deepest_dir(ev: Evidence, path: str) -> str:
    """The deepest directory of *path* that exists on the host (where the mount is missing)."""
    dirs = [c.path for c in ev.path_checks if c.kind == "directory" and (path + "/").startswith(c.path.rstrip("/")
                                                                                            + "/")]
    return max(dirs, key=len) if dirs else posixpath.dirname(path)
