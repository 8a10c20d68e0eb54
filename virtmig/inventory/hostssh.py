"""How ssh reaches each inventory host: the ansible_* ssh variables as ssh_config settings, each checked.

Each value is checked so that it cannot change the generated ssh config's
syntax (a space, a newline, a quote) and so that a bad one is a usage error
naming its file and line, not an ssh failure minutes later.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from virtmig.config import check_export_client, check_host_name
from virtmig.inventory.values import InventoryError, as_text, checked, value_error

#: Each ssh setting and the inventory variables that give it, preferred first (Ansible's own order).
SSH_VARS = {"HostName": ("ansible_host", "ansible_ssh_host"), "Port": ("ansible_port", "ansible_ssh_port"),
            "User": ("ansible_user", "ansible_ssh_user"),
            "IdentityFile": ("ansible_ssh_private_key_file", "ansible_private_key_file")}
#: The variables whose ssh arguments Ansible adds to every ssh command line; only ``-o Option=value`` is taken.
SSH_ARG_VARS = ("ansible_ssh_common_args", "ansible_ssh_extra_args")
#: An ssh_config option name, as ``-o`` takes it.
_SSH_OPTION = re.compile(r"[A-Za-z][A-Za-z0-9]{1,63}")
#: An ssh User: what login names are made of; nothing the ssh config or a command line would read as syntax.
_SSH_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,31}")


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


def host_ssh(path: Path, name: str, variables: Mapping[str, Any]) -> HostSsh:
    """The ssh settings the inventory gives host *name*, each checked so it cannot change the ssh config's syntax."""
    checked(path, name, lambda v: check_host_name(v, "inventory host"))
    raw = {key: next((variables[n] for n in names if variables.get(n) is not None), None)
           for key, names in SSH_VARS.items()}
    hostname, port, user, key_file = (None if raw[key] is None else as_text(path, name, SSH_VARS[key][0], raw[key])
                                      for key in ("HostName", "Port", "User", "IdentityFile"))
    if hostname is not None:
        checked(path, raw["HostName"], lambda v: check_export_client(v, f"host {name!r}: ansible_host"))
    if port is not None and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise value_error(path, name, "ansible_port", raw["Port"], "is not a TCP port (1-65535)")
    if user is not None and not _SSH_USER.fullmatch(user):
        raise value_error(path, name, "ansible_user", raw["User"],
                           "is not a user name (letters, digits, '.', '_', '-')")
    if key_file is not None and not _plain(key_file):
        raise value_error(path, name, "ansible_ssh_private_key_file", raw["IdentityFile"],
                           "must be a path without whitespace, quotes or control characters")
    options = tuple(option for var in SSH_ARG_VARS if variables.get(var) is not None
                    for option in _ssh_options(path, name, var, variables[var]))
    return HostSsh(name, hostname, None if port is None else int(port), user, key_file, options)


def other_hosts_ssh(path: Path, hosts: Sequence[Any], variables: Any) -> tuple[HostSsh, ...]:
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
            found.append(host_ssh(path, host.name, variables.get_vars(host=host, include_hostvars=False)))
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
    written = as_text(path, host, var, value)
    try:
        words = shlex.split(written)
    except ValueError as exc:
        raise value_error(path, host, var, value, f"is not shell words ({exc})") from exc
    options: list[tuple[str, str]] = []
    while words:
        word = words.pop(0)
        if word == "-o" and words:
            word = words.pop(0)
        elif word.startswith("-o") and len(word) > 2:
            word = word[2:]
        else:
            raise value_error(path, host, var, value, f"holds {word!r}: only -o Option=value arguments become "
                                                       "ssh settings (give others in --ssh-config)")
        key, _sep, setting = word.replace("=", " ", 1).partition(" ")
        setting = setting.strip()
        if not _SSH_OPTION.fullmatch(key) or not setting or not all(c.isprintable() for c in setting):
            raise value_error(path, host, var, value, f"holds -o {word!r}, not Option=value")
        options.append((key, setting))
    return options


