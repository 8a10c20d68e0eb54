"""A directory above the image without search permission on the destination only.

The source reaches the image; the destination's QEMU (an unprivileged user)
cannot walk the path, so the incoming migration fails and the diagnosis must
name that directory and `chmod o+x`.  Applying that fix makes it pass.
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
from virtmig.host import Host
from virtmig.storage.shared import SharedStorage

pytestmark = [pytest.mark.permissions, pytest.mark.lab]


def test_parent_without_search_bit_on_destination(
    gate: Gate, case_cleanup: None, src_host: Host, dst_host: Host,
    src_conn: libvirt.virConnect, dst_conn: libvirt.virConnect,
    domain_xml: str, guest_identity: GuestIdentity,
    domain_name: str, guest_files: dict[str, str], shared_storage: SharedStorage,
) -> None:
    for host in (src_host, dst_host):
        host.run("ln", "-s", guest_files["disk"], gate.disk)
    start_on(src_conn, dst_conn, with_disk(domain_xml, guest_files["disk"], gate.disk), domain_name, guest_identity)
    dst_host.run("chmod", "0700", gate.dir)

    outcome = migrate_failing(src_conn, dst_conn, dst_host, domain_name, shared_storage.unsafe)

    assert not outcome.ok, "migration succeeded although the destination's QEMU cannot reach the image"
    assert "Permission denied" in (outcome.error or "")
    found = diagnose_on(dst_host, outcome.error or "")
    assert found.cause is Cause.DAC_PARENT_NOT_SEARCHABLE, found.text()
    assert found.fix.startswith(f"chmod o+x {gate.dir} "), found.text()
    assert_left_intact(src_conn, dst_conn, domain_name, guest_identity)

    dst_host.run("chmod", "o+x", gate.dir)
    assert_happy_path(src_conn, dst_conn, dst_host, domain_name, shared_storage.unsafe, guest_identity)
