"""Image mode 0600 owned by another user, dynamic ownership off, on the destination.

`<seclabel model='dac' relabel='no'/>` on the disk turns dynamic ownership
off for it (no qemu.conf change, no libvirtd restart).  On the destination
the disk path holds a 0600 root-owned image, which its QEMU (unprivileged)
cannot open: QEMU's own `Could not open '...': Permission denied`.  The
same image also refuses a plain start, which is checked first.
"""

from __future__ import annotations

import libvirt
import pytest

from fixtures.guest import GuestIdentity
from suites.permissions.steps import (
    Gate,
    assert_happy_path,
    assert_left_intact,
    diagnose_on,
    migrate_failing,
    start_on,
    with_disk,
)
from virtmig.diagnose import Cause
from virtmig.guest import domains
from virtmig.host import Host
from virtmig.storage.shared import SharedStorage

pytestmark = [pytest.mark.permissions, pytest.mark.lab]


def test_image_0600_root_relabel_off(
    gate: Gate, case_cleanup: None, src_host: Host, dst_host: Host,
    src_conn: libvirt.virConnect, dst_conn: libvirt.virConnect,
    domain_xml: str, guest_identity: GuestIdentity,
    domain_name: str, guest_files: dict[str, str], shared_storage: SharedStorage,
) -> None:
    xml = with_disk(domain_xml, guest_files["disk"], gate.disk, relabel=False)
    # A root-owned 0600 image: starting from it fails with QEMU's own message.
    src_host.run("truncate", "-s", "16M", gate.disk)
    src_host.run("chmod", "0600", gate.disk)
    domains.remove(src_conn, domain_name)
    with pytest.raises(libvirt.libvirtError) as refused:
        domains.define_and_start(src_conn, xml)
    start_error = str(refused.value)
    assert f"'{gate.disk}'" in start_error and "Permission denied" in start_error, start_error
    found = diagnose_on(src_host, start_error)
    assert found.cause is Cause.DAC_IMAGE_NOT_ACCESSIBLE, found.text()
    domains.remove(src_conn, domain_name)

    # The source reaches the shared image (owned by the qemu user); the destination still has the 0600 one.
    src_host.run("rm", "-f", gate.disk)
    src_host.run("ln", "-s", guest_files["disk"], gate.disk)
    dst_host.run("truncate", "-s", "16M", gate.disk)
    dst_host.run("chmod", "0600", gate.disk)
    start_on(src_conn, dst_conn, xml, domain_name, guest_identity)

    outcome = migrate_failing(src_conn, dst_conn, dst_host, domain_name, shared_storage.unsafe)

    assert not outcome.ok, "migration succeeded although the destination's image is 0600 root"
    found = diagnose_on(dst_host, outcome.error or "")
    assert found.cause is Cause.DAC_IMAGE_NOT_ACCESSIBLE, found.text()
    assert "chown libvirt-qemu" in found.fix or "chown qemu" in found.fix, found.fix
    assert_left_intact(src_conn, dst_conn, domain_name, guest_identity)

    dst_host.run("rm", "-f", gate.disk)
    dst_host.run("ln", "-s", guest_files["disk"], gate.disk)
    assert_happy_path(src_conn, dst_conn, dst_host, domain_name, shared_storage.unsafe, guest_identity)
