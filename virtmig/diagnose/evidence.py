"""Host evidence for a diagnosis, gathered over the `Host` interface and parsed here.

The same `Permission denied` comes from DAC and from SELinux; only the host
can tell which: an AVC record in the audit log, a path component the qemu
user cannot search, the image's owner and mode, the mount and export
options.  Gathering is separate from `diagnose` (a pure function) so that
diagnosis is unit-tested on recorded evidence and gathering on the lab.

Commands are chosen to exist on Debian and RHEL alike: `setpriv` (util-linux)
to test access as the qemu user with its supplementary groups, `stat`,
`/proc/self/mountinfo`, and the SELinux tools only if installed (their
absence is evidence too: no SELinux).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from virtmig.host import CommandResult, Host
from virtmig.storage import shared_check
from virtmig.storage.qemu_user import QEMU_CONF, find_qemu_identity, parse_qemu_conf

#: File system types libvirt 9.0 treats as shared (virFileIsSharedFS), plus
#: FUSE NFS clients (reported as fuse.nfs) so the lab's userspace NFS counts.
SHARED_FS_TYPES = frozenset({"nfs", "nfs4", "gfs2", "ocfs2", "ceph", "cifs", "smb3", "gpfs", "fuse.glusterfs",
                             "fuse.nfs", "fuse.quobyte", "beegfs"})


@dataclass(frozen=True)
class PathCheck:
    """One component of a path as the qemu user sees it.

    search/read/write are None where the test does not apply (search on a
    file, anything on a missing component).
    """

    path: str
    kind: str  # "directory", "regular file", "symbolic link", ..., or "missing"
    mode: str  # octal, e.g. "750"
    owner: str  # "uid:gid"
    search: bool | None
    read: bool | None
    write: bool | None

    @property
    def missing(self) -> bool:
        return self.kind == "missing"


@dataclass(frozen=True)
class Mount:
    """One line of /proc/self/mountinfo, reduced to what a diagnosis needs."""

    mountpoint: str
    fstype: str
    source: str
    options: tuple[str, ...]

    @property
    def shared(self) -> bool:
        return self.fstype in SHARED_FS_TYPES

    @property
    def read_only(self) -> bool:
        return "ro" in self.options


@dataclass(frozen=True)
class Evidence:
    """What one host showed about a failure.  Every field may be unknown (None/empty)."""

    host: str = ""
    qemu_user: str | None = None
    dynamic_ownership: bool | None = None
    #: getenforce's word ("Enforcing", "Permissive", "Disabled"); None: no SELinux tools.
    selinux_mode: str | None = None
    virt_use_nfs: bool | None = None
    #: raw AVC records (type=AVC ... avc:  denied ...), newest last
    avc: tuple[str, ...] = ()
    path: str | None = None
    path_checks: tuple[PathCheck, ...] = ()
    mounts: tuple[Mount, ...] = ()
    #: the NFS export's options as the server's export table says (e.g. from /var/lib/nfs/etab)
    export_options: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())
    #: uid, gid of the qemu user on this host (numeric: what the NFS server sees)
    qemu_ids: tuple[int, int] | None = None
    #: `path` with symbolic links resolved, when it exists (the file QEMU really opens)
    resolved: str | None = None
    #: whether root on this host could open the image for reading.  Root passes any
    #: file mode, so False on an NFS mount means the server treats root as nobody.
    root_read: bool | None = None
    #: for a missing image: where its trailing path components do exist under this
    #: host's shared mounts (None: not searched)
    found_at: tuple[str, ...] | None = None

    @property
    def target(self) -> str | None:
        """The file behind `path` (links resolved), else `path`."""
        return self.resolved or self.path

    @property
    def image_check(self) -> PathCheck | None:
        """The path walk's entry for the image itself (the resolved file's, if walked)."""
        for want in (self.resolved, self.path):
            found = next((c for c in self.path_checks if want and c.path == want), None)
            if found is not None:
                return found
        return None

    @property
    def selinux_enforcing(self) -> bool:
        return (self.selinux_mode or "").lower() == "enforcing"

    def mount_of(self, path: str) -> Mount | None:
        """The mount *path* lives on (longest mount point prefix), if mounts are known."""
        best: Mount | None = None
        for m in self.mounts:
            prefix = m.mountpoint.rstrip("/") + "/"
            if (path == m.mountpoint or path.startswith(prefix) or m.mountpoint == "/") and (
                    best is None or len(m.mountpoint) >= len(best.mountpoint)):
                best = m
        return best

    def lines(self) -> list[str]:
        """Human-readable evidence, one fact a line (for reports)."""
        out = [f"host {self.host or '?'}: qemu user {self.qemu_user or '?'}, dynamic_ownership "
               f"{'?' if self.dynamic_ownership is None else int(self.dynamic_ownership)}, SELinux "
               f"{self.selinux_mode or 'absent'}"
               + ("" if self.virt_use_nfs is None else f", virt_use_nfs {'on' if self.virt_use_nfs else 'off'}")]
        out += [f"AVC: {a}" for a in self.avc[-3:]]
        for c in self.path_checks:
            acc = "".join(flag if ok else "-" for flag, ok in (("r", c.read), ("w", c.write), ("x", c.search))
                          if ok is not None)
            out.append(f"{c.path}: {c.kind} mode {c.mode} owner {c.owner}"
                       + (f", as {self.qemu_user}: {acc or '-'}" if acc or not c.missing else ""))
        if self.resolved and self.resolved != self.path:
            out.append(f"{self.path} resolves to {self.resolved}")
        if self.target is not None:
            m = self.mount_of(self.target)
            if m is not None:
                out.append(f"{self.target} is on {m.mountpoint} ({m.fstype} from {m.source}, {','.join(m.options)})")
        if self.root_read is not None:
            out.append(f"root on {self.host or '?'} {'can' if self.root_read else 'cannot'} open {self.target} "
                       "for reading")
        if self.found_at is not None:
            out.append(f"{self.path} is missing; under the shared mounts: "
                       + (", ".join(self.found_at) or "no file of that name"))
        if self.export_options:
            out.append(f"export options: {','.join(self.export_options)}")
        return out + list(self.notes)


# -- parsers (pure, tested on recorded output) ---------------------------------

def parse_getenforce(result: CommandResult) -> str | None:
    """getenforce's word, or None when the tool is missing (no SELinux userland)."""
    word = result.stdout.strip()
    return word if result.ok and word in ("Enforcing", "Permissive", "Disabled") else None


