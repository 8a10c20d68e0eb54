"""Checks of a host pair before any migration: each says what it saw and the fix.

A migration that fails half-way over a blocked port or a CPU the destination
lacks costs a paused guest and an hour of reading logs; each of these checks
costs a second.  Every check returns a `CheckResult` (never raises for a
failed condition), so the verdict can list every reason at once, with its
evidence, rather than the first.

Two checks are other modules' measurements, judged here: the clocks
(virtmig.migration.clocks, as every record measures them) and the shared
storage (virtmig.storage.shared_check, as the storage fixture runs it, as
the qemu user of virtmig.storage.qemu_user).
"""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath
from typing import Any

import libvirt

from virtmig.environment import version_text
from virtmig.guestconfig import GuestNetwork
from virtmig.host import ChannelHost, CommandError, CommandTimeout, Host, HostConnectionError
from virtmig.migration.clocks import measure_offset
from virtmig.storage import shared_check
from virtmig.storage.qemu_user import find_qemu_identity

#: libvirt's default migration port range (qemu.conf migration_port_min/max).
MIGRATION_PORTS = (49152, 49215)
CLOCK_TOLERANCE_MS = 500.0
CHECK_TIMEOUT_S = 30.0
#: The lab's guest CPU; real pairs pass their guest's <cpu> element.
DEFAULT_GUEST_CPU = "<cpu mode='custom' match='exact'><model fallback='forbid'>qemu64</model></cpu>"


@dataclass(frozen=True)
class CheckResult:
    """One preflight check: passed or not, what showed it, and the fix if not."""

    name: str
    ok: bool
    evidence: tuple[str, ...]
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CheckResult:
        return cls(str(raw["name"]), bool(raw["ok"]), tuple(str(e) for e in raw.get("evidence", ())),
                   None if raw.get("fix") is None else str(raw["fix"]))


@dataclass
class Pair:
    """What the checks may use: both hosts, both libvirt connections, the shared path.

    qemu_user: the user QEMU runs as, when the operator named it (--qemu-user);
    None looks it up as virtmig.storage.qemu_user does.
    """

    src: Host
    dst: Host
    src_conn: libvirt.virConnect
    dst_conn: libvirt.virConnect
    storage_path: str | None = None
    qemu_user: str | None = None
    guest_cpu_xml: str = DEFAULT_GUEST_CPU
    domain_type: str = "qemu"
    guest_network: GuestNetwork | None = None
    guest_ip: str | None = None
    #: The host that probes the guest and sends its agent commands (--probe-from); None: the controller.
    probe_host: Host | None = None
    notes: list[str] = field(default_factory=list)


def check_ssh(pair: Pair) -> CheckResult:
    """Both hosts answer over ssh, and the source reaches the destination (libvirtd does, in p2p)."""
    ev: list[str] = []
    try:
        for host in (pair.src, pair.dst):
            ev.append(f"{host.name}: {host.run('uname', '-nr', timeout=CHECK_TIMEOUT_S).stdout.strip()}")
        peer = pair.src.run("ssh", "-o", "BatchMode=yes", pair.dst.name, "true", check=False,
                            timeout=CHECK_TIMEOUT_S)
    except (HostConnectionError, CommandError, CommandTimeout) as exc:
        return CheckResult("ssh", False, (*ev, str(exc)), "make both hosts reachable over ssh with key authentication")
    ev.append(f"{pair.src.name} -> {pair.dst.name}: ssh rc={peer.rc} {peer.stderr.strip()[-200:]}".rstrip())
    fix = None if peer.ok else (f"let root on {pair.src.name} ssh to {pair.dst.name} without a prompt "
                                "(key in authorized_keys, host key in known_hosts)")
    return CheckResult("ssh", peer.ok, tuple(ev), fix)


