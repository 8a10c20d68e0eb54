"""--inventory: a site's Ansible inventory read by ansible-core, written out as the run's ssh config.

The files here are the shapes a lab keeps: INI with [group:vars] and ranges,
YAML with children, group_vars/ beside the file.  Bad files are usage errors
naming the file and the line.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Sshd
from virtmig import sshconfig
from virtmig.config import DefaultPair, GuestShape, GuestSite, RunConfig, build_run_config
from virtmig.guestconfig import parse_guest_ip, parse_guest_network
from virtmig.inventory import (
    HostSsh,
    InventoryError,
    SiteInventory,
    default_ssh_config_path,
    load,
    plan_site,
    ssh_config_text,
    write_ssh_config,
)
from virtmig.lab import inventory_file
from virtmig.lab.topology import with_hypervisors
from virtmig.option_values import ConfigError
from virtmig.pairs import HostPair, parse_pair_spec
from virtmig.sshhost import SshHost

pytest_plugins = ["pytester"]

INI = """\
# the site's hypervisors
[hypervisors]
h1 ansible_host=127.0.0.1 ansible_port=2201 ansible_user=root
h2 ansible_host=127.0.0.1 ansible_port=2202
h3 ansible_host=127.0.0.3
h4 ansible_host=127.0.0.4

[hypervisors:vars]
virtmig_nfs_server=nas
virtmig_export=/srv/vm

[storage]
nas[1:2] ansible_host=127.0.0.9
"""

YAML = """\
all:
  children:
    hypervisors:
      children:
        rack_a:
          hosts:
            a1: {ansible_host: 127.0.0.1, ansible_port: 2201}
            a2: {ansible_host: 127.0.0.1, ansible_port: 2202, ansible_user: admin}
      vars:
        virtmig_nfs_server: nas.example
        virtmig_export: /export/vms
"""

#: The shape of the embedded lab's own inventory (virtmig.lab writes it at `up`): keys and known_hosts as Ansible
#: reaches the lab, the storage as group vars.
LAB_INI = """\
[hypervisors]
h1 ansible_host=198.18.0.11 ansible_user=root
h2 ansible_host=198.18.0.12 ansible_user=root

[nfs]
nfs ansible_host=198.18.0.10 ansible_user=root

[hypervisors:vars]
virtmig_nfs_server=nfs
virtmig_export=/srv/virtmig-export
virtmig_mount_point=/mnt/labnfs

