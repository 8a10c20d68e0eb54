"""Issue #14's stretch, measured: a live migration from the real-kernel host k1 to the lab host h1 over real NFS.

The storage is k1's kernel NFS export, mounted at the same path with k1's
kernel client and with the lab's client (libnfs) on h1.  libvirt judges a
migration's safety on the source: k1's disk is on a real `nfs4` mount, so the
hop k1 -> h1 runs without VIR_MIGRATE_UNSAFE.  The way back is refused
without it, as it should be: h1's mount is a FUSE file system, which libvirt
does not count as shared storage (the lab's other runs say so and use --unsafe).

The domain is the smallest that shows the path: 64 MiB, no operating system
(the firmware finds nothing to boot and waits), its disk on the shared
mount.  Its QEMU on k1 runs on TCG inside k1's TCG, so the figures printed
are nested-TCG figures, not a host's.  virtmig's own suites do not run this
pair: their shared-storage check refuses a pair whose NFS clients differ.

Its own target (`make realkernel-migration`): k1's boot and this hop would
take `make test` past issue #14's budget for the real-kernel tests.
"""

from __future__ import annotations

import contextlib
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import PurePosixPath

import libvirt
import pytest

from virtmig.lab import realkernel
from virtmig.lab.topology import H1, SSH_CONFIG
from virtmig.migration.clocks import measure_offset
from virtmig.migration.jobstats import JobStats
from virtmig.migration.modes import DIRECT
from virtmig.migration.runner import read_completed_stats
from virtmig.sshhost import SshHost
from virtmig.storage import exports

pytestmark = [pytest.mark.lab, pytest.mark.realkernel_migration]

EXPORT = PurePosixPath("/srv/vm-stretch")
MOUNT = PurePosixPath("/mnt/nfs-stretch")
DOMAIN = "virtmig-stretch"


def _domain_xml(disk: PurePosixPath) -> str:
    return f"""<domain type='qemu'>
  <name>{DOMAIN}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <cpu mode='custom' match='exact'><model fallback='forbid'>qemu64</model></cpu>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <memballoon model='none'/>
  </devices>
</domain>"""


@pytest.fixture
def shared_mount(k1: SshHost) -> Iterator[tuple[SshHost, PurePosixPath]]:
    """k1's kernel export, mounted at MOUNT on k1 (kernel client) and on h1 (the lab's client); h1 and the
    qcow2 image made as the qemu user; all of it taken back after."""
    qemu_ids = tuple(int(k1.run("id", "-" + flag, "libvirt-qemu").stdout) for flag in ("u", "g"))
    spec = exports.ExportSpec(EXPORT, (realkernel.K1.ip, "localhost", H1.ip), "rw,sync,no_subtree_check,root_squash")
    with contextlib.ExitStack() as stack, SshHost(H1.name, SSH_CONFIG) as h1:
        handle = exports.provision_export(k1, spec, (qemu_ids[0], qemu_ids[1]), "work")
        stack.callback(exports.restore_exports, k1, handle)
        for host in (k1, h1):
            mounted = exports.mount_nfs(host, f"{realkernel.K1.ip}:{EXPORT}", MOUNT)
            if mounted is not None:
                stack.callback(exports.unmount, host, mounted)
        disk = MOUNT / "work" / "stretch.qcow2"
        k1.run("runuser", "-u", "libvirt-qemu", "--", "qemu-img", "create", "-q", "-f", "qcow2", str(disk), "64M")
        yield h1, disk


@pytest.fixture
def k1_knows_h1(k1: SshHost) -> Iterator[None]:
    """h1 in k1's /etc/hosts, put back after: in the direct mode h1's libvirtd hands k1's QEMU a
    tcp://h1:PORT to connect to, and k1's image knows only itself."""
    before = k1.read_text("/etc/hosts")
    k1.write_text("/etc/hosts", f"{before}{H1.ip} {H1.name}\n", mode=0o644)
    yield
    k1.write_text("/etc/hosts", before, mode=0o644)


