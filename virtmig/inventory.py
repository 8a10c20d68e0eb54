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
  run has one export.

Values are taken as written: a Jinja2 template ("{{ ... }}") is refused, not
rendered (rendering needs Ansible's whole templating context, and a host
name that depends on it is not one an operator can check).  Every error is a
ConfigError naming the file, and the line where one can be found.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ansible.errors import AnsibleError
from ansible.inventory.data import InventoryData
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import inventory_loader
from ansible.vars.manager import VariableManager

from virtmig import sshconfig
from virtmig.config import ConfigError, check_export_client, check_host_name, check_storage_path
from virtmig.pairs import HostPair, PairError, PairSpec, plan_pairs

#: The group vars that give --nfs-server, --export and --mount-point (the command line wins over them).
NFS_SERVER_VAR, EXPORT_VAR, MOUNT_POINT_VAR = "virtmig_nfs_server", "virtmig_export", "virtmig_mount_point"
#: Each ssh setting and the inventory variables that give it, preferred first (Ansible's own order).
SSH_VARS = {"HostName": ("ansible_host", "ansible_ssh_host"), "Port": ("ansible_port", "ansible_ssh_port"),
            "User": ("ansible_user", "ansible_ssh_user"),
            "IdentityFile": ("ansible_ssh_private_key_file", "ansible_private_key_file")}
#: The variables whose ssh arguments Ansible adds to every ssh command line; only ``-o Option=value`` is taken.
SSH_ARG_VARS = ("ansible_ssh_common_args", "ansible_ssh_extra_args")
#: An ssh_config option name, as ``-o`` takes it.
_SSH_OPTION = re.compile(r"[A-Za-z][A-Za-z0-9]{1,63}")
#: File names Ansible's yaml plugin takes as YAML (and names without a suffix, tried as YAML then INI);
#: anything else is read as INI, as Ansible's ini plugin does.
YAML_SUFFIXES = (".yml", ".yaml", ".json")
#: An ssh User: what login names are made of; nothing the ssh config or a command line would read as syntax.
_SSH_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,31}")


T = TypeVar("T")


class InventoryError(ConfigError):
    """The inventory cannot give the run its hosts: it does not parse, lacks the group, or holds a bad value."""


@dataclass(frozen=True)
class HostSsh:
    """How ssh reaches one inventory host: what the inventory says (None: left to the user's ssh config)."""

    alias: str
    hostname: str | None = None
    port: int | None = None
    user: str | None = None
    identity_file: str | None = None
    #: ssh_config (option, value) from the ``-o`` arguments of ansible_ssh_common_args/ansible_ssh_extra_args
    options: tuple[tuple[str, str], ...] = ()

    @property
    def settings(self) -> tuple[tuple[str, str], ...]:
        """The ssh_config lines (option, value) of this host's Host block, in order; empty: no block."""
        given = (("HostName", self.hostname), ("Port", self.port), ("User", self.user),
                 ("IdentityFile", self.identity_file))
        return tuple((key, str(value)) for key, value in given if value is not None) + self.options


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


@dataclass(frozen=True)
class PlannedSite:
    """What an --inventory run certifies: its pairs, the ssh config written for them, the group vars' export."""

    pairs: tuple[HostPair, ...]
    ssh_config: Path
    nfs_server: str | None
    export: str | None
    mount_point: str | None


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
    return PlannedSite(pairs, written, site.nfs_server, site.export, site.mount_point)