[all:vars]
ansible_ssh_private_key_file=/var/lib/virtmig-lab/id_ed25519
ansible_ssh_common_args='-o UserKnownHostsFile=/var/lib/virtmig-lab/known_hosts -o StrictHostKeyChecking=yes'
"""

LAB = DefaultPair("h1", "h2", "nfs", "/srv/virtmig-export", Path("/nonexistent/lab_ssh_config"),
                  GuestSite(parse_guest_network("bridge:br0"), parse_guest_ip("198.18.0.100/24")),
                  GuestShape(cpu="qemu64"))
SITE_GUEST = GuestSite(parse_guest_network("vmnet"), parse_guest_ip("192.0.2.50/24"))


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_ini_hosts_ssh_settings_and_group_vars(tmp_path: Path) -> None:
    site = load(write(tmp_path, "hosts.ini", INI), "hypervisors")
    assert site.hosts == ("h1", "h2", "h3", "h4")  # the file's order
    assert site.ssh[:3] == (HostSsh("h1", "127.0.0.1", 2201, "root"), HostSsh("h2", "127.0.0.1", 2202),
                            HostSsh("h3", "127.0.0.3"))
    assert (site.nfs_server, site.export) == ("nas", "/srv/vm")
    assert load(tmp_path / "hosts.ini", "storage").hosts == ("nas1", "nas2")  # ranges expanded as Ansible does


def test_yaml_children_are_the_group_s_hosts(tmp_path: Path) -> None:
    site = load(write(tmp_path, "hosts.yml", YAML), "hypervisors")
    assert site.hosts == ("a1", "a2")
    assert site.ssh == (HostSsh("a1", "127.0.0.1", 2201), HostSsh("a2", "127.0.0.1", 2202, "admin"))
    assert (site.nfs_server, site.export) == ("nas.example", "/export/vms")


def test_group_vars_beside_the_file_count(tmp_path: Path) -> None:
    """group_vars/ is read as Ansible reads it: what makes the file the lab already keeps enough."""
    inventory = write(tmp_path, "hosts", "[hv]\nx1 ansible_host=10.0.0.1\nx2 ansible_host=10.0.0.2\n")
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "hv.yml").write_text("virtmig_nfs_server: filer\nvirtmig_export: /tank/vm\n"
                                                    "ansible_user: ops\n")
    site = load(inventory, "hv")
    assert (site.nfs_server, site.export) == ("filer", "/tank/vm")
    assert site.ssh[0] == HostSsh("x1", "10.0.0.1", None, "ops")


def test_a_bad_value_in_group_vars_names_that_file_and_line(tmp_path: Path) -> None:
    inventory = write(tmp_path, "hosts", "[hv]\nx1 ansible_host=10.0.0.1\n")
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "hv.yml").write_text("# storage\nvirtmig_nfs_server: filer\nvirtmig_export: /etc/vm\n")
    with pytest.raises(InventoryError, match=rf"^--inventory {tmp_path}/group_vars/hv.yml:3: virtmig_export "
                                             r"'/etc/vm' is /etc or below"):
        load(inventory, "hv")


def test_the_lab_s_own_inventory_is_a_whole_night_s_options(tmp_path: Path) -> None:
    """What `lab up --hypervisors 4` writes certifies a ring with no other option: hosts, storage, the guests' pool."""
    site = with_hypervisors(4)
    path = write(tmp_path, "inventory.ini", inventory_file.render(site))
    rc = build_run_config(None, None, None, None, None, None, LAB, inventory=path, ssh_config_out=tmp_path / "ssh")
    assert [p.label for p in rc.host_pairs] == ["h1-h2", "h2-h3", "h3-h4", "h4-h1"]
    assert (rc.nfs_server, rc.export, str(rc.mount_point)) == ("nfs", str(site.export), str(site.mount_point))
    assert rc.guest.network.label == f"bridge:{site.vm_bridge}"
    assert [str(a) for a in rc.guest.addresses.addresses] == [f"198.18.0.{n}" for n in range(100, 108)]


def test_the_lab_s_inventory_carries_its_key_known_hosts_and_storage(tmp_path: Path) -> None:
    """The lab's inventory is enough on its own: the key and host keys Ansible uses are the run's too."""
    out = tmp_path / "ssh_config"
    rc = build(write(tmp_path, "inventory.ini", LAB_INI), out, mount_point=None)
    assert (rc.nfs_server, rc.export, str(rc.mount_point)) == ("nfs", "/srv/virtmig-export", "/mnt/labnfs")
    assert [p.label for p in rc.host_pairs] == ["h1-h2", "h2-h1"]
    block = ("Host h1\n    HostName 198.18.0.11\n    User root\n    IdentityFile /var/lib/virtmig-lab/id_ed25519\n"
             "    UserKnownHostsFile /var/lib/virtmig-lab/known_hosts\n    StrictHostKeyChecking yes\n")
    assert block in out.read_text()
    assert sshconfig.resolve(out, "nfs").hostname == "198.18.0.10"  # the NFS server, outside the group
    opts = sshconfig.lookup(sshconfig.load(out), "h2")
    assert opts["userknownhostsfile"] == "/var/lib/virtmig-lab/known_hosts"
    assert opts["identityfile"] == ["/var/lib/virtmig-lab/id_ed25519"]
    assert str(build(tmp_path / "inventory.ini", out, mount_point="/mnt/x").mount_point) == "/mnt/x"  # option wins


