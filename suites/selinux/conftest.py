"""Wiring for the SELinux suite: the source's SELinux state, virt_use_nfs off or on for one test, a local image."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from virtmig.diagnose.selinux import VIRT_USE_NFS, SelinuxState, selinux_state, set_boolean
from virtmig.host import Host

#: A local image directory under libvirt's own, so the policy's label for it is virt_image_t.
LOCAL_IMAGE_DIR = "/var/lib/libvirt/images/virtmig-selinux"


@pytest.fixture(scope="module")
def selinux(src_host: Host) -> SelinuxState:
    """The source's SELinux state; the whole suite skips, saying why, where SELinux is not active."""
    state = selinux_state(src_host)
    reason = state.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    return state


def _virt_use_nfs(src_host: Host, selinux: SelinuxState, value: bool) -> Iterator[None]:
    """virt_use_nfs at *value* until reboot (not -P: the persistent value is never touched), then as it was."""
    if not selinux.enforcing:
        pytest.skip(f"SELinux is {selinux.mode} on {src_host.name}: a denial needs Enforcing")
    original = selinux_state(src_host).virt_use_nfs
    set_boolean(src_host, VIRT_USE_NFS, value)
    try:
        yield
    finally:
        if original is not None:
            set_boolean(src_host, VIRT_USE_NFS, original)


@pytest.fixture
def virt_use_nfs_off(src_host: Host, selinux: SelinuxState) -> Iterator[None]:
    """virt_use_nfs off for one test: the seed's failure."""
    yield from _virt_use_nfs(src_host, selinux, False)


@pytest.fixture
def virt_use_nfs_on(src_host: Host, selinux: SelinuxState) -> Iterator[None]:
    """virt_use_nfs on for one test: the diagnosis's fix, applied until reboot only."""
    yield from _virt_use_nfs(src_host, selinux, True)


@pytest.fixture
def local_image(src_host: Host, selinux: SelinuxState) -> Iterator[str]:
    """A blank raw image on the source's local disk, labelled as the policy says (restorecon); removed after."""
    path = f"{LOCAL_IMAGE_DIR}/disk.raw"
    src_host.run("rm", "-rf", "--one-file-system", LOCAL_IMAGE_DIR, check=False)
    src_host.run("mkdir", "-p", "-m", "0755", LOCAL_IMAGE_DIR)
    try:
        src_host.run("truncate", "-s", "16M", path)
        src_host.run("restorecon", "-R", LOCAL_IMAGE_DIR)
        yield path
    finally:
        src_host.run("rm", "-rf", "--one-file-system", LOCAL_IMAGE_DIR, check=False)