def check_versions(pair: Pair) -> CheckResult:
    """libvirt and QEMU on both hosts; the destination must not be older than the source."""
    got = {}
    for label, conn in (("src", pair.src_conn), ("dst", pair.dst_conn)):
        got[label] = (conn.getLibVersion(), conn.getVersion())
    ev = tuple(f"{h.name}: libvirt {version_text(got[k][0])}, QEMU {version_text(got[k][1])}"
               for k, h in (("src", pair.src), ("dst", pair.dst)))
    ok = got["dst"][0] >= got["src"][0] and got["dst"][1] >= got["src"][1]
    return CheckResult("versions", ok, ev, None if ok else
                       "upgrade the destination: migration to an older libvirt/QEMU is not supported")


def host_uuid(conn: libvirt.virConnect) -> str:
    """The host UUID libvirt puts in migration cookies (capabilities /host/uuid)."""
    return ET.fromstring(conn.getCapabilities()).findtext("host/uuid", default="").strip()


def check_host_uuids(pair: Pair) -> CheckResult:
    """Distinct host UUIDs, else libvirt refuses: `Attempt to migrate guest to the same host`."""
    a, b = host_uuid(pair.src_conn), host_uuid(pair.dst_conn)
    ok = bool(a) and a != b
    return CheckResult("host-uuids", ok, (f"{pair.src.name}: {a}", f"{pair.dst.name}: {b}"), None if ok else
                       "set a distinct host_uuid in /etc/libvirt/libvirtd.conf on one host (uuidgen), restart libvirtd")


def _resolves(host: Host, name: str) -> tuple[bool, str]:
    res = host.run("getent", "hosts", name, check=False, timeout=CHECK_TIMEOUT_S)
    addrs = [line.split()[0] for line in res.stdout.splitlines() if line.split()]
    if not addrs:
        return False, f"on {host.name}: {name} does not resolve (getent rc={res.rc})"
    loop = [a for a in addrs if ipaddress.ip_address(a).is_loopback]
    return not loop, f"on {host.name}: {name} -> {', '.join(addrs)}" + (" (loopback!)" if loop else "")


def check_name_resolution(pair: Pair) -> CheckResult:
    """Each host's name resolves on the other to a non-loopback address (migration URIs use names)."""
    a_ok, a = _resolves(pair.src, pair.dst.name)
    b_ok, b = _resolves(pair.dst, pair.src.name)
    ok = a_ok and b_ok
    return CheckResult("name-resolution", ok, (a, b), None if ok else
                       "give each host's name its non-loopback address on the other (DNS or /etc/hosts)")


#: On the destination: listen on the first free port of the range, say which,
#: then wait (detached, stdout closed so ssh returns) for one connection.
_LISTEN = r"""
import os, socket, sys
lo, hi = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket()
for port in range(lo, hi + 1):
    try:
        s.bind(("", port)); break
    except OSError:
        continue
else:
    print("none"); sys.exit(0)
s.listen(1); print(port, flush=True)
if os.fork():
    sys.stdin.read()  # exit only after ssh sent its (empty) stdin: an early exit races the sender
    os._exit(0)
os.setsid(); fd = os.open(os.devnull, os.O_RDWR)
for i in (0, 1, 2):
    os.dup2(fd, i)
s.settimeout(15)
try:
    s.accept()[0].close()
except OSError:
    pass
"""

#: On the source: TCP connect to $1:$2 (bash's /dev/tcp if there is bash, else python3).
_CONNECT = r"""
if command -v bash >/dev/null 2>&1; then
  exec timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2"
fi
exec timeout 5 python3 -c 'import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 5)' "$1" "$2"
"""


