"""The validated settings of one run (which hosts, which NFS export, where mounted).

Kept free of pytest so that bench scripts and the lab CLI can build the same
`RunConfig`.  Each value is checked on its own by virtmig.option_values;
here they are checked together.  Every check is cheap and local (file reads, name syntax,
DNS lookups): a typo in --src should fail in a second with a message naming
the option, not minutes later as an SSH timeout inside a fixture.  Nothing
connects to the hosts.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from virtmig import sshconfig
from virtmig.option_values import (
    DEFAULT_GROUP,
    ConfigError,
    check_dirty_rate,
    check_export_client,
    check_host_name,
    check_migration_timeout,
    check_round_trips,
    check_storage_path,
    check_wait_for_pair,
)
from virtmig.pairs import RING, HostPair, PairError, PairSpec, plan_pairs

if TYPE_CHECKING:  # guestconfig imports this module (GuestShape's bounds), so it is imported for types only
    from virtmig.guestconfig import GuestAddresses, GuestNetwork

DEFAULT_MOUNT_POINT = PurePosixPath("/mnt/nfs")



@dataclass(frozen=True)
class RunConfig:
    """Where a run migrates: between *src* and *dst* (ssh names), storage on *nfs_server*:*export*.

    nfs_server/export are None when the hosts already share storage at
    mount_point.  ssh_config is the file given with --ssh-config (None: ssh's
    defaults).  lab is True for the embedded lab.  round_trips is how many
    times each migration test goes there and back (--round-trips); the
    guest dirties memory at dirty_rate_mib_s (--dirty-rate) while it moves.
    guest: the guest's network and addresses (--guest-network, --guest-ip or
    --guest-ips; the lab's own without --src/--dst).  guest_shape: what the
    guest is asked to be (--virt-type, --guest-cpu, --guest-memory,
    --guest-vcpus), resolved against the hosts by virtmig.guest.platform.
    probe_from: the ssh name of the host that probes the guest and sends its
    agent commands (--probe-from); None: the controller does.
    allow_faults: --allow-faults, the operator's consent to the fault suite
    changing a site's hosts mid-migration (the lab needs none).
    """

    src: str
    dst: str
    nfs_server: str | None
    export: str | None
    mount_point: PurePosixPath
    ssh_config: Path | None
    lab: bool
    guest: GuestSite
    guest_shape: GuestShape
    round_trips: int = 1
    dirty_rate_mib_s: int = 0
    migration_timeout_s: float | None = None
    wait_for_pair_s: int = 0
    probe_from: str | None = None
    allow_faults: bool = False
    #: Every pair the run certifies (--pairs, --inventory); empty: just src -> dst.  Read through `host_pairs`.
    pairs: tuple[HostPair, ...] = ()

    @property
    def host_pairs(self) -> tuple[HostPair, ...]:
        """The pairs this run certifies, in order: `pairs`, or the one src -> dst pair."""
        return self.pairs or (HostPair(self.src, self.dst),)

    @property
    def many_pairs(self) -> bool:
        """Whether the run certifies more than one pair: each then gets names of its own on shared hosts
        (work directory, export block, guest) and takes turns on the NFS server."""
        return len(self.host_pairs) > 1


@dataclass(frozen=True)
class GuestSite:
    """Where the test guest lives on the pair's network: the network its NIC joins, its addresses."""

    network: GuestNetwork
    addresses: GuestAddresses


#: The test guest needs this much: its 64 MiB dirtying buffer, the 16 MiB RAM pattern, the kernel.
MIN_GUEST_MEMORY_MIB = 128


@dataclass(frozen=True)
class GuestShape:
    """What the guest is asked to be: --virt-type, --guest-cpu, --guest-memory, --guest-vcpus.

    Each value is checked by virtmig.guestconfig as the option is parsed, and
    resolved against both hosts (auto, baseline) by virtmig.guest.platform.
    """

    virt_type: str = "auto"
    cpu: str = "baseline"
    memory_mib: int = MIN_GUEST_MEMORY_MIB
    vcpus: int = 1

    def over(self, defaults: GuestShape) -> GuestShape:
        """These values where given (non-empty, non-zero), *defaults*' elsewhere: options over a site's defaults."""
        return GuestShape(self.virt_type or defaults.virt_type, self.cpu or defaults.cpu,
                          self.memory_mib or defaults.memory_mib, self.vcpus or defaults.vcpus)


