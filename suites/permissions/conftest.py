"""Wiring for the permission cases: a per-host local directory in front of the shared image.

`/var/lib/libvirt` is local to each hypervisor (in the lab too: bound per
host), so a directory there can differ between source and destination while
the image behind it stays the one on shared storage.  Each case points the
guest's disk at `<gate>/disk.raw`, sets up the gate per host, and removes it.

The NFS cases also change the server and the mounts, each in a fixture of
its own here: an extra export of the guest's directory (in a tagged block of
/etc/exports, put back byte for byte), mounts of it inside the gate.  The
run's own export and its mounts at --mount-point are never touched, so a
case's bad state cannot leak into the next test.  Tests list `case_cleanup`
after these fixtures: the guest goes first at teardown, then the mounts it
used, then the exports.  Fixtures only: what the cases call themselves (and
the types these fixtures return) is in suites/permissions/steps.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import PurePosixPath

import libvirt
import pytest

from fixtures.journal import RunJournals
from suites.permissions.steps import (
    CASE_EXPORT_TAG,
    CaseDir,
    FixMounts,
    Gate,
    GuestExport,
    extra_export,
)
from virtmig.config import RunConfig
from virtmig.guest import domains
from virtmig.host import Host
from virtmig.journal import Journal
from virtmig.storage import exports
from virtmig.storage.exports import ExportSpec
from virtmig.storage.qemu_user import QemuIdentity
from virtmig.storage.shared import GATE_ROOT, ServerExport, StorageConfig


@pytest.fixture
def gate(request: pytest.FixtureRequest, src_host: Host, dst_host: Host, pair_lock: list[str],
         run_journals: RunJournals) -> Iterator[Gate]:
    """The case's gate directory on both hosts, journalled (a killed run's is removed by the next run)."""
    name = request.node.name.replace("[", "-").replace("]", "")
    d = f"{GATE_ROOT}/{name}"
    entries = []
    # --one-file-system: a mount left inside the gate (an aborted run) is skipped, not emptied
    for host, journal in ((src_host, run_journals.src), (dst_host, run_journals.dst)):
        host.run("rm", "-rf", "--one-file-system", d, check=False)
        entries.append((journal, journal.record("dir", path=d)))
        host.run("mkdir", "-p", "-m", "0755", d)
    yield Gate(d, f"{d}/disk.raw")
    for host in (src_host, dst_host):
        host.run("rm", "-rf", "--one-file-system", d, check=False)
    for journal, entry in entries:
        journal.done(entry)


@pytest.fixture
def case_cleanup(src_conn: libvirt.virConnect, dst_conn: libvirt.virConnect, domain_name: str) -> Iterator[None]:
    """Whatever happens, the case's guest is gone from both hosts afterwards."""
    yield
    for conn in (src_conn, dst_conn):
        domains.remove(conn, domain_name)


# -- NFS cases: the server, extra exports, mounts inside the gate ---------------

@pytest.fixture(autouse=True)
def server_turn_for_the_case(server_turn: Callable[[], AbstractContextManager[None]]) -> Iterator[None]:
    """In a run of several pairs, a case has the NFS server to itself (`fixtures.hosts.server_turn`).

    Its extra blocks and its directories beside the export are named per
    case, and `run_storage_untouched` compares the whole exports file, so
    no other pair may change the file meanwhile.  First of the case's
    fixtures (autouse), so the turn covers all of them.
    """
    with server_turn():
        yield


@pytest.fixture(scope="session")
def nfs_server(storage_config: StorageConfig, nfs_export: ServerExport | None, server_host: Host | None) -> Host:
    """The NFS server over SSH: the NFS cases change its exports and files (never the run's own)."""
    if nfs_export is None or not storage_config.mounts or server_host is None:
        pytest.skip("NFS cases need the export provisioned by virtmig (--nfs-server/--export or the lab, "
                    "no --no-provision) and mounted on the hosts (--disk-access mount)")
    return server_host


def _run_storage(nfs_server: Host, hosts: tuple[Host, ...], mount_point: PurePosixPath) -> list[str]:
    """The run's storage as the hosts show it: /etc/exports and what is mounted at --mount-point."""
    exports_text = nfs_server.run("cat", exports.EXPORTS, check=False).stdout
    return [exports_text] + [f"{h.name}: {exports.current_source(h, mount_point)}" for h in hosts]


@pytest.fixture
def run_storage_untouched(nfs_server: Host, src_host: Host, dst_host: Host, run_config: RunConfig,
                          nfs_export: ServerExport) -> Iterator[None]:
    """Listed first by the NFS cases: after all their teardowns, the run's export and mounts are as before."""
    before = _run_storage(nfs_server, (src_host, dst_host), run_config.mount_point)
    yield
    after = _run_storage(nfs_server, (src_host, dst_host), run_config.mount_point)
    assert after == before, f"the case left the run's storage changed: {before} -> {after}"


