"""ctypes binding of the part of libnfs the lab's NFS client uses (libnfs 4.0 and 5.0).

The lab's kernel has no NFS client, so `nfs_fuse` talks NFSv3 from user space
through libnfs's synchronous API.  One `Context` is one NFS session with one
AUTH_SYS credential: the server sees that uid, gid and group list, and applies
its export rules (root_squash, modes, ownership) to it.  A Context is not
thread-safe (libnfs 4.0 has no multithreaded sync API): callers hold its lock.

Signatures follow /usr/include/nfsc/libnfs.h of libnfs-dev 4.0.0 (Debian 12,
libnfs.so.13); libnfs 5.0.2 (Debian 13, libnfs.so.14) has the same functions
and structures for everything used here.  The library is found by soname and
loaded on first use, not at import: a machine without it must still be able
to load pytest's configuration (and say what to install when a mount is
actually attempted).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import os
import socket
import threading
from collections.abc import Sequence

_c_uint64 = ctypes.c_uint64


class NfsStat64(ctypes.Structure):
    """struct nfs_stat_64."""

    _fields_ = [(name, _c_uint64) for name in (
        "dev", "ino", "mode", "nlink", "uid", "gid", "rdev", "size", "blksize", "blocks",
        "atime", "mtime", "ctime", "atime_nsec", "mtime_nsec", "ctime_nsec", "used")]


class NfsStatvfs64(ctypes.Structure):
    """struct nfs_statvfs_64."""

    _fields_ = [(name, _c_uint64) for name in (
        "f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree", "f_favail",
        "f_fsid", "f_flag", "f_namemax")]


class NfsDirent(ctypes.Structure):
    """The leading fields of struct nfsdirent (only these are read)."""


NfsDirent._fields_ = [("next", ctypes.POINTER(NfsDirent)), ("name", ctypes.c_char_p)]


class Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


_P = ctypes.c_void_p
_S = ctypes.c_char_p
_I = ctypes.c_int
_SIGNATURES: dict[str, tuple[object, list[object]]] = {
    "nfs_init_context": (_P, []),
    "nfs_destroy_context": (None, [_P]),
    "nfs_get_error": (_S, [_P]),
    "nfs_set_uid": (None, [_P, _I]),
    "nfs_set_gid": (None, [_P, _I]),
    "nfs_set_auth": (None, [_P, _P]),
    "libnfs_authunix_create": (_P, [_S, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32,
                                    ctypes.POINTER(ctypes.c_uint32)]),
    "nfs_set_dircache": (None, [_P, _I]),
    "nfs_set_timeout": (None, [_P, _I]),
    "nfs_set_version": (_I, [_P, _I]),
    "nfs_mount": (_I, [_P, _S, _S]),
    "nfs_stat64": (_I, [_P, _S, ctypes.POINTER(NfsStat64)]),
    "nfs_lstat64": (_I, [_P, _S, ctypes.POINTER(NfsStat64)]),
    "nfs_fstat64": (_I, [_P, _P, ctypes.POINTER(NfsStat64)]),
    "nfs_open2": (_I, [_P, _S, _I, _I, ctypes.POINTER(_P)]),
    "nfs_create": (_I, [_P, _S, _I, _I, ctypes.POINTER(_P)]),
    "nfs_close": (_I, [_P, _P]),
    "nfs_pread": (_I, [_P, _P, _c_uint64, _c_uint64, _P]),
    "nfs_pwrite": (_I, [_P, _P, _c_uint64, _c_uint64, _P]),
    "nfs_fsync": (_I, [_P, _P]),
    "nfs_truncate": (_I, [_P, _S, _c_uint64]),
    "nfs_ftruncate": (_I, [_P, _P, _c_uint64]),
    "nfs_mkdir2": (_I, [_P, _S, _I]),
    "nfs_rmdir": (_I, [_P, _S]),
    "nfs_unlink": (_I, [_P, _S]),
    "nfs_rename": (_I, [_P, _S, _S]),
    "nfs_link": (_I, [_P, _S, _S]),
    "nfs_symlink": (_I, [_P, _S, _S]),
    "nfs_readlink2": (_I, [_P, _S, ctypes.POINTER(_S)]),
    "nfs_chmod": (_I, [_P, _S, _I]),
    "nfs_chown": (_I, [_P, _S, _I, _I]),
    "nfs_lchown": (_I, [_P, _S, _I, _I]),
    "nfs_utimes": (_I, [_P, _S, ctypes.POINTER(Timeval)]),
    "nfs_lutimes": (_I, [_P, _S, ctypes.POINTER(Timeval)]),
    "nfs_access": (_I, [_P, _S, _I]),
    "nfs_statvfs64": (_I, [_P, _S, ctypes.POINTER(NfsStatvfs64)]),
    "nfs_opendir": (_I, [_P, _S, ctypes.POINTER(_P)]),
    "nfs_readdir": (ctypes.POINTER(NfsDirent), [_P, _P]),
    "nfs_closedir": (None, [_P, _P]),
}


#: Sonames whose ABI this binding was checked against, newest first, with Debian's package.
KNOWN_SONAMES: tuple[tuple[str, str], ...] = (("libnfs.so.14", "libnfs14"), ("libnfs.so.13", "libnfs13"))


class LibnfsMissing(RuntimeError):
    """No libnfs with the functions this binding calls could be loaded."""


def _candidates() -> list[str]:
    """The known sonames, then whatever the linker cache calls libnfs (a newer soname)."""
    names = [soname for soname, _package in KNOWN_SONAMES]
    found = ctypes.util.find_library("nfs")
    if found and found not in names:
        names.append(found)
    return names


def load(candidates: Sequence[str] | None = None) -> ctypes.CDLL:
    """Load the first candidate that exists and has every function in _SIGNATURES.

    Why a check at load: a library missing one of them would otherwise fail
    with AttributeError in the middle of a FUSE request.  Raises LibnfsMissing
    naming what was tried and the Debian package to install.
    """
    tried: list[str] = []
    for soname in _candidates() if candidates is None else candidates:
        try:
            lib = ctypes.CDLL(soname, use_errno=True)
        except OSError as e:
            tried.append(f"{soname}: {e}")
            continue
        missing = [name for name in _SIGNATURES if not hasattr(lib, name)]
        if missing:
            tried.append(f"{soname}: lacks {', '.join(missing)}")
            continue
        for name, (res, args) in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.restype = res
            fn.argtypes = args
        return lib
    packages = " or ".join(f"{package} ({soname})" for soname, package in KNOWN_SONAMES)
    raise LibnfsMissing(f"no usable libnfs: install Debian's {packages}; tried " + "; ".join(tried))


@functools.cache
def library() -> ctypes.CDLL:
    """The process's libnfs, loaded and checked once."""
    return load()


