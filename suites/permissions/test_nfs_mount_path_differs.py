"""The export is mounted on the destination, but at another path than on the source.

A directory of the case's own on the server (with a copy of the guest's
image), exported with the run's options, is mounted at <gate>/mnt on the
source (the domain XML's disk is <gate>/mnt/disk.raw) and at
<gate>/elsewhere on the destination, where <gate>/mnt does not exist.  The
incoming migration finds no image.  `No such file or directory` is also
what an unmounted destination prints: the evidence here is that the image
exists under another shared mount point, and the fix names both paths.
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


def test_mount_path_differs_on_destination(
    run_storage_untouched: None,
    gate: Gate, case_dir: CaseDir, src_case_mount: str, dst_mount_elsewhere: str, fix_mounts: FixMounts,
    src_host: Host, dst_host: Host, src_conn: libvirt.virConnect, dst_conn: libvirt.virConnect,
    domain_xml: str, guest_identity: GuestIdentity,
    domain_name: str, guest_files: dict[str, str], shared_storage: SharedStorage,
    case_cleanup: None,
) -> None:
    disk = f"{src_case_mount}/{case_dir.image}"
    assert dst_host.run("test", "-e", src_case_mount, check=False).rc != 0
    start_on(src_conn, dst_conn, with_disk(domain_xml, guest_files["disk"], disk), domain_name, guest_identity)

    outcome = migrate_failing(src_conn, dst_conn, dst_host, domain_name, shared_storage.unsafe)

    assert not outcome.ok, "migration succeeded although the export is mounted elsewhere on the destination"
    error = outcome.error or ""
    assert "No such file or directory" in error and disk in error, error
    found = diagnose_on(dst_host, error)
    assert found.cause is Cause.MOUNT_PATH_DIFFERS, found.text()
    assert f"it is at {dst_mount_elsewhere}," in found.fix and f"mount it at {src_case_mount} " in found.fix, (
        found.text())
    assert_left_intact(src_conn, dst_conn, domain_name, guest_identity)

    fix_mounts.mount(dst_host, case_dir.source, src_case_mount)
    assert_happy_path(src_conn, dst_conn, dst_host, domain_name, shared_storage.unsafe, guest_identity)
