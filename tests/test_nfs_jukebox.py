"""The lab's NFS client retries NFS3ERR_JUKEBOX as the kernel's does, instead of handing EAGAIN to programs.

Only the retry rule, on a session that answers JUKEBOX a given number of
times (the real client talking to ganesha is tests/test_lab_nfs.py's).
"""

from __future__ import annotations

import errno
import threading

import pytest

from virtmig.lab import nfs_fuse
from virtmig.lab.libnfs import NfsError


class BusyThenFine:
    """A session whose truncate meets a busy server *busy* times, then succeeds."""

    def __init__(self, busy: int, error: int = errno.EAGAIN) -> None:
        self.lock = threading.Lock()
        self.busy, self.error, self.calls = busy, error, 0

    def truncate(self, path: str, length: int) -> None:
        self.calls += 1
        if self.calls <= self.busy:
            raise NfsError(self.error, f"truncate {path}: NFS3ERR_JUKEBOX")


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nfs_fuse, "JUKEBOX_INTERVAL_S", 0.01)
    monkeypatch.setattr(nfs_fuse, "JUKEBOX_RETRY_S", 0.5)


def test_jukebox_is_retried_until_the_server_answers() -> None:
    session = BusyThenFine(busy=3)
    assert nfs_fuse._retrying_jukebox(session, "truncate", ("/d/disk.raw", 64), path="/d/disk.raw") is None  # type: ignore[arg-type]
    assert session.calls == 4


def test_a_server_busy_past_the_bound_gives_eagain() -> None:
    session = BusyThenFine(busy=10**6)
    with pytest.raises(OSError) as info:  # mfusepy.FuseOSError, what FUSE turns into the errno
        nfs_fuse._retrying_jukebox(session, "truncate", ("/d/disk.raw", 64), path="/d/disk.raw")  # type: ignore[arg-type]
    assert info.value.errno == errno.EAGAIN and session.calls > 1


def test_other_errors_are_not_retried() -> None:
    session = BusyThenFine(busy=1, error=errno.EACCES)
    with pytest.raises(OSError) as info:  # mfusepy.FuseOSError, what FUSE turns into the errno
        nfs_fuse._retrying_jukebox(session, "truncate", ("/d/disk.raw", 64), path="/d/disk.raw")  # type: ignore[arg-type]
    assert info.value.errno == errno.EACCES and session.calls == 1
