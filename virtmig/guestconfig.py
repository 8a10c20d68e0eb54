"""Who the test guest is on a site's network: which network, which address, which MAC.

A site certifies with its own VM network, so none of this may come from the
embedded lab: the lab hands its bridge and address in through the same
values (fixtures.options builds its defaults from the lab's topology).
Checked here, cheaply and locally, so a typo in --guest-ip is a usage error
before any host is touched; whether the network exists on the hosts and
whether the address is free is preflight's to find out (virtmig.preflight).

The MAC is derived, not configured: two runs against one pair, or two
pytest-xdist workers of one run, must never put the same MAC on one
network, and a derived MAC needs no bookkeeping to be unique.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

from virtmig.config import MIN_GUEST_MEMORY_MIB
from virtmig.option_values import ConfigError

#: A libvirt network name: what `virsh net-define` accepts, minus '/' (libvirt refuses it).
_NETWORK_NAME = re.compile(r"[A-Za-z0-9_.+-]{1,64}")
#: A Linux interface name (IFNAMSIZ 16, so at most 15 characters; no '/', ':' or space).
_IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")
#: libvirt's own prefix for generated MACs (QEMU's OUI): certain not to be a real NIC's.
MAC_PREFIX = "52:54:00"
#: Largest --guest-ips pool: one address per xdist worker; more is a typo, not a plan.
MAX_POOL = 256


@dataclass(frozen=True)
class GuestNetwork:
    """Where the guest's NIC is plugged: a libvirt network by name, or a host bridge."""

    kind: Literal["network", "bridge"]
    name: str

    @property
    def label(self) -> str:
        """As the option spells it: `bridge:br0`, or the network's name."""
        return f"bridge:{self.name}" if self.kind == "bridge" else self.name


def parse_guest_network(value: str) -> GuestNetwork:
    """--guest-network: `bridge:NAME` (a host bridge) or a libvirt network name, else ConfigError."""
    if value.startswith("bridge:"):
        name = value.removeprefix("bridge:")
        if not _IFNAME.fullmatch(name) or name in (".", ".."):
            raise ConfigError(f"--guest-network {value!r}: {name!r} is not an interface name "
                              "(1-15 letters, digits, '_', '.', '-')")
        return GuestNetwork("bridge", name)
    if not _NETWORK_NAME.fullmatch(value) or value in (".", ".."):
        raise ConfigError(f"--guest-network {value!r} is neither bridge:NAME nor a libvirt network name "
                          "(letters, digits, '_', '.', '+', '-')")
    return GuestNetwork("network", value)


@dataclass(frozen=True)
class GuestAddresses:
    """The guest's static addresses (one, or a pool: one per xdist worker) and their prefix.

    Static because a site's VM network need not run DHCP, and because the
    probe must know where to send before the guest has said anything.
    """

    addresses: tuple[ipaddress.IPv4Address, ...]
    prefix_len: int
    #: The guest's default route (--guest-gateway); None: none, the guest answers on its own subnet only.
    gateway: ipaddress.IPv4Address | None = None

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Interface(f"{self.addresses[0]}/{self.prefix_len}").network

    @property
    def label(self) -> str:
        """As the options spell it: `A/P` or `A-B/P`."""
        first, last = self.addresses[0], self.addresses[-1]
        return f"{first}/{self.prefix_len}" if first == last else f"{first}-{last}/{self.prefix_len}"

    def with_gateway(self, value: str) -> GuestAddresses:
        """These addresses with --guest-gateway *value*: a host of their subnet, not one of them; else ConfigError.

        Why a gateway at all: where the probe or the agent's commands reach the
        guest from another subnet (a routed VM network), the guest's replies
        need a route back; without --guest-gateway it has none, as on the lab.
        """
        gateway = _host_address(value, self.prefix_len, "--guest-gateway", value)
        if gateway not in self.subnet:
            raise ConfigError(f"--guest-gateway {value}: outside the guest's subnet {self.subnet} ({self.label})")
        if gateway in self.addresses:
            raise ConfigError(f"--guest-gateway {value} is the guest's own address ({self.label})")
        return dataclasses.replace(self, gateway=gateway)

    def for_worker(self, index: int) -> ipaddress.IPv4Address:
        """The address of xdist worker *index* (0 without xdist): workers never share one."""
        if not 0 <= index < len(self.addresses):
            raise ConfigError(f"worker {index} needs guest address number {index + 1}, but --guest-ips "
                              f"{self.label} holds {len(self.addresses)}: give a larger pool or fewer workers (-n)")
        return self.addresses[index]


def _host_address(text: str, prefix_len: int, option: str, value: str) -> ipaddress.IPv4Address:
    try:
        iface = ipaddress.IPv4Interface(f"{text}/{prefix_len}")
    except ValueError as exc:
        raise ConfigError(f"{option} {value!r}: {text!r} is not an IPv4 address") from exc
    net = iface.network
    if prefix_len <= 30 and iface.ip in (net.network_address, net.broadcast_address):
        which = "network" if iface.ip == net.network_address else "broadcast"
        raise ConfigError(f"{option} {value!r}: {iface.ip} is the {which} address of {net}, not a host's")
    if iface.ip.is_loopback or iface.ip.is_multicast or iface.ip.is_unspecified or iface.ip.is_link_local:
        raise ConfigError(f"{option} {value!r}: {iface.ip} cannot be a guest's address or gateway")
    return iface.ip


