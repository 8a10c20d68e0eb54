"""The shared-storage check run before any migration: do both hosts really see one disk?

"Shared" storage that is not (a local directory at the same path, another
export, a stale mount) silently forks the guest's disk; differing parent
directories or NFS options fail only on the destination, mid-migration.
`gather` reads one host's facts through `Host` (mountinfo, ``stat`` of each
path component, access tests as the qemu user); `sentinel_roundtrip` proves
identity, which comparing mount sources cannot; `compare` is pure, so every
kind of mismatch is unit-tested without hosts; `require_shared` raises
`StorageMismatch` carrying the table.

Mount options compared, because they change what the guest's disk does:
ro/rw (mount or superblock), sync, hard/soft/softerr (hang or I/O error when
the server goes away), sec= and proto= (how the server sees the host),
nocto/noac/lookupcache=/ac* (whether one host sees the other's writes),
local_lock=/nolock (whether locks are shared).  Ignored, because they differ
per host or only tune speed, and a check that cries wolf gets switched off:
addr=, clientaddr=, mountaddr=, mountport=, rsize/wsize/timeo/retrans/
nconnect/namlen, atime flags, FUSE's user_id/group_id.  The lab's FUSE
client (fuse.nfs) shows no vers=: its version is "unknown" on both hosts.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from pathlib import PurePosixPath

from virtmig.host import CommandResult, Host
from virtmig.storage.qemu_user import find_qemu_identity
from virtmig.waiters import WaitTimeout, wait_for

#: A hard NFS mount whose server is gone blocks stat(2) forever: fail, never hang the run.
COMMAND_TIMEOUT_S = 60.0
#: How long the reader keeps looking for the sentinel (attribute caches).
SENTINEL_WAIT_S = 3.0
#: Marks a failing row in `StorageReport.table`.
FAIL_MARK = "!!"

_OCTAL_ESCAPE = re.compile(rb"\\([0-7]{3})")
_STAT_FORMAT = "%n|%u|%g|%a|%U|%G"
_CACHE_OPTIONS = ("nocto", "noac", "lookupcache", "acregmin", "acregmax", "acdirmin", "acdirmax", "actimeo")

#: `test FLAG PATH` as uid:gid per (FLAG, PATH) pair: one answer line each, in order.
_ACCESS_SCRIPT = r"""uid=$1; gid=$2; shift 2
while [ "$#" -ge 2 ]; do
    setpriv --reuid="$uid" --regid="$gid" --init-groups test "$1" "$2" </dev/null && echo ok || echo denied; shift 2
done
"""
#: Creates the sentinel without ever overwriting a file (noclobber).
_WRITE_SCRIPT = 'set -C; printf "%s\\n" "$2" > "$1"'


@dataclass(frozen=True)
class MountEntry:
    """One line of /proc/self/mountinfo (proc(5)), escapes decoded.  root: the directory of the
    filesystem shown at mount_point ("/" except for binds); super_options: the filesystem's own."""

    mount_id: int
    parent_id: int
    root: str
    mount_point: PurePosixPath
    mount_options: tuple[str, ...]
    fstype: str
    source: str
    super_options: tuple[str, ...]

    def options(self) -> dict[str, str]:
        """Mount then super options as name -> value ("" for flags); super options win."""
        return {n: v for n, _, v in (o.partition("=") for o in (*self.mount_options, *self.super_options))}

    @property
    def source_spec(self) -> str:
        """The source as findmnt shows it: ``SOURCE[ROOT]`` for a bind of a subdirectory."""
        return self.source if self.root == "/" else f"{self.source}[{self.root}]"

    @property
    def nfs_version(self) -> str:
        """``vers=`` for NFS; "unknown" for NFS that does not say (FUSE); "n/a" for other filesystems."""
        if self.fstype not in ("nfs", "nfs4") and not self.fstype.startswith("fuse.nfs"):
            return "n/a"
        return next((o[len("vers="):] for o in self.super_options if o.startswith("vers=")), "unknown")


def _unescape(field: str) -> str:
    """Undo the kernel's octal escapes (\\040 space, \\011 tab, \\012 newline, \\134 backslash)."""
    raw = field.encode("utf-8", "surrogateescape")
    return _OCTAL_ESCAPE.sub(lambda m: bytes([int(m.group(1), 8)]), raw).decode("utf-8", "surrogateescape")