def check_migration_port(pair: Pair) -> CheckResult:
    """A TCP connection from the source reaches the destination's migration port range."""
    lo, hi = MIGRATION_PORTS
    listen = pair.dst.run("python3", "-c", _LISTEN, str(lo), str(hi), check=False, timeout=CHECK_TIMEOUT_S)
    port = listen.stdout.strip()
    if not listen.ok or not port.isdigit():
        return CheckResult("migration-port", False,
                           (f"{pair.dst.name}: could not listen in {lo}-{hi}: rc={listen.rc} {port} "
                            f"{listen.stderr.strip()[-200:]}",),
                           f"free a port in {lo}-{hi} on {pair.dst.name} (or install python3 for this check)")
    conn = pair.src.run_script(_CONNECT, args=[pair.dst.name, port], check=False, timeout=CHECK_TIMEOUT_S)
    ev = (f"{pair.dst.name}: listening on {port}",
          f"{pair.src.name} -> {pair.dst.name}:{port}: rc={conn.rc} {conn.stderr.strip()[-200:]}".rstrip())
    return CheckResult("migration-port", conn.ok, ev, None if conn.ok else
                       f"open TCP {lo}-{hi} from {pair.src.name} to {pair.dst.name} "
                       "(firewall-cmd --add-port=49152-49215/tcp)")


def check_cpu(pair: Pair) -> CheckResult:
    """The guest's CPU definition is runnable on the destination's hypervisor."""
    arch = ET.fromstring(pair.src_conn.getCapabilities()).findtext("host/cpu/arch", default="x86_64")
    verdicts = {libvirt.VIR_CPU_COMPARE_INCOMPATIBLE: "incompatible", libvirt.VIR_CPU_COMPARE_IDENTICAL: "identical",
                libvirt.VIR_CPU_COMPARE_SUPERSET: "superset"}
    ev = [f"guest CPU: {pair.guest_cpu_xml}"]
    ok = True
    for host, conn in ((pair.src, pair.src_conn), (pair.dst, pair.dst_conn)):
        try:
            got = conn.compareHypervisorCPU(None, arch, None, pair.domain_type, pair.guest_cpu_xml, 0)
            ev.append(f"{host.name} ({pair.domain_type}, {arch}): {verdicts.get(got, got)}")
            ok = ok and got != libvirt.VIR_CPU_COMPARE_INCOMPATIBLE
        except libvirt.libvirtError as exc:
            ev.append(f"{host.name}: {exc}")
            ok = False
    return CheckResult("cpu", ok, tuple(ev), None if ok else
                       "use a guest CPU model both hosts provide (virsh hypervisor-cpu-baseline)")


def check_clocks(pair: Pair, tolerance_ms: float = CLOCK_TOLERANCE_MS) -> CheckResult:
    """The two hosts' clocks agree within tolerance (libvirt's timings and logs compare them).

    The hosts must be able to keep a channel open (SshHost, LocalHost): the
    offset is read over one, NTP-style.
    """
    if not isinstance(pair.src, ChannelHost) or not isinstance(pair.dst, ChannelHost):
        raise TypeError("check_clocks needs hosts that can open a channel (virtmig.host.ChannelHost)")
    src, dst = measure_offset(pair.src), measure_offset(pair.dst)
    (a, ua), (b, ub) = (src.offset_ms, src.uncertainty_ms), (dst.offset_ms, dst.uncertainty_ms)
    ok = abs(a - b) <= tolerance_ms + ua + ub
    ev = (f"{pair.src.name}: {a:+.2f} ms +-{ua:.2f} vs controller", f"{pair.dst.name}: {b:+.2f} ms +-{ub:.2f}",
          *(f"{o.host}: chronyc: {_chrony_line(o.chrony)}" for o in (src, dst) if o.chrony),
          f"difference {abs(a - b):.1f} ms, tolerance {tolerance_ms:g} ms")
    return CheckResult("clocks", ok, ev, None if ok else "run NTP (chronyd) on both hosts against the same servers")


def _chrony_line(chrony: dict[str, Any]) -> str:
    if "system_time_ms" in chrony:
        return f"system time {chrony['system_time_ms']:+.3f} ms from NTP, leap status {chrony.get('leap_status', '?')}"
    return str(chrony.get("status"))


