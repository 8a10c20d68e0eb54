"""The lab's real-kernel host k1 as module fixtures, for the test modules that use it.

A module raises k1 once (its boot under TCG costs 30-50 s) and holds the
lab's lock meanwhile: the inner runs, with --src/--dst, take no lock.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from filelock import FileLock

from virtmig.lab import lifecycle, realkernel
from virtmig.lab.realkernel_image import ImageUnavailable
from virtmig.lab.topology import LAB_LOCK, SSH_CONFIG
from virtmig.sshhost import SshHost


@pytest.fixture(scope="module")
def real_kernel_host() -> Iterator[str]:
    """The lab up with k1 added, held for the module (the inner run, with --src/--dst, takes no lock)."""
    with FileLock(str(LAB_LOCK), timeout=3600):
        was_up = lifecycle.is_up()
        if not was_up:
            lifecycle.up()
        try:
            try:
                state = realkernel.up()
            except ImageUnavailable as exc:
                pytest.skip(f"no real-kernel host: {exc}")
            print(realkernel.timings(state))
            yield realkernel.K1.name
        finally:
            realkernel.stop()
            if not was_up:
                lifecycle.down()


@pytest.fixture(scope="module")
def k1(real_kernel_host: str) -> Iterator[SshHost]:
    """One SSH connection to k1 for the module's own checks: each new login to the TCG VM costs 1.5-4 s."""
    with SshHost(real_kernel_host, SSH_CONFIG) as host:
        yield host