def parse_mountinfo(text: str) -> list[MountEntry]:
    """All mounts in a /proc/PID/mountinfo text, in file order (later ones are mounted on top).

    Split on single spaces, then unescaped, so empty sources and escaped spaces survive;
    a malformed line raises ValueError, as a misread table is worse than none."""
    entries: list[MountEntry] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split(" ")
        try:
            sep = fields.index("-", 6)
            fstype, source, super_opts = fields[sep + 1:sep + 4]
            entries.append(MountEntry(
                int(fields[0]), int(fields[1]), _unescape(fields[3]), PurePosixPath(_unescape(fields[4])),
                tuple(_unescape(o) for o in fields[5].split(",") if o), _unescape(fstype), _unescape(source),
                tuple(_unescape(o) for o in super_opts.split(",") if o)))
        except ValueError as exc:
            raise ValueError(f"malformed mountinfo line: {line!r}") from exc
    return entries


def mount_for(entries: list[MountEntry], path: PurePosixPath) -> MountEntry | None:
    """The mount that holds *path*: the longest mount point above it, the topmost if stacked."""
    holders = [e for e in entries if path == e.mount_point or e.mount_point in path.parents]
    return max(reversed(holders), key=lambda e: len(e.mount_point.parts), default=None)


def compared_options(entry: MountEntry) -> dict[str, str]:
    """The mount's options that must match between hosts (see the module docstring), by row label."""
    opts = entry.options()

    def present(*names: str) -> str:
        return ",".join(f"{n}={opts[n]}" if opts[n] else n for n in names if n in opts)

    read_only = "ro" in entry.mount_options or "ro" in entry.super_options
    rows = {"access": "ro" if read_only else "rw", "sync": present("sync"),
            "hard/soft": present("hard", "soft", "softerr"), "sec": opts.get("sec", ""),
            "proto": opts.get("proto", ""), "caching": present(*_CACHE_OPTIONS),
            "locking": present("local_lock", "nolock")}
    return {label: value for label, value in rows.items() if value}


@dataclass(frozen=True)
class PathStat:
    """Owner, group and mode of one path component; exists=False if stat could not see it."""

    path: PurePosixPath
    exists: bool
    uid: int = -1
    gid: int = -1
    mode: str = ""
    user: str = ""
    group: str = ""

    def describe(self) -> str:
        return "missing" if not self.exists else f"{self.mode} {self.user}:{self.group} ({self.uid}:{self.gid})"

    def same_as(self, other: PathStat) -> bool:
        """Equal by numbers (what NFS and the kernel check); names are shown, not compared."""
        return self.exists and other.exists and (self.uid, self.gid, self.mode) == (other.uid, other.gid, other.mode)


@dataclass(frozen=True)
class QemuAccess:
    """What *user* could do on the way to the target, as (path, test flag, allowed) in path order:
    -x for each directory, -r and -w for the image.  uid/gid None: no such user on the host."""

    user: str
    uid: int | None
    gid: int | None
    checks: tuple[tuple[PurePosixPath, str, bool], ...]

    def describe(self) -> str:
        if self.uid is None:
            return f"no user {self.user}"
        verbs = {"-x": "cannot search", "-r": "cannot read", "-w": "cannot write"}
        denied = [f"{verbs[flag]} {path}" for path, flag, ok in self.checks if not ok]
        return f"{self.user} {denied[0]}" if denied else f"ok as {self.user} ({self.uid}:{self.gid})"

    @property
    def ok(self) -> bool:
        return self.uid is not None and all(ok for _, _, ok in self.checks)


@dataclass(frozen=True)
class StorageFacts:
    """What one host shows at mount_point.  paths: each component from / down to the image
    (or to the mount point without one); mount: the mount holding mount_point."""

    host: str
    mount_point: PurePosixPath
    mount: MountEntry | None
    paths: tuple[PathStat, ...]
    image: PurePosixPath | None
    qemu: QemuAccess


def _components(path: PurePosixPath) -> list[PurePosixPath]:
    return [*reversed(path.parents), path]


def _run(host: Host, *argv: str) -> CommandResult:
    return host.run(*argv, check=False, timeout=COMMAND_TIMEOUT_S)


def _stat_paths(host: Host, paths: list[PurePosixPath]) -> tuple[PathStat, ...]:
    """stat every path in one command; a path stat cannot see (missing, no search) is exists=False."""
    res = _run(host, "stat", "-c", _STAT_FORMAT, "--", *map(str, paths))
    seen: dict[str, PathStat] = {}
    for line in res.stdout.splitlines():
        name, uid, gid, mode, user, group = line.rsplit("|", 5)  # '|' may occur in the name only
        seen[name] = PathStat(PurePosixPath(name), True, int(uid), int(gid), mode, user, group)
    return tuple(seen.get(str(p), PathStat(p, False)) for p in paths)


