"""SELinux and NFS: the mode, virt_use_nfs, the mount's context, and the denials diagnosed.

On a host where SELinux is disabled or absent (the embedded lab's h1 and h2)
every test skips with that reason; tests/test_selinux_replay.py runs the same
logic on an enforcing host's recorded output, and tests/test_realkernel_lab.py
runs this suite for real against the lab's real-kernel host k1.

The guest is started paused: every file is opened at QEMU's start, which is
what SELinux decides on, and a nested TCG guest that never runs costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePosixPath

import libvirt
import pytest

from fixtures.report import DIAGNOSIS_PROPERTY
from suites.selinux.steps import filed_diagnosis, with_local_disk
from virtmig.diagnose import Cause, diagnose, gather_evidence, paths_in
from virtmig.diagnose.selinux import SelinuxState, context_type, file_context
from virtmig.guest import domains
from virtmig.host import Host

pytestmark = [pytest.mark.selinux, pytest.mark.lab]

#: The type a file in a user's home has: QEMU (svirt_t) may not open it.
WRONG_TYPE = "user_home_t"


def test_getenforce(selinux: SelinuxState) -> None:
    assert selinux.mode in ("Enforcing", "Permissive")


def test_virt_use_nfs_is_readable(selinux: SelinuxState) -> None:
    assert selinux.virt_use_nfs is not None, "getsebool virt_use_nfs gave no answer"


def test_context_of_the_mount(selinux: SelinuxState, src_host: Host, guest_dir: PurePosixPath) -> None:
    context = file_context(src_host, str(guest_dir))
    assert context_type(context) == "nfs_t", f"{guest_dir} has context {context}"


def test_virt_use_nfs_off_denies_start_and_is_diagnosed(
    virt_use_nfs_off: None, src_host: Host, src_conn: libvirt.virConnect, domain_xml: str, domain_name: str,
    record_property: Callable[[str, object], None],
) -> None:
    domains.remove(src_conn, domain_name)
    try:
        with pytest.raises(libvirt.libvirtError) as failed:
            domains.define_and_start(src_conn, domain_xml, paused=True)
        text = str(failed.value)
        evidence = gather_evidence(src_host, next(iter(paths_in(text)), None))
        assert evidence.avc, f"no AVC in the audit log after: {text}"
        found = diagnose(text, evidence)
        record_property(DIAGNOSIS_PROPERTY, filed_diagnosis(text, found))
        assert found.cause is Cause.SELINUX_VIRT_USE_NFS, found.text()
        assert "setsebool -P virt_use_nfs 1" in found.fix
    finally:
        domains.remove(src_conn, domain_name)


def test_virt_use_nfs_on_starts_the_guest(
    virt_use_nfs_on: None, src_conn: libvirt.virConnect, domain_xml: str, domain_name: str,
) -> None:
    """The fix the diagnosis names, applied (until reboot): the same guest on the same mount starts."""
    domains.remove(src_conn, domain_name)
    try:
        domains.define_and_start(src_conn, domain_xml, paused=True)
        assert domains.state_name(src_conn, domain_name) == "paused"
    finally:
        domains.remove(src_conn, domain_name)


def test_wrong_label_on_a_local_image_is_denied_diagnosed_and_fixed(
    virt_use_nfs_on: None, src_host: Host, src_conn: libvirt.virConnect, domain_xml: str, domain_name: str,
    guest_files: dict[str, str], local_image: str, record_property: Callable[[str, object], None],
) -> None:
    """A local image labelled as a user's file: the start is denied, the diagnosis says relabel, restorecon fixes it.

    virt_use_nfs is on so that only the image's label is wrong (the guest's
    kernel and initrd stay on the NFS mount).  Under Debian's policy libvirtd
    itself is refused relabelling a user_home_t file for the domain ("unable
    to set security context 'system_u:object_r:svirt_image_t:...' on '...':
    Permission denied"); once restorecon gives it virt_image_t, libvirt
    relabels it and the guest starts.
    """
    xml = with_local_disk(domain_xml, guest_files["disk"], local_image)
    src_host.run("chcon", "-t", WRONG_TYPE, local_image)
    domains.remove(src_conn, domain_name)
    try:
        with pytest.raises(libvirt.libvirtError) as failed:
            domains.define_and_start(src_conn, xml, paused=True)
        text = str(failed.value)
        evidence = gather_evidence(src_host, next(iter(paths_in(text)), local_image))
        assert evidence.avc, f"no AVC in the audit log after: {text}"
        found = diagnose(text, evidence)
        record_property(DIAGNOSIS_PROPERTY, filed_diagnosis(text, found))
        assert found.cause is Cause.SELINUX_LABEL, found.text()
        assert "restorecon" in found.fix
        domains.remove(src_conn, domain_name)
        src_host.run("restorecon", "-v", local_image)
        assert context_type(file_context(src_host, local_image)) != WRONG_TYPE
        domains.define_and_start(src_conn, xml, paused=True)
        assert domains.state_name(src_conn, domain_name) == "paused"
    finally:
        domains.remove(src_conn, domain_name)
