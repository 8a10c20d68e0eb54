"""--probe-from is checked as --src/--dst are: a host unknown to the ssh config is a usage error (exit 4).

Name resolution is the one outside call the check makes (for a name that
is not an alias); these tests replace `socket.getaddrinfo` with one that
knows no name, so an unknown name is unknown here without asking a DNS
server anything.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from tests.test_config import LAB, SITE_GUEST, SSH_CONFIG
from virtmig.config import build_run_config
from virtmig.option_values import ConfigError

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def no_name_resolves(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    asked: list[str] = []

    def getaddrinfo(host: str, *args: Any, **kwargs: Any) -> Any:
        asked.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


@pytest.fixture
def ssh_cfg(tmp_path: Path) -> Path:
    path = tmp_path / "ssh_config"
    path.write_text(SSH_CONFIG + "Host nas\n    HostName 127.0.0.3\n")
    return path


def site(ssh_cfg: Path, probe_from: str | None) -> Any:
    return build_run_config("alpha", "beta", None, None, "/mnt/nfs", ssh_cfg, LAB, guest_network=SITE_GUEST.network,
                            guest_addresses=SITE_GUEST.addresses, probe_from=probe_from)


def test_default_is_the_controller(ssh_cfg: Path) -> None:
    assert site(ssh_cfg, None).probe_from is None


@pytest.mark.parametrize("name", ["nas", "alpha", "beta-alias", "x.behind-bastion"])
def test_an_alias_of_the_ssh_config_or_a_proxied_name_is_kept(ssh_cfg: Path, name: str) -> None:
    assert site(ssh_cfg, name).probe_from == name


def test_an_unknown_host_is_refused_naming_the_option_and_the_fix(ssh_cfg: Path) -> None:
    with pytest.raises(ConfigError, match=r"--probe-from 'nowhere' is neither a Host in .*ssh_config nor "
                                          r"resolvable.*use an alias from your ssh config"):
        site(ssh_cfg, "nowhere")


def test_a_name_that_is_syntax_is_refused(ssh_cfg: Path) -> None:
    with pytest.raises(ConfigError, match="--probe-from"):
        site(ssh_cfg, "-oProxyCommand=id")


def test_the_lab_probes_from_one_of_its_own_hosts(no_name_resolves: list[str]) -> None:
    lab_run = build_run_config(None, None, None, None, "/mnt/nfs", None, LAB, probe_from="nfs")
    assert lab_run.lab and lab_run.probe_from == "nfs"
    with pytest.raises(ConfigError, match="--probe-from 'h9' is not a host of the embedded lab"):
        build_run_config(None, None, None, None, "/mnt/nfs", None, LAB, probe_from="h9")
    assert no_name_resolves == []


def test_an_unknown_probe_host_is_a_usage_error_before_any_host_is_touched(pytester: pytest.Pytester,
                                                                          ssh_cfg: Path) -> None:
    pytester.makepyfile("def test_never():\n    raise AssertionError('a test ran')\n")
    result = pytester.runpytest("-p", "fixtures.options", "--src", "alpha", "--dst", "beta", "--ssh-config",
                                str(ssh_cfg), "--guest-network", "vmnet", "--guest-ip", "192.0.2.50/24",
                                "--probe-from", "nowhere")
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # exit code 4
    result.stderr.fnmatch_lines(["ERROR: --probe-from 'nowhere' is neither a Host in*"])


def test_probe_from_syntax_is_rejected_while_parsing(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("-p", "fixtures.options", "--probe-from", "h1;id")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--probe-from*"])


def test_the_option_reaches_the_run_config(pytester: pytest.Pytester, ssh_cfg: Path) -> None:
    pytester.makepyfile("def test_it(run_config):\n    assert run_config.probe_from == 'nas'\n")
    pytester.runpytest("-p", "fixtures.options", "--src", "alpha", "--dst", "beta", "--ssh-config", str(ssh_cfg),
                       "--guest-network", "vmnet", "--guest-ip", "192.0.2.50/24",
                       "--probe-from", "nas").assert_outcomes(passed=1)