def load(path: Path, group: str) -> SiteInventory:
    """The hosts, ssh settings and NFS export of *group* in the inventory *path*, else InventoryError.

    The file is first parsed by the plugin its name calls for, into a
    scratch inventory, so that a failure can be reported with its cause and
    line (InventoryManager tries plugin after plugin and only warns when all
    fail).  InventoryManager, limited to that plugin, then reads the file now
    known to parse, with group_vars/ and host_vars/.
    """
    path = path.resolve()  # Ansible's plugins take absolute paths only
    loader = DataLoader()
    inventory = _StaticInventory(loader, path, _parsing_plugin(path, loader))
    found = inventory.groups.get(group)
    if found is None:
        groups = sorted(g for g in inventory.groups if g not in ("all", "ungrouped"))
        raise InventoryError(f"--group {group!r}: no such group in the inventory {path} "
                             f"(its groups: {', '.join(groups) or 'none'})")
    variables = VariableManager(loader=loader, inventory=inventory)
    hosts = tuple(host.name for host in found.get_hosts())
    host_vars = {host.name: variables.get_vars(host=host, include_hostvars=False) for host in found.get_hosts()}
    ssh = tuple(_host_ssh(path, name, host_vars[name]) for name in hosts) + _other_hosts_ssh(
        path, [host for name, host in inventory.hosts.items() if name not in host_vars], variables)
    server, export, mount = (_shared_value(path, group, var, host_vars)
                             for var in (NFS_SERVER_VAR, EXPORT_VAR, MOUNT_POINT_VAR))
    return SiteInventory(
        path, group, hosts, ssh,
        None if server is None else _checked(path, server, lambda v: check_host_name(v, NFS_SERVER_VAR)),
        None if export is None else _checked(path, export, lambda v: str(check_storage_path(v, EXPORT_VAR))),
        None if mount is None else _checked(path, mount, lambda v: str(check_storage_path(v, MOUNT_POINT_VAR))))


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


class _StaticInventory(InventoryManager):  # type: ignore[misc]  # ansible-core has no type hints
    """Ansible's InventoryManager reading one file with one static plugin (ini or yaml), nothing else.

    Its default plugin list also holds ``script``, which runs an executable
    file, and ``auto``, which loads whatever plugin a YAML file names (a
    cloud's API, say): checking options must neither run a program nor
    reach the network, so only the plugin that parsed the file is offered.
    """

    def __init__(self, loader: DataLoader, path: Path, plugin: str) -> None:
        self._virtmig_plugin = plugin
        super().__init__(loader=loader, sources=[str(path)])

    def _fetch_inventory_plugins(self) -> list[Any]:
        return [inventory_loader.get(self._virtmig_plugin)]


def _plugins_for(path: Path) -> tuple[str, ...]:
    """The static plugins Ansible would try on *path*, in its order: yaml takes YAML_SUFFIXES and no suffix."""
    suffix = path.suffix.lower()
    if suffix in YAML_SUFFIXES:
        return ("yaml",)
    return ("yaml", "ini") if not suffix else ("ini",)


def _parsing_plugin(path: Path, loader: DataLoader) -> str:
    """The first of `_plugins_for` that parses *path*, else InventoryError with its cause and line.

    When both fail (a file without a suffix), the error reported is the
    one of the format the file looks like: YAML if its first line is a key
    ("all:") or "---", else INI.
    """
    errors: dict[str, AnsibleError] = {}
    for plugin in _plugins_for(path):
        error = _parse_error(path, plugin, loader)
        if error is None:
            return plugin
        errors[plugin] = error
    first = next((text for _n, text in _numbered_lines(path)), "")
    looks_yaml = first.endswith(":") or first == "---"
    kind = "yaml" if "yaml" in errors and ("ini" not in errors or looks_yaml) else "ini"
    line = _error_line(errors[kind], path, kind, loader)
    where = f"{path}:{line}" if line else str(path)
    raise InventoryError(f"--inventory {where}: not a valid {kind.upper()} Ansible inventory: "
                         f"{_innermost_message(errors[kind])}") from errors[kind]


def _parse_error(path: Path, kind: str, loader: DataLoader) -> AnsibleError | None:
    """What ansible-core's *kind* plugin raises parsing *path* (None: it parses)."""
    scratch = InventoryData()
    scratch.current_source = str(path)
    try:
        inventory_loader.get(kind).parse(scratch, loader, str(path), cache=False)
    except AnsibleError as exc:
        return exc
    return None


#: Beyond this many lines an INI error is reported without its line (finding it costs a parse per line).
MAX_LINES_SCANNED = 2000


