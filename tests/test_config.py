"""Validation of --src/--dst/--nfs-server/--export/--mount-point/--ssh-config."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from virtmig import sshconfig
from virtmig.config import ConfigError, DefaultPair, GuestShape, GuestSite, RunConfig, build_run_config
from virtmig.guestconfig import parse_guest_ip, parse_guest_network
from virtmig.pairs import HostPair, parse_pair_spec

pytest_plugins = ["pytester"]

LAB_CFG = Path("/nonexistent/lab_ssh_config")  # lab mode must not touch it
LAB_GUEST = GuestSite(parse_guest_network("bridge:br0"), parse_guest_ip("198.18.0.100/24"))
LAB = DefaultPair("h1", "h2", "nfs", "/srv/virtmig-export", LAB_CFG, LAB_GUEST, GuestShape(cpu="qemu64"))
SITE_GUEST = GuestSite(parse_guest_network("vmnet"), parse_guest_ip("192.0.2.50/24"))

SSH_CONFIG = """\
Host alpha
    HostName 127.0.0.1
    Port 2201
    User root
Host beta beta-alias
    HostName 127.0.0.1
    Port 2202
Host same-as-alpha
    HostName 127.0.0.1
    Port 2201
Host *.behind-bastion
    ProxyJump alpha
Host !nothere *.wild
    User nobody
"""


@pytest.fixture
def ssh_cfg(tmp_path: Path) -> Path:
    path = tmp_path / "ssh_config"
    path.write_text(SSH_CONFIG)
    return path


def build(ssh_cfg: Path | None, **kw: Any) -> RunConfig:
    args: dict[str, Any] = dict(src="alpha", dst="beta", nfs_server=None, export=None,
                                mount_point="/mnt/nfs", ssh_config=ssh_cfg, lab=LAB,
                                guest_network=SITE_GUEST.network, guest_addresses=SITE_GUEST.addresses)
    args.update(kw)
    return build_run_config(**args)


def test_lab_mode_without_src_and_dst() -> None:
    rc = build_run_config(None, None, None, None, "/mnt/nfs", None, LAB)
    assert rc == RunConfig(src="h1", dst="h2", nfs_server="nfs", export="/srv/virtmig-export",
                           mount_point=PurePosixPath("/mnt/nfs"), ssh_config=LAB_CFG, lab=True, guest=LAB_GUEST,
                           guest_shape=GuestShape(cpu="qemu64"))


def test_real_hosts_from_ssh_config(ssh_cfg: Path) -> None:
    rc = build(ssh_cfg, nfs_server="storage.example", export="/export/vms")
    assert rc == RunConfig(src="alpha", dst="beta", nfs_server="storage.example", export="/export/vms",
                           mount_point=PurePosixPath("/mnt/nfs"), ssh_config=ssh_cfg, lab=False, guest=SITE_GUEST,
                           guest_shape=GuestShape())


def test_allow_faults_is_carried_for_a_site_and_for_the_lab_alike(ssh_cfg: Path) -> None:
    assert build(ssh_cfg).allow_faults is False
    assert build(ssh_cfg, allow_faults=True).allow_faults is True
    assert build_run_config(None, None, None, None, "/mnt/nfs", None, LAB, allow_faults=True).allow_faults is True


def test_resolvable_name_and_proxied_name_are_accepted(ssh_cfg: Path) -> None:
    assert build(ssh_cfg, src="localhost", dst="x.behind-bastion").dst == "x.behind-bastion"


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(dst=None), "--dst is missing"),
        (dict(src=None), "--src is missing"),
        (dict(dst="alpha"), "--src and --dst are the same host"),
        (dict(dst="same-as-alpha"), "same machine (127.0.0.1 port 2201)"),
        (dict(src="-oProxyCommand=x"), "--src '-oProxyCommand=x' is not a valid host name"),
        (dict(dst="a b"), "--dst 'a b' is not a valid host name"),
        (dict(dst="x..y"), "is not a valid host name"),
        (dict(dst="nowhere.invalid"), "--dst 'nowhere.invalid' is neither a Host in"),
        (dict(dst="foo.wild"), "is neither a Host in"),  # wildcard Hosts are not aliases
        (dict(nfs_server="nfs"), "give --nfs-server and --export together"),
        (dict(export="/e"), "give --nfs-server and --export together"),
        (dict(nfs_server="nfs", export="relative/dir"), "--export 'relative/dir' must be an absolute path"),
        (dict(mount_point="mnt"), "--mount-point 'mnt' must be an absolute path"),
        (dict(mount_point="/mnt/../etc"), "--mount-point '/mnt/../etc' must not contain '..'"),
        (dict(mount_point="/"), "--mount-point must not be '/'"),
    ],
)
def test_bad_input_is_explained(ssh_cfg: Path, kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build(ssh_cfg, **kw)
    assert message in str(info.value)


def test_missing_ssh_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--ssh-config '.*/absent': no such file"):
        build(tmp_path / "absent")


def test_lab_mode_rejects_real_host_options() -> None:
    with pytest.raises(ConfigError, match="--nfs-server, --export only apply with --src/--dst"):
        build_run_config(None, None, "nfs", "/e", "/mnt/nfs", None, LAB)


def test_unknown_name_message_suggests_a_fix(ssh_cfg: Path) -> None:
    with pytest.raises(ConfigError) as info:
        build(ssh_cfg, dst="nowhere.invalid")
    assert f"Host in {ssh_cfg}" in str(info.value)
    assert "use an alias from your ssh config" in str(info.value)


def test_known_hosts_lists_concrete_aliases_only(ssh_cfg: Path) -> None:
    assert sshconfig.host_aliases(ssh_cfg) == {"alpha", "beta", "beta-alias", "same-as-alpha"}


def test_include_is_followed(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "lab.conf").write_text("Host inc\n    HostName 10.0.0.9\n    Port 2222\n")
    main = tmp_path / "config"
    main.write_text("Host first\n    User u1\n    Include conf.d/*.conf\n    Port 2001\n")
    assert sshconfig.host_aliases(main) == {"first", "inc"}
    assert sshconfig.resolve(main, "inc") == sshconfig.ResolvedHost("inc", "10.0.0.9", 2222, sshconfig.resolve(
        main, "zzz").user)
    # Lines after the Include still belong to the includer's Host block.
    assert sshconfig.resolve(main, "first").port == 2001


def test_option_syntax_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("-p", "fixtures.options", "--src", "a", "--dst", "a")
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # exit code 4
    result.stderr.fnmatch_lines(["ERROR: --src and --dst are the same host ('a'); migration needs two hosts"])


def test_bad_syntax_is_rejected_by_argparse(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("-p", "fixtures.options", "--mount-point", "relative")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--mount-point*must be an absolute path*"])


def test_run_config_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_it(run_config):
            assert run_config.lab and (run_config.src, run_config.dst) == ("h1", "h2")
        """
    )
    pytester.runpytest("-p", "fixtures.options").assert_outcomes(passed=1)


