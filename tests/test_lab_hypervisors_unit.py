"""A lab of 2-6 hypervisors (`python -m virtmig.lab up --hypervisors N`), without raising it.

What `up --hypervisors N` would raise (names, addresses, the same set-up per
host, /etc/hosts and ssh configs naming every node, the Ansible inventory),
and that a bad N is refused before the lab's lock is even taken.  The lab
test that raises four is tests/test_lab_hypervisors.py.
"""

from __future__ import annotations

import subprocess
import sys
from ipaddress import IPv4Network
from pathlib import Path, PurePosixPath

import pytest

from virtmig.lab import __main__ as lab_cli
from virtmig.lab import hostfs, inventory_file, lifecycle, topology
from virtmig.lab.topology import DEFAULT_SITE, FIRST_HYPERVISOR_OCTET, KNOWN_HOSTS, SSH_KEY, Site, with_hypervisors


def test_two_hypervisors_is_the_default_lab_itself() -> None:
    assert with_hypervisors(2) == DEFAULT_SITE
    assert DEFAULT_SITE.hypervisor_names == ("h1", "h2")


@pytest.mark.parametrize("count", [3, 4, 6])
def test_n_hypervisors_are_h1_to_hn_on_the_next_addresses_beside_one_nfs_server(count: int) -> None:
    lab = with_hypervisors(count)
    assert [(n.name, n.ip, n.hypervisor) for n in lab.hypervisors] == [
        (f"h{i}", f"198.18.0.{10 + i}", True) for i in range(1, count + 1)]
    assert lab.nfs == DEFAULT_SITE.nfs and lab.nodes == (lab.nfs, *lab.hypervisors)
    same = ("subnet", "vm_bridge", "export", "mount_point", "ssh_config", "controller_ip", "guest_ip")
    assert {k: getattr(lab, k) for k in same} == {k: getattr(DEFAULT_SITE, k) for k in same}
    assert Site.from_dict(lab.to_dict()) == lab, "the state file keeps every hypervisor"
    assert len({n.netns for n in lab.nodes}) == len({n.veth_outer for n in lab.nodes}) == count + 1
    assert all(len(n.veth_outer) <= 15 for n in lab.nodes), "a link name is at most 15 characters"


def test_six_hypervisors_stay_clear_of_k1_and_the_guests() -> None:
    """The last hypervisor's address is below k1's (.20) and the guests' (.100 on)."""
    last = with_hypervisors(6).hypervisors[-1]
    assert last.ip == f"198.18.0.{FIRST_HYPERVISOR_OCTET + 5}" == "198.18.0.16"


@pytest.mark.parametrize("count", [-1, 0, 1, 7, 20])
def test_a_count_the_lab_cannot_hold_is_refused(count: int) -> None:
    with pytest.raises(ValueError, match="must be 2 to 6"):
        with_hypervisors(count)


def test_a_site_of_too_many_hypervisors_cannot_even_be_made() -> None:
    with pytest.raises(ValueError, match="2 to 6 hypervisors, not 7"):
        Site("nfs", tuple(f"h{i}" for i in range(1, 8)), IPv4Network("198.18.0.0/24"), "br0",
             PurePosixPath("/srv/x"), PurePosixPath("/mnt/x"))


def _prepared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, count: int) -> tuple[Site, dict[str, Path]]:
    """hostfs.prepare_node for every node of a lab of *count*, all under tmp_path (no namespace, no daemon).

    The lab's root, its key and ssh files and the system paths copied from
    are all the test's: nothing of a lab someone else may have up is read or written.
    """
    lab = with_hypervisors(count)
    system = tmp_path / "system"
    for copy in ("etc-ssh", *hostfs.HYPERVISOR_BINDS.values()):
        (system / copy).mkdir(parents=True)
    for conf in ("libvirtd.conf", "qemu.conf"):
        (system / "etc-libvirt" / conf).write_text("")
    (system / "hosts").write_text("127.0.0.1 localhost\n")
    monkeypatch.setattr(topology, "LAB_ROOT", tmp_path / "lab")  # every LabNode.state_dir
    monkeypatch.setattr(hostfs, "COMMON_BINDS", {str(system / c): c for c in hostfs.COMMON_BINDS.values()})
    monkeypatch.setattr(hostfs, "HYPERVISOR_BINDS", {str(system / c): c for c in hostfs.HYPERVISOR_BINDS.values()})
    for name in ("SSH_CONFIG", "KNOWN_HOSTS", "SSH_WRAPPER", "SSH_KEY"):
        monkeypatch.setattr(hostfs, name, tmp_path / name.lower())
    monkeypatch.setattr(hostfs, "CAPS_CACHE", tmp_path / "no-caps-cache")
    hostfs.make_lab_key()
    for node in lab.nodes:
        hostfs.prepare_node(node, lab)
    return lab, {node.name: node.state_dir for node in lab.nodes}