def parse_getsebool(result: CommandResult) -> bool | None:
    """`virt_use_nfs --> on` -> True; None when unknown (no tool, SELinux disabled)."""
    found = re.search(r"-->\s*(on|off)\b", result.stdout)
    return None if not (result.ok and found) else found.group(1) == "on"


_AVC = re.compile(r"avc:\s+denied")


def parse_avc(text: str) -> tuple[str, ...]:
    """The AVC denial records in ausearch or audit.log output (other lines dropped)."""
    return tuple(line.strip() for line in text.splitlines() if _AVC.search(line))


def avc_field(record: str, name: str) -> str | None:
    """A field of an AVC record: avc_field(r, 'tcontext') -> 'system_u:object_r:nfs_t:s0'."""
    found = re.search(rf"\b{re.escape(name)}=(\"[^\"]*\"|\S+)", record)
    return found.group(1).strip('"') if found else None


def parse_mountinfo(text: str) -> tuple[Mount, ...]:
    """/proc/self/mountinfo -> mounts (per-mount and super-block options merged).

    Each line is read by the storage check's strict parser; a line it cannot
    read is skipped here, since a diagnosis should use what evidence there is.
    """
    mounts = []
    for line in text.splitlines():
        try:
            entries = shared_check.parse_mountinfo(line)
        except ValueError:
            continue
        for e in entries:
            options = tuple(dict.fromkeys((*e.mount_options, *e.super_options)))
            mounts.append(Mount(str(e.mount_point), e.fstype, e.source, options))
    return tuple(mounts)