@pytest.mark.parametrize(("args", "message"), [
    ("-J bastion", "holds '-J': only -o Option=value arguments become ssh settings"),
    ("-o", "holds '-o': only -o Option=value"),
    ("-o =x", "holds -o '=x', not Option=value"),
    ("-o 'Bad-Option=x'", "holds -o 'Bad-Option=x', not Option=value"),
    ("-o 'unbalanced", "is not shell words"),
])
def test_ssh_args_other_than_options_are_refused(tmp_path: Path, args: str, message: str) -> None:
    path = write(tmp_path, "hosts.ini", f"[hypervisors]\nh1\n[hypervisors:vars]\nansible_ssh_common_args=\"{args}\"\n")
    with pytest.raises(InventoryError, match=rf"{path}:4: host 'h1': ansible_ssh_common_args .*{re.escape(message)}"):
        load(path, "hypervisors")


def test_ssh_options_in_both_spellings(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts.ini", "[hypervisors]\nh1 ansible_ssh_extra_args='-oConnectTimeout=5 "
                                        "-o \"ProxyCommand ssh -W %h:%p jump\"'\n")
    assert load(path, "hypervisors").ssh[0].options == (("ConnectTimeout", "5"), ("ProxyCommand", "ssh -W %h:%p jump"))


def test_ssh_config_puts_the_inventory_first_and_carries_the_user_s_file_on(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    write(tmp_path / "conf.d", "extra.conf", "Host h9\n    HostName 10.9.9.9\n")
    user = write(tmp_path, "user_config", "Host h3\n    HostName 10.0.0.3\nHost *\n    User admin\n"
                                          "    IdentityFile ~/.ssh/lab\nInclude conf.d/*.conf\n")
    site = SiteInventory(tmp_path / "hosts.ini", "hypervisors", ("h1", "h2", "h3"),
                         (HostSsh("h1", "127.0.0.1", 2201, "root"), HostSsh("h2", "127.0.0.2"), HostSsh("h3")))
    out = write_ssh_config(site, tmp_path / "out" / "ssh_config", [user])
    assert "Host h1\n    HostName 127.0.0.1\n    Port 2201\n    User root\n" in out.read_text()
    assert "Include" not in out.read_text()  # copied in expanded, so relative Includes keep their base
    assert sshconfig.resolve(out, "h1") == sshconfig.ResolvedHost("h1", "127.0.0.1", 2201, "root")
    assert sshconfig.resolve(out, "h2") == sshconfig.ResolvedHost("h2", "127.0.0.2", 22, "admin")
    assert sshconfig.resolve(out, "h3").hostname == "10.0.0.3"  # the inventory says nothing: the user's file does
    assert sshconfig.resolve(out, "h9").hostname == "10.9.9.9"
    assert {"h1", "h2", "h3", "h9"} <= sshconfig.host_aliases(out)


def test_hosts_outside_the_group_are_written_when_their_values_can_be_taken(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts.ini", INI + "[other]\nweird ansible_host='{{ x }}'\nfine ansible_port=2222\n")
    site = load(path, "hypervisors")
    assert [h.alias for h in site.ssh] == ["h1", "h2", "h3", "h4", "nas1", "nas2", "fine"]
    assert site.hosts == ("h1", "h2", "h3", "h4")


def test_hosts_without_settings_get_no_block() -> None:
    site = SiteInventory(Path("/i"), "g", ("h1",), (HostSsh("h1"),))
    assert "Host h1" not in ssh_config_text(site, [])


def test_default_ssh_config_path_is_per_inventory_and_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = default_ssh_config_path(Path("/etc/ansible/site.ini"), "hypervisors")
    assert path.parent == tmp_path / "virtmig" / "inventory" and path.name.startswith("site-hypervisors-")
    assert path != default_ssh_config_path(Path("/etc/ansible/site.ini"), "rack_a")


@pytest.mark.parametrize(("name", "text", "where", "message"), [
    ("bad.ini", "[hypervisors]\nh1\n\n[bad\nh2\n", "bad.ini:4", "not a valid INI Ansible inventory"),
    ("bad.ini", "[hypervisors:vars]\na=1\n[bad\n", "bad.ini:3", "Expected key=value, got: [bad"),
    ("bad", "[g:children]\nnowhere\n[g2]\nh1\n", "bad:2", "undefined group"),
    ("bad.ini", "[hypervisors]\nh1\n[hypervisors:children]\n[g:oops]\n", "bad.ini:4", "has unknown type: oops"),
    ("bad.yml", "all:\n  hosts:\n    h1: {ansible_host: 10.0.0.1\n", "bad.yml:4", "YAML"),
    ("bad.yaml", "- just\n- a list\n", "bad.yaml", "invalid structure"),
])
def test_an_inventory_that_does_not_parse_names_file_and_line(tmp_path: Path, name: str, text: str, where: str,
                                                              message: str) -> None:
    with pytest.raises(InventoryError) as info:
        load(write(tmp_path, name, text), "hypervisors")
    assert f"{tmp_path / where}" in str(info.value)
    assert message in str(info.value)


@pytest.mark.parametrize(("text", "message"), [
    ("[hypervisors]\nh1 ansible_host='{{ lookup(\"env\", \"X\") }}'\n", ":2: host 'h1': ansible_host "),
    ("[hypervisors]\nh1 ansible_port=22x\n", ":2: host 'h1': ansible_port '22x' is not a TCP port"),
    ("[hypervisors]\nh1 ansible_port=70000\n", ":2: host 'h1': ansible_port '70000' is not a TCP port"),
    ("[hypervisors]\nh1 ansible_user='root;id'\n", ":2: host 'h1': ansible_user 'root;id' is not a user name"),
    ("[hypervisors]\nh1 ansible_host='10.0.0.1 *(rw)'\n", ":2: host 'h1': ansible_host: '10.0.0.1 *(rw)' cannot"),
    ("[hypervisors]\nh1\n[hypervisors:vars]\nvirtmig_export=/etc\n", ":4: virtmig_export '/etc' is /etc or below"),
    ("[hypervisors]\nh1\n[hypervisors:vars]\nvirtmig_nfs_server=-x\n", ":4: virtmig_nfs_server '-x' is not a valid"),
    ("[hypervisors]\nh1 virtmig_export=/a\nh2 virtmig_export=/b\n", "disagree on virtmig_export: /a (h1); /b (h2)"),
    ("[hypervisors]\nh1 virtmig_export=/a\nh2\n", "virtmig_export is set for some hosts of group 'hypervisors' but"),
    ("[hypervisors]\nh1\n[hypervisors:vars]\nvirtmig_guest_ips=10.0.0.5-10.0.0.1/24\n",
     ":4: --guest-ips '10.0.0.5-10.0.0.1/24': 10.0.0.1 comes before 10.0.0.5"),
    ("[hypervisors]\nh1\n[hypervisors:vars]\nvirtmig_guest_network='bridge:a b'\n", ":4: --guest-network 'bridge:a b'"),
])
def test_bad_values_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, "hosts.ini", text)
    with pytest.raises(InventoryError) as info:
        load(path, "hypervisors")
    assert f"--inventory {path}" in str(info.value)
    assert message in str(info.value)


def test_a_file_without_suffix_is_tried_as_yaml_then_ini_as_ansible_does(tmp_path: Path) -> None:
    assert load(write(tmp_path, "site", YAML), "hypervisors").hosts == ("a1", "a2")
    assert load(write(tmp_path, "hosts", INI), "hypervisors").hosts == ("h1", "h2", "h3", "h4")
    with pytest.raises(InventoryError, match=r"bad:3: not a valid YAML Ansible inventory"):
        load(write(tmp_path, "bad", "all:\n  hosts: [h1\n"), "hypervisors")
    with pytest.raises(InventoryError, match=r"bad2:2: not a valid INI Ansible inventory"):
        load(write(tmp_path, "bad2", "[hypervisors]\nh1 x\n"), "hypervisors")


def test_an_executable_inventory_is_not_run_nor_a_plugin_loaded(tmp_path: Path) -> None:
    """Checking options runs nothing: Ansible's script and auto plugins are not offered the file."""
    script = write(tmp_path, "inventory.sh", f"#!/bin/sh\ntouch {tmp_path / 'ran'}\n")
    script.chmod(0o755)
    with pytest.raises(InventoryError, match=r"inventory.sh:2: not a valid INI Ansible inventory: Expected key=value"):
        load(script, "hypervisors")
    assert not (tmp_path / "ran").exists()
    with pytest.raises(InventoryError, match="Plugin configuration YAML file, not YAML inventory"):
        load(write(tmp_path, "aws_ec2.yml", "plugin: amazon.aws.aws_ec2\nregions: [eu-west-1]\n"), "hypervisors")


def test_an_unknown_group_lists_the_groups(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts.ini", INI)
    with pytest.raises(InventoryError, match=rf"--group 'hv': no such group in the inventory {path} "
                                             r"\(its groups: hypervisors, storage\)"):
        load(path, "hv")


def build(inventory: Path, out: Path, *, src: str | None = None, nfs_server: str | None = None,
          export: str | None = None, ssh_config: Path | None = None, mount_point: str | None = "/mnt/nfs",
          **kw: Any) -> RunConfig:
    """build_run_config as fixtures.options calls it with --inventory, the ssh config written to *out*."""
    return build_run_config(src, None, nfs_server, export, mount_point, ssh_config, LAB,
                            guest_network=SITE_GUEST.network, guest_addresses=SITE_GUEST.addresses,
                            inventory=inventory, ssh_config_out=out, **kw)


def test_a_run_over_an_inventory_plans_a_ring_and_uses_the_written_ssh_config(tmp_path: Path) -> None:
    out = tmp_path / "gen" / "ssh_config"
    rc = build(write(tmp_path, "hosts.ini", INI), out)
    assert [p.label for p in rc.host_pairs] == ["h1-h2", "h2-h3", "h3-h4", "h4-h1"]
    assert (rc.src, rc.dst, rc.ssh_config, rc.lab) == ("h1", "h2", out, False)
    assert (rc.nfs_server, rc.export) == ("nas", "/srv/vm")
    assert sshconfig.resolve(out, "h2").port == 2202


def test_options_win_over_group_vars_and_the_ssh_config_is_carried_on(tmp_path: Path) -> None:
    user = write(tmp_path, "user_config", "Host *\n    User carried\n")
    out = tmp_path / "ssh_config"
    rc = build(write(tmp_path, "hosts.yml", YAML), out, nfs_server="other", export="/e2", ssh_config=user,
               pairs=parse_pair_spec("a2:a1"))
    assert (rc.nfs_server, rc.export, rc.pairs) == ("other", "/e2", (HostPair("a2", "a1"),))
    assert sshconfig.resolve(out, "a1").user == "carried"


@pytest.mark.parametrize(("text", "kw", "message"), [
    (INI, dict(pairs="h1:h9"), "'h9' is not among the hosts (h1, h2, h3, h4) in group 'hypervisors' of the "
                               "inventory {path}"),
    ("[hypervisors]\nh1 ansible_host=127.0.0.1\n", {}, "--pairs ring needs at least 2 hosts; there is 1 (h1) in "
                                                       "group 'hypervisors' of the inventory {path}"),
    ("[hypervisors]\n[other]\nh1\n", dict(pairs="mesh"), "--pairs mesh needs at least 2 hosts; there are 0"),
    (INI, dict(src="h1"), "--inventory {path} names the hosts: give --pairs"),
    (INI, dict(group="nope"), "--group 'nope': no such group in the inventory {path}"),
    ("[hypervisors]\nh1 ansible_host=127.0.0.1 ansible_port=2201\nh2 ansible_host=127.0.0.1 ansible_port=2201\n",
     {}, "inventory host 'h1' and inventory host 'h2' are the same machine (127.0.0.1 port 2201)"),
    ("[hypervisors]\nh1 ansible_host=127.0.0.1\nh2 ansible_host=127.0.0.2\n[hypervisors:vars]\nvirtmig_export=/x\n",
     {}, "give --nfs-server and --export together (or the inventory's virtmig_nfs_server and virtmig_export)"),
    ("[hypervisors]\nh1 ansible_host=127.0.0.1\nnowhere.invalid\n", {},
     "inventory host 'nowhere.invalid' is neither a Host in"),
])
def test_bad_runs_over_an_inventory(tmp_path: Path, text: str, kw: dict[str, Any], message: str) -> None:
    path = write(tmp_path, "hosts.ini", text)
    if "pairs" in kw:
        kw["pairs"] = parse_pair_spec(kw["pairs"])
    with pytest.raises(ConfigError) as info:
        build(path, tmp_path / "ssh_config", **kw)
    assert message.format(path=path) in str(info.value)


GUEST_ARGS = ("--guest-network", "vmnet", "--guest-ip", "192.0.2.50/24")


@pytest.mark.parametrize(("name", "text", "args", "line"), [
    ("bad.ini", "[hypervisors]\nh1\n\n[bad\nh2\n", (), "ERROR: --inventory {path}:4: not a valid INI Ansible*"),
    ("hosts.ini", INI, ("--group", "nope"), "ERROR: --group 'nope': no such group in the inventory {path} *"),
    ("hosts.ini", INI, ("--pairs", "h1:h9"), "ERROR: --pairs h1:h9: 'h9' is not among the hosts * of the "
                                             "inventory {path}"),
    ("hosts.ini", INI, ("--pairs", "h1:h1"), "*--pairs 'h1:h1': the pair 'h1:h1' names host 'h1' twice*"),
    ("hosts.ini", INI, ("--src", "h1", "--dst", "h2"), "ERROR: --inventory {path} names the hosts*"),
    ("hosts.ini", INI, ("--pairs", "ring", "--src", "h1"), "ERROR: --pairs ring and --src/--dst both name*"),
    ("one.ini", "[hypervisors]\nh1 ansible_host=127.0.0.1\n", (),
     "ERROR: --pairs ring needs at least 2 hosts; there is 1 (h1) in group 'hypervisors' of the inventory {path}"),
    ("port.ini", "[hypervisors]\nh1 ansible_host=127.0.0.1\nh2 ansible_port=2x\n", (),
     "ERROR: --inventory {path}:3: host 'h2': ansible_port '2x' is not a TCP port (1-65535)"),
])
def test_bad_inventory_options_are_usage_errors(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path, name: str, text: str, args: tuple[str, ...],
                                                line: str) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = write(tmp_path, name, text)
    result = pytester.runpytest("-p", "fixtures.options", "--inventory", str(path), *args, *GUEST_ARGS)
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # exit code 4, before any host is touched
    result.stderr.fnmatch_lines([line.format(path=path)])


def test_inventory_option_reaches_run_config(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = write(tmp_path, "site.yml", YAML)
    pytester.makepyfile(
        f"""
        def test_it(run_config):
            assert [p.label for p in run_config.host_pairs] == ["a1-a2", "a2-a1"]
            assert (run_config.src, run_config.dst, run_config.export) == ("a1", "a2", "/export/vms")
            assert str(run_config.ssh_config).startswith({str(tmp_path / "cache" / "virtmig")!r})
        """
    )
    pytester.runpytest("-p", "fixtures.options", "--inventory", str(path), *GUEST_ARGS).assert_outcomes(passed=1)


def test_the_written_ssh_config_reaches_a_real_sshd(sshd: Sshd, tmp_path: Path) -> None:
    """The whole chain: an inventory's values, as written out, let paramiko and OpenSSH's ssh log in."""
    args = (f"-o UserKnownHostsFile={sshd.known_hosts} -o GlobalKnownHostsFile=/dev/null "
            "-o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes -o ConnectTimeout=5")
    path = write(tmp_path, "hosts.yml", f"""\
hypervisors:
  hosts:
    hv1: {{ansible_host: 127.0.0.1, ansible_port: {sshd.port}, ansible_user: root}}
    hv2: {{ansible_host: localhost, ansible_port: {sshd.port}, ansible_user: root}}
  vars:
    ansible_ssh_private_key_file: {sshd.identity}
    ansible_ssh_common_args: "{args}"
""")
    site = plan_site(path, "hypervisors", parse_pair_spec("ring"), None, tmp_path / "ssh_config")
    with SshHost("hv1", site.ssh_config) as host:
        assert host.run("echo", "reached").stdout.strip() == "reached"
    ssh = subprocess.run(["ssh", "-F", str(site.ssh_config), "hv1", "echo", "reached"], capture_output=True,
                         text=True, timeout=30, stdin=subprocess.DEVNULL, check=False)
    assert (ssh.returncode, ssh.stdout.strip()) == (0, "reached"), ssh.stderr