@pytest.fixture
def guest_export(nfs_server: Host, nfs_export: ServerExport, domain_name: str,
                 guest_files: dict[str, str]) -> GuestExport:
    """Where the guest's files are on the server (the run's work dir holds one directory per guest)."""
    client_dir = PurePosixPath(guest_files["disk"]).parent
    assert client_dir.name == domain_name, f"guest files not in a per-guest directory: {client_dir}"
    return GuestExport(nfs_export.workdir / domain_name, client_dir)


@pytest.fixture
def case_dir(nfs_server: Host, nfs_export: ServerExport, guest_export: GuestExport, qemu_user: QemuIdentity,
             guest_files: dict[str, str], run_journals: RunJournals) -> Iterator[CaseDir]:
    """<export>-virtmig-case on the server (journalled), owned by the qemu user, holding a copy of the guest's
    image (the guest does not write its disk in these cases: the copy holds what the image holds)."""
    export = nfs_export.spec.path
    d = export.parent / f"{export.name}-virtmig-case"
    image = PurePosixPath(guest_files["disk"]).name
    owner = f"{qemu_user.uid}:{qemu_user.gid}"
    journal = _server_journal(run_journals)
    nfs_server.run("rm", "-rf", "--one-file-system", str(d))
    entry = journal.record("dir", path=str(d))
    nfs_server.run("install", "-d", "-o", str(qemu_user.uid), "-g", str(qemu_user.gid), "-m", "0755", str(d))
    nfs_server.run("cp", "--sparse=always", str(guest_export.server_dir / image), str(d / image))
    nfs_server.run("chown", owner, str(d / image))
    yield CaseDir(d, f"{nfs_server.name}:{d}", image)
    nfs_server.run("rm", "-rf", "--one-file-system", str(d), check=False)
    journal.done(entry)


def _server_journal(run_journals: RunJournals) -> Journal:
    """The NFS server's journal (the NFS cases run only where virtmig provisioned the export: there is one)."""
    assert run_journals.server is not None, "the NFS cases need the export provisioned by virtmig"
    return run_journals.server


@pytest.fixture
def case_export(nfs_server: Host, nfs_export: ServerExport, case_dir: CaseDir,
                run_journals: RunJournals) -> Iterator[ExportSpec]:
    """The case's directory exported with the run's options, to both hosts."""
    spec = ExportSpec(case_dir.server_dir, nfs_export.spec.clients, nfs_export.spec.options)
    yield from extra_export(nfs_server, nfs_export, spec, CASE_EXPORT_TAG, run_journals.server)


def _mounted(host: Host, source: str, mount_point: str, journal: Journal) -> Iterator[str]:
    made = FixMounts({host.name: journal})
    made.mount(host, source, mount_point)
    assert made.made, f"{source} was mounted at {mount_point} on {host.name} already"
    try:
        yield mount_point
    finally:
        made.undo()


@pytest.fixture
def src_case_mount(src_host: Host, gate: Gate, case_dir: CaseDir, case_export: ExportSpec,
                   run_journals: RunJournals) -> Iterator[str]:
    """The case's export mounted on the source at <gate>/mnt (the mount point the domain XML assumes)."""
    yield from _mounted(src_host, case_dir.source, f"{gate.dir}/mnt", run_journals.src)


@pytest.fixture
def dst_mount_elsewhere(dst_host: Host, gate: Gate, case_dir: CaseDir, case_export: ExportSpec,
                        run_journals: RunJournals) -> Iterator[str]:
    """The same export mounted on the destination, but at <gate>/elsewhere."""
    yield from _mounted(dst_host, case_dir.source, f"{gate.dir}/elsewhere", run_journals.dst)


@pytest.fixture
def dst_case_mount(dst_host: Host, gate: Gate, case_dir: CaseDir, case_export: ExportSpec,
                   run_journals: RunJournals) -> Iterator[str]:
    """The case's export mounted on the destination at <gate>/mnt, as on the source."""
    yield from _mounted(dst_host, case_dir.source, f"{gate.dir}/mnt", run_journals.dst)


@pytest.fixture
def fix_mounts(gate: Gate, src_host: Host, dst_host: Host, run_journals: RunJournals) -> Iterator[FixMounts]:
    """A case's fix-up mounts (inside the gate), journalled, and undone whatever happened."""
    made = FixMounts({src_host.name: run_journals.src, dst_host.name: run_journals.dst})
    yield made
    made.undo()
