"""A lab of four hypervisors (`python -m virtmig.lab up --hypervisors 4`), raised, reached and removed.

Every hypervisor is reached as a site's host is, through virtmig's Host
interface over SSH (SshHost with the lab's ssh config): it answers as
itself, its libvirtd answers, the export the harness provisions mounts at
the same path on all four, and each host reaches every other node by name
(libvirtd's own ssh, for peer-to-peer migration, goes that way).  The
inventory `up` writes lists them.  Then `down` leaves no namespace, link,
process or file.  `lab_lock` raises the default lab again afterwards if it
was up.  The unit tests of the same generalisation are in
tests/test_lab_hypervisors_unit.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import PurePosixPath

import pytest

from virtmig import sshconfig
from virtmig.host import Host
from virtmig.lab import lifecycle
from virtmig.lab.netns import is_alive, lab_netns_names, netns_pids
from virtmig.lab.network import link_exists
from virtmig.lab.topology import BRIDGE, INVENTORY, LAB_ROOT, SSH_CONFIG, with_hypervisors
from virtmig.sshhost import SshHost
from virtmig.storage import exports
from virtmig.storage.exports import ExportSpec, Mounted
from virtmig.storage.qemu_user import qemu_identity

pytestmark = pytest.mark.lab

FOUR = with_hypervisors(4)
#: The work directory the test makes in the export (the harness's own is virtmig/<guest>).
WORKDIR = "virtmig-four-hosts"
#: Each hypervisor ssh-es to every node by name and prints the hostname that answers.
REACH_ALL = 'for n in "$@"; do printf "%s=" "$n"; ssh -n "$n" hostname || echo FAILED; done'


@pytest.fixture
def four_hosts(lab_lock: bool) -> Iterator[dict[str, Host]]:
    """The lab raised with four hypervisors, and an SshHost to each node (closed afterwards)."""
    started = time.monotonic()
    lifecycle.up(FOUR)
    print(f"lab of 4 hypervisors up in {time.monotonic() - started:.1f} s")
    with ExitStack() as stack:
        yield {n.name: stack.enter_context(SshHost(n.name, SSH_CONFIG)) for n in FOUR.nodes}


def test_a_lab_of_four_hypervisors_answers_shares_the_export_and_goes_down_clean(
        four_hosts: dict[str, Host]) -> None:
    assert lifecycle.is_up(FOUR) and not lifecycle.is_up(), "the lab that is up is the four-host one"
    names = [n.name for n in FOUR.nodes]
    for node in FOUR.hypervisors:
        host = four_hosts[node.name]
        assert host.run("hostname").stdout.strip() == node.name
        assert host.run("virsh", "-c", "qemu:///system", "uri").stdout.strip() == "qemu:///system", \
            f"libvirtd on {node.name} does not answer"
        assert host.run("ip", "route", "show", "default").stdout.strip() == "", "a lab host has no default route"
        reached = host.run_script(REACH_ALL, args=names, timeout=60).stdout.split()
        assert reached == [f"{n}={n}" for n in names], f"{node.name} does not reach every node by name"

    _the_export_mounts_at_the_same_path_on_every_hypervisor(four_hosts)
    _the_inventory_lists_them()

    holders = [pid for spec in FOUR.nodes for pid in netns_pids(spec.netns)]
    assert holders, "an up lab has processes in its namespaces"
    for host in four_hosts.values():
        assert isinstance(host, SshHost)
        host.close()
    lifecycle.down()
    assert lab_netns_names() == []
    assert not link_exists(BRIDGE) and not any(link_exists(n.veth_outer) for n in FOUR.nodes)
    assert not LAB_ROOT.exists()
    assert [pid for pid in holders if is_alive(pid)] == [], "down leaves no process behind"


def _the_export_mounts_at_the_same_path_on_every_hypervisor(hosts: dict[str, Host]) -> None:
    """The export, provisioned and mounted the harness's way; a directory made on the server is seen by all."""
    server = hosts[FOUR.nfs.name]
    hypervisors = [hosts[n.name] for n in FOUR.hypervisors]
    clients = tuple(sshconfig.resolve(SSH_CONFIG, h.name).hostname for h in hypervisors)
    spec = ExportSpec(PurePosixPath(str(FOUR.export)), clients)
    qemu = qemu_identity(hypervisors[0])
    handle = exports.provision_export(server, spec, (qemu.uid, qemu.gid), WORKDIR)
    mounted: list[tuple[Host, Mounted]] = []
    try:
        exports.wait_listed(hypervisors, FOUR.nfs.name, spec.path, listed=True)
        source = f"{FOUR.nfs.name}:{FOUR.export}"
        for host in hypervisors:
            made = exports.mount_nfs(host, source, FOUR.mount_point)
            assert made is not None, f"{host.name} had the export mounted before the test"
            mounted.append((host, made))
        for host in hypervisors:
            assert exports.current_source(host, FOUR.mount_point) == source, host.name
            assert host.run("test", "-d", str(FOUR.mount_point / WORKDIR), check=False).ok, \
                f"{host.name} does not see the server's directory through its mount"
    finally:  # the first host made the mount point (one root file system): it unmounts, and removes it, last
        for host, made in reversed(mounted):
            exports.unmount(host, made)
        exports.restore_exports(server, handle)


def _the_inventory_lists_them() -> None:
    """The inventory `up` wrote: each hypervisor with its address and user, the NFS server, the export."""
    lines = INVENTORY.read_text().splitlines()
    group = lines.index("[hypervisors]")
    assert lines[group + 1:group + 5] == [f"{n.name} ansible_host={n.ip} ansible_user=root" for n in FOUR.hypervisors]
    assert f"{FOUR.nfs.name} ansible_host={FOUR.nfs.ip} ansible_user=root" in lines
    assert f"virtmig_nfs_server={FOUR.nfs.name}" in lines and f"virtmig_export={FOUR.export}" in lines
