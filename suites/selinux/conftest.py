"""Wiring for the SELinux suite: the source's SELinux state, and virt_use_nfs off for one test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from virtmig.diagnose.selinux import VIRT_USE_NFS, SelinuxState, selinux_state, set_boolean
from virtmig.host import Host


@pytest.fixture(scope="module")
def selinux(src_host: Host) -> SelinuxState:
    """The source's SELinux state; the whole suite skips, saying why, where SELinux is not active."""
    state = selinux_state(src_host)
    reason = state.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    return state


@pytest.fixture
def virt_use_nfs_off(src_host: Host, selinux: SelinuxState) -> Iterator[None]:
    """virt_use_nfs off (until reboot, not -P) for one test; the original value restored after."""
    if not selinux.enforcing:
        pytest.skip(f"SELinux is {selinux.mode} on {src_host.name}: a denial needs Enforcing")
    original = selinux.virt_use_nfs
    set_boolean(src_host, VIRT_USE_NFS, False)
    try:
        yield
    finally:
        if original is not None:
            set_boolean(src_host, VIRT_USE_NFS, original)