def check_shared_storage(pair: Pair) -> CheckResult:
    """Both hosts see one file system at the storage path, as the qemu user (virtmig.storage.shared_check)."""
    if pair.storage_path is None:
        return CheckResult("shared-storage", False, ("no shared storage path given",),
                           "mount the shared storage at the same path on both hosts")
    who = find_qemu_identity(pair.src, pair.qemu_user)
    if who is None:
        wanted = pair.qemu_user or "qemu.conf's user, libvirt-qemu or qemu"
        return CheckResult("shared-storage", False, (f"{pair.src.name}: no qemu user ({wanted})",),
                           "name the user QEMU runs as with --qemu-user")
    mount = PurePosixPath(pair.storage_path)
    src = shared_check.gather(pair.src, mount, None, who.user)
    dst = shared_check.gather(pair.dst, mount, None, who.user)
    report = shared_check.compare(src, dst, shared_check.sentinel_roundtrip(pair.src, pair.dst, mount,
                                                                             as_user=who.user))
    return CheckResult("shared-storage", report.ok, tuple(report.table().splitlines()), None if report.ok else
                       f"see the rows marked {shared_check.FAIL_MARK}: mount the same export, "
                       "same options, same path on both hosts")


def _network_on(host: Host, conn: libvirt.virConnect, network: GuestNetwork) -> tuple[bool, str]:
    if network.kind == "bridge":
        res = host.run("test", "-d", f"/sys/class/net/{network.name}/bridge", check=False, timeout=CHECK_TIMEOUT_S)
        return res.ok, f"{host.name}: bridge {network.name} " + ("present" if res.ok else "missing")
    try:
        active = bool(conn.networkLookupByName(network.name).isActive())
    except libvirt.libvirtError as exc:
        return False, f"{host.name}: libvirt network {network.name} missing ({exc.get_error_message()})"
    return active, f"{host.name}: libvirt network {network.name} " + ("active" if active else "defined but inactive")


def check_guest_network(pair: Pair) -> CheckResult:
    """The network the guest's NIC joins (--guest-network) exists on both hosts: migration needs it on each."""
    if pair.guest_network is None:
        return CheckResult("guest-network", False, ("no guest network given",), "give --guest-network")
    net = pair.guest_network
    seen = [_network_on(host, conn, net) for host, conn in ((pair.src, pair.src_conn), (pair.dst, pair.dst_conn))]
    missing = [host.name for host, (ok, _) in zip((pair.src, pair.dst), seen, strict=True) if not ok]
    if not missing:
        return CheckResult("guest-network", True, tuple(text for _, text in seen))
    fix = (f"create bridge {net.name} on {', '.join(missing)} (ip link add {net.name} type bridge, enslave the "
           "VM network's NIC) or name an existing one with --guest-network bridge:NAME"
           if net.kind == "bridge" else
           f"define and start libvirt network {net.name} on {', '.join(missing)} (virsh net-define, net-start, "
           "net-autostart) or name an existing one with --guest-network")
    return CheckResult("guest-network", False, tuple(text for _, text in seen), fix)


def _host_ipv4(host: Host) -> set[str]:
    res = host.run("ip", "-o", "-4", "addr", "show", check=False, timeout=CHECK_TIMEOUT_S)
    return {fields[3].split("/")[0] for fields in (line.split() for line in res.stdout.splitlines())
            if len(fields) > 3 and fields[2] == "inet"}


def check_guest_address(pair: Pair) -> CheckResult:
    """The guest's address (--guest-ip) is no host's and nothing answers at it yet.

    Two guests on one address make every measurement meaningless (replies
    from the wrong machine) and can cut a site's own VM off its network, so
    this runs before any guest starts.  The ping goes from the source host,
    which sits on the VM network in most sites (the controller may not).
    """
    if pair.guest_ip is None:
        return CheckResult("guest-address", False, ("no guest address given",), "give --guest-ip or --guest-ips")
    ip = pair.guest_ip
    for host in (pair.src, pair.dst):
        if ip in _host_ipv4(host):
            return CheckResult("guest-address", False, (f"{host.name} has {ip} on one of its interfaces",),
                               f"give the guest a free address on the VM network, not {host.name}'s own")
    ping = pair.src.run("ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "1", ip, check=False,
                        timeout=CHECK_TIMEOUT_S)
    summary = next((line for line in ping.stdout.splitlines() if "transmitted" in line), ping.stderr.strip())
    ev = (f"{pair.src.name}: ping {ip}: rc={ping.rc} {summary}".rstrip(),)
    if ping.rc == 0:
        return CheckResult("guest-address", False, ev,
                           f"{ip} already answers: find what holds it (ip neigh show {ip} on {pair.src.name}) or "
                           "give the guest another free address (--guest-ip / --guest-ips)")
    if ping.rc not in (1, 2):  # 1: no reply, 2: no route from here; anything else: no ping ran
        return CheckResult("guest-address", False, ev, f"install ping (iputils-ping) on {pair.src.name}")
    return CheckResult("guest-address", True, ev)


