"""Provision the export on an nfs-ganesha server: an EXPORT block, applied by reload.

The kernel server is driven through /etc/exports and `exportfs -ra`
(virtmig.storage.exports).  nfs-ganesha has neither: its exports are EXPORT
blocks in its own config file, and a running ganesha (4.x) re-reads them
when it gets SIGHUP (`systemctl reload nfs-ganesha` sends the same), adding,
updating and removing exports without a restart that would break every
client's mounts.  So the same `ExportSpec` is rendered as an EXPORT block,
put between the same marker comments in ganesha.conf, written atomically,
and applied by reload.  The original file is kept as text and written back
byte for byte at teardown, failed runs included; a block left by an aborted
run is replaced, never doubled.

A reload that ganesha refuses (a config error, a clashing id) is only in its
log, which may be anywhere (a file, syslog, the journal).  What a client sees
is not: the export is checked from the hosts with `showmount -e SERVER`,
which ganesha answers with the exports the *asking* host may mount.

Everything that can be known before touching the server is checked first:
exports(5) options ganesha cannot express, a path or pseudo path the config
exports already, no ganesha to reload.  Nothing is written until they pass.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from virtmig.storage import exports
from virtmig.storage.ganesha_conf import ConfiguredExport, configured_exports, includes
from virtmig.host import Host
from virtmig.storage.exports import BEGIN, END, ExportError, ExportSpec, strip_managed_block, wait_listed
from virtmig.waiters import WaitTimeout

GANESHA_CONF = PurePosixPath("/etc/ganesha/ganesha.conf")
#: ganesha.nfsd's default pid file (GANESHA_PIDFILE_PATH; /var/run is /run).
GANESHA_PIDFILE = PurePosixPath("/run/ganesha/ganesha.pid")
#: The unit Debian's and Fedora's packages install.
SERVICE = "nfs-ganesha"
#: Export_Ids are 16 bits (0 is the NFSv4 pseudo root).  Hand-written configs
#: and tools number from 1 upward, so ours come from the top of the range:
#: an id someone adds while a run holds ours is unlikely to clash with it.
ID_BASE = 60000
ID_MAX = 65535
#: The kernel server's anonymous uid/gid (nobody/nogroup).  ganesha's own
#: default is (uint32)-2, which no /etc/passwd names: root_squash would then
#: create files owned by a number instead of by nobody.
ANON_ID = 65534
#: How long a reload may take to show (or withdraw) the export.
RELOAD_TIMEOUT_S = 20.0

#: exports(5) options that change nothing under ganesha, and why.
_NO_OPS = {
    "sync": "ganesha makes stable writes stable before replying and honours COMMIT, which is what sync means",
    "no_subtree_check": "ganesha never checks subtrees",
    "wdelay": "write gathering is a kernel nfsd heuristic; no effect on what clients see",
    "no_wdelay": "write gathering is a kernel nfsd heuristic; no effect on what clients see",
    "hide": "ganesha does not cross into file systems mounted below the export",
    "no_all_squash": "the default",
}
#: exports(5) options with no ganesha equivalent: refused, with the reason.
_INEXPRESSIBLE = {
    "async": "ganesha cannot acknowledge writes before they are stable (the kernel's async)",
    "subtree_check": "ganesha has no subtree checking",
    "nohide": "ganesha cannot show file systems mounted below the export",
    "crossmnt": "ganesha cannot show file systems mounted below the export",
    "fsid": "ganesha's Filesystem_Id is not the kernel's fsid (fsid=0 is the kernel's NFSv4 root)",
    "mp": "ganesha has no mountpoint requirement", "mountpoint": "ganesha has no mountpoint requirement",
    "refer": "NFSv4 referrals are configured differently", "replicas": "NFSv4 replicas are configured differently",
    "acl": "ACL handling is the FSAL's", "no_acl": "ACL handling is the FSAL's",
    "pnfs": "pNFS is configured per FSAL", "no_pnfs": "pNFS is configured per FSAL",
    "security_label": "no labelled NFS export option in ganesha",
    "insecure_locks": "no ganesha equivalent", "secure_locks": "no ganesha equivalent",
    "no_auth_nlm": "no ganesha equivalent", "auth_nlm": "no ganesha equivalent",
}
_SEC_FLAVOURS = {"sys", "krb5", "krb5i", "krb5p", "none"}
#: Characters a Clients entry may hold (host, IP, CIDR, wildcard, @netgroup):
#: anything else could end the value or the block in ganesha's syntax.
_CLIENT = re.compile(r"^[A-Za-z0-9_.:/*?@\[\]-]+$")


class GaneshaOptionError(ValueError):
    """An export option ganesha cannot express; raised before the server is touched."""


@dataclass(frozen=True)
class ClientSettings:
    """What an exports(5) option list means, in ganesha's terms."""

    access: str = "RO"  # exports(5) defaults to ro
    squash: str = "Root_Squash"
    anon_uid: int = ANON_ID
    anon_gid: int = ANON_ID
    privileged_port: bool = True  # exports(5) defaults to secure
    sec: tuple[str, ...] = ("sys",)