@dataclass(frozen=True)
class DefaultPair:
    """What a run targets without --src/--dst: the embedded lab's hosts, NFS export, ssh config, guest network.

    Given by the caller (fixtures.options builds it from the lab's topology),
    so that the settings layer knows no site: the lab is one site among others.
    """

    src: str
    dst: str
    nfs_server: str
    export: str
    ssh_config: Path
    guest: GuestSite
    #: the lab's guest shape (its TCG hosts run qemu64); a site's defaults are GuestShape()'s
    guest_shape: GuestShape
    #: the lab's hypervisors in order, what --pairs plans over without --inventory; empty: (src, dst)
    hypervisors: tuple[str, ...] = ()

    @property
    def hosts(self) -> tuple[str, ...]:
        """The hypervisors --pairs may name on the lab: `hypervisors`, or its one pair."""
        return self.hypervisors or (self.src, self.dst)


def build_run_config(
    src: str | None,
    dst: str | None,
    nfs_server: str | None,
    export: str | None,
    mount_point: str | PurePosixPath | None,
    ssh_config: Path | None,
    lab: DefaultPair,
    *,
    guest_network: GuestNetwork | None = None,
    guest_addresses: GuestAddresses | None = None,
    guest_gateway: str | None = None,
    virt_type: str | None = None,
    guest_cpu: str | None = None,
    guest_memory_mib: int | None = None,
    guest_vcpus: int | None = None,
    round_trips: int = 1,
    dirty_rate_mib_s: int = 0,
    migration_timeout_s: float | None = None,
    wait_for_pair_s: int = 0,
    probe_from: str | None = None,
    allow_faults: bool = False,
    inventory: Path | None = None,
    group: str | None = None,
    pairs: PairSpec | None = None,
    ssh_config_out: Path | None = None,
) -> RunConfig:
    """Check the options together and return the RunConfig, or raise ConfigError.

    Without --src and --dst the run targets `lab`, the embedded lab (h1 -> h2,
    NFS from the lab's server); nothing lab-related is checked, since the lab
    may not be up yet when options are parsed.  --probe-from must name a host
    as --src/--dst must (for the lab: one of its hosts).

    --pairs (*pairs*) plans many pairs over the hosts of *group* in the
    *inventory* (--inventory, --group; ring when not given), or over the lab's
    hypervisors without an inventory; it excludes --src/--dst, and src/dst
    are then the first planned pair, so code that knows one pair keeps working.
    The inventory's ssh settings are written to *ssh_config_out* (default:
    virtmig.inventory.default_ssh_config_path), which becomes the run's
    ssh_config, carrying --ssh-config's file (or ssh's default files) on.
    The inventory's group vars give nfs_server, export and mount_point
    (*mount_point* None: not given) where the options do not.
    """
    if pairs is not None and (src is not None or dst is not None):
        raise ConfigError(f"--pairs {pairs} and --src/--dst both name the pairs: give one of them "
                          "(one pair as --pairs SRC:DST)")
    if inventory is not None and (src is not None or dst is not None):
        raise ConfigError(f"--inventory {inventory} names the hosts: give --pairs (ring by default, or "
                          "SRC:DST for one pair) instead of --src/--dst")
    if group is not None and inventory is None:
        raise ConfigError(f"--group {group} applies only with --inventory")
    trips, dirty = check_round_trips(round_trips), check_dirty_rate(dirty_rate_mib_s)
    deadline = None if migration_timeout_s is None else check_migration_timeout(migration_timeout_s)
    wait = check_wait_for_pair(wait_for_pair_s)
    asked = GuestShape(virt_type or "", guest_cpu or "", guest_memory_mib or 0, guest_vcpus or 0)
    mount = check_storage_path(mount_point or DEFAULT_MOUNT_POINT, "--mount-point")
    if src is None and dst is None and inventory is None:
        given = [opt for opt, val in (("--nfs-server", nfs_server), ("--export", export),
                                      ("--ssh-config", ssh_config)) if val is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} only apply with --src/--dst or --inventory (without them the "
                              "embedded lab is used)")
        planned = _planned(pairs, lab.hosts, "the embedded lab's hypervisors")
        src, dst = (planned[0].src, planned[0].dst) if planned else (lab.src, lab.dst)
        lab_hosts = (*lab.hosts, lab.nfs_server)
        if probe_from is not None and probe_from not in lab_hosts:
            raise ConfigError(f"--probe-from {probe_from!r} is not a host of the embedded lab "
                              f"(one of {', '.join(lab_hosts)}; or give --src/--dst and --ssh-config)")
        addresses = guest_addresses or lab.guest.addresses
        guest = GuestSite(guest_network or lab.guest.network,
                          addresses if guest_gateway is None else addresses.with_gateway(guest_gateway))
        return RunConfig(src=src, dst=dst, nfs_server=lab.nfs_server, export=lab.export,
                         mount_point=mount, ssh_config=lab.ssh_config, lab=True, guest=guest,
                         guest_shape=asked.over(lab.guest_shape), round_trips=trips, dirty_rate_mib_s=dirty,
                         migration_timeout_s=deadline, wait_for_pair_s=wait, probe_from=probe_from,
                         allow_faults=allow_faults, pairs=planned)
    if ssh_config is not None and not ssh_config.is_file():
        raise ConfigError(f"--ssh-config {str(ssh_config)!r}: no such file")
    if inventory is not None:
        # Imported here: it imports ansible-core (half a second), and this module for ConfigError.
        from virtmig.inventory import plan_site  # noqa: PLC0415
        site = plan_site(inventory, group or DEFAULT_GROUP, pairs or PairSpec(RING), ssh_config, ssh_config_out)
        planned, ssh_config = site.pairs, site.ssh_config
        nfs_server, export = nfs_server or site.nfs_server, export or site.export
        if mount_point is None and site.mount_point is not None:
            mount = PurePosixPath(site.mount_point)
        guest_network, guest_addresses = guest_network or site.guest_network, guest_addresses or site.guest_ips
        src, dst = planned[0].src, planned[0].dst
    elif src is None or dst is None:
        missing = "--src" if src is None else "--dst"
        raise ConfigError(f"{missing} is missing: give both --src and --dst, or neither to use the embedded lab")
    else:
        check_host_name(src, "--src")
        check_host_name(dst, "--dst")
        if src == dst:
            raise ConfigError(f"--src and --dst are the same host ({src!r}); migration needs two hosts")
        planned = ()
    if (nfs_server is None) != (export is None):
        vars_too = " (or the inventory's virtmig_nfs_server and virtmig_export)" if inventory is not None else ""
        raise ConfigError(f"give --nfs-server and --export together{vars_too} (or neither if storage is already "
                          "mounted)")
    if nfs_server is not None:
        # Only syntax: the hypervisors mount it, and they may resolve names
        # (a storage network) that this machine cannot.
        check_host_name(nfs_server, "--nfs-server")
    export_path = None if export is None else str(check_storage_path(export, "--export"))
    names_file = ssh_config if ssh_config is not None else _default_ssh_config()
    options = {src: "--src", dst: "--dst"} if not planned else {}
    hosts = list(dict.fromkeys(h for p in planned or (HostPair(src, dst),) for h in (p.src, p.dst)))
    try:
        at = {h: _check_reachable_name(h, options.get(h, "inventory host"), ssh_config, names_file) for h in hosts}
        if probe_from is not None:
            _check_reachable_name(check_host_name(probe_from, "--probe-from"), "--probe-from", ssh_config,
                                  names_file)
    except sshconfig.SSHConfigError as exc:
        raise ConfigError(str(exc)) from exc
    if export_path is not None:  # the HostNames become the export's clients
        for host in hosts:
            check_export_client(at[host][0], f"{options.get(host, 'inventory host')} {host!r}'s HostName")
    for pair in planned or (HostPair(src, dst),):
        if at[pair.src] == at[pair.dst]:
            first, second = (("--src", "--dst") if not planned else ("inventory host", "inventory host"))
            raise ConfigError(f"{first} {pair.src!r} and {second} {pair.dst!r} are the same machine "
                              f"({at[pair.src][0]} port {at[pair.src][1]}); migration needs two hosts")
    if guest_network is None or guest_addresses is None:
        absent = [opt for opt, val in (("--guest-network", guest_network),
                                       ("--guest-ip or --guest-ips", guest_addresses)) if val is None]
        raise ConfigError(f"{' and '.join(absent)} missing: a site's guest needs its network and a free "
                          "static address on it (e.g. --guest-network bridge:br0 --guest-ip 192.0.2.50/24)")
    for host in hosts:
        clash = set(guest_addresses.addresses) & _addresses_of(at[host][0])
        if clash:
            raise ConfigError(f"--guest-ip {', '.join(map(str, sorted(clash)))} is the address of "
                              f"{options.get(host, 'inventory host')} {host!r}: "
                              "give the guest a free address on the VM network")
    return RunConfig(src=src, dst=dst, nfs_server=nfs_server, export=export_path,
                     mount_point=mount, ssh_config=ssh_config, lab=False,
                     guest=GuestSite(guest_network, guest_addresses if guest_gateway is None
                                     else guest_addresses.with_gateway(guest_gateway)),
                     guest_shape=asked.over(GuestShape()),
                     round_trips=trips, dirty_rate_mib_s=dirty, migration_timeout_s=deadline,
                     wait_for_pair_s=wait, probe_from=probe_from, allow_faults=allow_faults, pairs=planned)


