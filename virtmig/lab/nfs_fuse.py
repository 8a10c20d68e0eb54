"""Lab adapter: `mount -t nfs SERVER:/EXPORT DIR` through a user-space NFS client.

This kernel has no NFS client, so inside the lab's hypervisor nodes
`/sbin/mount.nfs` (the helper mount(8) runs for type nfs) is replaced by a
launcher of this module.  It starts a FUSE file system (mfusepy on libfuse3)
whose every request is performed on the NFS server through libnfs with the
*caller's* credential: one libnfs session per (uid, gid, groups), as the
kernel client sends each process's AUTH_SYS credential.  No permission is
checked locally (no `default_permissions`): the server's root_squash, modes
and ownership decide, and its errors come back as errno (EACCES, EPERM,
EROFS, ENOENT, ...).  QEMU runs as libvirt-qemu, so the mount has allow_other.

Caching is kept short so that changes made on the server or by the other
host show up: entries are revalidated at every lookup (entry_timeout=0, also
so that a cached path is not traversed without the server checking the
caller's search permission), attributes live 1 s (like `actimeo=1`), the page
cache is dropped at open (close-to-open), writes go through, close and fsync
COMMIT on the server.  Opens with O_DIRECT (QEMU cache=none) bypass the page
cache (FUSE direct_io).

mountinfo shows the mount as `SERVER:/EXPORT` of type `fuse.nfs`.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import subprocess
import sys
import threading
import time
from ctypes.util import find_library
from pathlib import Path
from typing import Any

# mfusepy prefers libfuse2 when both are installed; this client is tested on libfuse3.
os.environ.setdefault("FUSE_LIBRARY_PATH", find_library("fuse3") or "")
import mfusepy  # type: ignore[import-untyped]  # noqa: E402

from virtmig.lab import launcher
from virtmig.lab.libnfs import Context, NfsError, NfsStat64
from virtmig.lab.netns import Node
from virtmig.waiters import WaitTimeout, wait_for

#: Where the daemon logs inside a node (the node's private /run).
LOG_DIR = Path("/run/virtmig-nfs")
#: Mount options of nfs(5) that this client honours; others are accepted and ignored.
_PASSED_TO_FUSE = {"ro", "rw"}
#: How long `mount.nfs` waits for its daemon's FUSE mount to appear (libnfs connects and mounts first).
MOUNT_TIMEOUT_S = 30.0
#: utimensat(2)'s tv_nsec markers, as libfuse hands them on (with tv_sec 0).
_UTIME_NOW, _UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2


def _groups_of(pid: int) -> tuple[int, ...]:
    """Supplementary groups of the calling process (FUSE gives only uid, gid, pid)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Groups:"):
                return tuple(int(g) for g in line.split()[1:])
    except (OSError, ValueError):
        pass
    return ()


#: NFS3ERR_JUKEBOX ("the server is busy with this file, try again": libnfs gives EAGAIN).  The kernel's
#: client never passes it to applications: on a hard mount it waits NFS_JUKEBOX_RETRY_TIME (5 s) and
#: retries.  The lab's client retries too, sooner and for a bounded time, so that a `truncate` or an
#: open no longer fails with EAGAIN, an error NFS files do not have (seen right after a killed run).
JUKEBOX_RETRY_S, JUKEBOX_INTERVAL_S = 60.0, 0.5


def _retrying_jukebox(ctx: Context, fn: str, args: tuple[Any, ...], *, path: object) -> Any:
    """`ctx.fn(*args)` under the session's lock, retried while the server answers JUKEBOX; errno for FUSE."""
    def attempt() -> tuple[Any] | None:
        try:
            with ctx.lock:
                return (getattr(ctx, fn)(*args),)
        except NfsError as err:
            if err.errno == errno.EAGAIN:
                return None
            raise mfusepy.FuseOSError(err.errno) from None

    try:
        return wait_for(attempt, target=f"NFS {fn} of {path}", state="answered without NFS3ERR_JUKEBOX",
                        timeout=JUKEBOX_RETRY_S, interval=JUKEBOX_INTERVAL_S)[0]
    except WaitTimeout:
        raise mfusepy.FuseOSError(errno.EAGAIN) from None