def settings(options: str) -> ClientSettings:
    """The ganesha settings of an exports(5) option list; later words win, as in exportfs.

    Raises GaneshaOptionError naming every option that is unknown or has no
    ganesha equivalent, so an operator fixes them in one go.
    """
    access, squash, all_squash, secure = "RO", "Root_Squash", False, True
    anon = {"anonuid": ANON_ID, "anongid": ANON_ID}
    sec: tuple[str, ...] = ("sys",)
    problems: list[str] = []
    for word in (w.strip() for w in options.split(",")):
        key, eq, value = word.partition("=")
        if word in ("rw", "ro"):
            access = word.upper()
        elif word in ("root_squash", "no_root_squash"):
            squash = "Root_Squash" if word == "root_squash" else "No_Root_Squash"
        elif word in ("all_squash", "no_all_squash"):
            all_squash = word == "all_squash"
        elif word in ("secure", "insecure"):
            secure = word == "secure"
        elif key in anon and eq:
            if not value.isdigit() or int(value) > 0xFFFFFFFF:
                problems.append(f"{word}: not a uid/gid")
            else:
                anon[key] = int(value)
        elif key == "sec" and eq:
            flavours = tuple(value.split(":"))
            bad = [f for f in flavours if f not in _SEC_FLAVOURS]
            if bad or not value:
                problems.append(f"{word}: ganesha knows sec flavours {', '.join(sorted(_SEC_FLAVOURS))}")
            else:
                sec = flavours
        elif word in _NO_OPS:
            continue
        elif key in _INEXPRESSIBLE:
            problems.append(f"{word}: {_INEXPRESSIBLE[key]}")
        else:
            problems.append(f"{word}: not an exports(5) option")
    if problems:
        raise GaneshaOptionError("export options nfs-ganesha cannot express: " + "; ".join(problems))
    return ClientSettings(access=access, squash="All_Squash" if all_squash else squash,
                          anon_uid=anon["anonuid"], anon_gid=anon["anongid"], privileged_port=secure, sec=sec)


def _check_syntax(spec: ExportSpec) -> None:
    """Refuse a path or client that would break out of its value in ganesha's syntax."""
    if any(c in str(spec.path) for c in '"\\\n;{}#'):
        raise GaneshaOptionError(f"export path {str(spec.path)!r} has characters ganesha.conf cannot quote")
    for client in spec.clients:
        if not _CLIENT.match(client):
            raise GaneshaOptionError(f"client {client!r} is not a host, address, network, wildcard or @netgroup")


def render_block(spec: ExportSpec, export_id: int) -> str:
    """The EXPORT block for `spec`: its clients get the options' access, nobody else any.

    Access_Type is None at export level on purpose: in ganesha that level is
    what clients *not* listed in a CLIENT block get, and exports(5) gives
    unlisted clients nothing.  The squash, security and port settings apply
    to the CLIENT block through ganesha's export-level inheritance.

    Attr_Expiration_Time is 1 s: the kernel server has no attribute cache of
    its own, so a mode or owner changed on the server's file system is seen
    by clients at once; ganesha's default (60 s) would hide it.
    """
    _check_syntax(spec)
    s = settings(spec.options)
    return (
        "EXPORT {\n"
        f"    Export_Id = {export_id};\n"
        f'    Path = "{spec.path}";\n'
        f'    Pseudo = "{spec.path}";\n'
        "    Protocols = 3, 4;\n"
        "    Access_Type = None;\n"
        f"    Squash = {s.squash};\n"
        f"    Anonymous_Uid = {s.anon_uid};\n"
        f"    Anonymous_Gid = {s.anon_gid};\n"
        f"    PrivilegedPort = {'true' if s.privileged_port else 'false'};\n"
        f"    SecType = {', '.join(s.sec)};\n"
        "    Attr_Expiration_Time = 1;\n"
        "    FSAL { Name = VFS; }\n"
        "    CLIENT {\n"
        f"        Clients = {', '.join(spec.clients)};\n"
        f"        Access_Type = {s.access};\n"
        "    }\n"
        "}\n"
    )


def with_block(original: str, block: str) -> str:
    """`original` config text with our managed block replaced or appended."""
    kept = strip_managed_block(original)
    if kept and not kept.endswith("\n"):
        kept += "\n"
    return f"{kept}{BEGIN}\n{block}{END}\n"


# -- what the server's config exports already (parsing: virtmig.storage.ganesha_conf) --------

def read_configured_exports(server: Host, config: PurePosixPath) -> list[ConfiguredExport]:
    """Every EXPORT block ganesha would load besides ours: the config and its %includes."""
    found: list[ConfiguredExport] = []
    todo, seen = [(config, True)], set()
    while todo:
        path, is_main = todo.pop(0)
        if path in seen:
            continue
        seen.add(path)
        if not server.run("test", "-f", str(path), check=False).ok:
            raise ExportError(f"{server.name}: {path} does not exist"
                              + ("" if is_main else f" (%include in {config})"))
        text = server.read_text(str(path))
        text = strip_managed_block(text) if is_main else text
        found += configured_exports(text, str(path))
        todo += [(path.parent / inc, False) for inc in includes(text)]  # absolute stays absolute
    return found