class NfsError(OSError):
    """A libnfs call failed; errno is the server's (mapped) error, e.g. EACCES, EROFS."""


class Context:
    """One mounted NFS session with one AUTH_SYS credential, and the lock guarding it."""

    def __init__(self, server: str, export: str, uid: int, gid: int, groups: Sequence[int] = (),
                 *, version: int = 3, timeout_ms: int = 0) -> None:
        self.lock = threading.Lock()
        self.uid, self.gid = uid, gid
        self.lib = _lib = library()
        ctx = _lib.nfs_init_context()
        if not ctx:
            raise NfsError(errno.ENOMEM, "nfs_init_context failed")
        self.ptr: int = ctx
        # Set uid/gid first (each recreates the auth), then the full credential.
        _lib.nfs_set_uid(ctx, uid)
        _lib.nfs_set_gid(ctx, gid)
        gids = (ctypes.c_uint32 * max(len(groups), 1))(*groups[:16])
        auth = _lib.libnfs_authunix_create(socket.gethostname().encode(), uid, gid, min(len(groups), 16), gids)
        if auth:
            _lib.nfs_set_auth(ctx, auth)
        # No directory cache: attributes must come from the server every time.
        _lib.nfs_set_dircache(ctx, 0)
        if timeout_ms > 0:
            _lib.nfs_set_timeout(ctx, timeout_ms)
        if version != 3:
            self.check(_lib.nfs_set_version(ctx, version), "set_version")
        self.check(_lib.nfs_mount(ctx, server.encode(), export.encode()), f"mount {server}:{export}")

    def check(self, ret: int, what: str) -> int:
        """Raise NfsError for a negative (-errno) libnfs return."""
        if ret < 0:
            detail = self.lib.nfs_get_error(self.ptr)
            raise NfsError(-ret, f"{what}: {(detail or b'').decode(errors='replace') or os.strerror(-ret)}")
        return ret

    def close(self) -> None:
        if self.ptr:
            self.lib.nfs_destroy_context(self.ptr)
            self.ptr = 0

    # Path operations.  Paths are relative to the export's root ("/a/b").
    def stat(self, path: str, *, follow: bool = False) -> NfsStat64:
        st = NfsStat64()
        fn = self.lib.nfs_stat64 if follow else self.lib.nfs_lstat64
        self.check(fn(self.ptr, path.encode(), ctypes.byref(st)), f"stat {path}")
        return st

    def open(self, path: str, flags: int, mode: int = 0) -> int:
        fh = _P()
        self.check(self.lib.nfs_open2(self.ptr, path.encode(), flags, mode, ctypes.byref(fh)), f"open {path}")
        assert fh.value is not None
        return fh.value

    def create(self, path: str, flags: int, mode: int) -> int:
        fh = _P()
        self.check(self.lib.nfs_create(self.ptr, path.encode(), flags, mode, ctypes.byref(fh)), f"create {path}")
        assert fh.value is not None
        return fh.value

    def fstat(self, fh: int) -> NfsStat64:
        st = NfsStat64()
        self.check(self.lib.nfs_fstat64(self.ptr, fh, ctypes.byref(st)), "fstat")
        return st

    def close_fh(self, fh: int) -> None:
        self.check(self.lib.nfs_close(self.ptr, fh), "close")

    def pread(self, fh: int, size: int, offset: int) -> bytes:
        buf = ctypes.create_string_buffer(size)
        n = self.check(self.lib.nfs_pread(self.ptr, fh, offset, size, buf), "pread")
        return buf.raw[:n]

    def pwrite(self, fh: int, data: bytes, offset: int) -> int:
        return self.check(self.lib.nfs_pwrite(self.ptr, fh, offset, len(data), data), "pwrite")

    def fsync(self, fh: int) -> None:
        self.check(self.lib.nfs_fsync(self.ptr, fh), "fsync")

    def truncate(self, path: str, length: int) -> None:
        self.check(self.lib.nfs_truncate(self.ptr, path.encode(), length), f"truncate {path}")

    def ftruncate(self, fh: int, length: int) -> None:
        self.check(self.lib.nfs_ftruncate(self.ptr, fh, length), "ftruncate")

    def mkdir(self, path: str, mode: int) -> None:
        self.check(self.lib.nfs_mkdir2(self.ptr, path.encode(), mode), f"mkdir {path}")

    def rmdir(self, path: str) -> None:
        self.check(self.lib.nfs_rmdir(self.ptr, path.encode()), f"rmdir {path}")

    def unlink(self, path: str) -> None:
        self.check(self.lib.nfs_unlink(self.ptr, path.encode()), f"unlink {path}")

    def rename(self, old: str, new: str) -> None:
        self.check(self.lib.nfs_rename(self.ptr, old.encode(), new.encode()), f"rename {old}")

    def link(self, old: str, new: str) -> None:
        self.check(self.lib.nfs_link(self.ptr, old.encode(), new.encode()), f"link {old}")

    def symlink(self, target: str, linkpath: str) -> None:
        self.check(self.lib.nfs_symlink(self.ptr, target.encode(), linkpath.encode()), f"symlink {linkpath}")

    def readlink(self, path: str) -> str:
        out = _S()
        self.check(self.lib.nfs_readlink2(self.ptr, path.encode(), ctypes.byref(out)), f"readlink {path}")
        return (out.value or b"").decode(errors="surrogateescape")  # libnfs's buffer is leaked; rare call

    def chmod(self, path: str, mode: int) -> None:
        self.check(self.lib.nfs_chmod(self.ptr, path.encode(), mode), f"chmod {path}")

    def chown(self, path: str, uid: int, gid: int) -> None:
        self.check(self.lib.nfs_lchown(self.ptr, path.encode(), uid, gid), f"chown {path}")

    def utimes(self, path: str, atime_ns: int, mtime_ns: int) -> None:
        times = (Timeval * 2)(Timeval(atime_ns // 10**9, atime_ns % 10**9 // 1000),
                              Timeval(mtime_ns // 10**9, mtime_ns % 10**9 // 1000))
        self.check(self.lib.nfs_lutimes(self.ptr, path.encode(), times), f"utimes {path}")

    def access(self, path: str, mode: int) -> None:
        self.check(self.lib.nfs_access(self.ptr, path.encode(), mode), f"access {path}")

    def statvfs(self, path: str) -> NfsStatvfs64:
        st = NfsStatvfs64()
        self.check(self.lib.nfs_statvfs64(self.ptr, path.encode(), ctypes.byref(st)), f"statvfs {path}")
        return st

    def listdir(self, path: str) -> list[str]:
        d = _P()
        self.check(self.lib.nfs_opendir(self.ptr, path.encode(), ctypes.byref(d)), f"opendir {path}")
        names = []
        try:
            while ent := self.lib.nfs_readdir(self.ptr, d):
                names.append((ent.contents.name or b"").decode(errors="surrogateescape"))
        finally:
            self.lib.nfs_closedir(self.ptr, d)
        return names