def test_pairs_over_the_lab_hypervisors() -> None:
    lab4 = DefaultPair("h1", "h2", "nfs", "/srv/virtmig-export", LAB_CFG, LAB_GUEST, GuestShape(cpu="qemu64"),
                       hypervisors=("h1", "h2", "h3", "h4"))
    rc = build_run_config(None, None, None, None, "/mnt/nfs", None, lab4, pairs=parse_pair_spec("ring"))
    assert [p.label for p in rc.host_pairs] == ["h1-h2", "h2-h3", "h3-h4", "h4-h1"]
    assert (rc.src, rc.dst) == ("h1", "h2")  # the first pair, for code that knows one
    rc = build_run_config(None, None, None, None, "/mnt/nfs", None, lab4, pairs=parse_pair_spec("h3:h1"))
    assert (rc.src, rc.dst, rc.pairs) == ("h3", "h1", (HostPair("h3", "h1"),))
    # Without --pairs the lab's run is its one pair, as before.
    assert build_run_config(None, None, None, None, "/mnt/nfs", None, lab4).host_pairs == (HostPair("h1", "h2"),)


@pytest.mark.parametrize(("kw", "message"), [
    (dict(pairs="h1:h9"), "'h9' is not among the hosts (h1, h2) in the embedded lab's hypervisors"),
    (dict(pairs="h1:h2", src="alpha", dst="beta"), "--pairs h1:h2 and --src/--dst both name the pairs"),
    (dict(pairs="ring", dst="beta"), "--pairs ring and --src/--dst both name the pairs"),
    (dict(group="hv"), "--group hv applies only with --inventory"),
])
def test_pairs_refusals(kw: dict[str, Any], message: str) -> None:
    if "pairs" in kw:
        kw["pairs"] = parse_pair_spec(kw["pairs"])
    with pytest.raises(ConfigError) as info:
        build_run_config(kw.pop("src", None), kw.pop("dst", None), None, None, "/mnt/nfs", None, LAB, **kw)
    assert message in str(info.value)


@pytest.mark.parametrize(("args", "message"), [
    (["--pairs", "h1:h1"], "*--pairs 'h1:h1': the pair 'h1:h1' names host 'h1' twice*"),
    (["--pairs", "h1:h2", "--src", "a", "--dst", "b"], "ERROR: --pairs h1:h2 and --src/--dst both name the pairs*"),
    (["--pairs", "h1:h3"], "ERROR: --pairs h1:h3: 'h3' is not among the hosts (h1, h2) in the embedded lab's*"),
    (["--group", "a b"], "*--group 'a b' is not an inventory group name*"),
    (["--inventory", "/nonexistent/inv.ini"], "*--inventory '/nonexistent/inv.ini': no such file*"),
])
def test_pairs_options_are_usage_errors(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    result = pytester.runpytest("-p", "fixtures.options", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_pairs_option_reaches_run_config(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_it(run_config):
            assert [p.label for p in run_config.host_pairs] == ["h2-h1"]
            assert (run_config.src, run_config.dst) == ("h2", "h1")
        """
    )
    pytester.runpytest("-p", "fixtures.options", "--pairs", "h2:h1").assert_outcomes(passed=1)
