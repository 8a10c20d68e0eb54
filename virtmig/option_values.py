"""Each option's value on its own: its syntax and bounds, one check per option, and the error they raise.

Split from virtmig.config, which combines the values into a RunConfig: a
check here looks at one value (a host name, a path, a number) and either
returns it or raises ConfigError naming the option, so the option parser
(fixtures.options) can use it as an argparse type and fail before anything
touches a host.  Cheap and local: no file reads, no DNS, no connections.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from virtmig.pairs import PairError, PairSpec, parse_pair_spec

#: Host names and ssh aliases: letters, digits, '.', '_', '-', not starting
#: with '-' (ssh would take it for an option) nor '.'; at most 253 characters.
#: IPv6 literals are not accepted: give them an alias in the ssh config.
_HOST_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,251}[A-Za-z0-9_])?")


class ConfigError(ValueError):
    """The command-line settings are unusable; the message says which and why."""


#: The group --group names when not given: the hypervisors, as the lab's inventory calls them.
DEFAULT_GROUP = "hypervisors"
#: Ansible group names: letters, digits, '_' (Ansible warns about '-' and refuses other characters).
_GROUP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,127}")


def check_group_name(value: str) -> str:
    """*value* if it can be an Ansible group name, else ConfigError (--group)."""
    if not _GROUP_NAME.fullmatch(value):
        raise ConfigError(f"--group {value!r} is not an inventory group name (letters, digits, '_', '-', "
                          "not starting with a digit or '-')")
    return value


def check_pair_spec(value: str) -> PairSpec:
    """--pairs VALUE as a PairSpec (ring, mesh, h1:h2,h3:h4), else ConfigError: its syntax only."""
    try:
        return parse_pair_spec(value)
    except PairError as exc:
        raise ConfigError(str(exc)) from exc


def check_host_name(value: str, what: str = "host name") -> str:
    """*value* if it is syntactically a host name or ssh alias, else ConfigError."""
    if not _HOST_NAME.fullmatch(value) or ".." in value:
        raise ConfigError(
            f"{what} {value!r} is not a valid host name or ssh alias "
            "(letters, digits, '.', '_', '-'; not starting with '-')"
        )
    return value


#: Upper bound of --dirty-rate: the guest agent's own limit (DIRTY_MAX_RATE).
MAX_DIRTY_RATE_MIB_S = 100_000
#: Upper bound of --round-trips: beyond this a run is a soak test, not a certification.
MAX_ROUND_TRIPS = 1000


def check_round_trips(value: int) -> int:
    """*value* if 1..MAX_ROUND_TRIPS, else ConfigError."""
    if not 1 <= value <= MAX_ROUND_TRIPS:
        raise ConfigError(f"--round-trips {value}: must be between 1 and {MAX_ROUND_TRIPS}")
    return value


#: Bounds of --migration-timeout, seconds: a second is enough to prove an abort;
#: a day is longer than any migration a certification should wait for.
MIN_MIGRATION_TIMEOUT_S, MAX_MIGRATION_TIMEOUT_S = 1.0, 86400.0


def check_migration_timeout(value: float) -> float:
    """*value* (seconds) if MIN..MAX_MIGRATION_TIMEOUT_S, else ConfigError."""
    if not MIN_MIGRATION_TIMEOUT_S <= value <= MAX_MIGRATION_TIMEOUT_S:  # also refuses nan
        raise ConfigError(f"--migration-timeout {value}: must be between {MIN_MIGRATION_TIMEOUT_S:g} and "
                          f"{MAX_MIGRATION_TIMEOUT_S:g} s")
    return value


def check_dirty_rate(value: int) -> int:
    """*value* (MiB/s) if 0..MAX_DIRTY_RATE_MIB_S, else ConfigError."""
    if not 0 <= value <= MAX_DIRTY_RATE_MIB_S:
        raise ConfigError(f"--dirty-rate {value}: must be between 0 and {MAX_DIRTY_RATE_MIB_S} MiB/s")
    return value


#: Upper bound of --wait-for-pair: a day; a run queued longer is forgotten, not waiting.
MAX_WAIT_FOR_PAIR_S = 86400


def check_wait_for_pair(value: int) -> int:
    """*value* (seconds) if 0..MAX_WAIT_FOR_PAIR_S, else ConfigError."""
    if not 0 <= value <= MAX_WAIT_FOR_PAIR_S:
        raise ConfigError(f"--wait-for-pair {value}: must be between 0 and {MAX_WAIT_FOR_PAIR_S} seconds")
    return value


def check_remote_path(value: str | PurePosixPath, what: str) -> PurePosixPath:
    """*value* as a PurePosixPath if absolute and free of '..', else ConfigError."""
    path = PurePosixPath(value)
    if not path.is_absolute():
        raise ConfigError(f"{what} {str(value)!r} must be an absolute path")
    if ".." in path.parts:
        raise ConfigError(f"{what} {str(value)!r} must not contain '..'")
    return path


#: System trees the export or the mount point must not be, nor lie under: mounting over
#: them (or exporting them) takes a host's own files away or hands them out.
#: /var/lib/libvirt/images is not among them: sites mount NFS there.
FORBIDDEN_STORAGE_TREES = tuple(PurePosixPath(p) for p in ("/etc", "/usr", "/boot", "/proc", "/sys", "/dev"))

#: Characters a storage path must not hold: each would change the meaning of
#: the exports(5) line or the fstab-like argument it goes into ('#' starts a
#: comment, a space starts a client name, a quote or backslash is syntax).
_PATH_SYNTAX = frozenset("#\"'\\")


def check_storage_path(value: str | PurePosixPath, what: str) -> PurePosixPath:
    """*value* as a path the export or the mount may be, else ConfigError.

    It goes into the NFS server's /etc/exports (or ganesha.conf) and onto
    mount's command line: no whitespace, control characters, '#', quotes or
    backslashes (a newline would add an export line of its own; '#' a fake
    marker), and not '/' nor a system tree (FORBIDDEN_STORAGE_TREES) or below.
    """
    text = str(value)
    bad = sorted({c for c in text if c.isspace() or not c.isprintable() or c in _PATH_SYNTAX})
    if bad:
        raise ConfigError(f"{what} {text!r} must not contain whitespace, control characters, '#', quotes "
                          f"or backslashes (found {', '.join(repr(c) for c in bad)})")
    path = check_remote_path(value, what)
    if path == PurePosixPath("/"):
        raise ConfigError(f"{what} must not be '/'")
    for tree in FORBIDDEN_STORAGE_TREES:
        if path == tree or tree in path.parents:
            raise ConfigError(f"{what} {text!r} is {tree} or below it: a system tree, never an NFS export "
                              "or mount point")
    return path


#: exports(5) client names virtmig writes: a host name or an IPv4/IPv6 address (the
#: HostName ssh connects to), nothing that exports(5) would read as syntax.
_CLIENT_NAME = re.compile(r"[A-Za-z0-9_:](?:[A-Za-z0-9._:-]{0,251}[A-Za-z0-9_:])?")


def check_export_client(value: str, what: str) -> str:
    """*value* if it may stand as a client in an exports(5) line, else ConfigError.

    The clients are the hosts' HostNames from the ssh config: a config line
    such as ``HostName h1 *(rw,no_root_squash)`` must not reach the export.
    """
    if not _CLIENT_NAME.fullmatch(value) or ".." in value:
        raise ConfigError(f"{what}: {value!r} cannot be an NFS export client (a host name or an IP address: "
                          "letters, digits, '.', '_', '-', ':')")
    return value


#: User names as useradd(8) accepts them (and a numeric uid): what --qemu-user
#: may be before it reaches getent, sudo -u and chown on the hosts.
_USER_NAME = re.compile(r"(?:[a-z_][a-z0-9_-]{0,30}[a-z0-9_$-]?|[0-9]{1,10})")


def check_user_name(value: str) -> str:
    """*value* if it is a POSIX user name or a numeric uid, else ConfigError."""
    if not _USER_NAME.fullmatch(value):
        raise ConfigError(f"--qemu-user {value!r} is not a user name (lower-case letters, digits, '_', '-', "
                          "at most 32 characters, not starting with a digit or '-') nor a numeric uid")
    return value


#: kernel: /etc/exports + exportfs -ra; ganesha: an EXPORT block in ganesha.conf + reload.
SERVER_KINDS = ("kernel", "ganesha")
#: mount: the disk is a file on the hosts' NFS mount; qemu-nfs: QEMU opens it with its own NFS client.
DISK_ACCESS = ("mount", "qemu-nfs")


def check_option_list(value: str) -> str:
    """*value* if it is a comma-separated list of option words (exports(5), mount(8)), else ConfigError.

    Only the characters options are made of: anything else (a space, a
    quote, a parenthesis) would change the meaning of the line it goes in.
    """
    for opt in value.split(","):
        if not opt or not all(c.isalnum() or c in "_=.:/-" for c in opt):
            raise ConfigError(f"{value!r} is not a comma-separated option list")
    return value


def check_server_kind(value: str) -> str:
    """*value* if it names a kind of NFS server virtmig can provision on (SERVER_KINDS), else ConfigError."""
    if value not in SERVER_KINDS:
        raise ConfigError(f"{value!r} is not one of {', '.join(SERVER_KINDS)}")
    return value


def check_storage_options(*, provision: bool, disk_access: str, server_kind: str,
                          ganesha_config_given: bool) -> None:
    """Refuse storage options that contradict each other (each one's syntax is checked on its own).

    Whether the export options suit the server kind is the storage layer's
    to say (virtmig.storage.shared.build_storage_config), which knows what
    each kind can express.
    """
    if disk_access not in DISK_ACCESS:
        raise ConfigError(f"--disk-access {disk_access!r} is not one of {', '.join(DISK_ACCESS)}")
    check_server_kind(server_kind)
    if disk_access != "mount" and not provision:
        raise ConfigError("--disk-access qemu-nfs needs the export provisioned (drop --no-provision)")
    if ganesha_config_given and server_kind != "ganesha":
        raise ConfigError("--ganesha-config applies only with --nfs-server-kind ganesha")
