"""Every SSH step is bounded: connecting to a host that never answers, a command with no timeout of its own.

The silent host is a socket on 127.0.0.2 that accepts and then says
nothing (no SSH banner), as a host whose sshd hangs; without the connect
bound, SshHost would wait there for ever (pytest-timeout would end it).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Sshd
from virtmig import sshhost
from virtmig.host import CommandTimeout, HostConnectionError
from virtmig.sshhost import SshHost


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port on 127.0.0.2 that accepts connections and never sends a byte."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.2", 0))
        srv.listen(4)
        yield srv.getsockname()[1]


def test_a_host_that_never_answers_fails_the_connect(silent_port: int, tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(f"Host silent\n    HostName 127.0.0.2\n    Port {silent_port}\n    ConnectTimeout 1\n"
                      "    UserKnownHostsFile /dev/null\n    GlobalKnownHostsFile /dev/null\n")
    with SshHost("silent", config) as host, pytest.raises(HostConnectionError, match="cannot ssh to"):
        host.run("true")


@pytest.mark.sshd
def test_a_command_without_a_timeout_gets_the_default(sshd: Sshd, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sshhost, "DEFAULT_COMMAND_TIMEOUT_S", 0.5)
    with SshHost(sshd.alias, sshd.ssh_config) as host, \
            pytest.raises(CommandTimeout, match="timed out after 0.5 s: sleep 10"):
        host.run("sleep", "10")


@pytest.mark.sshd
def test_sftp_calls_carry_a_timeout(sshd: Sshd) -> None:
    with SshHost(sshd.alias, sshd.ssh_config) as host:
        host.read_text("/etc/hostname")
        assert host._sftp().get_channel().gettimeout() == sshhost.SFTP_TIMEOUT_S  # noqa: SLF001
