"""Input that would change a host's files beyond what was asked is refused before any host is touched.

The strings are the ones issue #11 found reaching /etc/exports: a newline
that adds an export line of its own, a space that becomes a client name, a
fake END marker that defeats the marker stripping.  Each is a ConfigError
(a usage error, exit 4, from pytest), and the export spec the storage layer
builds can never carry one into a file.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from virtmig import sshconfig
from virtmig.config import DefaultPair, GuestShape, GuestSite, build_run_config
from virtmig.guestconfig import GuestNetwork, parse_guest_ip
from virtmig.option_values import ConfigError, check_export_client, check_storage_path, check_user_name
from virtmig.storage.exports import BEGIN, END, ExportSpec, strip_managed_block, with_managed_block

pytest_plugins = ["pytester"]

LAB = DefaultPair("h1", "h2", "nfs", "/srv/virtmig-export", Path("/nonexistent/lab_ssh_config"),
                  GuestSite(GuestNetwork("bridge", "br0"), parse_guest_ip("198.18.0.100/24")), GuestShape(cpu="qemu64"))

#: Paths that must never reach the exports file or mount's command line.
INJECTIONS = [
    "/srv/vm\n/ *(rw,no_root_squash)",
    "/srv/vm *(rw,no_root_squash)",
    "/srv/vm\t*",
    f"/srv/vm{END}",
    "/srv/vm#x",
    "/srv/'vm'",
    '/srv/"vm"',
    "/srv/v\\m",
    "/srv/vm\x00x",
    "/srv/vm\x1b[2J",
    "/srv/vm\u2028x",  # a line separator Python's splitlines() honours
]

SYSTEM_TREES = ["/", "/etc", "/etc/exports.d", "/usr", "/usr/local/vm", "/boot", "/proc/1", "/sys", "/dev/shm"]
ALLOWED = ["/srv/virtmig-export", "/var/lib/libvirt/images", "/mnt/nfs", "/export/vms", "/etcetera", "/devices"]


@pytest.mark.parametrize("value", INJECTIONS)
def test_storage_paths_with_syntax_are_refused(value: str) -> None:
    for what in ("--export", "--mount-point"):
        with pytest.raises(ConfigError, match=f"^{what} .*must not contain"):
            check_storage_path(value, what)


@pytest.mark.parametrize("value", SYSTEM_TREES)
def test_system_trees_are_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="must not be '/'|a system tree"):
        check_storage_path(value, "--export")


@pytest.mark.parametrize("value", ALLOWED)
def test_ordinary_storage_paths_are_accepted(value: str) -> None:
    assert check_storage_path(value, "--mount-point") == PurePosixPath(value)


@pytest.mark.parametrize("value", ["libvirt-qemu", "qemu", "_qemu", "svc_1", "107"])
def test_user_names_are_accepted(value: str) -> None:
    assert check_user_name(value) == value


@pytest.mark.parametrize("value", ["", "-u", "root;id", "a b", "qemu\n", "$(id)", "Qemu", "x" * 40, "../x"])
def test_other_qemu_users_are_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="--qemu-user"):
        check_user_name(value)


@pytest.mark.parametrize("value", ["198.18.0.11", "h1.example", "fd00::11", "host_1"])
def test_client_names_are_accepted(value: str) -> None:
    assert check_export_client(value, "--src 'x'") == value


@pytest.mark.parametrize("value", ["*", "h1 *(rw,no_root_squash)", "h1(rw)", "h1#", "-h1", "a..b", "h1\n"])
def test_client_names_that_are_exports_syntax_are_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="cannot be an NFS export client"):
        check_export_client(value, "--src 'x'")


def test_a_hostname_in_the_ssh_config_is_checked_before_it_becomes_a_client(tmp_path: Path) -> None:
    cfg = tmp_path / "ssh_config"
    cfg.write_text("Host alpha\n    HostName 127.0.0.1\nHost beta\n    HostName *\n")
    args: dict[str, Any] = dict(src="alpha", dst="beta", nfs_server="nfs", export="/srv/vm",
                                mount_point="/mnt/nfs", ssh_config=cfg, lab=LAB,
                                guest_network=GuestNetwork("bridge", "br0"),
                                guest_addresses=parse_guest_ip("192.0.2.50/24"))
    with pytest.raises(ConfigError, match="--dst 'beta''s HostName: '\\*' cannot be an NFS export client"):
        build_run_config(**args)
    args.update(nfs_server=None, export=None)  # no export: the HostName goes nowhere but to ssh
    assert build_run_config(**args).dst == "beta"


@pytest.mark.parametrize("path", INJECTIONS + SYSTEM_TREES)
def test_an_export_spec_cannot_carry_syntax_into_the_file(path: str) -> None:
    with pytest.raises(ValueError):
        ExportSpec(PurePosixPath(path), ("198.18.0.11",))


@pytest.mark.parametrize("client", ["h1 *", "h1(rw)", "h1\n/ *", "#h1", "-h1", ""])
def test_an_export_spec_refuses_clients_that_are_syntax(client: str) -> None:
    with pytest.raises(ValueError, match="export client"):
        ExportSpec(PurePosixPath("/srv/vm"), (client,))


def test_a_managed_block_is_exactly_three_lines_and_strips_back() -> None:
    spec = ExportSpec(PurePosixPath("/srv/vm"), ("198.18.0.11", "198.18.0.12"))
    original = "/home 10.0.0.0/8(ro)\n"
    text = with_managed_block(original, spec)
    assert text[len(original):].splitlines() == [BEGIN, spec.line(), END]
    assert strip_managed_block(text) == original


@pytest.mark.parametrize(("clients", "options", "flagged"), [
    (("h1",), "rw,sync,root_squash,no_subtree_check", []),
    (("*",), "rw,sync", ["any client matching '*'"]),
    (("*.example.org",), "rw,sync", ["any client matching '*.example.org'"]),
    (("0.0.0.0/0",), "rw,sync", ["any client matching '0.0.0.0/0'"]),
    (("h1",), "rw,no_root_squash", ["no_root_squash"]),
    (("h1",), "rw,anonuid=0,anongid=0", ["anonuid=0", "anongid=0"]),
    (("h1",), "rw,anonuid=1000", []),
    (("h1",), "rw,insecure", ["insecure"]),
])
def test_insecurity_flags(clients: tuple[str, ...], options: str, flagged: list[str]) -> None:
    found = ExportSpec(PurePosixPath("/srv/vm"), clients, options).insecurities()
    assert len(found) == len(flagged)
    for why, word in zip(found, flagged, strict=True):
        assert word in why


def test_strict_host_key_checking_off_is_flagged(tmp_path: Path) -> None:
    cfg = tmp_path / "ssh_config"
    cfg.write_text("Host loose\n    StrictHostKeyChecking no\nHost tight\n    StrictHostKeyChecking yes\n")
    assert "StrictHostKeyChecking no" in " ".join(sshconfig.insecurities(cfg, "loose"))
    assert sshconfig.insecurities(cfg, "tight") == []
    assert sshconfig.insecurities(cfg, "other") == []


@pytest.mark.parametrize("argv", [
    ["--mount-point", "/mnt/nfs\n/ *(rw,no_root_squash)"],
    ["--mount-point", "/etc"],
    ["--mount-point", "/mnt/nfs #"],
    ["--export", "/srv/vm\n/ *(rw,no_root_squash)"],
    ["--export", "/srv/vm *(rw)"],
    ["--export", f"/srv/vm{END}"],
    ["--export", "/usr/share"],
    ["--qemu-user", "root;id"],
])
def test_injections_are_usage_errors(pytester: pytest.Pytester, argv: list[str]) -> None:
    result = pytester.runpytest("-p", "fixtures.options", "-p", "fixtures.storage", *argv)
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # exit code 4
    result.stderr.fnmatch_lines([f"*{argv[0]}*"])