#: The oldest python3 the probe relay runs on (`virtmig/guest/probe.py` is sent to it as it is).
PROBE_HOST_MIN_PYTHON = (3, 10)


def check_probe_host(pair: Pair) -> CheckResult:
    """The --probe-from host answers over ssh, has a python3 the probe relay runs on (virtmig.guest.relay)
    and a route to the guest's address.

    Without --probe-from the controller probes the guest and there is nothing to check.
    """
    host = pair.probe_host
    if host is None:
        return CheckResult("probe-host", True, ("the controller probes the guest (no --probe-from)",))
    try:
        res = host.run("python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])", check=False,
                       timeout=CHECK_TIMEOUT_S)
    except (HostConnectionError, CommandTimeout) as exc:
        return CheckResult("probe-host", False, (f"{host.name}: {exc}",),
                           f"make --probe-from {host.name} reachable over ssh with key authentication "
                           "(an alias of --ssh-config), or probe from another host")
    if res.rc == 127:
        return CheckResult("probe-host", False, (f"{host.name}: python3 not found",),
                           f"install python3 on {host.name} (Debian: apt-get install python3), "
                           "or probe from another host")
    version = res.stdout.strip()
    try:
        found = tuple(int(part) for part in version.split("."))
    except ValueError:
        found = ()
    ev: tuple[str, ...] = (f"{host.name}: python3 {version or res.stderr.strip()[-200:]}",)
    if res.rc != 0 or found < PROBE_HOST_MIN_PYTHON:
        want = ".".join(map(str, PROBE_HOST_MIN_PYTHON))
        return CheckResult("probe-host", False, ev, f"install python3 >= {want} on {host.name}, "
                                                    "or probe from another host")
    if pair.guest_ip is None:
        return CheckResult("probe-host", True, ev)
    # The kernel's choice of route, no packet sent: the guest is not running yet.
    route = host.run("ip", "-o", "route", "get", pair.guest_ip, check=False, timeout=CHECK_TIMEOUT_S)
    ev += (f"{host.name}: route to {pair.guest_ip}: {(route.stdout or route.stderr).strip()[:200]}",)
    if not route.ok:
        return CheckResult("probe-host", False, ev,
                           f"give {host.name} an address on the guest's network, or probe from a host on it")
    return CheckResult("probe-host", True, ev)


#: Every check, in the order the report lists them.
CHECKS: dict[str, Callable[[Pair], CheckResult]] = {
    "ssh": check_ssh,
    "versions": check_versions,
    "host-uuids": check_host_uuids,
    "name-resolution": check_name_resolution,
    "migration-port": check_migration_port,
    "cpu": check_cpu,
    "clocks": check_clocks,
    "shared-storage": check_shared_storage,
    "guest-network": check_guest_network,
    "guest-address": check_guest_address,
    "probe-host": check_probe_host,
}


def run_check(name: str, pair: Pair) -> CheckResult:
    """One check, isolated: one that crashes is a failed check (with the exception as evidence)."""
    try:
        return CHECKS[name](pair)
    except Exception as exc:  # noqa: BLE001 - reported as the check's evidence
        return CheckResult(name, False, (f"check crashed: {type(exc).__name__}: {exc}",), None)
