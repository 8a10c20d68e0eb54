"""A site's Ansible inventory (INI or YAML) as virtmig's hosts, ssh settings and NFS export.

A lab already keeps its hypervisors in an Ansible inventory; reading that
file means no second list to keep in step.  It is read by ansible-core's own
parser (InventoryManager over a DataLoader, its ini and yaml plugins), so
host ranges, children groups, ``[group:vars]``, ``group_vars/`` and
``host_vars/`` beside the file and variable precedence all mean what they
mean to ``ansible-playbook``: no hand-written parser to disagree with it.

What virtmig takes from it:

- the hosts of one group (--group), in the file's order;
- per host, ``ansible_host``, ``ansible_port``, ``ansible_user``,
  ``ansible_ssh_private_key_file`` (or their other ``ansible_ssh_*``
  spellings) and the ``-o Option=value`` arguments of
  ``ansible_ssh_common_args``/``ansible_ssh_extra_args``, written into an ssh
  config file (Host alias -> HostName, Port, User, IdentityFile, options)
  that the rest of the harness uses as it uses --ssh-config:
  `ssh_config_text`, `write_ssh_config`;
- ``virtmig_nfs_server``, ``virtmig_export`` and ``virtmig_mount_point``
  (usually vars of the group), the defaults of --nfs-server, --export and
  --mount-point; all the group's hosts must see the same values, since a
  run has one export;
- ``virtmig_guest_network`` and ``virtmig_guest_ips``, the defaults of
  --guest-network and --guest-ips (the pool each pair's guest takes its
  address from), held to the same rule: the file a lab keeps says where its
  test guests live, so a night needs no more options than the inventory.

Values are taken as written: a Jinja2 template ("{{ ... }}") is refused, not
rendered (rendering needs Ansible's whole templating context, and a host
name that depends on it is not one an operator can check).  Every error is a
ConfigError naming the file, and the line where one can be found.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from virtmig import sshconfig
from virtmig.guestconfig import GuestAddresses, GuestNetwork, parse_guest_ips, parse_guest_network
from virtmig.inventory.hostssh import HostSsh, host_ssh, other_hosts_ssh
from virtmig.inventory.reading import read
from virtmig.inventory.values import InventoryError, as_text, checked
from virtmig.option_values import check_host_name, check_storage_path
from virtmig.pairs import HostPair, PairError, PairSpec, plan_pairs

__all__ = ["EXPORT_VAR", "GUEST_IPS_VAR", "GUEST_NETWORK_VAR", "MOUNT_POINT_VAR", "NFS_SERVER_VAR", "HostSsh",
           "InventoryError", "PlannedSite",
           "SiteInventory", "default_ssh_config_path", "load", "plan_site", "ssh_config_text", "write_ssh_config"]

#: The group vars that give --nfs-server, --export and --mount-point (the command line wins over them).
NFS_SERVER_VAR, EXPORT_VAR, MOUNT_POINT_VAR = "virtmig_nfs_server", "virtmig_export", "virtmig_mount_point"
GUEST_NETWORK_VAR, GUEST_IPS_VAR = "virtmig_guest_network", "virtmig_guest_ips"


@dataclass(frozen=True)
class SiteInventory:
    """What one group of an inventory gives a run: its hosts in order, their ssh settings, the NFS storage.

    *ssh* holds the group's hosts first, then the inventory's other hosts
    whose settings could be taken (the NFS server, often).
    """

    path: Path
    group: str
    hosts: tuple[str, ...]
    ssh: tuple[HostSsh, ...]
    nfs_server: str | None = None
    export: str | None = None
    mount_point: str | None = None
    guest_network: GuestNetwork | None = None
    guest_ips: GuestAddresses | None = None


@dataclass(frozen=True)
class PlannedSite:
    """What an --inventory run certifies: its pairs, the ssh config written for them, the group vars' export."""

    pairs: tuple[HostPair, ...]
    ssh_config: Path
    nfs_server: str | None
    export: str | None
    mount_point: str | None
    guest_network: GuestNetwork | None = None
    guest_ips: GuestAddresses | None = None


def plan_site(path: Path, group: str, spec: PairSpec, ssh_config: Path | None,
              out: Path | None = None) -> PlannedSite:
    """Read *group* of the inventory *path*, plan *spec* over its hosts, write the run's ssh config.

    The ssh config goes to *out* (default: `default_ssh_config_path`) and
    carries *ssh_config* (--ssh-config) on, or without it the files ssh reads
    by default.  Every failure is an InventoryError naming the file.
    """
    site = load(path, group)
    try:
        pairs = plan_pairs(spec, site.hosts)
    except PairError as exc:
        raise InventoryError(f"{exc} in group {site.group!r} of the inventory {site.path}") from exc
    included = [ssh_config] if ssh_config is not None else sshconfig.default_files()
    written = write_ssh_config(site, out or default_ssh_config_path(site.path, site.group), included)
    return PlannedSite(pairs, written, site.nfs_server, site.export, site.mount_point, site.guest_network,
                       site.guest_ips)