def _planned(spec: PairSpec | None, hosts: tuple[str, ...], where: str) -> tuple[HostPair, ...]:
    """The pairs *spec* plans over *hosts* (none without --pairs), else ConfigError naming *where* they come from."""
    if spec is None:
        return ()
    try:
        return plan_pairs(spec, hosts)
    except PairError as exc:
        raise ConfigError(f"{exc} in {where}") from exc


def _addresses_of(hostname: str) -> set[ipaddress.IPv4Address]:
    """The IPv4 addresses *hostname* (an ssh HostName) stands for here; none if it does not resolve here.

    A name only the far side resolves is preflight's to compare (it reads the hosts' own addresses).
    """
    try:
        return {ipaddress.IPv4Address(hostname)}
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(hostname, None, family=socket.AF_INET, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return set()
    return {ipaddress.IPv4Address(info[4][0]) for info in infos}


def _default_ssh_config() -> Path | None:
    user = sshconfig.user_config()
    return user if user.is_file() else None


def _check_reachable_name(name: str, option: str, config: Path | None, names_file: Path | None) -> tuple[str, int]:
    """(HostName, Port) that ssh would use for *name*, if ssh could plausibly reach it.

    *config* is the --ssh-config file (None: ssh's default files), and
    *names_file* the file whose Host aliases are accepted as they are.  Any
    other name must resolve here after the config's HostName rewriting,
    unless the config sends it through a ProxyJump/ProxyCommand (resolved
    at the far end).
    """
    where = f"Host in {names_file}" if names_file is not None else "Host in an ssh config (there is none)"
    resolved = sshconfig.resolve(config, name)
    if names_file is not None and name in sshconfig.host_aliases(names_file):
        return resolved.hostname, resolved.port
    if sshconfig.uses_proxy(config, name):
        return resolved.hostname, resolved.port
    try:
        socket.getaddrinfo(resolved.hostname, resolved.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        via = "" if resolved.hostname == name else f" (HostName {resolved.hostname!r})"
        raise ConfigError(
            f"{option} {name!r}{via} is neither a {where} nor resolvable: {exc}; "
            "use an alias from your ssh config (or --ssh-config FILE) or a resolvable host name"
        ) from exc
    return resolved.hostname, resolved.port