def test_every_hypervisor_gets_the_same_set_up_and_names_every_node(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Each of four hosts: its own sshd, libvirt (own host UUID, own migration address), hosts and ssh config."""
    lab, dirs = _prepared(tmp_path, monkeypatch, 4)
    uuids = set()
    for node in lab.hypervisors:
        state = dirs[node.name]
        assert f"ListenAddress {node.ip}\n" in (state / "etc-ssh" / "sshd_config").read_text()
        qemu_conf = (state / "etc-libvirt" / "qemu.conf").read_text()
        assert f'migration_address = "{node.ip}"' in qemu_conf and 'user = "libvirt-qemu"' in qemu_conf
        uuids.add((state / "etc-libvirt" / "libvirtd.conf").read_text().split("host_uuid = ")[1].split()[0])
        hosts = (state / "hosts").read_text().splitlines()
        assert [f"{n.ip} {n.name}" for n in lab.nodes] == hosts[2:], "every node by name"
        ssh_config = (state / "etc-ssh" / "ssh_config").read_text()
        assert [ln.split()[1] for ln in ssh_config.splitlines() if ln.startswith("Host ")] == \
            [n.name for n in lab.nodes], "libvirtd's ssh reaches every node (peer-to-peer migration)"
    assert len(uuids) == 4, "a distinct libvirt host UUID each, or libvirt refuses to migrate"
    assert not (dirs["nfs"] / "etc-libvirt").exists(), "the NFS server runs no libvirt"


def test_the_default_labs_ssh_config_is_written_as_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two hosts: the controller's ssh config holds exactly today's three entries, in today's order."""
    _, dirs = _prepared(tmp_path, monkeypatch, 2)
    assert all(str(d).startswith(str(tmp_path)) for d in dirs.values())
    hostfs.write_controller_ssh(DEFAULT_SITE)
    config = (tmp_path / "ssh_config").read_text()
    expected = "".join(
        f"Host {name}\n    HostName {ip}\n    User root\n    IdentityFile {tmp_path / 'ssh_key'}\n"
        f"    IdentitiesOnly yes\n    UserKnownHostsFile {tmp_path / 'known_hosts'}\n"
        "    StrictHostKeyChecking yes\n    BatchMode yes\n    ConnectTimeout 5\n\n"
        for name, ip in (("nfs", "198.18.0.10"), ("h1", "198.18.0.11"), ("h2", "198.18.0.12")))
    assert config == expected


def test_the_inventory_lists_the_hypervisors_the_nfs_server_and_the_export() -> None:
    text = inventory_file.render(with_hypervisors(4))
    sections: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("["):
            current = line.strip("[]")
        elif line and not line.startswith("#"):
            sections.setdefault(current, []).append(line)
    assert sections["hypervisors"] == [f"h{i} ansible_host=198.18.0.{10 + i} ansible_user=root" for i in range(1, 5)]
    assert sections["nfs_servers"] == ["nfs ansible_host=198.18.0.10 ansible_user=root"]
    assert sections["hypervisors:vars"] == ["virtmig_nfs_server=nfs", "virtmig_export=/srv/virtmig-export",
                                            "virtmig_mount_point=/mnt/nfs", "virtmig_guest_network=bridge:br0",
                                            "virtmig_guest_ips=198.18.0.100-198.18.0.107/24"]
    assert sections["all:vars"] == [
        f"ansible_ssh_private_key_file={SSH_KEY}",
        f"ansible_ssh_common_args='-o UserKnownHostsFile={KNOWN_HOSTS} -o StrictHostKeyChecking=yes'"]


def test_ansible_reads_the_inventory_as_written(tmp_path: Path) -> None:
    """ansible-core's own parser (when installed): hosts, groups, ansible_host/user and the group vars."""
    manager = pytest.importorskip("ansible.inventory.manager")  # ansible-core (branch inventory's dependency)
    loader = pytest.importorskip("ansible.parsing.dataloader").DataLoader()
    variable_manager = pytest.importorskip("ansible.vars.manager").VariableManager

    path = inventory_file.write(with_hypervisors(3), tmp_path / "inventory.ini")
    inventory = manager.InventoryManager(loader=loader, sources=[str(path)])
    assert [h.name for h in inventory.groups["hypervisors"].get_hosts()] == ["h1", "h2", "h3"]
    assert [h.name for h in inventory.groups["nfs_servers"].get_hosts()] == ["nfs"]
    variables = variable_manager(loader=loader, inventory=inventory).get_vars(host=inventory.get_host("h3"))
    assert (variables["ansible_host"], variables["ansible_user"]) == ("198.18.0.13", "root")
    assert (variables["virtmig_nfs_server"], variables["virtmig_export"]) == ("nfs", "/srv/virtmig-export")
    assert variables["ansible_ssh_common_args"].split()[1] == f"UserKnownHostsFile={KNOWN_HOSTS}"


@pytest.fixture
def no_lab_change(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the command line got as far as changing the lab."""
    def changed(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the lab was changed")
    monkeypatch.setattr(lifecycle, "up", changed)
    monkeypatch.setattr(lifecycle, "down", changed)
    monkeypatch.setattr(lab_cli, "FileLock", changed)


@pytest.mark.parametrize(("argv", "message"), [
    (["up", "--hypervisors", "7"], "'7': a lab has 2 to 6 hypervisors"),
    (["up", "--hypervisors", "1"], "'1': a lab has 2 to 6 hypervisors"),
    (["up", "--hypervisors", "four"], "'four': a lab has 2 to 6 hypervisors"),
    (["down", "--hypervisors", "4"], "--hypervisors goes with up only"),
    (["status", "--hypervisors", "4"], "--hypervisors goes with up only"),
    (["up", "--hypervisors", "4", "--site", "/nonexistent.toml"], "without --site"),
    (["up", "--hypervisors", "4", "--real-kernel"], "--real-kernel goes with up only, on the default site"),
])
def test_a_bad_hypervisor_count_is_a_usage_error_before_anything_changes(
        argv: list[str], message: str, no_lab_change: None, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        lab_cli.main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_the_command_line_exits_2_naming_the_range() -> None:
    """As a shell sees it: exit 2, the range named, nothing printed on stdout (no `lab up`, no `lab down`)."""
    proc = subprocess.run([sys.executable, "-m", "virtmig.lab", "up", "--hypervisors", "9", "--wait", "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "argument --hypervisors: '9': a lab has 2 to 6 hypervisors" in proc.stderr
    assert proc.stdout == ""