def parse_path_checks(text: str) -> tuple[PathCheck, ...]:
    """Output of PATH_CHECK_SCRIPT: `path|kind|mode|uid:gid|x|r|w` per component."""
    def flag(v: str) -> bool | None:
        return {"1": True, "0": False}.get(v)

    checks = []
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) == 7:
            checks.append(PathCheck(parts[0], parts[1], parts[2], parts[3],
                                    flag(parts[4]), flag(parts[5]), flag(parts[6])))
    return tuple(checks)


def parse_image_facts(text: str) -> tuple[tuple[int, int] | None, str | None, bool | None]:
    """Output of IMAGE_SCRIPT -> (qemu uid/gid, resolved path, root could open it)."""
    facts = dict(line.split("|", 1) for line in text.splitlines() if "|" in line)
    ids = None
    uid, _, gid = facts.get("ids", "").partition(":")
    if uid.isdigit() and gid.isdigit():
        ids = (int(uid), int(gid))
    root = facts.get("root_read")
    return ids, facts.get("resolved") or None, None if root is None else root == "1"


def relocations(path: str, mounts: Sequence[Mount]) -> list[str]:
    """Where a missing *path* would be if its storage were mounted elsewhere: each shared
    mount point joined with each trailing part of *path* (`/a/b/disk.raw` -> `M/b/disk.raw`, `M/disk.raw`)."""
    parts = [p for p in path.split("/") if p]
    tails = ["/".join(parts[i:]) for i in range(1, len(parts))]
    out = []
    for m in mounts:
        if m.shared:
            for tail in tails:
                candidate = m.mountpoint.rstrip("/") + "/" + tail
                if candidate != path and candidate not in out:
                    out.append(candidate)
    return out


def export_of(mount: Mount) -> str | None:
    """The server-side export path of an NFS mount (`server:/srv/x` -> `/srv/x`)."""
    server, sep, export = mount.source.rpartition(":")
    return export if sep and server and export.startswith("/") else None


def parse_export_options(etab: str, export: str, clients: Sequence[str] = ()) -> tuple[str, ...]:
    """Options of *export* in an etab/`exportfs -v` style table (`/path\tclient(opts)`).

    An export may give each client its own options (rw to one host, ro to
    another): the entry naming one of *clients* (the failing host's names
    and addresses) wins, else the first entry of the path.
    """
    entries = []
    for line in etab.splitlines():
        found = re.match(r"(\S+)\s+(\S*?)\(([^)]*)\)", line)
        if found and found.group(1).rstrip("/") == export.rstrip("/"):
            entries.append((found.group(2), tuple(found.group(3).split(","))))
    mine = [opts for client, opts in entries if client in clients]
    return (mine or [opts for _, opts in entries] or [()])[0]


# -- gathering ------------------------------------------------------------------

#: Every component of $2 from / down, as user $1 (with its groups): kind, mode,
#: owner, and access by the kernel's own rules (test -x/-r/-w under setpriv).
PATH_CHECK_SCRIPT = r"""
user=$1; path=$2
as_user() { setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups -- "$@" 2>/dev/null; }
t() { if as_user test "$@"; then echo 1; else echo 0; fi; }
p=; set -f; IFS=/
for part in $path; do
  if [ -z "$p" ]; then p=/; elif [ -z "$part" ]; then continue; elif [ "$p" = / ]; then p=/$part; else p=$p/$part; fi
  if [ ! -e "$p" ] && [ ! -L "$p" ]; then echo "$p|missing|-|-|||"; continue; fi
  info=$(stat -c '%F|%a|%u:%g' -- "$p")
  if [ -d "$p" ]; then echo "$p|$info|$(t -x "$p")|$(t -r "$p")|$(t -w "$p")"
  else echo "$p|$info||$(t -r "$p")|$(t -w "$p")"; fi
done
"""

#: AVC records of the last 10 minutes: ausearch if installed, else the log's tail.  `--input-logs`:
#: without a terminal (as over ssh) ausearch reads stdin instead of the logs and prints `<no matches>`
#: (seen on an enforcing Debian 12 host: tests/data/selinux/debian12-captured).
AVC_SCRIPT = r"""
if command -v ausearch >/dev/null 2>&1; then ausearch --input-logs -m avc -ts recent 2>/dev/null
elif [ -r /var/log/audit/audit.log ]; then grep 'avc: *denied' /var/log/audit/audit.log | tail -n 50
fi
exit 0
"""

