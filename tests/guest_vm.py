"""The test guest booted for real: under TCG in QEMU, on a tap in a throwaway network namespace.

Shared by tests/test_guest_build.py, which checks what every migration test
trusts the guest to do, and bench/test_guest_figures.py, which prints how
long that takes.  Network: only 198.18.3.0/24 on a tap inside the namespace,
no route out; nothing touches the lab's `virtmig-*` namespaces.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from virtmig.guest.image import GuestImage, build_guest
from virtmig.lab.topology import GUEST_AGENT_PORT, GUEST_MAC

NETNS = "vmtest-guest"
TAP = "vmtap0"
HOST_ADDR = "198.18.3.1"
GUEST_ADDR = "198.18.3.100"
CLONE_NEWNET = 0x40000000


def need_root_and(*tools: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")


def run_ok(*argv: str) -> None:
    proc = subprocess.run(list(argv), capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}"


def netns_socket(netns: str, bind_to: str | None = None) -> socket.socket:
    """A UDP socket living in `netns`, usable from this (root-namespace) process.

    setns() switches only the calling thread, and a socket stays in the
    namespace it was created in, so a short-lived thread does the switch.
    *bind_to*: the source address its datagrams carry (one of the namespace's).
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
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            if bind_to is not None:
                sock.bind((bind_to, 0))
            made.append(sock)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
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


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll `check()` until true; return the seconds it took (a figure for bench/).

    `timeout` is the limit for a guest that never comes, not an expectation:
    past it, AssertionError.
    """
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if check():
                return time.monotonic() - start
        except OSError:  # timeouts, unreachable while the guest boots
            pass
        time.sleep(0.05)
    raise AssertionError(f"{what}: no answer after {timeout:.0f} s")


def status_fields(reply: str) -> dict[str, str]:
    """`ok k=v k=v ...` (the agent's `!status`) as a dict."""
    return dict(kv.split("=", 1) for kv in reply.split()[1:])


@dataclass
class BootedGuest:
    """The guest, its agent, and how long the boot took (figures for bench/, not for asserts)."""

    agent: Agent
    image: GuestImage
    ping_after_s: float
    agent_after_s: float
    console: Path


@contextmanager
def boot_guest(tmp: Path, *, gateway: str | None = None) -> Iterator[BootedGuest]:
    """The built guest running in QEMU on a tap in NETNS, with a 16 MiB disk (files in `tmp`).

    *gateway*: the guest's default route (--guest-gateway), e.g. HOST_ADDR.
    """
    need_root_and("ip", "gcc", "ping", "qemu-system-x86_64")
    if not Path("/dev/net/tun").exists():
        pytest.skip("needs /dev/net/tun")
    image = build_guest()
    disk, console = tmp / "disk.raw", tmp / "console.log"
    disk.write_bytes(b"\0" * (16 << 20))
    subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)  # a crashed earlier run
    qemu: subprocess.Popen[bytes] | None = None
    run_ok("ip", "netns", "add", NETNS)
    try:
        for argv in (["ip", "link", "set", "lo", "up"], ["ip", "tuntap", "add", "dev", TAP, "mode", "tap"],
                     ["ip", "addr", "add", f"{HOST_ADDR}/24", "dev", TAP], ["ip", "link", "set", TAP, "up"]):
            run_ok("ip", "netns", "exec", NETNS, *argv)
        with console.open("wb") as log:
            start = time.monotonic()
            qemu = subprocess.Popen(
                ["ip", "netns", "exec", NETNS, "qemu-system-x86_64", "-machine", "q35,accel=tcg", "-cpu", "qemu64",
                 "-m", "128", "-nographic", "-no-reboot", "-kernel", str(image.kernel), "-initrd", str(image.initrd),
                 "-append", image.cmdline(GUEST_ADDR, 24, gateway=gateway),
                 "-netdev", f"tap,id=n0,ifname={TAP},script=no,downscript=no",
                 "-device", f"virtio-net-pci,netdev=n0,mac={GUEST_MAC}",
                 "-drive", f"file={disk},format=raw,if=virtio"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        # One ping per attempt: iputils counts "unreachable" errors towards -c,
        # so a single long-running ping gives up while the guest still boots.
        ping_argv = ["ip", "netns", "exec", NETNS, "ping", "-n", "-q", "-c", "1", "-W", "0.5", GUEST_ADDR]
        try:
            wait_until(lambda: subprocess.run(ping_argv, capture_output=True).returncode == 0, 120.0, "guest ping")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; console:\n{console.read_text(errors='replace')}") from None
        ping_after = time.monotonic() - start
        agent = Agent(netns_socket(NETNS), (GUEST_ADDR, GUEST_AGENT_PORT))
        with agent.sock:
            wait_until(lambda: agent.ask("!ping", timeout=0.2) == "ok pong\n", 30.0, "guest agent")
            yield BootedGuest(agent, image, ping_after, time.monotonic() - start, console)
    finally:
        if qemu is not None:
            qemu.kill()  # `ip netns exec` exec'd QEMU: this PID is QEMU's own
            qemu.wait()
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)
