"""root_squash refusing root: the destination's image is root's, mode 0600, on the NFS server.

Dynamic ownership is on (libvirt's default): before QEMU starts, libvirt
(root) chowns the image to the qemu user.  On a root_squash export the
server treats root as nobody and refuses the chown (EPERM, which libvirt
ignores), and QEMU, unprivileged, cannot open a 0600 root file.  Plain DAC
would print the same `Permission denied`; the evidence that tells them apart
is that root on the destination cannot open the file either, although root
passes any mode: the server squashes it.  The fix is the server's chown.

The gate lets the destination open another file than the source at the
same path: the source's gate links to the guest's image, the destination's
to a root-owned copy made on the server (the guest does not write its disk
in these cases, so the copy holds what the image holds).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

import libvirt
import pytest

from fixtures.guest import GuestIdentity
from suites.permissions.steps import (
    Gate,
    GuestExport,
    assert_happy_path,
    assert_left_intact,
    diagnose_on,
    migrate_failing,
    start_on,
    wait_until_usable,
    with_disk,
)
from virtmig.diagnose import Cause
from virtmig.host import Host
from virtmig.storage.qemu_user import QemuIdentity
from virtmig.storage.shared import ServerExport, SharedStorage

pytestmark = [pytest.mark.permissions, pytest.mark.lab]


@dataclass(frozen=True)
class RootOwnedImage:
    """One file, named as the server and as the hosts' mount see it."""

    server_path: PurePosixPath
    client_path: PurePosixPath


@pytest.fixture
def root_owned_image(nfs_server: Host, nfs_export: ServerExport, guest_export: GuestExport,
                     guest_files: dict[str, str]) -> Iterator[RootOwnedImage]:
    """A copy of the guest's image made by root on the server: root:root, mode 0600."""
    if "no_root_squash" in nfs_export.spec.options.split(","):
        pytest.skip(f"the export has no_root_squash ({nfs_export.spec.options}): root is not squashed")
    name = "root-owned.raw"
    image = RootOwnedImage(guest_export.server_dir / name, guest_export.client_dir / name)
    disk = guest_export.server_dir / PurePosixPath(guest_files["disk"]).name
    nfs_server.run("rm", "-f", str(image.server_path))
    nfs_server.run("cp", "--sparse=always", str(disk), str(image.server_path))
    nfs_server.run("chown", "0:0", str(image.server_path))
    nfs_server.run("chmod", "0600", str(image.server_path))
    yield image
    nfs_server.run("rm", "-f", str(image.server_path), check=False)


def test_root_squash_refuses_libvirts_chown(
    run_storage_untouched: None,
    gate: Gate, root_owned_image: RootOwnedImage, nfs_server: Host, qemu_user: QemuIdentity,
    src_host: Host, dst_host: Host, src_conn: libvirt.virConnect, dst_conn: libvirt.virConnect,
    domain_xml: str, guest_identity: GuestIdentity,
    domain_name: str, guest_files: dict[str, str], shared_storage: SharedStorage,
    case_cleanup: None,
) -> None:
    src_host.run("ln", "-s", guest_files["disk"], gate.disk)
    dst_host.run("ln", "-s", str(root_owned_image.client_path), gate.disk)
    start_on(src_conn, dst_conn, with_disk(domain_xml, guest_files["disk"], gate.disk), domain_name, guest_identity)

    outcome = migrate_failing(src_conn, dst_conn, dst_host, domain_name, shared_storage.unsafe)

    assert not outcome.ok, "migration succeeded although the destination's image is root's 0600 on root_squash"
    error = outcome.error or ""
    assert "Permission denied" in error and gate.disk in error, error
    found = diagnose_on(dst_host, error, server=nfs_server)
    assert found.cause is Cause.NFS_ROOT_SQUASH, found.text()
    chown = f"chown {qemu_user.uid}:{qemu_user.gid} {nfs_server.name}:{root_owned_image.server_path}"
    assert chown in found.fix, found.text()
    assert_left_intact(src_conn, dst_conn, domain_name, guest_identity)

    nfs_server.run("chown", f"{qemu_user.uid}:{qemu_user.gid}", str(root_owned_image.server_path))
    wait_until_usable(dst_host, qemu_user, gate.disk)
    assert_happy_path(src_conn, dst_conn, dst_host, domain_name, shared_storage.unsafe, guest_identity)