#: The qemu user's ids; for an existing image the file behind it, and whether
#: root can open it (dd count=0 opens without reading).
IMAGE_SCRIPT = r"""
user=$1; path=$2
echo "ids|$(id -u "$user" 2>/dev/null):$(id -g "$user" 2>/dev/null)"
if [ -e "$path" ]; then
  echo "resolved|$(readlink -f -- "$path")"
  if [ -f "$path" ]; then
    if dd if="$path" of=/dev/null bs=512 count=0 status=none 2>/dev/null; then echo "root_read|1"
    else echo "root_read|0"; fi
  fi
fi
exit 0
"""

#: Which of the arguments exist (for a missing image: candidates under the shared mounts).
EXISTING_SCRIPT = r"""
for p in "$@"; do if [ -e "$p" ]; then echo "$p"; fi; done
exit 0
"""

#: The export table of a Linux NFS server (kept by exportfs; also by the lab's adapter).
ETAB = "/var/lib/nfs/etab"


def qemu_user(host: Host, user: str | None = None) -> tuple[str, bool | None]:
    """(the user QEMU runs as, dynamic_ownership): virtmig.storage.qemu_user's lookup, and qemu.conf.

    A user the host does not know is still named (as given, or as qemu.conf
    says): the diagnosis then says so; with neither, QEMU runs as root.
    """
    configured, dyn = parse_qemu_conf(host.run("cat", QEMU_CONF, check=False).stdout)
    found = find_qemu_identity(host, user)
    return (found.user if found else user or configured or "root"), dyn


def gather_evidence(host: Host, path: str | None = None, *, export_options: tuple[str, ...] = (),
                    user: str | None = None, server: Host | None = None) -> Evidence:
    """Collect everything `diagnose` may weigh, from *host*, about *path* (if any).

    export_options: the export's options, when the caller can read the NFS
    server's table (see `parse_export_options`); a client cannot see them.
    server: the NFS server, to read them from its etab (the export holding the image).
    """
    q_user, dyn = qemu_user(host, user)
    mode = parse_getenforce(host.run("getenforce", check=False))
    use_nfs = parse_getsebool(host.run("getsebool", "virt_use_nfs", check=False)) if mode else None
    avc = parse_avc(host.run_script(AVC_SCRIPT, check=False).stdout) if mode else ()
    mounts = parse_mountinfo(host.run("cat", "/proc/self/mountinfo", check=False).stdout)
    ev = Evidence(host=host.name, qemu_user=q_user, dynamic_ownership=dyn, selinux_mode=mode,
                  virt_use_nfs=use_nfs, avc=avc, path=path, mounts=mounts, export_options=export_options)
    if not path:
        return ev
    checks = parse_path_checks(host.run_script(PATH_CHECK_SCRIPT, args=[q_user, path], check=False).stdout)
    ids, resolved, root_read = parse_image_facts(host.run_script(IMAGE_SCRIPT, args=[q_user, path],
                                                                 check=False).stdout)
    if resolved and resolved != path:  # walk the real file's path too: its directories count as well
        checks += parse_path_checks(host.run_script(PATH_CHECK_SCRIPT, args=[q_user, resolved],
                                                    check=False).stdout)
    found_at = None
    if resolved is None:
        candidates = relocations(path, mounts)
        listed = host.run_script(EXISTING_SCRIPT, args=candidates, check=False).stdout if candidates else ""
        found_at = tuple(line for line in listed.splitlines() if line)
    mount = ev.mount_of(resolved or path)
    export = export_of(mount) if mount is not None and mount.shared else None
    if server is not None and export and not export_options:
        names = (host.name, *host.run("hostname", "-I", check=False).stdout.split())
        export_options = parse_export_options(server.run("cat", ETAB, check=False).stdout, export, names)
    return replace(ev, path_checks=checks, qemu_ids=ids, resolved=resolved, root_read=root_read,
                   found_at=found_at, export_options=export_options)
