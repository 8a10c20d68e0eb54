"""The test guest: command line, build cache, agent protocol, and a real boot.

The boot test is the one that matters: every migration test trusts this
guest to answer pings and echoes and to detect corrupted RAM and disk, so
it is booted here exactly as the lab will boot it (TCG, 128 MiB, virtio NIC
and disk; see tests/guest_vm.py) and each of those claims is checked,
including that a wrong seed *fails* — a verifier that always says "ok"
would pass every migration.

Nothing here asserts how fast: boot time, round trips and the echo's
latency under load are printed by bench/test_guest_figures.py.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.guest_vm import (
    HOST_ADDR,
    NETNS,
    Agent,
    BootedGuest,
    boot_guest,
    need_root_and,
    netns_socket,
    run_ok,
    status_fields,
    wait_until,
)
from virtmig.guest import image as guest
from virtmig.guest.image import GuestImage, build_guest, guest_cmdline, inputs_digest

AGENT_NETNS = "vmtest-agent"
#: A source address outside the booted guest's 198.18.3.0/24, on the test namespace's loopback.
OFF_SUBNET = "198.18.5.1"


# --- command line ----------------------------------------------------------


def test_cmdline_carries_address_and_dirty_rate() -> None:
    assert guest_cmdline("198.18.0.100", 24) == ("console=ttyS0 quiet pti=on cryptomgr.notests tsc=reliable "
                                                 "no_timer_check virtmig.ip=198.18.0.100/24 virtmig.dirty=0")
    assert guest_cmdline("198.18.0.100", 24, gateway="198.18.0.1").endswith("virtmig.dirty=0 virtmig.gw=198.18.0.1")
    image = GuestImage(Path("/k"), Path("/i"), "6.1.0-1-amd64")
    assert image.cmdline("198.18.3.100", 24, 50).endswith("virtmig.ip=198.18.3.100/24 virtmig.dirty=50")


@pytest.mark.parametrize(("ip", "prefix", "dirty"),
                         [("198.18.0", 24, 0), ("198.18.0.1", 33, 0), ("198.18.0.1", 24, -1)])
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


def test_builtin_drivers_are_left_out_of_the_initramfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Debian 13's kernel builds virtio, virtio_ring and virtio_pci in: no .ko, nothing to insmod."""
    modroot, staging = tmp_path / "modules", tmp_path / "staging"
    drivers = modroot / "kernel" / "drivers"
    drivers.mkdir(parents=True)
    builtin = {"virtio", "virtio_ring", "virtio_pci", "crc16"}
    (modroot / "modules.builtin").write_text(
        "".join(f"kernel/drivers/virtio/{m}.ko\n" for m in sorted(builtin)) + "kernel/lib/crc32c_generic.ko\n")
    for name in (*guest.MODULES, *guest.FS_MODULES):
        if name not in builtin and name != "crc32c_generic":
            (drivers / f"{name.replace('_', '-')}.ko").write_bytes(f"module {name}".encode())
    monkeypatch.setattr(guest, "compile_agent", lambda out: out.write_bytes(b"agent") and out)
    guest._stage_initramfs(staging, modroot, tmp_path / "agent")
    listed = (staging / "etc" / "virtmig" / "modules").read_text().split()
    assert listed == [m for m in guest.MODULES if m not in builtin]  # insmod order kept
    assert (staging / "etc" / "virtmig" / "fs-modules").read_text().split() == ["mbcache", "jbd2", "ext4"]
    packed = sorted(p.name for p in (staging / "lib" / "modules").iterdir())
    assert packed == sorted(f"{m}.ko" for m in (*listed, "mbcache", "jbd2", "ext4"))
    assert (staging / "lib" / "modules" / "virtio_net.ko").read_bytes() == b"module virtio_net"


def test_a_module_neither_built_in_nor_shipped_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "modules.builtin").write_text("kernel/drivers/virtio/virtio.ko\n")
    assert guest.builtin_modules(tmp_path) == {"virtio"}
    with pytest.raises(guest.GuestBuildError, match="virtio_ring not found"):
        guest._stage_initramfs(tmp_path / "staging", tmp_path, tmp_path / "agent")


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
    assert status_fields(agent.ask("!status"))["dirty"] == "8"
    # The dirtier runs: its count grows (how fast is bench/test_guest_figures.py's figure).
    wait_until(lambda: int(status_fields(agent.ask("!status"))["dirtied_mib"]) >= 4, 60.0, "4 MiB dirtied")
    assert agent.ask("!dirty 0") == "ok dirty 0\n"


# --- the agent on this machine, in a namespace with only loopback ----------


