"""What every permission case does and asserts: set up its disk, fail the migration, check, fix, retry.

Helpers the case files call and the types their fixtures (conftest.py) return.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

import libvirt
import pytest

from fixtures.guest import GuestIdentity
from virtmig import sshconfig
from virtmig.config import RunConfig
from virtmig.diagnose import Diagnosis, gather_evidence, paths_in
from virtmig.diagnose import diagnose as diagnose_text
from virtmig.guest import domains
from virtmig.guest.relay import agent_command_via
from virtmig.guest.waits import wait_for_agent
from virtmig.host import Host
from virtmig.journal import Recorder
from virtmig.migration.modes import DIRECT, P2P
from virtmig.migration.runner import MigrationOutcome, migrate
from virtmig.storage import exports
from virtmig.storage.exports import ExportSpec, Mounted, ProvisionedExport
from virtmig.storage.qemu_user import QemuIdentity
from virtmig.storage.shared import ServerExport
from virtmig.waiters import wait_for_command


def migrate_p2p(src: libvirt.virConnect, dst: libvirt.virConnect, dst_host: Host, name: str,
                unsafe: bool) -> MigrationOutcome:
    return migrate(src, dst, f"qemu+ssh://{dst_host.name}/system", name, P2P, unsafe=unsafe)


#: libvirt 9.0, peer-to-peer: when the destination fails, the source libvirtd often returns the
#: end of its tunnel to the destination (closed milliseconds later, same worker thread) instead
#: of the destination's error; its log has both.  Seen on the lab in one run of three to most.
TUNNEL_EOF = "End of file while reading data"


def migrate_failing(src: libvirt.virConnect, dst: libvirt.virConnect, dst_host: Host, name: str,
                    unsafe: bool) -> MigrationOutcome:
    """A migration expected to fail: peer-to-peer, as the happy path; if its error is only the
    tunnel's end (TUNNEL_EOF), the same migration once more driven by this client (DIRECT), which
    gets the destination's error from the destination's own API.  Both fail in the destination's
    prepare or finish step, on the same storage; the diagnosis needs that step's message."""
    outcome = migrate_p2p(src, dst, dst_host, name, unsafe)
    if outcome.ok or TUNNEL_EOF not in (outcome.error or ""):
        return outcome
    return migrate(src, dst, f"qemu+ssh://{dst_host.name}/system", name, DIRECT, unsafe=unsafe)


def diagnose_on(host: Host, error: str, server: Host | None = None) -> Diagnosis:
    """The diagnosis with *host*'s evidence (the destination's, for a failed incoming migration);
    with *server*, also the options of the NFS export holding the image, from the server's table."""
    return diagnose_text(error, gather_evidence(host, next(iter(paths_in(error)), None), server=server))


def assert_left_intact(src: libvirt.virConnect, dst: libvirt.virConnect, name: str, guest: GuestIdentity, *,
                       defined_on_dst: bool = False) -> None:
    """After a failed migration: the guest runs on the source, answers, and nothing is on the destination.

    defined_on_dst: the failure came in the destination's last step, resuming
    the guest ('cont'), after libvirt 9.0 had already made it persistent there
    (VIR_MIGRATE_PERSIST_DEST): it stays defined on the destination, shut
    off, no QEMU running.  The caller says so explicitly, and removes it.
    """
    expected = "shut off" if defined_on_dst else "absent"
    on_src, on_dst = domains.state_name(src, name), domains.state_name(dst, name)
    assert (on_src, on_dst) == ("running", expected), (
        f"after the failed migration: source {on_src}, destination {on_dst} (expected running, {expected})")
    assert agent_command_via(guest.relay)(guest.ip, guest.agent_port, "ping") == "ok pong"


def assert_happy_path(src: libvirt.virConnect, dst: libvirt.virConnect, dst_host: Host, name: str,
                      unsafe: bool, guest: GuestIdentity) -> None:
    """With the fix applied, the same migration succeeds and the guest answers from the destination."""
    outcome = migrate_p2p(src, dst, dst_host, name, unsafe)
    assert outcome.ok, f"after the fix the migration still fails: {outcome.error}"
    assert domains.state_name(dst, name) == "running"
    assert domains.state_name(src, name) == "absent"
    assert agent_command_via(guest.relay)(guest.ip, guest.agent_port, "ping") == "ok pong"


