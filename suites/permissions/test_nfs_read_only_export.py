"""A read-only export (exports(5) `ro`) for the destination, read-write for the source.

The case's directory on the server is exported in two lines of
/etc/exports: `rw` to the source, `ro` to the destination, and mounted at
the same path on both (read-write: the client does not know; only the
server refuses).  The destination's QEMU needs the image read-write and
cannot have it, but libvirt has QEMU open the image with auto-read-only:
the destination starts, takes the RAM, and fails only when it resumes the
guest ('cont'), after libvirt has made the guest persistent there, so a
shut-off definition is left on the destination (checked, then removed).
An NFS client that asks the server for access before
opening gets EACCES rather than EROFS: the diagnosis must not take it for a
file-mode problem (the qemu user owns the file and its mode grants write),
and names read-only storage, confirmed by the server's export table.  The
fix is `rw` for the destination.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import libvirt
import pytest

from fixtures.guest import GuestIdentity
from fixtures.journal import RunJournals
from suites.permissions.steps import (
    CASE_EXPORT_DST_TAG,
    CASE_EXPORT_TAG,
    CaseDir,
    Gate,
    assert_happy_path,
    assert_left_intact,
    client_address,
    diagnose_on,
    extra_export,
    migrate_failing,
    start_on,
    with_disk,
)
from virtmig.config import RunConfig
from virtmig.diagnose import Cause
from virtmig.guest import domains
from virtmig.host import Host
from virtmig.storage import exports
from virtmig.storage.exports import ExportSpec
from virtmig.storage.shared import ServerExport, SharedStorage

pytestmark = [pytest.mark.permissions, pytest.mark.lab]


@pytest.fixture
def dst_ro_export(nfs_server: Host, nfs_export: ServerExport, case_dir: CaseDir, dst_host: Host,
                  run_config: RunConfig, run_journals: RunJournals) -> Iterator[ExportSpec]:
    """The case's directory exported read-only to the destination (the run's options, rw turned ro)."""
    options = [("ro" if o == "rw" else o) for o in nfs_export.spec.options.split(",")]
    options = options if "ro" in options else ["ro", *options]
    spec = ExportSpec(case_dir.server_dir, (client_address(run_config, dst_host),), ",".join(options))
    yield from extra_export(nfs_server, nfs_export, spec, CASE_EXPORT_DST_TAG, run_journals.server)


@pytest.fixture
def case_export(nfs_server: Host, nfs_export: ServerExport, case_dir: CaseDir, src_host: Host,
                run_config: RunConfig, dst_ro_export: ExportSpec, run_journals: RunJournals) -> Iterator[ExportSpec]:
    """Here the source only gets the run's (read-write) export of the case's directory."""
    spec = ExportSpec(case_dir.server_dir, (client_address(run_config, src_host),), nfs_export.spec.options)
    yield from extra_export(nfs_server, nfs_export, spec, CASE_EXPORT_TAG, run_journals.server)


def test_read_only_export_on_destination(
    run_storage_untouched: None,
    gate: Gate, case_dir: CaseDir, dst_ro_export: ExportSpec, src_case_mount: str, dst_case_mount: str,
    nfs_server: Host, src_host: Host, dst_host: Host, src_conn: libvirt.virConnect, dst_conn: libvirt.virConnect,
    domain_xml: str, guest_identity: GuestIdentity,
    domain_name: str, guest_files: dict[str, str], shared_storage: SharedStorage,
    case_cleanup: None,
) -> None:
    assert src_case_mount == dst_case_mount
    disk = f"{src_case_mount}/{case_dir.image}"
    start_on(src_conn, dst_conn, with_disk(domain_xml, guest_files["disk"], disk), domain_name, guest_identity)

    outcome = migrate_failing(src_conn, dst_conn, dst_host, domain_name, shared_storage.unsafe)

    assert not outcome.ok, "migration succeeded although the destination's export is read-only"
    error = outcome.error or ""
    assert disk in error and ("Permission denied" in error or "Read-only file system" in error), error
    found = diagnose_on(dst_host, error, server=nfs_server)
    assert found.cause is Cause.READ_ONLY_STORAGE, found.text()
    assert "rw in /etc/exports" in found.fix, found.text()
    assert "the export is ro" in found.evidence_lines, found.text()
    if "'cont'" in error:
        # libvirt 9 (Debian 12) asks QEMU for auto-read-only: QEMU opened the image read-only
        # and took the RAM; only resuming needs write access, and by then libvirt had defined
        # the guest on the destination (--persistent).  It is left there shut off: checked, then removed.
        assert any("leaves it shut off" in line for line in found.evidence_lines), found.text()
        assert_left_intact(src_conn, dst_conn, domain_name, guest_identity, defined_on_dst=True)
        domains.remove(dst_conn, domain_name)
    else:
        # libvirt 11 (Debian 13) opens the image read-write from the start: QEMU fails to
        # open it, before any memory moved, and nothing is left on the destination.
        assert "Could not open" in error, error
        assert_left_intact(src_conn, dst_conn, domain_name, guest_identity)

    rw = ",".join("rw" if o == "ro" else o for o in dst_ro_export.options.split(","))
    exports.set_export(nfs_server, replace(dst_ro_export, options=rw), CASE_EXPORT_DST_TAG)
    assert_happy_path(src_conn, dst_conn, dst_host, domain_name, shared_storage.unsafe, guest_identity)