def _error_line(error: AnsibleError, path: Path, kind: str, loader: DataLoader) -> int | None:
    """The line of *path* the parse error is about, if one can be found.

    YAML errors carry it (the Origin ansible-core attaches, line_num).  The
    ini plugin of ansible-core 2.19 drops its line number before raising, and
    some of its errors do not quote the line either ("not enough values to
    unpack" for a stray "[bad"), so the line is found with ansible's own
    parser: the first N such that the file's first N lines fail as the whole
    file does.  INI is read line by line, so that is the line it stopped at.
    """
    seen: BaseException | None = error
    while seen is not None:
        line = getattr(getattr(seen, "obj", None), "line_num", None)
        if isinstance(line, int) and line > 0:
            return line
        seen = seen.__cause__ or seen.__context__
    if kind != "ini":
        return None
    try:
        lines = path.read_text(errors="replace").splitlines(keepends=True)
    except OSError:
        return None
    if len(lines) > MAX_LINES_SCANNED:
        return None
    wanted = _innermost_message(error)
    with tempfile.TemporaryDirectory(prefix="virtmig-inventory-") as scratch:
        prefix = Path(scratch) / path.name
        for count in range(1, len(lines) + 1):
            prefix.write_text("".join(lines[:count]))
            failed = _parse_error(prefix, kind, loader)
            if failed is not None and _innermost_message(failed) == wanted:
                return count
    return None


def _innermost_message(exc: BaseException) -> str:
    """The message of the deepest explicit cause: the ini plugin's own, under "Failed to parse inventory".

    Only ``raise ... from`` causes: an implicit context is the Python error
    the plugin caught and explained.
    """
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return str(getattr(exc, "message", None) or exc).strip()


def _numbered_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped text) of the non-blank lines of *path* that are not comments."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return [(n, s) for n, s in ((n, raw.strip()) for n, raw in enumerate(text.splitlines(), 1))
            if s and not s.startswith(("#", ";"))]


def _line_of(path: Path, value: str) -> int | None:
    """The first line of *path* where *value* is written (None: not found)."""
    return next((n for n, text in _numbered_lines(path) if value in text), None)


def _where(path: Path, value: object) -> str:
    """"FILE:LINE" where *value* was written, for a message (a group_vars/ file, say, or the inventory).

    ansible-core 2.19 tags every value it reads with its origin; the tag is
    read by duck typing (its API is internal to Ansible).  Without one, the
    first line of the inventory *path* holding the value.
    """
    for tag in getattr(value, "_ansible_tags_mapping", {}).values():
        file, line = getattr(tag, "path", None), getattr(tag, "line_num", None)
        if isinstance(file, str) and file:
            return f"{file}:{line}" if isinstance(line, int) else file
    line = _line_of(path, str(value))
    return f"{path}:{line}" if line else str(path)


def _checked(path: Path, value: object, check: Callable[[str], T]) -> T:
    """check(the value as text), its ConfigError re-raised naming the file and line the value is written on."""
    try:
        return check(str(value))
    except ConfigError as exc:
        raise InventoryError(f"--inventory {_where(path, value)}: {exc}") from exc


