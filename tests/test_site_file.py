"""The lab's site files (virtmig.lab.site): what a lab can stand in for, refused before anything changes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

from virtmig.lab import site
from virtmig.lab.topology import DEFAULT_SITE, Site

GOOD: dict[str, object] = {"nfs_server": "filer", "hypervisors": ["kvm-a", "kvm-b"], "subnet": "198.19.42.0/24",
        "vm_bridge": "vmbr7", "export": "/export/vmstore", "mount_point": "/var/lib/vmstore",
        "ssh_config": "/root/site-ssh-config"}


def test_a_good_site_file_gives_its_names_and_addresses(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text("".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in GOOD.items()))
    chosen = site.load(path)
    assert [(n.name, n.ip, n.hypervisor) for n in chosen.nodes] == [
        ("filer", "198.19.42.10", False), ("kvm-a", "198.19.42.11", True), ("kvm-b", "198.19.42.12", True)]
    assert (chosen.controller_ip, str(chosen.guest_ip), chosen.vm_bridge) == ("198.19.42.1", "198.19.42.100", "vmbr7")
    assert chosen.export == PurePosixPath("/export/vmstore")
    assert Site.from_dict(chosen.to_dict()) == chosen


def test_the_default_site_is_todays_lab() -> None:
    assert [(n.name, n.ip) for n in DEFAULT_SITE.nodes] == [
        ("nfs", "198.18.0.10"), ("h1", "198.18.0.11"), ("h2", "198.18.0.12")]
    assert (DEFAULT_SITE.controller_ip, DEFAULT_SITE.vm_bridge) == ("198.18.0.1", "br0")
    assert Site.from_dict(DEFAULT_SITE.to_dict()) == DEFAULT_SITE


@pytest.mark.parametrize(("change", "message"), [
    ({"subnet": "10.0.0.0/24"}, "198.18.0.0/15 only"),
    ({"subnet": "198.19.42.0/28"}, "/24 or larger"),
    ({"subnet": "198.19.42.7/24"}, "has host bits set"),
    ({"hypervisors": ["kvm-a"]}, "a list of 2 to 6 host names"),
    ({"hypervisors": [f"kvm-{c}" for c in "abcdefg"]}, "a list of 2 to 6 host names"),
    ({"hypervisors": "kvm-a"}, "a list of 2 to 6 host names"),
    ({"hypervisors": ["kvm-a", "kvm-a"]}, "all be different names"),
    ({"hypervisors": ["kvm-a", "kvm-b", "filer"]}, "all be different names"),
    ({"hypervisors": ["kvm-a", "kvm-b", "KVM-C"]}, "a node name is 1-8"),
    ({"nfs_server": "Filer.example"}, "a node name is 1-8"),
    ({"nfs_server": "averylongname"}, "a node name is 1-8"),
    ({"vm_bridge": "vmlab0"}, "not the lab's root bridge"),
    ({"vm_bridge": "br 0"}, "interface name"),
    ({"export": "/etc"}, "system tree"),
    ({"mount_point": "relative/path"}, "mount_point"),
    ({"ssh_config": "ssh_config"}, "an absolute path"),
    ({"vm_brigde": "vmbr7"}, "unknown keys ['vm_brigde']"),
])
def test_a_site_a_lab_cannot_be_is_refused_naming_the_key(change: dict[str, object], message: str) -> None:
    with pytest.raises(site.SiteError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        site.parse({**GOOD, **change}, "site.toml")


def test_a_missing_key_is_named() -> None:
    raw = dict(GOOD)
    del raw["vm_bridge"]
    with pytest.raises(site.SiteError, match=r"missing keys \['vm_bridge'\]"):
        site.parse(raw)


def test_the_certify_options_name_every_value_of_the_site() -> None:
    chosen = site.parse(GOOD)
    options = site.certify_options(chosen, Path("/root/site-ssh-config"))
    pairs = dict(zip(options[::2], options[1::2], strict=False))
    assert pairs["--src"] == "kvm-a" and pairs["--dst"] == "kvm-b" and pairs["--nfs-server"] == "filer"
    assert pairs["--guest-network"] == "bridge:vmbr7" and pairs["--guest-ip"] == "198.19.42.100/24"
    assert pairs["--export"] == "/export/vmstore" and pairs["--mount-point"] == "/var/lib/vmstore"


def test_the_command_line_refuses_a_bad_site_file_before_it_takes_the_lab(tmp_path: Path) -> None:
    """Exit 2 with the file and the key named; a bad file never gets as far as the lab's lock."""
    path = tmp_path / "site.toml"
    path.write_text('nfs_server = "filer"\nhypervisors = ["kvm-a", "kvm-b"]\nsubnet = "10.1.0.0/24"\n'
                    'vm_bridge = "vmbr7"\nexport = "/export/vmstore"\nmount_point = "/var/lib/vmstore"\n')
    proc = subprocess.run([sys.executable, "-m", "virtmig.lab", "up", "--site", str(path), "--wait", "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert f"{path}: subnet = '10.1.0.0/24'" in proc.stderr and "198.18.0.0/15" in proc.stderr


def test_a_site_file_may_list_up_to_six_hypervisors_each_with_the_next_address() -> None:
    chosen = site.parse({**GOOD, "hypervisors": [f"kvm-{c}" for c in "abcdef"]})
    assert [(n.name, n.ip) for n in chosen.hypervisors] == [
        (f"kvm-{c}", f"198.19.42.{11 + i}") for i, c in enumerate("abcdef")]
    assert chosen.nodes[0] == chosen.nfs and len(chosen.nodes) == 7
    assert Site.from_dict(chosen.to_dict()) == chosen
    options = site.certify_options(chosen, Path("/root/site-ssh-config"))
    assert options[:4] == ["--src", "kvm-a", "--dst", "kvm-b"], "a site's pair is its first two hypervisors"
