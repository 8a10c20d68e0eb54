"""Read OpenSSH client config files the way `ssh` would, for validation and connecting.

Operators name hosts as they do for `ssh NAME`, so the harness must see the
same aliases, HostNames, ports and users that `ssh` sees.  Paramiko's parser
does the matching; this module adds what it lacks (``Include``, the list of
concrete aliases) and picks the files OpenSSH would read.
"""

from __future__ import annotations

import glob
import io
import os
import pwd
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko

#: Read when no explicit file is given, as `ssh` without `-F` does.
SYSTEM_CONFIG = Path("/etc/ssh/ssh_config")
#: OpenSSH gives up on deeper nesting too (it is almost certainly a loop).
_MAX_INCLUDE_DEPTH = 16

_INCLUDE = re.compile(r"^\s*include(?:\s*=\s*|\s+)(?P<args>.+?)\s*$", re.IGNORECASE)
_CONTEXT = re.compile(r"^\s*(?P<kw>host|match)(?:\s*=\s*|\s+)(?P<args>.*?)\s*$", re.IGNORECASE)
_WILDCARD = re.compile(r"[*?!]")


class SSHConfigError(ValueError):
    """An ssh config file that cannot be read or parsed."""


@dataclass(frozen=True)
class ResolvedHost:
    """Where `ssh NAME` would actually connect, after applying the config."""

    name: str
    hostname: str
    port: int
    user: str


def home_dir() -> Path:
    """The invoking user's home from the password database, as OpenSSH uses (not $HOME)."""
    return Path(pwd.getpwuid(os.getuid()).pw_dir)


def user_config() -> Path:
    """`~/.ssh/config` of the invoking user (it may not exist)."""
    return home_dir() / ".ssh" / "config"


def config_text(config: Path) -> str:
    """The file's text with every ``Include`` expanded in place.

    Paramiko ignores ``Include``, which would make hosts defined in included
    files (a common layout) silently unknown.  Relative include paths are
    taken from the including file's directory (~/.ssh or /etc/ssh for the
    standard files).  After an included file that opened its own Host/Match
    blocks, the includer's block is re-opened so that the lines following the
    Include keep applying where OpenSSH applies them.
    """
    return "\n".join(_expand(config, config.parent, 0)) + "\n"


def _expand(config: Path, base: Path, depth: int) -> list[str]:
    if depth > _MAX_INCLUDE_DEPTH:
        raise SSHConfigError(f"{config}: Include nested deeper than {_MAX_INCLUDE_DEPTH} (a loop?)")
    try:
        text = config.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SSHConfigError(f"cannot read ssh config {config}: {exc}") from exc
    out: list[str] = []
    context = "Host *"
    for line in text.splitlines():
        if _CONTEXT.match(line):
            context = line.strip()
        inc = _INCLUDE.match(line)
        if inc is None:
            out.append(line)
            continue
        included: list[str] = []
        for pattern in shlex.split(inc.group("args"), comments=True):
            path = Path(os.path.expanduser(pattern))
            path = path if path.is_absolute() else base / path
            for match in sorted(glob.glob(str(path))):
                included += _expand(Path(match), base, depth + 1)
        out += included
        if any(_CONTEXT.match(x) for x in included):
            out.append(context)
    return out


def default_files() -> list[Path]:
    """The files `ssh` reads without -F that exist, in its order: the user's, then the system's."""
    return [f for f in (user_config(), SYSTEM_CONFIG) if f.is_file()]


def parse(config: Path) -> paramiko.SSHConfig:
    """Parse one file (with its Includes), as `ssh -F FILE` reads it."""
    return _parse_texts([config_text(config)], str(config))


def load(config: Path | None) -> paramiko.SSHConfig:
    """The config `ssh` would use: only *config* if given (like ``-F``), else user then system file."""
    if config is not None:
        return parse(config)
    files = default_files()
    return _parse_texts([config_text(f) for f in files], ", ".join(map(str, files)))


def _parse_texts(texts: list[str], where: str) -> paramiko.SSHConfig:
    cfg = paramiko.SSHConfig()
    try:
        # First value obtained wins, so parsing files in order into one object
        # gives OpenSSH's precedence (user file before system file).
        for text in texts:
            cfg.parse(io.StringIO(text))
    except Exception as exc:  # paramiko raises assorted errors for bad syntax
        raise SSHConfigError(f"cannot parse ssh config {where}: {exc}") from exc
    return cfg


def lookup(cfg: paramiko.SSHConfig, name: str) -> dict[str, Any]:
    """Options for *name* (lower-case keys, ``identityfile`` a list), with tokens expanded."""
    try:
        return dict(cfg.lookup(name))
    except Exception as exc:  # e.g. a failing `Match exec`, bad token
        raise SSHConfigError(f"cannot evaluate ssh config for {name!r}: {exc}") from exc


def host_aliases(config: Path) -> set[str]:
    """The concrete Host names (aliases) defined in *config*: no wildcards, no negations.

    These are the names an operator can pass as --src/--dst even when they are
    not resolvable by DNS.
    """
    names: set[str] = set()
    for line in config_text(config).splitlines():
        ctx = _CONTEXT.match(line)
        if ctx is None or ctx.group("kw").lower() != "host":
            continue
        try:
            patterns = shlex.split(ctx.group("args"), comments=True)
        except ValueError:
            patterns = ctx.group("args").split()
        names.update(p for p in patterns if not _WILDCARD.search(p))
    return names


def resolve(config: Path | None, name: str) -> ResolvedHost:
    """Where `ssh [-F config] NAME` connects: HostName, Port and User after the config applies."""
    opts = lookup(load(config), name)
    try:
        port = int(opts.get("port", 22))
    except ValueError as exc:
        raise SSHConfigError(f"ssh config gives {name!r} a bad Port: {opts.get('port')!r}") from exc
    user = opts.get("user") or pwd.getpwuid(os.getuid()).pw_name
    return ResolvedHost(name=name, hostname=str(opts.get("hostname", name)), port=port, user=str(user))


def uses_proxy(config: Path | None, name: str) -> bool:
    """Whether ssh reaches *name* through ProxyJump/ProxyCommand (so it need not resolve here)."""
    opts = lookup(load(config), name)
    return any(str(opts.get(k, "none")).lower() != "none" for k in ("proxyjump", "proxycommand"))


def insecurities(config: Path | None, name: str) -> list[str]:
    """Why the run's own ssh to *name* is weaker than OpenSSH's default, for the report (empty: fine).

    ``StrictHostKeyChecking no`` makes the harness (virtmig.sshhost) accept
    any host key: whoever answers at that address gets the run's root commands.
    """
    strict = str(lookup(load(config), name).get("stricthostkeychecking", "ask")).lower()
    if strict in ("no", "off"):
        return [f"ssh to {name} with StrictHostKeyChecking {strict}: any host key is accepted"]
    return []
