"""The destination has the mount point, but nothing is mounted on it.

A directory of the case's own on the server (with a copy of the guest's
image), exported with the run's options, is mounted at <gate>/mnt on the
source; on the destination <gate>/mnt is an empty local directory, as after
a boot where the fstab entry failed.  The incoming migration finds no
image.  Unlike a mount at another path, no shared mount on the destination
holds the image: the diagnosis says to mount the storage at <gate>/mnt.
"""

from __future__ import annotations

import libvirt
import pytest

from fixtures.guest import GuestIdentity
from suites.permissions.steps import (
    CaseDir,
    FixMounts,
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


def test_destination_not_mounted(
    run_storage_untouched: None,
    gate: Gate, case_dir: CaseDir, src_case_mount: str, fix_mounts: FixMounts,
    src_host: Host, dst_host: Host, src_conn: libvirt.virConnect, dst_conn: libvirt.virConnect,
    domain_xml: str, guest_identity: GuestIdentity,
    domain_name: str, guest_files: dict[str, str], shared_storage: SharedStorage,
    case_cleanup: None,
) -> None:
    disk = f"{src_case_mount}/{case_dir.image}"
    dst_host.run("mkdir", "-m", "0755", src_case_mount)  # inside the gate: removed with it
    start_on(src_conn, dst_conn, with_disk(domain_xml, guest_files["disk"], disk), domain_name, guest_identity)

    outcome = migrate_failing(src_conn, dst_conn, dst_host, domain_name, shared_storage.unsafe)

    assert not outcome.ok, "migration succeeded although nothing is mounted on the destination"
    error = outcome.error or ""
    assert "No such file or directory" in error and disk in error, error
    found = diagnose_on(dst_host, error)
    assert found.cause is Cause.DESTINATION_NOT_MOUNTED, found.text()
    assert f"mount the shared storage on {dst_host.name} at {src_case_mount}," in found.fix, found.text()
    assert_left_intact(src_conn, dst_conn, domain_name, guest_identity)

    fix_mounts.mount(dst_host, case_dir.source, src_case_mount)
    assert_happy_path(src_conn, dst_conn, dst_host, domain_name, shared_storage.unsafe, guest_identity)