class NfsFuse(mfusepy.Operations):  # type: ignore[misc]
    """FUSE operations performed on the NFS server with the caller's credential."""

    use_ns = True

    def __init__(self, server: str, export: str, *, version: int = 3, timeout_ms: int = 0) -> None:
        self.server, self.export = server, export
        self.version, self.timeout_ms = version, timeout_ms
        self._contexts: dict[tuple[int, int, tuple[int, ...]], Context] = {}
        self._contexts_lock = threading.Lock()
        self._files: dict[int, tuple[Context, int]] = {}
        self._next_fh = itertools.count(1)

    # Credentials -----------------------------------------------------------
    def context(self, uid: int | None = None, gid: int | None = None) -> Context:
        """The caller's session, created (and NFS-mounted) at its first request."""
        if uid is None or gid is None:
            uid, gid, pid = mfusepy.fuse_get_context()
            groups = _groups_of(pid) if pid else ()
        else:
            groups = ()
        key = (uid, gid, groups)
        with self._contexts_lock:
            ctx = self._contexts.get(key)
            if ctx is None:
                ctx = Context(self.server, self.export, uid, gid, groups,
                              version=self.version, timeout_ms=self.timeout_ms)
                self._contexts[key] = ctx
            return ctx

    def _call(self, fn: str, *args: Any) -> Any:
        return _retrying_jukebox(self.context(), fn, args, path=args[0] if args else "?")

    def _file(self, fi: Any) -> tuple[Context, int]:
        try:
            return self._files[fi.fh]
        except KeyError:
            raise mfusepy.FuseOSError(errno.EBADF) from None

    def _fcall(self, fi: Any, fn: str, *args: Any) -> Any:
        """A call on an open file, with the credential of whoever opened it."""
        ctx, nfh = self._file(fi)
        return _retrying_jukebox(ctx, fn, (nfh, *args), path=f"open file {fi.fh}")

    # Attributes ------------------------------------------------------------
    @staticmethod
    def _attrs(st: NfsStat64) -> dict[str, int]:
        return {
            "st_mode": st.mode, "st_ino": st.ino, "st_nlink": st.nlink, "st_uid": st.uid, "st_gid": st.gid,
            "st_rdev": st.rdev, "st_size": st.size, "st_blksize": st.blksize or 4096,
            "st_blocks": st.blocks or (st.used + 511) // 512,
            "st_atime": st.atime * 10**9 + st.atime_nsec, "st_mtime": st.mtime * 10**9 + st.mtime_nsec,
            "st_ctime": st.ctime * 10**9 + st.ctime_nsec,
        }

    def getattr(self, path: str, fh: Any = None) -> dict[str, int]:
        if fh is not None and getattr(fh, "fh", 0) in self._files:
            return self._attrs(self._fcall(fh, "fstat"))
        return self._attrs(self._call("stat", path))

    def access(self, path: str, amode: int) -> int:
        self._call("access", path, amode)
        return 0

    def chmod(self, path: str, mode: int) -> int:
        self._call("chmod", path, mode & 0o7777)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        if uid == -1 or gid == -1 or uid == 0xFFFFFFFF or gid == 0xFFFFFFFF:
            st = self._call("stat", path)
            uid = st.uid if uid in (-1, 0xFFFFFFFF) else uid
            gid = st.gid if gid in (-1, 0xFFFFFFFF) else gid
        self._call("chown", path, uid, gid)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        now = time.time_ns()
        atime, mtime = times if times is not None else (now, now)
        if _UTIME_OMIT in (atime, mtime):  # libfuse passes utimensat's markers through
            st = self._call("stat", path)
            atime = st.atime * 10**9 + st.atime_nsec if atime == _UTIME_OMIT else atime
            mtime = st.mtime * 10**9 + st.mtime_nsec if mtime == _UTIME_OMIT else mtime
        atime, mtime = (now if t == _UTIME_NOW else t for t in (atime, mtime))
        self._call("utimes", path, atime, mtime)
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        st = self._call("statvfs", path)
        return {name: getattr(st, name) for name in (
            "f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree", "f_favail",
            "f_namemax")}

    # Files -----------------------------------------------------------------
    def _register(self, fi: Any, ctx: Context, nfh: int) -> int:
        fi.fh = next(self._next_fh)
        self._files[fi.fh] = (ctx, nfh)
        if fi.flags & os.O_DIRECT:
            fi.direct_io = 1  # QEMU cache=none: no page cache, every request to the server
        return 0

    def open(self, path: str, fi: Any) -> int:
        ctx = self.context()
        flags = fi.flags & (os.O_ACCMODE | os.O_TRUNC | os.O_SYNC)
        nfh = _retrying_jukebox(ctx, "open", (path, flags), path=path)
        return self._register(fi, ctx, nfh)

    def create(self, path: str, mode: int, fi: Any) -> int:
        ctx = self.context()
        flags = fi.flags & (os.O_ACCMODE | os.O_EXCL | os.O_TRUNC | os.O_SYNC) | os.O_CREAT
        nfh = _retrying_jukebox(ctx, "create", (path, flags, mode & 0o7777), path=path)
        return self._register(fi, ctx, nfh)

    def read(self, path: str, size: int, offset: int, fh: Any) -> bytes:
        data: bytes = self._fcall(fh, "pread", size, offset)
        return data

    def write(self, path: str, data: bytes, offset: int, fh: Any) -> int:
        written: int = self._fcall(fh, "pwrite", data, offset)
        return written

    def truncate(self, path: str, length: int, fh: Any = None) -> int:
        if fh is not None and getattr(fh, "fh", 0) in self._files:
            self._fcall(fh, "ftruncate", length)
        else:
            self._call("truncate", path, length)
        return 0

    def flush(self, path: str, fh: Any) -> int:
        self._fcall(fh, "fsync")  # close-to-open: data is committed when a descriptor closes
        return 0

    def fsync(self, path: str, datasync: int, fh: Any) -> int:
        self._fcall(fh, "fsync")
        return 0

    def release(self, path: str, fh: Any) -> int:
        ctx, nfh = self._files.pop(fh.fh, (None, 0))
        if ctx is not None:
            with ctx.lock, contextlib.suppress(NfsError):
                ctx.close_fh(nfh)
        return 0

    # Names -----------------------------------------------------------------
    def readdir(self, path: str, fh: Any) -> list[str]:
        names: list[str] = self._call("listdir", path)
        return names

    def mkdir(self, path: str, mode: int) -> int:
        self._call("mkdir", path, mode & 0o7777)
        return 0

    def rmdir(self, path: str) -> int:
        self._call("rmdir", path)
        return 0

    def unlink(self, path: str) -> int:
        self._call("unlink", path)
        return 0

    def rename(self, old: str, new: str) -> int:
        self._call("rename", old, new)
        return 0

    def link(self, target: str, source: str) -> int:
        self._call("link", source, target)
        return 0

    def symlink(self, target: str, source: str) -> int:
        self._call("symlink", source, target)
        return 0

    def readlink(self, path: str) -> str:
        link: str = self._call("readlink", path)
        return link

    def destroy(self, path: str) -> None:
        with self._contexts_lock:
            for ctx in self._contexts.values():
                ctx.close()
            self._contexts.clear()