def wait_until_usable(host: Host, who: QemuIdentity, path: str, timeout: float = 30.0) -> None:
    """After a fix made on the server: wait until `who` can read and write `path` on `host`.

    NFS clients and servers cache attributes (ganesha and the lab's client for
    about a second, kernel clients for acregmin..acregmax), so a chown on the
    server reaches the hosts a little later; an operator waits too.
    """
    wait_for_command(host, *who.setpriv(), "test", "-r", path, "-a", "-w", path,
                     target=f"{path} on {host.name} as uid {who.uid}", state="readable and writable",
                     timeout=timeout, interval=0.5)


# -- the case's disk, exports and mounts (moved from conftest.py: helpers, not fixtures) -----------

#: How long a case's guest may take to answer its agent after it starts (TCG boots slowly).
BOOT_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class Gate:
    """The case's disk path, the same string on both hosts, set up differently on each."""

    dir: str
    disk: str


def with_disk(xml: str, shared_disk: str, disk: str, *, relabel: bool = True) -> str:
    """The domain XML with its disk at *disk*; relabel=False adds a per-disk DAC <seclabel relabel='no'/>,
    which turns dynamic ownership off for that disk without touching qemu.conf."""
    old = f"<source file='{shared_disk}'/>"
    assert old in xml, f"disk source {old} not in the domain XML"
    seclabel = "" if relabel else "<seclabel model='dac' relabel='no'/>"
    return xml.replace(old, f"<source file='{disk}'>{seclabel}</source>")


def start_on(conn: libvirt.virConnect, other: libvirt.virConnect, xml: str, name: str, guest: GuestIdentity) -> None:
    """Start the case's guest on *conn* (removing any leftover on both) and wait until it answers."""
    for c in (conn, other):
        domains.remove(c, name)
    domains.define_and_start(conn, xml)
    wait_for_agent(guest.ip, guest.agent_port, timeout=BOOT_TIMEOUT_S, send=agent_command_via(guest.relay))


#: Block names of a case's extra exports in /etc/exports (beside the run's own block).
CASE_EXPORT_TAG = "virtmig-permissions-case"
CASE_EXPORT_DST_TAG = "virtmig-permissions-case-dst"


@dataclass(frozen=True)
class GuestExport:
    """The guest's directory as the NFS server names it, and as the run's mount shows it."""

    server_dir: PurePosixPath
    client_dir: PurePosixPath


@dataclass(frozen=True)
class CaseDir:
    """A directory of the case's own on the server, beside the run's export, with a copy of the image.

    Beside, not inside: an export nested in the run's export changes what the
    hosts' existing mount of it sees (the lab's ganesha hands out handles of
    the inner export, stale once it is gone), which would leak into other tests.
    """

    server_dir: PurePosixPath
    source: str  # SERVER:DIR, for mount -t nfs
    image: str  # the image's file name in it


def extra_export(server: Host, run_export: ServerExport, spec: ExportSpec, tag: str,
                 journal: Recorder | None) -> Iterator[ExportSpec]:
    """A fixture's body: *spec* in the block *tag* of /etc/exports (journalled), and the file put back after."""
    if not isinstance(run_export, ProvisionedExport):
        pytest.skip("this case adds an export to /etc/exports: it needs --nfs-server-kind kernel")
    handle = exports.add_export(server, spec, tag, journal)
    try:
        yield spec
    finally:
        exports.remove_export(server, handle, journal)


def client_address(run_config: RunConfig, host: Host) -> str:
    """How the server knows *host* (its address in the ssh config), for an export's client list."""
    return sshconfig.resolve(run_config.ssh_config, host.name).hostname


class FixMounts:
    """Mounts a case makes as its fix (after the failure); all are journalled, and unmounted at teardown.

    *journals*: each host's journal by host name.
    """

    def __init__(self, journals: Mapping[str, Recorder]) -> None:
        self.journals = journals
        self.made: list[tuple[Host, Mounted, list[str]]] = []

    def mount(self, host: Host, source: str, mount_point: str) -> None:
        journal, entries = self.journals[host.name], []
        mounted = exports.mount_nfs(host, source, PurePosixPath(mount_point),
                                    before_change=lambda kind, **data: entries.append(journal.record(kind, **data)))
        if mounted is not None:
            self.made.append((host, mounted, entries))

    def undo(self) -> None:
        for host, mounted, entries in reversed(self.made):
            exports.unmount(host, mounted)
            for entry in entries:
                self.journals[host.name].done(entry)
