"""SELinux and NFS: the mode, virt_use_nfs, the mount's context, and the denial diagnosed.

On a host where SELinux is disabled or absent (the embedded lab) every test
skips with that reason; tests/test_selinux_replay.py runs the same logic on
an enforcing host's recorded output.
"""

from __future__ import annotations

import libvirt
import pytest

from virtmig.diagnose import Cause, diagnose, gather_evidence, paths_in
from virtmig.diagnose.selinux import SelinuxState, context_type, file_context
from virtmig.guest import domains
from virtmig.host import Host
from virtmig.storage.shared import SharedStorage

pytestmark = [pytest.mark.selinux, pytest.mark.lab]


def test_getenforce(selinux: SelinuxState) -> None:
    assert selinux.mode in ("Enforcing", "Permissive")


def test_virt_use_nfs_is_readable(selinux: SelinuxState) -> None:
    assert selinux.virt_use_nfs is not None, "getsebool virt_use_nfs gave no answer"


def test_context_of_the_mount(selinux: SelinuxState, src_host: Host, shared_storage: SharedStorage) -> None:
    context = file_context(src_host, str(shared_storage.path))
    assert context_type(context) == "nfs_t", f"{shared_storage.path} has context {context}"


def test_virt_use_nfs_off_denies_start_and_is_diagnosed(
    virt_use_nfs_off: None, src_host: Host, src_conn: libvirt.virConnect, domain_xml: str, domain_name: str,
) -> None:
    domains.remove(src_conn, domain_name)
    try:
        with pytest.raises(libvirt.libvirtError) as failed:
            domains.define_and_start(src_conn, domain_xml)
        text = str(failed.value)
        evidence = gather_evidence(src_host, next(iter(paths_in(text)), None))
        assert evidence.avc, f"no AVC in the audit log after: {text}"
        found = diagnose(text, evidence)
        assert found.cause is Cause.SELINUX_VIRT_USE_NFS, found.text()
        assert "setsebool -P virt_use_nfs 1" in found.fix
    finally:
        domains.remove(src_conn, domain_name)