@pytest.mark.lab
def test_agent_protocol_on_loopback(tmp_path: Path) -> None:
    """Fast feedback on the agent without a boot (a file stands in for /dev/vda)."""
    need_root_and("ip", "gcc")
    binary = guest.compile_agent(tmp_path / "agent")
    disk = tmp_path / "disk.raw"  # created only after the "no disk" check
    proc: subprocess.Popen[bytes] | None = None
    subprocess.run(["ip", "netns", "del", AGENT_NETNS], capture_output=True)  # a crashed earlier run
    run_ok("ip", "netns", "add", AGENT_NETNS)
    try:
        run_ok("ip", "netns", "exec", AGENT_NETNS, "ip", "link", "set", "lo", "up")
        # `ip netns exec` execs the command: proc.pid is the agent itself.
        proc = subprocess.Popen(["ip", "netns", "exec", AGENT_NETNS, str(binary), "-p", "7007", "-d", str(disk),
                                 "-m", "8"], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
        agent = Agent(netns_socket(AGENT_NETNS), ("127.0.0.1", 7007))
        with agent.sock:
            wait_until(lambda: agent.ask("!ping", timeout=0.2) == "ok pong\n", 5.0, "agent on loopback")
            assert agent.ask("!disk-verify d1") == "err no disk\n"
            assert " disk=absent " in agent.ask("!status")
            disk.write_bytes(b"\0" * (8 << 20))
            _check_protocol(agent)
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        subprocess.run(["ip", "netns", "del", AGENT_NETNS], capture_output=True)


# --- the real guest, booted under TCG --------------------------------------


@pytest.fixture(scope="module")
def booted_guest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BootedGuest]:
    """The guest with a default route via the host's side of its tap (--guest-gateway)."""
    with boot_guest(tmp_path_factory.mktemp("guest"), gateway=HOST_ADDR) as booted:
        yield booted


@pytest.mark.lab
def test_guest_boots_and_answers(booted_guest: BootedGuest) -> None:
    """It booted (the fixture waited for ping and agent) and echoes every datagram back unchanged."""
    assert booted_guest.image.initrd.stat().st_size > 0
    assert len(booted_guest.agent.echo_rtts_ms(200)) == 200  # each reply checked against its payload


@pytest.mark.lab
def test_a_peer_on_another_subnet_is_answered_through_the_gateway(booted_guest: BootedGuest) -> None:
    """A source outside the guest's /24: only the default route virtmig.gw set can carry the reply back."""
    run_ok("ip", "netns", "exec", NETNS, "ip", "addr", "add", f"{OFF_SUBNET}/32", "dev", "lo")
    with netns_socket(NETNS, bind_to=OFF_SUBNET) as sock:
        agent = Agent(sock, booted_guest.agent.addr)
        assert agent.ask("!ping", timeout=5) == "ok pong\n"


@pytest.mark.lab
def test_guest_protocol(booted_guest: BootedGuest) -> None:
    status = booted_guest.agent.ask("!status")
    assert status.startswith("ok dirty=0 ram_pattern=none uptime_ms=") and " disk=raw " in status
    _check_protocol(booted_guest.agent)


@pytest.mark.lab
def test_echo_is_answered_while_busy(booted_guest: BootedGuest) -> None:
    """Neither the dirtier nor a ram-write may hold up the echo: that would fake downtime.

    The echo and `!status` are answered by the agent's main thread, pattern
    commands by its worker; so a `!status` sent right behind a ram-write is
    answered while the write runs, and says busy=1, and echoes keep coming
    back.  An agent whose main thread did the write itself could never say
    busy=1.  (How fast the echoes come back is bench/test_guest_figures.py's
    figure.)
    """
    agent = booted_guest.agent
    assert agent.ask("!dirty 20") == "ok dirty 20\n"
    try:
        assert len(agent.echo_rtts_ms(100)) == 100
        assert status_fields(agent.ask("!status"))["dirty"] == "20"
    finally:
        agent.ask("!dirty 0")

    def status_during_a_write(seed: str) -> str:
        """A ram-write (~0.1 s of guest CPU) on the worker, and the status asked right behind it."""
        with netns_socket(NETNS) as cmd_sock:
            cmd_sock.settimeout(10)
            cmd_sock.sendto(f"!ram-write {seed}".encode(), agent.addr)
            during = agent.ask("!status")
            assert len(agent.echo_rtts_ms(30)) == 30
            assert cmd_sock.recvfrom(512)[0].startswith(f"ok ram-write {seed} ".encode())
        return during

    # A few tries: this machine could stall between the two sends for as long as the write takes.
    seen = []
    for attempt in range(5):
        seen.append(status_during_a_write(f"busy{attempt}"))
        if status_fields(seen[-1])["busy"] == "1":
            break
    assert status_fields(seen[-1])["busy"] == "1", f"status never answered while a write ran: {seen}"
    assert status_fields(agent.ask("!status"))["busy"] == "0"