def choose_export_id(used: set[int]) -> int:
    """The lowest Export_Id from ID_BASE up that the config does not use."""
    for candidate in range(ID_BASE, ID_MAX + 1):
        if candidate not in used:
            return candidate
    raise ExportError(f"every Export_Id from {ID_BASE} to {ID_MAX} is in use")


def check_not_exported(spec: ExportSpec, existing: Sequence[ConfiguredExport]) -> None:
    """Refuse a path the config already exports: two blocks for one path make NFSv3 mounts ambiguous."""
    for e in existing:
        if str(spec.path) in (e.path, e.pseudo):
            raise ExportError(f"{e.source} already exports {spec.path} (Export_Id {e.export_id}); "
                              "remove that block, or certify it as it is with --no-provision")


# -- reload ------------------------------------------------------------------

def reload_command(server: Host, pidfile: PurePosixPath) -> tuple[str, ...]:
    """How to make this server's ganesha re-read its config, checked before anything changes.

    systemd's unit when it runs ganesha (its ExecReload sends SIGHUP to the
    right process); else SIGHUP to the pid in the pid file, once
    /proc/PID/comm confirms it is ganesha (a stale pid file names nothing,
    or another process).
    """
    if server.run("systemctl", "is-active", "--quiet", SERVICE, check=False).ok:
        return ("systemctl", "reload", SERVICE)
    read = server.run("cat", str(pidfile), check=False)
    pid = read.stdout.split()[0] if read.ok and read.stdout.split() else ""
    if not pid.isdigit():
        raise ExportError(f"{server.name}: no ganesha to reload ({SERVICE} is not an active systemd unit, "
                          f"and {pidfile} holds no pid: {read.stderr.strip() or read.stdout.strip()!r})")
    comm = server.run("cat", f"/proc/{pid}/comm", check=False).stdout.strip()
    if comm != "ganesha.nfsd":
        raise ExportError(f"{server.name}: {pidfile} names pid {pid}, which is "
                          f"{repr(comm) if comm else 'not running'}, not ganesha.nfsd")
    return ("kill", "-HUP", pid)


# -- provision and restore ---------------------------------------------------

@dataclass(frozen=True)
class GaneshaExport:
    """An export we made on a ganesha server; `original` is its config as it was."""

    server: str
    server_name: str  # as the hosts name the server (for showmount)
    spec: ExportSpec
    config: PurePosixPath
    pidfile: PurePosixPath
    original: str
    export_id: int
    created_dir: bool
    workdir: PurePosixPath


def provision_ganesha_export(
    server: Host, spec: ExportSpec, owner: tuple[int, int], workdir: str, *,
    server_name: str, observers: Sequence[Host], config: PurePosixPath = GANESHA_CONF,
    pidfile: PurePosixPath = GANESHA_PIDFILE, timeout: float = RELOAD_TIMEOUT_S,
) -> GaneshaExport:
    """Add our EXPORT block to ganesha's config, reload, and wait until the hosts see it.

    `observers` are the hosts that must see the export (the pair), asking
    for `server_name` as they will mount it.  On any failure after the
    config was written, the original is written back and ganesha reloaded
    before the error is raised.
    """
    existing = read_configured_exports(server, config)
    check_not_exported(spec, existing)
    export_id = choose_export_id({e.export_id for e in existing if e.export_id is not None})
    block = render_block(spec, export_id)  # refuses what ganesha cannot express
    reload = reload_command(server, pidfile)
    original = server.read_text(str(config))
    created, work = exports.prepare_directories(server, spec, owner, workdir)
    handle = GaneshaExport(server.name, server_name, spec, config, pidfile, original, export_id, created, work)
    try:
        server.write_text(str(config), with_block(original, block))
        server.run(*reload)
        wait_listed(observers, server_name, spec.path, listed=True, timeout=timeout)
    except BaseException as exc:
        restore_ganesha_config(server, handle, observers, timeout=timeout, check_withdrawn=False)
        if not isinstance(exc, Exception):
            raise
        why = (" (ganesha's log says why: the journal of the nfs-ganesha unit, /var/log/ganesha/, "
               "or wherever its -L option points)") if isinstance(exc, WaitTimeout) else ""
        raise ExportError(f"ganesha export of {spec.path} on {server.name} failed: {exc}{why}") from exc
    return handle


def restore_ganesha_config(server: Host, handle: GaneshaExport, observers: Sequence[Host], *,
                           timeout: float = RELOAD_TIMEOUT_S, check_withdrawn: bool = True) -> None:
    """Put the config back byte for byte, reload, wait for the export to go, remove our directories.

    The config is written back first, whatever fails later, so that the
    next start or reload of ganesha finds the operator's file.  How to
    reload is looked up again: ganesha may have been restarted meanwhile.
    """
    server.write_text(str(handle.config), handle.original)
    try:
        server.run(*reload_command(server, handle.pidfile))
        if check_withdrawn:
            wait_listed(observers, handle.server_name, handle.spec.path, listed=False, timeout=timeout)
    finally:
        exports.remove_directories(server, handle.spec, handle.created_dir, handle.workdir)