def parse_options(opts: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for word in opts.split(","):
        key, _, value = word.strip().partition("=")
        if key:
            out[key] = value
    return out


def serve(source: str, mountpoint: str, opts: dict[str, str]) -> None:
    """Run the FUSE file system in the foreground until it is unmounted."""
    server, _, export = source.partition(":")
    version = int((opts.get("vers") or opts.get("nfsvers") or "3").split(".")[0])
    timeout_ms = int(opts.get("timeo", "0")) * 100 if "soft" in opts else 0
    ops = NfsFuse(server, export or "/", version=version, timeout_ms=timeout_ms)
    ops.context(0, 0)  # fail now, before mounting, if the server refuses us
    actimeo = float(opts.get("actimeo", "0" if "noac" in opts else "1"))
    fuse_opts: dict[str, Any] = {k: True for k in _PASSED_TO_FUSE if k in opts}
    mfusepy.FUSE(ops, mountpoint, foreground=True, raw_fi=True, allow_other=True, fsname=source, subtype="nfs",
                 entry_timeout=0, negative_timeout=0, attr_timeout=actimeo, **fuse_opts)


def mount_helper(argv: list[str]) -> int:
    """mount.nfs SOURCE DIR [-o opts] [-s -r -w -n -v -f]: start the daemon, return when mounted."""
    positional: list[str] = []
    opts = ""
    args = iter(argv)
    for arg in args:
        if arg == "-o":
            opts = next(args, "")
        elif arg in ("-r", "-w"):
            opts += ",ro" if arg == "-r" else ",rw"
        elif arg.startswith("-"):
            continue  # -s (sloppy), -n (no mtab), -v, -f: nothing to do
        else:
            positional.append(arg)
    if len(positional) != 2 or ":" not in positional[0]:
        print("usage: mount.nfs remotetarget dir [-o nfsoptions]", file=sys.stderr)
        return 1
    source, mountpoint = positional[0], os.path.realpath(positional[1])
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = LOG_DIR / f"{mountpoint.strip('/').replace('/', '_') or 'root'}.log"
    with log.open("ab") as out:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "virtmig.lab.nfs_fuse", "--serve", source, mountpoint, "-o", opts.strip(",")],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def settled() -> str | None:
        if is_mounted(mountpoint, source):
            return "mounted"
        return "exited" if daemon.poll() is not None else None

    try:
        outcome = wait_for(settled, target=f"{source} on {mountpoint}",
                           state=f"mounted by its daemon (pid {daemon.pid})", timeout=MOUNT_TIMEOUT_S, interval=0.05,
                           describe=lambda: "daemon running, mount not in /proc/self/mountinfo")
    except WaitTimeout as exc:
        daemon.kill()
        print(f"mount.nfs: {exc}", file=sys.stderr)
        return 32
    if outcome == "exited":
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        print(f"mount.nfs: {source} on {mountpoint} failed: {' / '.join(tail)}", file=sys.stderr)
        return 32
    return 0


def is_mounted(mountpoint: str, source: str | None = None) -> bool:
    """Is a fuse.nfs file system (from `source`) mounted on `mountpoint` in this namespace?"""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" - ")
        left, right = fields[0].split(), fields[1].split()
        if left[4] == mountpoint and right[0] == "fuse.nfs" and source in (None, right[1]):
            return True
    return False


def setup_node(node: Node, state_dir: Path) -> None:
    """Bind a launcher of this module over /sbin/mount.nfs, inside `node` only.

    mount(8) runs helpers from /sbin only (not PATH), and a bind needs an
    existing target: nfs-common provides /sbin/mount.nfs (and showmount).
    """
    path = launcher.write_launcher(state_dir / "mount.nfs", "virtmig.lab.nfs_fuse", what="mount.nfs(8)")
    node.bind(path, "/sbin/mount.nfs")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--serve"]:
        opts = argv[argv.index("-o") + 1] if "-o" in argv else ""
        serve(argv[1], argv[2], parse_options(opts))
        return 0
    return mount_helper(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