def _text(path: Path, host: str, name: str, value: object) -> str:
    """*value* of variable *name* as plain text, refusing templates and non-scalars."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _value_error(path, host, name, value, "must be a string or a number")
    text = str(value)
    if "{{" in text or "{%" in text:
        raise _value_error(path, host, name, value, "is a Jinja2 template; virtmig reads values as written, "
                                                    "without rendering them: give the value itself")
    return text


def _value_error(path: Path, host: str, name: str, value: object, why: str) -> InventoryError:
    return InventoryError(f"--inventory {_where(path, value)}: host {host!r}: {name} {str(value)!r} {why}")


def _host_ssh(path: Path, name: str, variables: Mapping[str, Any]) -> HostSsh:
    """The ssh settings the inventory gives host *name*, each checked so it cannot change the ssh config's syntax."""
    _checked(path, name, lambda v: check_host_name(v, "inventory host"))
    raw = {key: next((variables[n] for n in names if variables.get(n) is not None), None)
           for key, names in SSH_VARS.items()}
    hostname, port, user, key_file = (None if raw[key] is None else _text(path, name, SSH_VARS[key][0], raw[key])
                                      for key in ("HostName", "Port", "User", "IdentityFile"))
    if hostname is not None:
        _checked(path, raw["HostName"], lambda v: check_export_client(v, f"host {name!r}: ansible_host"))
    if port is not None and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise _value_error(path, name, "ansible_port", raw["Port"], "is not a TCP port (1-65535)")
    if user is not None and not _SSH_USER.fullmatch(user):
        raise _value_error(path, name, "ansible_user", raw["User"],
                           "is not a user name (letters, digits, '.', '_', '-')")
    if key_file is not None and not _plain(key_file):
        raise _value_error(path, name, "ansible_ssh_private_key_file", raw["IdentityFile"],
                           "must be a path without whitespace, quotes or control characters")
    options = tuple(option for var in SSH_ARG_VARS if variables.get(var) is not None
                    for option in _ssh_options(path, name, var, variables[var]))
    return HostSsh(name, hostname, None if port is None else int(port), user, key_file, options)


def _other_hosts_ssh(path: Path, hosts: Sequence[Any], variables: VariableManager) -> tuple[HostSsh, ...]:
    """The ssh settings of the inventory's hosts outside the group, those whose values can be taken as written.

    The NFS server or a --probe-from host is often another host of the same
    inventory, reached as its own ansible_host says.  A host outside the
    group that virtmig cannot take (a templated ansible_host, say) gets no
    block rather than stopping the run: the run may never name it, and
    if it does, the user's ssh config decides as for any other name.
    """
    found: list[HostSsh] = []
    for host in hosts:
        try:
            found.append(_host_ssh(path, host.name, variables.get_vars(host=host, include_hostvars=False)))
        except InventoryError:
            continue
    return tuple(found)


def _plain(text: str) -> bool:
    """Whether *text* can stand as one ssh_config value: printable, no whitespace, quotes or backslashes."""
    return bool(text) and all(c.isprintable() and not c.isspace() and c not in "\"'\\" for c in text)


def _ssh_options(path: Path, host: str, var: str, value: object) -> list[tuple[str, str]]:
    """The ``-o Option=value`` arguments of *var* as ssh_config (option, value); anything else InventoryError.

    Ansible hands these arguments to ssh on its command line; virtmig's ssh
    (paramiko, and libvirt's ssh) reads a config file, where ``-o`` options
    are lines.  Other arguments (-J, -i, ...) have no line of their own here:
    give them as options, or in --ssh-config.
    """
    text = _text(path, host, var, value)
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise _value_error(path, host, var, value, f"is not shell words ({exc})") from exc
    options: list[tuple[str, str]] = []
    while words:
        word = words.pop(0)
        if word == "-o" and words:
            word = words.pop(0)
        elif word.startswith("-o") and len(word) > 2:
            word = word[2:]
        else:
            raise _value_error(path, host, var, value, f"holds {word!r}: only -o Option=value arguments become "
                                                       "ssh settings (give others in --ssh-config)")
        key, _sep, setting = word.replace("=", " ", 1).partition(" ")
        setting = setting.strip()
        if not _SSH_OPTION.fullmatch(key) or not setting or not all(c.isprintable() for c in setting):
            raise _value_error(path, host, var, value, f"holds -o {word!r}, not Option=value")
        options.append((key, setting))
    return options


def _shared_value(path: Path, group: str, name: str, host_vars: Mapping[str, Mapping[str, Any]]) -> object:
    """Variable *name* as every host of *group* sees it (as Ansible read it, None: unset), else InventoryError."""
    raw = {host: v[name] for host, v in host_vars.items() if v.get(name) is not None}
    values = {host: _text(path, host, name, value) for host, value in raw.items()}
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
