"""The real-kernel node's pure parts: its recipe and cache key, QEMU's command line, the policy module's text.

No VM and no archive here: tests/test_realkernel_lab.py boots the node.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from virtmig.lab import hostfs, realkernel, realkernel_files, realkernel_image, realkernel_policy
from virtmig.lab.netns import LabError
from virtmig.lab.realkernel_image import Image, ImageUnavailable
from virtmig.lab.topology import LabNode

APT_SHOW = """Package: qemu-utils
Version: 1:7.2+dfsg-7+deb12u18
Description: QEMU utilities

Package: libvirt-clients
Version: 9.0.0-4+deb12u2

Package: libvirt-clients
Version: 9.0.0-4
"""


def test_apt_show_gives_each_package_its_first_version() -> None:
    assert realkernel_image.parse_apt_show(APT_SHOW) == {"qemu-utils": "1:7.2+dfsg-7+deb12u18",
                                                         "libvirt-clients": "9.0.0-4+deb12u2"}


def test_the_cache_key_follows_the_versions_and_the_recipe_not_the_order() -> None:
    recipe = realkernel_image.recipe_text("198.18.0.20", 24, "k1")
    key = realkernel_image.cache_key({"a": "1", "b": "2"}, recipe)
    assert realkernel_image.cache_key({"b": "2", "a": "1"}, recipe) == key
    assert realkernel_image.cache_key({"a": "1", "b": "3"}, recipe) != key
    assert realkernel_image.cache_key({"a": "1", "b": "2"}, realkernel_image.recipe_text("198.18.0.21", 24, "k1")) \
        != key


def test_the_recipe_names_the_packages_the_notes_need() -> None:
    argv = realkernel_image.debootstrap_command(Path("/x/rootfs"))
    assert argv[:2] == ["debootstrap", "--variant=minbase"] and argv[-3:] == ["bookworm", "/x/rootfs",
                                                                              realkernel_image.MIRROR]
    included = next(a for a in argv if a.startswith("--include=")).removeprefix("--include=").split(",")
    # libpam-systemd: without it debootstrap cannot meet polkitd's logind dependency
    for package in ("linux-image-cloud-amd64", "libpam-systemd", "selinux-policy-default", "auditd",
                    "nfs-kernel-server", "libvirt-daemon-system", "qemu-system-x86", "iputils-ping"):
        assert package in included


def test_labels_are_the_last_step_in_the_chroot() -> None:
    commands = realkernel_image.chroot_commands()
    assert commands[0][:2] == ["semodule", "-i"]
    assert commands[-1][0] == "setfiles" and commands[-1][-2:] == [realkernel_image.FILE_CONTEXTS, "/"]
    assert "/proc" in commands[-1]


def test_every_rule_of_the_policy_module_says_why() -> None:
    lines = realkernel_policy.module_text().splitlines()
    rules = [i for i, line in enumerate(lines) if line.startswith("(")]
    assert len(rules) == len(realkernel_policy.RULES) + 2  # and the QEMU-side shape's boolean and block
    for i in rules:
        assert lines[i - 1].startswith("; ") and len(lines[i - 1]) > 10, f"rule without a why: {lines[i]}"
    on_nfs = [lines[i] for i in rules if "nfs_t" in lines[i]]
    side = f"(booleanif {realkernel_policy.QEMU_SIDE_BOOLEAN} (true (allow virtd_t nfs_t "
    assert all(rule.startswith(("(booleanif virt_use_nfs (true ", side)) for rule in on_nfs), \
        "a rule on nfs_t outside a boolean would change the denial under test"
    assert f"(boolean {realkernel_policy.QEMU_SIDE_BOOLEAN} false)" in lines, "the QEMU-side shape must be off"
    assert realkernel_policy.booleans_local() == "virt_use_execmem=1\n"


def test_the_node_files_keep_it_inside_the_lab() -> None:
    files = realkernel_files.rootfs_files("198.18.0.20", 24, "k1", "u-u-i-d")
    assert "namespaces = []" in files["/etc/libvirt/qemu.conf"]
    network = files["/etc/systemd/network/30-br0.network"]
    assert "Address=198.18.0.20/24" in network and "Gateway=" not in network and "DHCP=" not in network
    assert files["/etc/exports"].splitlines()[-1].startswith(f"{realkernel_files.EXPORT} localhost(")
    assert "SELINUX=enforcing" in files["/etc/selinux/config"]


def test_qemu_boots_enforcing_on_a_tap_with_at_most_two_cpus(tmp_path: Path) -> None:
    argv = realkernel.qemu_command(Image(tmp_path), tmp_path / "o.qcow2", tmp_path / "console.log")
    line = " ".join(argv)
    assert "root=/dev/vda rw console=ttyS0 security=selinux enforcing=1" in argv
    assert argv[argv.index("-smp") + 1] == "2" and int(argv[argv.index("-m") + 1]) <= 3072
    assert f"tap,id=lan,ifname={realkernel.TAP},script=no,downscript=no" in argv
    assert "user" not in argv[argv.index("-netdev") + 1].split(",")[0], "no user networking: no route out"
    assert f"file:{tmp_path / 'console.log'}" in line


def test_no_archive_and_no_cached_image_is_unavailable_with_the_reason(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(realkernel_image, "IMAGE_CACHE", tmp_path)

    def unreachable(work: Path) -> dict[str, str]:
        raise ImageUnavailable("no Debian archive reachable (test)")

    monkeypatch.setattr(realkernel_image, "resolve_versions", unreachable)
    with pytest.raises(ImageUnavailable, match="no Debian archive reachable"):
        realkernel_image.ensure_image("198.18.0.20", 24, "k1", log=tmp_path / "log")
    cached = tmp_path / "0123456789abcdef"
    cached.mkdir()
    for name in ("disk.raw", "vmlinuz", "initrd.img", "id_ed25519", "build.json"):
        (cached / name).write_text("{}")
    image, built = realkernel_image.ensure_image("198.18.0.20", 24, "k1", log=tmp_path / "log")
    assert (image.directory, built) == (cached, False)


def test_a_failed_build_leaves_no_cache_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(realkernel_image, "IMAGE_CACHE", tmp_path)
    monkeypatch.setattr(realkernel_image, "debootstrap_command", lambda rootfs: ["false"])
    with pytest.raises(LabError, match="false exited 1"):
        realkernel_image.build(tmp_path / "key", {}, "198.18.0.20", 24, "k1", log=tmp_path / "log" / "build.log")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log"]


def test_the_controller_reaches_k1_and_forgets_it_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config, known = tmp_path / "ssh_config", tmp_path / "known_hosts"
    monkeypatch.setattr("virtmig.lab.hostfs.SSH_CONFIG", config)
    monkeypatch.setattr("virtmig.lab.hostfs.KNOWN_HOSTS", known)
    h1 = LabNode("h1", "198.18.0.11", hypervisor=True)
    config.write_text(hostfs._ssh_config_entry(h1, Path("/k"), known))
    known.write_text("h1,198.18.0.11 ssh-ed25519 AAAAh1\n")
    before = (config.read_text(), known.read_text())
    hostfs.add_controller_host(realkernel.K1, "ssh-ed25519 AAAAk1 root@k1", tmp_path / "id")
    assert "Host k1\n    HostName 198.18.0.20\n" in config.read_text()
    assert f"IdentityFile {tmp_path / 'id'}" in config.read_text()
    assert "k1,198.18.0.20 ssh-ed25519 AAAAk1\n" in known.read_text()
    hostfs.remove_controller_host(realkernel.K1)
    assert (config.read_text(), known.read_text()) == before


def test_the_lab_nodes_learn_k1s_name_and_forget_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("virtmig.lab.hostfs.LAB_ROOT", tmp_path)
    hosts = {name: tmp_path / "hosts" / name / "hosts" for name in ("h1", "nfs", "k1")}
    for path in hosts.values():
        path.parent.mkdir(parents=True)
        path.write_text("127.0.0.1 localhost\n198.18.0.11 h1\n")
    hostfs.add_hosts_entry(realkernel.K1)
    hostfs.add_hosts_entry(realkernel.K1)  # a second up names it once
    assert hosts["h1"].read_text().endswith("198.18.0.11 h1\n198.18.0.20 k1\n")
    assert hosts["nfs"].read_text().count("k1") == 1 and "k1" not in hosts["k1"].read_text()
    hostfs.remove_hosts_entry(realkernel.K1)
    assert all(p.read_text() == "127.0.0.1 localhost\n198.18.0.11 h1\n" for p in hosts.values())


def test_a_new_build_replaces_the_images_before_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(realkernel_image, "IMAGE_CACHE", tmp_path)
    for name in ("old", "new", ".build-running"):
        (tmp_path / name).mkdir()
    realkernel_image.prune(keep=Image(tmp_path / "new"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [".build-running", "new"]