def _split_prefix(value: str, option: str, form: str) -> tuple[str, int]:
    addr, sep, prefix = value.partition("/")
    if not sep or not prefix.isdigit() or not 8 <= int(prefix) <= 32:
        raise ConfigError(f"{option} {value!r} is not in the form {form} (PREFIX 8..32, e.g. 192.0.2.50/24)")
    return addr, int(prefix)


def parse_guest_ip(value: str) -> GuestAddresses:
    """--guest-ip ADDR/PREFIX (CIDR form, required: the guest configures its own netmask)."""
    addr, prefix = _split_prefix(value, "--guest-ip", "ADDR/PREFIX")
    return GuestAddresses((_host_address(addr, prefix, "--guest-ip", value),), prefix)


def parse_guest_ips(value: str) -> GuestAddresses:
    """--guest-ips FIRST-LAST/PREFIX: a pool in one subnet, FIRST <= LAST, at most MAX_POOL addresses."""
    span, prefix = _split_prefix(value, "--guest-ips", "FIRST-LAST/PREFIX")
    first_text, dash, last_text = span.partition("-")
    if not dash:
        raise ConfigError(f"--guest-ips {value!r} is not in the form FIRST-LAST/PREFIX")
    first = _host_address(first_text, prefix, "--guest-ips", value)
    last = _host_address(last_text, prefix, "--guest-ips", value)
    subnet = ipaddress.IPv4Interface(f"{first}/{prefix}").network
    if last not in subnet:
        raise ConfigError(f"--guest-ips {value!r}: {last} is outside {first}'s subnet {subnet}")
    if last < first:
        raise ConfigError(f"--guest-ips {value!r}: {last} comes before {first}")
    count = int(last) - int(first) + 1
    if count > MAX_POOL:
        raise ConfigError(f"--guest-ips {value!r}: {count} addresses, at most {MAX_POOL}")
    return GuestAddresses(tuple(ipaddress.IPv4Address(int(first) + i) for i in range(count)), prefix)


def worker_index(worker_id: str) -> int:
    """pytest-xdist's worker id as a number: 'master' (no xdist) -> 0, 'gw3' -> 3."""
    if worker_id == "master":
        return 0
    if not re.fullmatch(r"gw\d+", worker_id):
        raise ValueError(f"not an xdist worker id: {worker_id!r}")
    return int(worker_id[2:])


def guest_mac(run_token: str, src: str, dst: str, worker_id: str) -> str:
    """The guest's MAC for this run, pair and worker: 52:54:00 plus three bytes of a hash of them.

    Distinct runs (their tokens differ) and distinct workers of one run get
    distinct MACs with odds of a clash about one in 16 million per pair of
    guests; the same inputs always give the same MAC, so a report can name it.
    """
    digest = hashlib.sha256("\0".join((run_token, src, dst, worker_id)).encode()).digest()
    return MAC_PREFIX + "".join(f":{b:02x}" for b in digest[:3])


#: --virt-type: auto picks kvm when both hosts offer it (libvirt's domain capabilities), else qemu (TCG).
VIRT_TYPES = ("auto", "kvm", "qemu")
#: --guest-cpu keywords; anything else is a CPU model name (custom mode, fallback forbidden).
CPU_KEYWORDS = ("baseline", "host-model")
_CPU_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MAX_GUEST_MEMORY_MIB = 1024 * 1024
MAX_GUEST_VCPUS = 256


def parse_virt_type(value: str) -> str:
    """--virt-type: one of VIRT_TYPES, else ConfigError."""
    if value not in VIRT_TYPES:
        raise ConfigError(f"--virt-type {value!r} is not one of {', '.join(VIRT_TYPES)}")
    return value


def parse_guest_cpu(value: str) -> str:
    """--guest-cpu: baseline, host-model, or a CPU model name as libvirt spells it (e.g. EPYC-Rome, qemu64)."""
    if value in CPU_KEYWORDS or _CPU_MODEL.fullmatch(value):
        return value
    raise ConfigError(f"--guest-cpu {value!r} is neither baseline, host-model nor a CPU model name "
                      "(letters, digits, '_', '.', '-')")


def check_guest_memory(value: int) -> int:
    """--guest-memory MIB within MIN_GUEST_MEMORY_MIB..MAX_GUEST_MEMORY_MIB (the hosts' free memory is preflight's)."""
    if not MIN_GUEST_MEMORY_MIB <= value <= MAX_GUEST_MEMORY_MIB:
        raise ConfigError(f"--guest-memory {value}: must be between {MIN_GUEST_MEMORY_MIB} and "
                          f"{MAX_GUEST_MEMORY_MIB} MiB (the test guest needs {MIN_GUEST_MEMORY_MIB})")
    return value


def check_guest_vcpus(value: int) -> int:
    """--guest-vcpus N within 1..MAX_GUEST_VCPUS."""
    if not 1 <= value <= MAX_GUEST_VCPUS:
        raise ConfigError(f"--guest-vcpus {value}: must be between 1 and {MAX_GUEST_VCPUS}")
    return value