@pytest.fixture
def virt_use_nfs_on(k1: SshHost) -> Iterator[None]:
    """The boolean on for the test (not -P: the persistent value stays), put back as it was."""
    was = k1.run("getsebool", "virt_use_nfs").stdout.split()[-1]
    k1.run("setsebool", "virt_use_nfs", "1")
    yield
    k1.run("setsebool", "virt_use_nfs", "1" if was == "on" else "0")


def _remove(conn: libvirt.virConnect) -> None:
    with contextlib.suppress(libvirt.libvirtError):
        dom = conn.lookupByName(DOMAIN)
        if dom.isActive():
            dom.destroy()
        dom.undefine()


def _without_selinux_label(xml: str) -> str:
    """The domain's XML for h1: k1's svirt label dropped (h1 has no SELinux, and libvirt there refuses a
    domain that carries one: "Security driver model 'selinux' is not available")."""
    root = ET.fromstring(xml)
    for label in root.findall("seclabel[@model='selinux']"):
        root.remove(label)
    return ET.tostring(root, encoding="unicode")


def test_live_migration_from_the_real_kernel_host_over_kernel_nfs(
        k1: SshHost, shared_mount: tuple[SshHost, PurePosixPath], virt_use_nfs_on: None, k1_knows_h1: None) -> None:
    """k1 -> h1 in the direct mode without VIR_MIGRATE_UNSAFE: it runs on h1 and is gone from k1.  The way back
    without it is refused by libvirt as unsafe (h1's mount is FUSE)."""
    h1, disk = shared_mount
    source = libvirt.open(k1.libvirt_uri())
    destination = libvirt.open(h1.libvirt_uri())
    try:
        started = time.monotonic()
        dom = source.defineXML(_domain_xml(disk))
        dom.create()
        start_s = time.monotonic() - started
        assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
        params = {libvirt.VIR_MIGRATE_PARAM_DEST_XML:
                  _without_selinux_label(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE))}
        began = time.monotonic()
        try:
            moved = dom.migrate3(destination, params, DIRECT.flags)  # LIVE, PERSIST_DEST, UNDEFINE_SOURCE; no UNSAFE
        except libvirt.libvirtError as exc:
            denials = k1.run("ausearch", "-m", "avc", "-i", "-ts", "recent", check=False).stdout
            pytest.fail(f"k1 -> h1 failed: {exc}\nk1's recent AVC denials:\n{denials}")
        wall_s = time.monotonic() - began
        assert moved.state()[0] == libvirt.VIR_DOMAIN_RUNNING, "the domain does not run on h1"
        assert DOMAIN not in {d.name() for d in source.listAllDomains()}, "the domain is still on k1"
        stats = read_completed_stats(destination, DOMAIN) or JobStats()
        # libvirt's downtime spans the two hosts' clocks, and k1, a VM, keeps its own: its offset says how much
        # of the figure is the clocks'.
        offsets = [measure_offset(host) for host in (k1, h1)]
        print(f"\nk1 -> h1 over k1's kernel NFS (source on nested TCG), direct, no --unsafe: start on k1 "
              f"{start_s:.1f} s; migration {wall_s:.2f} s wall, libvirt total {stats.time_elapsed_ms} ms, "
              f"downtime {stats.downtime_ms} ms, memory {(stats.memory_processed_bytes or 0) / 2**20:.1f} MiB "
              f"in {stats.memory_iteration} passes; clock offsets to this machine: " +
              ", ".join(f"{o.host} {o.offset_ms:+.1f} ms ±{o.uncertainty_ms:.1f}" for o in offsets))
        with pytest.raises(libvirt.libvirtError, match="Migration without shared storage is unsafe"):
            moved.migrate3(source, {}, DIRECT.flags)
    finally:
        _remove(destination)
        _remove(source)
        destination.close()
        source.close()
