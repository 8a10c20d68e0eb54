"""The test guest: command line, build cache, agent protocol, and a real boot.

The boot test is the one that matters: every migration test trusts this
guest to answer pings and echoes and to detect corrupted RAM and disk, so
it is booted here exactly as the lab will boot it (TCG, 128 MiB, virtio NIC
and disk) and each of those claims is checked, including that a wrong seed
*fails* — a verifier that always says "ok" would pass every migration.

Network: only 198.18.3.0/24 on a tap inside a throwaway namespace, no route
out; nothing touches the lab's `virtmig-*` namespaces.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from virtmig.guest import image as guest
from virtmig.guest.image import GuestImage, build_guest, guest_cmdline, inputs_digest
from virtmig.lab.topology import GUEST_AGENT_PORT, GUEST_MAC

NETNS = "vmtest-guest"
AGENT_NETNS = "vmtest-agent"
TAP = "vmtap0"
HOST_ADDR = "198.18.3.1"
GUEST_ADDR = "198.18.3.100"
CLONE_NEWNET = 0x40000000


# --- command line ----------------------------------------------------------


def test_cmdline_carries_address_and_dirty_rate() -> None:
    assert guest_cmdline("198.18.0.100", 24) == "console=ttyS0 quiet pti=on virtmig.ip=198.18.0.100/24 virtmig.dirty=0"
    image = GuestImage(Path("/k"), Path("/i"), "6.1.0-1-amd64")
    assert image.cmdline("198.18.3.100", 24, 50).endswith("virtmig.ip=198.18.3.100/24 virtmig.dirty=50")


@pytest.mark.parametrize(("ip", "prefix", "dirty"), [("198.18.0", 24, 0), ("198.18.0.1", 33, 0), ("198.18.0.1", 24, -1)])
def test_cmdline_rejects_nonsense(ip: str, prefix: int, dirty: int) -> None:
    with pytest.raises(ValueError):
        guest_cmdline(ip, prefix, dirty)


# --- cache stamp -----------------------------------------------------------


@pytest.fixture
def fake_build(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Replace apt and the assembly with fakes; return the log of builds."""
    builds: list[str] = []
    monkeypatch.setattr(guest, "resolve_kernel_package", lambda: "linux-image-6.1.0-99-amd64")

    def assemble(package: str, version: str, cache_dir: Path) -> None:
        builds.append(version)
        (cache_dir / guest.KERNEL_NAME).write_text("kernel")
        (cache_dir / guest.INITRD_NAME).write_text("initrd")

    monkeypatch.setattr(guest, "_assemble", assemble)
    return builds


def test_cache_is_built_once(fake_build: list[str], tmp_path: Path) -> None:
    first = build_guest(tmp_path)
    assert first.kernel_version == "6.1.0-99-amd64"
    assert build_guest(tmp_path) == first
    assert fake_build == ["6.1.0-99-amd64"]
    stamp = json.loads((tmp_path / guest.STAMP_NAME).read_text())
    assert stamp["digest"] == inputs_digest("6.1.0-99-amd64")


def test_force_rebuilds(fake_build: list[str], tmp_path: Path) -> None:
    build_guest(tmp_path)
    build_guest(tmp_path, force=True)
    assert len(fake_build) == 2


@pytest.mark.parametrize("damage", ["no initrd", "no stamp", "bad stamp", "other kernel"])
def test_damaged_cache_is_rebuilt(fake_build: list[str], tmp_path: Path, damage: str) -> None:
    build_guest(tmp_path)
    stamp = tmp_path / guest.STAMP_NAME
    if damage == "no initrd":
        (tmp_path / guest.INITRD_NAME).unlink()
    elif damage == "no stamp":
        stamp.unlink()
    elif damage == "bad stamp":
        stamp.write_text("{not json")
    else:  # a stamp whose digest belongs to another kernel than it names
        stamp.write_text(json.dumps({"kernel_version": "6.1.0-99-amd64", "digest": inputs_digest("6.1.0-1-amd64")}))
    build_guest(tmp_path)
    assert len(fake_build) == 2