def _qemu_access(host: Host, user: str, target: PurePosixPath, is_image: bool) -> QemuAccess:
    ident = find_qemu_identity(host, user)
    if ident is None:
        return QemuAccess(user, None, None, ())
    dirs = _components(target.parent) if is_image else _components(target)
    wanted = [(d, "-x") for d in dirs] + ([(target, "-r"), (target, "-w")] if is_image else [])
    args = [str(ident.uid), str(ident.gid)] + [s for path, flag in wanted for s in (flag, str(path))]
    res = host.run_script(_ACCESS_SCRIPT, args=args, check=False, timeout=COMMAND_TIMEOUT_S)
    answers = res.stdout.split()
    if len(answers) != len(wanted):
        raise RuntimeError(f"{host.name}: access check as {user} gave {len(answers)} answers "
                           f"for {len(wanted)} tests: {res.stderr.strip()}")
    verdicts = tuple((p, f, a == "ok") for (p, f), a in zip(wanted, answers, strict=True))
    return QemuAccess(user, ident.uid, ident.gid, verdicts)


def gather(host: Host, mount_point: PurePosixPath, image: PurePosixPath | None, qemu_user: str) -> StorageFacts:
    """One host's storage facts at *mount_point* (and *image*, below it); only reads.

    The mount is looked up for the symlink-resolved path, as mountinfo lists resolved paths."""
    if image is not None and mount_point not in image.parents:
        raise ValueError(f"image {image} is not below the mount point {mount_point}")
    mountinfo = host.run("cat", "/proc/self/mountinfo", timeout=COMMAND_TIMEOUT_S).stdout
    resolved = _run(host, "readlink", "-m", "--", str(mount_point)).stdout.strip() or str(mount_point)
    target = image if image is not None else mount_point
    mount = mount_for(parse_mountinfo(mountinfo), PurePosixPath(resolved))
    return StorageFacts(host.name, mount_point, mount, _stat_paths(host, _components(target)), image,
                        _qemu_access(host, qemu_user, target, image is not None))


@dataclass(frozen=True)
class SentinelResult:
    """A token file written by *writer* under the mount point, looked for on *reader*; detail says why."""

    writer: str
    reader: str
    path: PurePosixPath
    written: bool
    seen: bool
    content_matches: bool
    detail: str

    @property
    def ok(self) -> bool:
        return self.written and self.seen and self.content_matches


def sentinel_roundtrip(writer: Host, reader: Host, mount_point: PurePosixPath, *,
                       as_user: str | None = None) -> SentinelResult:
    """Write a random token on *writer*, read it on *reader*, remove it; a mismatch is a result, not an error.

    *as_user* runs the three steps as that user: with root_squash, root is `nobody` to the
    server and often cannot create files where the qemu user can."""
    token = secrets.token_hex(16)
    path = mount_point / f".virtmig-sentinel-{token[:12]}"

    def result(written: bool, seen: bool, same: bool, detail: str) -> SentinelResult:
        return SentinelResult(writer.name, reader.name, path, written, seen, same, detail)

    as_writer: list[str] = []
    as_reader: list[str] = []
    if as_user is not None:
        ids = [(h, find_qemu_identity(h, as_user)) for h in (writer, reader)]
        missing = [h.name for h, ident in ids if ident is None]
        if missing:
            return result(False, False, False, f"no user {as_user} on {', '.join(missing)}")
        as_writer, as_reader = (i.setpriv() for _, i in ids if i is not None)
    content = f"{token} from {writer.name}"
    wrote = _run(writer, *as_writer, "sh", "-c", _WRITE_SCRIPT, "sentinel", str(path), content)
    if not wrote.ok:
        return result(False, False, False, f"cannot write on {writer.name}: {wrote.stderr.strip()}")
    reads: list[CommandResult] = []

    def visible() -> CommandResult | None:
        reads.append(_run(reader, *as_reader, "cat", "--", str(path)))
        return reads[-1] if reads[-1].ok else None

    try:
        wait_for(visible, target=f"{path} on {reader.name}", state="readable", timeout=SENTINEL_WAIT_S,
                 interval=0.5)
    except WaitTimeout:
        pass  # not seeing it is the finding, reported below with the last read's error
    finally:
        removed = _run(writer, *as_writer, "rm", "-f", "--", str(path))
    read = reads[-1]
    left = "" if removed.ok else f"; could not remove it: {removed.stderr.strip()}"
    if not read.ok:
        why = read.stderr.strip().rpartition(": ")[2]
        return result(True, False, False, f"not visible on {reader.name} ({why}): not the same storage?{left}")
    if read.stdout.strip() != content:
        return result(True, True, False, f"content differs on {reader.name}: {read.stdout.strip()[:80]!r}{left}")
    return result(True, True, True, f"seen on {reader.name}{left}")