def load(path: Path, group: str) -> SiteInventory:
    """The hosts, ssh settings and NFS export of *group* in the inventory *path*, else InventoryError.

    Read as virtmig.inventory.reading says: ansible-core's own parser,
    static plugins only, a failure with its cause and line.
    """
    path = path.resolve()  # Ansible's plugins take absolute paths only
    inventory, variables = read(path)
    found = inventory.groups.get(group)
    if found is None:
        groups = sorted(g for g in inventory.groups if g not in ("all", "ungrouped"))
        raise InventoryError(f"--group {group!r}: no such group in the inventory {path} "
                             f"(its groups: {', '.join(groups) or 'none'})")
    hosts = tuple(host.name for host in found.get_hosts())
    host_vars = {host.name: variables.get_vars(host=host, include_hostvars=False) for host in found.get_hosts()}
    ssh = tuple(host_ssh(path, name, host_vars[name]) for name in hosts) + other_hosts_ssh(
        path, [host for name, host in inventory.hosts.items() if name not in host_vars], variables)
    server, export, mount, network, ips = (_shared_value(path, group, var, host_vars) for var in (
        NFS_SERVER_VAR, EXPORT_VAR, MOUNT_POINT_VAR, GUEST_NETWORK_VAR, GUEST_IPS_VAR))
    return SiteInventory(
        path, group, hosts, ssh,
        None if server is None else checked(path, server, lambda v: check_host_name(v, NFS_SERVER_VAR)),
        None if export is None else checked(path, export, lambda v: str(check_storage_path(v, EXPORT_VAR))),
        None if mount is None else checked(path, mount, lambda v: str(check_storage_path(v, MOUNT_POINT_VAR))),
        None if network is None else checked(path, network, parse_guest_network),
        None if ips is None else checked(path, ips, parse_guest_ips))


def ssh_config_text(site: SiteInventory, included: Sequence[Path]) -> str:
    """The ssh config a run uses: one Host block per host the inventory gives settings, then *included*.

    The inventory's blocks come first, so its values win (ssh takes the
    first value it obtains); the *included* files (the --ssh-config file, or
    the user's and the system's files ssh would read without -F) follow
    under ``Host *`` for everything else: IdentityFile, ProxyJump,
    known_hosts, aliases of hosts the inventory leaves alone.  They are
    copied in with their own Includes expanded (sshconfig.config_text),
    rather than Included, so that their relative Include paths still
    resolve against their own directories, for OpenSSH and paramiko alike.
    """
    lines = [f"# Written by virtmig from the Ansible inventory {str(site.path)!r} (group {site.group}); "
             "rewritten on every run."]
    for host in site.ssh:
        if host.settings:
            lines += ["", f"Host {host.alias}", *(f"    {key} {value}" for key, value in host.settings)]
    for path in included:
        lines += ["", f"# From {str(path)!r}:", "Host *", sshconfig.config_text(path).rstrip("\n")]
    return "\n".join(lines) + "\n"


def write_ssh_config(site: SiteInventory, out: Path, included: Sequence[Path]) -> Path:
    """Write `ssh_config_text` to *out* atomically (xdist workers write the same file) and return *out*."""
    out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(ssh_config_text(site, included))
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def default_ssh_config_path(inventory: Path, group: str) -> Path:
    """Where a run's generated ssh config goes: a file per inventory and group under ~/.cache/virtmig.

    A fixed place, not a temporary one: after a killed run, `python -m
    virtmig cleanup --ssh-config FILE` needs the same settings to reach the
    hosts, and an operator can read what the run used.
    """
    cache = Path(os.environ.get("XDG_CACHE_HOME") or sshconfig.home_dir() / ".cache")
    key = hashlib.sha256(f"{inventory.resolve()}\0{group}".encode()).hexdigest()[:12]
    return cache / "virtmig" / "inventory" / f"{inventory.stem}-{group}-{key}.ssh_config"


def _shared_value(path: Path, group: str, name: str, host_vars: Mapping[str, Mapping[str, Any]]) -> object:
    """Variable *name* as every host of *group* sees it (as Ansible read it, None: unset), else InventoryError."""
    raw = {host: v[name] for host, v in host_vars.items() if v.get(name) is not None}
    values = {host: as_text(path, host, name, value) for host, value in raw.items()}
    distinct = sorted(set(values.values()))
    if len(distinct) > 1:
        seen = "; ".join(f"{v} ({', '.join(h for h in values if values[h] == v)})" for v in distinct)
        raise InventoryError(f"--inventory {path}: the hosts of group {group!r} disagree on {name}: {seen}; "
                             "a run has one NFS export and mount point: set it once, as a var of the group")
    if values and len(values) != len(host_vars):
        missing = ", ".join(h for h in host_vars if h not in values)
        raise InventoryError(f"--inventory {path}: {name} is set for some hosts of group {group!r} but not for "
                             f"{missing}: set it once, as a var of the group")
    return next(iter(raw.values()), None)