def test_changed_inputs_rebuild(fake_build: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build_guest(tmp_path)
    init = tmp_path / "init.sh"
    init.write_text(guest.INIT_SCRIPT.read_text() + "# changed\n")
    monkeypatch.setattr(guest, "INIT_SCRIPT", init)
    build_guest(tmp_path)
    monkeypatch.setattr(guest, "MODULES", (*guest.MODULES, "virtio_scsi"))
    build_guest(tmp_path)
    assert len(fake_build) == 3


def test_digest_depends_on_kernel_version() -> None:
    assert inputs_digest("6.1.0-1-amd64") != inputs_digest("6.1.0-2-amd64")


# --- helpers for the namespace tests ---------------------------------------


def _need_root_and(*tools: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")


def _run(*argv: str) -> None:
    proc = subprocess.run(list(argv), capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}"


def _netns_socket(netns: str) -> socket.socket:
    """A UDP socket living in `netns`, usable from this (root-namespace) process.

    setns() switches only the calling thread, and a socket stays in the
    namespace it was created in, so a short-lived thread does the switch.
    """
    made: list[socket.socket | BaseException] = []

    def enter_and_create() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, os.strerror(err))
            finally:
                os.close(fd)
            made.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        except BaseException as exc:  # re-raised in the caller's thread
            made.append(exc)

    worker = threading.Thread(target=enter_and_create)
    worker.start()
    worker.join()
    if isinstance(made[0], BaseException):
        raise made[0]
    return made[0]


@dataclass
class Agent:
    """Client side of the agent protocol, through a socket in the test namespace."""

    sock: socket.socket
    addr: tuple[str, int]

    def ask(self, message: str, timeout: float = 10.0) -> str:
        self.sock.settimeout(timeout)
        self.sock.sendto(message.encode(), self.addr)
        data, _ = self.sock.recvfrom(65536)
        return data.decode()

    def echo_rtts_ms(self, count: int) -> list[float]:
        rtts = []
        for i in range(count):
            payload = f"probe {i} {time.monotonic_ns()}".encode()
            start = time.perf_counter()
            self.sock.settimeout(2.0)
            self.sock.sendto(payload, self.addr)
            data, _ = self.sock.recvfrom(65536)
            rtts.append((time.perf_counter() - start) * 1000)
            assert data == payload
        return rtts


def _check_protocol(agent: Agent) -> None:
    """The protocol claims every migration test relies on, wrong seeds included."""
    assert agent.ask("!ping") == "ok pong\n"
    assert agent.ask("!ping\n") == "ok pong\n"
    assert agent.ask("no bang: echoed") == "no bang: echoed"
    assert agent.ask("!frobnicate") == "err unknown command\n"
    assert agent.ask("!ram-verify s1") == "err no ram pattern\n"
    written = agent.ask("!ram-write s1").split()
    assert written[:3] == ["ok", "ram-write", "s1"] and len(written[3]) == 16
    assert agent.ask("!ram-write s1").split() == written  # deterministic
    assert agent.ask("!ram-verify s1") == "ok ram-verify s1\n"
    assert agent.ask("!ram-verify s2").startswith("fail ram-verify s2 offset=")
    assert "ram_pattern=s1 " in agent.ask("!status")
    assert agent.ask("!disk-write d1").startswith("ok disk-write d1 ")
    assert agent.ask("!disk-verify d1") == "ok disk-verify d1\n"
    assert agent.ask("!disk-verify d2").startswith("fail disk-verify d2 offset=")
    assert agent.ask("!dirty 8") == "ok dirty 8\n"
    assert agent.ask("!dirty -3") == "err bad argument\n"
    time.sleep(1.2)
    status = dict(kv.split("=", 1) for kv in agent.ask("!status").split()[1:])
    assert status["dirty"] == "8" and int(status["dirtied_mib"]) >= 4
    assert agent.ask("!dirty 0") == "ok dirty 0\n"


# --- the agent on this machine, in a namespace with only loopback ----------


@pytest.mark.lab
def test_agent_protocol_on_loopback(tmp_path: Path) -> None:
    """Fast feedback on the agent without a boot (a file stands in for /dev/vda)."""
    _need_root_and("ip", "gcc")
    binary = guest.compile_agent(tmp_path / "agent")
    disk = tmp_path / "disk.raw"  # created only after the "no disk" check
    proc: subprocess.Popen[bytes] | None = None
    subprocess.run(["ip", "netns", "del", AGENT_NETNS], capture_output=True)  # a crashed earlier run
    _run("ip", "netns", "add", AGENT_NETNS)
    try:
        _run("ip", "netns", "exec", AGENT_NETNS, "ip", "link", "set", "lo", "up")
        # `ip netns exec` execs the command: proc.pid is the agent itself.
        proc = subprocess.Popen(["ip", "netns", "exec", AGENT_NETNS, str(binary), "-p", "7007", "-d", str(disk),
                                 "-m", "8"], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
        agent = Agent(_netns_socket(AGENT_NETNS), ("127.0.0.1", 7007))
        with agent.sock:
            _wait_for(lambda: agent.ask("!ping", timeout=0.2) == "ok pong\n", 5.0, "agent on loopback")
            assert agent.ask("!disk-verify d1") == "err no disk\n"
            assert " disk=absent " in agent.ask("!status")
            disk.write_bytes(b"\0" * (8 << 20))
            _check_protocol(agent)
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        subprocess.run(["ip", "netns", "del", AGENT_NETNS], capture_output=True)


def _wait_for(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll `check()` until true; return the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if check():
                return time.monotonic() - start
        except OSError:  # timeouts, unreachable while the guest boots
            pass
        time.sleep(0.05)
    raise AssertionError(f"{what}: no answer after {timeout:.0f} s")


# --- the real guest, booted under TCG --------------------------------------


@dataclass
class BootedGuest:
    agent: Agent
    image: GuestImage
    ping_after_s: float
    agent_after_s: float
    console: Path


@pytest.fixture(scope="module")
def booted_guest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BootedGuest]:
    """The built guest running in QEMU on a tap in NETNS, with a 16 MiB disk."""
    _need_root_and("ip", "gcc", "ping", "qemu-system-x86_64")
    if not Path("/dev/net/tun").exists():
        pytest.skip("needs /dev/net/tun")
    image = build_guest()
    tmp = tmp_path_factory.mktemp("guest")
    disk, console = tmp / "disk.raw", tmp / "console.log"
    disk.write_bytes(b"\0" * (16 << 20))
    subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)  # a crashed earlier run
    qemu: subprocess.Popen[bytes] | None = None
    _run("ip", "netns", "add", NETNS)
    try:
        for argv in (["ip", "link", "set", "lo", "up"], ["ip", "tuntap", "add", "dev", TAP, "mode", "tap"],
                     ["ip", "addr", "add", f"{HOST_ADDR}/24", "dev", TAP], ["ip", "link", "set", TAP, "up"]):
            _run("ip", "netns", "exec", NETNS, *argv)
        with console.open("wb") as log:
            start = time.monotonic()
            qemu = subprocess.Popen(
                ["ip", "netns", "exec", NETNS, "qemu-system-x86_64", "-machine", "q35,accel=tcg", "-cpu", "qemu64",
                 "-m", "128", "-nographic", "-no-reboot", "-kernel", str(image.kernel), "-initrd", str(image.initrd),
                 "-append", image.cmdline(GUEST_ADDR, 24),
                 "-netdev", f"tap,id=n0,ifname={TAP},script=no,downscript=no",
                 "-device", f"virtio-net-pci,netdev=n0,mac={GUEST_MAC}",
                 "-drive", f"file={disk},format=raw,if=virtio"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        # One ping per attempt: iputils counts "unreachable" errors towards -c,
        # so a single long-running ping gives up while the guest still boots.
        ping_argv = ["ip", "netns", "exec", NETNS, "ping", "-n", "-q", "-c", "1", "-W", "0.5", GUEST_ADDR]
        try:
            _wait_for(lambda: subprocess.run(ping_argv, capture_output=True).returncode == 0, 120.0, "guest ping")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; console:\n{console.read_text(errors='replace')}") from None
        ping_after = time.monotonic() - start
        agent = Agent(_netns_socket(NETNS), (GUEST_ADDR, GUEST_AGENT_PORT))
        with agent.sock:
            _wait_for(lambda: agent.ask("!ping", timeout=0.2) == "ok pong\n", 30.0, "guest agent")
            yield BootedGuest(agent, image, ping_after, time.monotonic() - start, console)
    finally:
        if qemu is not None:
            qemu.kill()  # `ip netns exec` exec'd QEMU: this PID is QEMU's own
            qemu.wait()
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)


@pytest.mark.lab
def test_guest_boots_and_answers(booted_guest: BootedGuest, record_property: Callable[[str, object], None]) -> None:
    rtts = booted_guest.agent.echo_rtts_ms(200)
    figures = {
        "boot_to_ping_s": round(booted_guest.ping_after_s, 2),
        "boot_to_agent_s": round(booted_guest.agent_after_s, 2),
        "echo_rtt_median_ms": round(statistics.median(rtts), 3),
        "echo_rtt_p99_ms": round(sorted(rtts)[int(len(rtts) * 0.99) - 1], 3),
        "initrd_bytes": booted_guest.image.initrd.stat().st_size,
    }
    for key, value in figures.items():
        record_property(key, value)
    print(f"guest figures: {figures}")
    assert booted_guest.ping_after_s < 120


@pytest.mark.lab
def test_guest_protocol(booted_guest: BootedGuest) -> None:
    status = booted_guest.agent.ask("!status")
    assert status.startswith("ok dirty=0 ram_pattern=none uptime_ms=") and " disk=raw " in status
    _check_protocol(booted_guest.agent)


@pytest.mark.lab
def test_echo_stays_fast_while_busy(booted_guest: BootedGuest) -> None:
    """Neither the dirtier nor a ram-write may starve the echo: that would fake downtime."""
    agent = booted_guest.agent
    idle = statistics.median(agent.echo_rtts_ms(50))
    assert agent.ask("!dirty 20") == "ok dirty 20\n"
    try:
        dirtying = agent.echo_rtts_ms(100)
    finally:
        agent.ask("!dirty 0")
    # A ram-write (~0.1 s of guest CPU) on the worker while echoes go on.
    with _netns_socket(NETNS) as cmd_sock:
        cmd_sock.settimeout(10)
        cmd_sock.sendto(b"!ram-write busy", agent.addr)
        during_write = agent.echo_rtts_ms(30)
        assert cmd_sock.recvfrom(512)[0].startswith(b"ok ram-write busy ")
    print(f"echo rtt ms: idle median {idle:.3f}; dirtying 20 MiB/s median {statistics.median(dirtying):.3f} "
          f"max {max(dirtying):.3f}; during ram-write median {statistics.median(during_write):.3f} "
          f"max {max(during_write):.3f}")
    assert statistics.median(dirtying) < max(5.0, 10 * idle)
    assert max(during_write) < 100.0
