"""A site file: the topology the lab stands in for (`python -m virtmig.lab up --site FILE`).

Why: the harness claims to certify any site's pair with only a user's
options.  The lab proves it by being raised as a site in which no value is
the default one (other host names, subnet, VM bridge, export, mount point)
and certified with the options printed here.  The file is TOML, every key
required except `ssh_config`; unknown keys are errors (a typo must not fall
back to a default silently):

    nfs_server = "filer"
    hypervisors = ["kvm-a", "kvm-b"]  # two to six (.11, .12, ...)
    subnet = "198.19.42.0/24"        # inside 198.18.0.0/15, /24 or larger
    vm_bridge = "vmbr7"
    export = "/export/vmstore"
    mount_point = "/var/lib/vmstore"
    ssh_config = "/root/site-ssh-config"   # written at `up`: aliases, HostName, User root, IdentityFile
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from ipaddress import IPv4Network, ip_network
from pathlib import Path, PurePosixPath

from virtmig.lab.topology import BRIDGE, MAX_HYPERVISORS, MIN_HYPERVISORS, NETNS_PREFIX, Site
from virtmig.option_values import ConfigError, check_storage_path

#: The only addresses the lab may use (RFC 2544's benchmarking range).
LAB_RANGE = IPv4Network("198.18.0.0/15")
#: A lab node's name: it becomes a namespace (virtmig-NAME) and a veth (vm-NAME-o, at most 15 characters).
_NODE_NAME = re.compile(r"[a-z][a-z0-9-]{0,7}")
#: A Linux interface name other than the lab's root bridge.
_BRIDGE_NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9_-]{0,14}")
_KEYS = {"nfs_server", "hypervisors", "subnet", "vm_bridge", "export", "mount_point", "ssh_config"}


class SiteError(ConfigError):
    """The site file cannot describe a lab; the message names the file and the key."""


def load(path: Path) -> Site:
    """The site described by the TOML file at *path*, checked before the lab changes anything."""
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SiteError(f"site file {path}: {exc}") from exc
    return parse(raw, str(path))


def parse(raw: Mapping[str, object], origin: str = "site") -> Site:
    """A Site from a site file's table; SiteError naming *origin* and the key for anything a lab cannot be."""
    def fail(key: str, why: str) -> SiteError:
        return SiteError(f"{origin}: {key} = {raw.get(key)!r}: {why}")

    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise SiteError(f"{origin}: unknown keys {unknown} (known: {sorted(_KEYS)})")
    missing = sorted(_KEYS - {"ssh_config"} - set(raw))
    if missing:
        raise SiteError(f"{origin}: missing keys {missing}")
    hypervisors = raw["hypervisors"]
    if not (isinstance(hypervisors, list) and MIN_HYPERVISORS <= len(hypervisors) <= MAX_HYPERVISORS):
        raise fail("hypervisors", f"must be a list of {MIN_HYPERVISORS} to {MAX_HYPERVISORS} host names")
    names = [raw["nfs_server"], *hypervisors]
    for key, name in zip(("nfs_server", *["hypervisors"] * len(hypervisors)), names, strict=True):
        if not (isinstance(name, str) and _NODE_NAME.fullmatch(name)):
            raise fail(key, "a node name is 1-8 of a-z, 0-9, '-', starting with a letter (it names a namespace "
                            f"{NETNS_PREFIX}NAME and a link vm-NAME-o)")
    if len(set(names)) != len(names):
        raise SiteError(f"{origin}: nfs_server and hypervisors must all be different names, got {names}")
    try:
        subnet = ip_network(str(raw["subnet"]), strict=True)
    except ValueError as exc:
        raise fail("subnet", str(exc)) from exc
    if not (isinstance(subnet, IPv4Network) and subnet.subnet_of(LAB_RANGE)):
        raise fail("subnet", f"the lab uses addresses in {LAB_RANGE} only (RFC 2544)")
    if subnet.prefixlen > 24:
        raise fail("subnet", "must be a /24 or larger (nodes take .1, .10, .11 on, the guest .100)")
    bridge = raw["vm_bridge"]
    if not (isinstance(bridge, str) and _BRIDGE_NAME.fullmatch(bridge)) or bridge == BRIDGE:
        raise fail("vm_bridge", f"an interface name of at most 15 characters, not the lab's root bridge {BRIDGE}")
    export = _path(raw, "export", origin)
    mount_point = _path(raw, "mount_point", origin)
    ssh_config = raw.get("ssh_config")
    if ssh_config is not None and not (isinstance(ssh_config, str) and Path(ssh_config).is_absolute()):
        raise fail("ssh_config", "an absolute path, where `up` writes the site's ssh config")
    return Site(str(raw["nfs_server"]), tuple(str(name) for name in hypervisors), subnet, bridge,
                export, mount_point, Path(ssh_config) if ssh_config else None)


def _path(raw: Mapping[str, object], key: str, origin: str) -> PurePosixPath:
    """An export or mount point, held to the harness's own rule (virtmig.option_values.check_storage_path)."""
    try:
        return check_storage_path(str(raw[key]), key)
    except ConfigError as exc:
        raise SiteError(f"{origin}: {exc}") from exc


def certify_options(site: Site, ssh_config: Path) -> list[str]:
    """The options that certify *site*'s pair (its first two hypervisors) as a user would: every value named.

    --storage-is-shared: libvirt does not recognise the lab's FUSE mount as
    shared storage (a site with kernel NFS does not need it).
    """
    src, dst = site.hypervisors[0], site.hypervisors[1]
    return ["--src", src.name, "--dst", dst.name, "--ssh-config", str(ssh_config),
            "--nfs-server", site.nfs.name, "--export", str(site.export), "--mount-point", str(site.mount_point),
            "--guest-network", f"bridge:{site.vm_bridge}", "--guest-ip", f"{site.guest_ip}/{site.prefix_len}",
            "--storage-is-shared"]
