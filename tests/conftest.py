"""Shared fixtures for the harness's own unit tests.

`sshd` starts a throwaway OpenSSH server on 127.0.0.1 so that `virtmig.host`
is tested against the real thing (quoting, exit codes, SFTP, host keys)
rather than a mock.  That needs root and a daemon, so every test using it
is marked `sshd`, and `make unit` (-m "not lab and not sshd") leaves them out.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock

from tests.realkernel_host import k1, real_kernel_host  # noqa: F401 (module fixtures of k1's tests)
from virtmig.lab import lifecycle
from virtmig.lab.netns import lab_netns_names
from virtmig.lab.topology import LAB_LOCK

#: sshd must be started by absolute path (it re-executes itself).
_SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@dataclass(frozen=True)
class Sshd:
    """A running test sshd and the client files that reach it as `alias`."""

    port: int
    root: Path
    ssh_config: Path
    known_hosts: Path
    identity: Path
    log: Path
    alias: str = "testhost"

    def client_config(self, name: str, known_hosts: Path, *, extra: str = "") -> Path:
        """Write another client config for this server (e.g. with other known hosts); return it."""
        path = self.root / f"ssh_config.{name}"
        path.write_text(
            f"Host {self.alias}\n"
            "    HostName 127.0.0.1\n"
            f"    Port {self.port}\n"
            "    User root\n"
            f"    IdentityFile {self.identity}\n"
            "    IdentitiesOnly yes\n"
            f"    UserKnownHostsFile {known_hosts}\n"
            "    GlobalKnownHostsFile /dev/null\n"
            "    StrictHostKeyChecking yes\n"
            "    BatchMode yes\n"
            "    ConnectTimeout 5\n"
            f"{extra}"
        )
        return path


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "virtmig-test", "-f", str(path)],
                   check=True)
    return Path(f"{path}.pub").read_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_listening(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"test sshd exited with {proc.returncode}: {log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"test sshd not listening on 127.0.0.1:{port} after 10 s: {log.read_text()}")


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `sshd` every test that uses the sshd fixture, directly or through another fixture.

    Then run last the tests that hold the lab for the rest of the session
    (through the session `lab` fixture): tests whose inner `pytest suites/...`
    runs take the lab's lock themselves must come before them, or those runs
    wait for a lock this session never releases.  The sort is stable.
    """
    for item in items:
        if "sshd" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.sshd)
    items.sort(key=lambda item: "lab" in getattr(item, "fixturenames", ()))


@pytest.fixture(scope="session")
def sshd() -> Iterator[Sshd]:
    """An sshd on 127.0.0.1:<free port> accepting a generated key for root.

    Its files live in a root-owned 0700 directory outside /tmp because
    StrictModes rejects authorized_keys below a world-writable directory.
    """
    if os.geteuid() != 0 or not os.access(_SSHD, os.X_OK):
        pytest.skip("needs root and OpenSSH's sshd")
    root = Path(f"/var/lib/virtmig-test-ssh-{os.getpid()}")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(mode=0o700)
    # sshd's privilege separation directory, normally made by its service unit.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    proc: subprocess.Popen[bytes] | None = None
    try:
        host_pub = _keygen(root / "host_ed25519").split()
        (root / "authorized_keys").write_text(_keygen(root / "id_ed25519"))
        log = root / "sshd.log"
        for _attempt in range(5):  # the free port may be taken before sshd binds it
            port = _free_port()
            (root / "sshd_config").write_text(
                f"ListenAddress 127.0.0.1:{port}\n"
                f"HostKey {root}/host_ed25519\n"
                f"AuthorizedKeysFile {root}/authorized_keys\n"
                "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes yes\nPidFile none\n"
                "Subsystem sftp internal-sftp\nLogLevel VERBOSE\n"
            )
            with log.open("wb") as log_file:
                proc = subprocess.Popen([_SSHD, "-D", "-e", "-f", str(root / "sshd_config")],
                                        stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file)
            try:
                _wait_listening(proc, port, log)
                break
            except RuntimeError:
                if proc.poll() is None or "Address already in use" not in log.read_text():
                    raise
        else:
            raise RuntimeError(f"test sshd could not bind a port: {log.read_text()}")
        known_hosts = root / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
        server = Sshd(port=port, root=root, ssh_config=root / "ssh_config", known_hosts=known_hosts,
                      identity=root / "id_ed25519", log=log)
        server.client_config("main", known_hosts).rename(server.ssh_config)
        yield server
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def fresh_lab() -> Iterator[None]:
    """A freshly raised lab (one per test module) for tests whose inner runs take the lab's lock themselves.

    Unlike the session `lab` fixture this one does not hold the lock while
    the test runs (an inner `pytest suites/...` would wait for it for ever);
    it takes it only to raise and to lower the lab.  Raising replaces any lab
    already up, so no earlier run's leftovers are there; the lab goes down
    afterwards if it was down.
    """
    with FileLock(str(LAB_LOCK), timeout=3600):
        was_up = lifecycle.is_up()
        lifecycle.up()
    yield
    if not was_up:
        with FileLock(str(LAB_LOCK), timeout=3600):
            lifecycle.down()


@pytest.fixture
def lab_lock() -> Iterator[bool]:
    """Hold the lab; yield whether it was up, and leave it that way afterwards."""
    with FileLock(str(LAB_LOCK), timeout=1800):
        was_up = lifecycle.is_up()
        try:
            yield was_up
        finally:
            if was_up and not lifecycle.is_up():
                lifecycle.up()
            elif not was_up and lab_netns_names():
                lifecycle.down()


@pytest.fixture
def lab_up(lab_lock: bool) -> None:
    """The lab up and held for the test (an inner run with --src/--dst takes no lock of its own)."""
    if not lifecycle.is_up():
        lifecycle.up()