@dataclass(frozen=True)
class Row:
    """One line of the report: a check, what each host shows, and whether that is acceptable."""

    check: str
    src: str
    dst: str
    ok: bool


@dataclass(frozen=True)
class StorageReport:
    """The check's outcome as rows, so a failure shows every difference at once, not the first."""

    src_name: str
    dst_name: str
    rows: tuple[Row, ...]

    @property
    def ok(self) -> bool:
        return all(row.ok for row in self.rows)

    @property
    def failures(self) -> tuple[Row, ...]:
        return tuple(row for row in self.rows if not row.ok)

    def table(self) -> str:
        """Plain text, one row per check, failing rows marked with FAIL_MARK in the first column."""
        head = ("check", self.src_name, self.dst_name)
        cells = [head] + [(r.check, " ".join(r.src.split()), " ".join(r.dst.split())) for r in self.rows]
        widths = [max(len(c[i]) for c in cells) for i in range(3)]
        blank = " " * len(FAIL_MARK)

        def line(mark: str, cols: tuple[str, str, str]) -> str:
            return f"{mark} " + " | ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()

        rule = "-" * (len(FAIL_MARK) + 1) + "-+-".join("-" * w for w in widths)
        body = [line(blank if r.ok else FAIL_MARK, c) for r, c in zip(self.rows, cells[1:], strict=True)]
        return "\n".join([line(blank, head), rule, *body])


class StorageMismatch(AssertionError):
    """The hosts do not share the storage as migration needs; `report` has the full table."""

    def __init__(self, report: StorageReport) -> None:
        self.report = report
        names = ", ".join(row.check for row in report.failures)
        super().__init__(f"shared storage differs between {report.src_name} and {report.dst_name} "
                         f"({names}):\n{report.table()}")


def require_shared(report: StorageReport) -> StorageReport:
    """Return *report* if every check passed, else raise StorageMismatch with its table."""
    if not report.ok:
        raise StorageMismatch(report)
    return report


def _same(check: str, src: str, dst: str) -> Row:
    return Row(check, src, dst, src == dst)


def _mount_rows(src: MountEntry | None, dst: MountEntry | None) -> list[Row]:
    if src is None or dst is None:  # only for a mountinfo without "/": keep the report honest
        return [Row("mount", "found" if src else "none", "found" if dst else "none", False)]
    rows = [_same("mounted at", str(src.mount_point), str(dst.mount_point)),
            _same("source", src.source_spec, dst.source_spec), _same("fstype", src.fstype, dst.fstype),
            _same("nfs version", src.nfs_version, dst.nfs_version)]
    src_opts, dst_opts = compared_options(src), compared_options(dst)
    labels = [*src_opts, *(k for k in dst_opts if k not in src_opts)]
    rows += [_same(f"option {k}", src_opts.get(k, "-"), dst_opts.get(k, "-")) for k in labels]
    return rows


def _path_rows(src: StorageFacts, dst: StorageFacts) -> list[Row]:
    src_by, dst_by = {p.path: p for p in src.paths}, {p.path: p for p in dst.paths}
    order = [*src_by, *(p for p in dst_by if p not in src_by)]
    rows = []
    for path in order:
        a, b = src_by.get(path), dst_by.get(path)
        rows.append(Row(f"{'image' if path in (src.image, dst.image) else 'dir'} {path}",
                        a.describe() if a else "(not checked)", b.describe() if b else "(not checked)",
                        a is not None and b is not None and a.same_as(b)))
    return rows


def compare(src: StorageFacts, dst: StorageFacts, sentinel: SentinelResult) -> StorageReport:
    """The rows of the shared-storage check; pure, no host is contacted.

    Path components compare uid, gid and mode numerically (NFS carries numbers) and fail if
    missing on either side; the qemu row needs every directory searchable and the image rw."""
    rows = [_same("path", str(src.mount_point), str(dst.mount_point))]
    rows += _mount_rows(src.mount, dst.mount)
    wrote = f"wrote {sentinel.path.name}" if sentinel.written else sentinel.detail
    seen = "seen" if sentinel.ok else sentinel.detail if sentinel.written else "-"
    rows.append(Row(f"sentinel {sentinel.writer} -> {sentinel.reader}",
                    *((wrote, seen) if sentinel.writer == src.host else (seen, wrote)), sentinel.ok))
    rows += _path_rows(src, dst)
    what = "image" if src.image is not None or dst.image is not None else "mount point"
    rows.append(Row(f"qemu user reaches {what}", src.qemu.describe(), dst.qemu.describe(),
                    src.qemu.ok and dst.qemu.ok))
    return StorageReport(src.host, dst.host, tuple(rows))
