"""Provision the export on an nfs-ganesha server: an EXPORT block, applied by reload.

The kernel server is driven through /etc/exports and `exportfs -ra`
(virtmig.storage.exports).  nfs-ganesha has neither: its exports are EXPORT
blocks in its own config file, and a running ganesha (4.x) re-reads them
when it gets SIGHUP (`systemctl reload nfs-ganesha` sends the same), adding,
updating and removing exports without a restart that would break every
client's mounts.  So the same `ExportSpec` is rendered as an EXPORT block
(its options translated by virtmig.storage.exports_to_ganesha, as the lab's
exportfs translates /etc/exports), put between the same marker comments in
ganesha.conf, written atomically, and applied by reload.  The original file
is kept as text and written back byte for byte at teardown, failed runs
included; a block left by an aborted run is replaced, never doubled.

A reload that ganesha refuses (a config error, a clashing id) is only in its
log, which may be anywhere (a file, syslog, the journal).  What a client sees
is not: the export is checked from the hosts with `showmount -e SERVER`,
which ganesha answers with the exports the *asking* host may mount.

Everything that can be known before touching the server is checked first:
exports(5) options ganesha cannot express, a path or pseudo path the config
exports already, no ganesha to reload.  Nothing is written until they pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from virtmig.host import Host
from virtmig.journal import Recorder
from virtmig.storage import exports
from virtmig.storage.exports import (
    BEGIN,
    END,
    ExportError,
    ExportSpec,
    run_marked,
    strip_managed_block,
    wait_listed,
)
from virtmig.storage.exports_to_ganesha import export_block, settings
from virtmig.storage.ganesha_conf import ConfiguredExport, configured_exports, includes
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
#: How long a reload may take to show (or withdraw) the export.
RELOAD_TIMEOUT_S = 20.0


def render_block(spec: ExportSpec, export_id: int) -> str:
    """The EXPORT block for `spec`: its clients get the options' access, nobody else any.

    Options ganesha cannot express are refused (GaneshaOptionError), never
    left out: a run must not certify an export other than the one asked for.
    """
    return export_block(export_id, str(spec.path), [(spec.clients, settings(spec.options))])


def with_block(original: str, block: str, run_id: str | None = None) -> str:
    """`original` config text with our managed block (marked with *run_id*) replaced or appended."""
    kept = strip_managed_block(original)
    if kept and not kept.endswith("\n"):
        kept += "\n"
    return f"{kept}{run_marked(BEGIN, run_id)}\n{block}{run_marked(END, run_id)}\n"


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
    journal_entries: tuple[str, ...] = ()


def provision_ganesha_export(
    server: Host, spec: ExportSpec, owner: tuple[int, int], workdir: str, *,
    server_name: str, observers: Sequence[Host], config: PurePosixPath = GANESHA_CONF,
    pidfile: PurePosixPath = GANESHA_PIDFILE, timeout: float = RELOAD_TIMEOUT_S,
    journal: Recorder | None = None, run_id: str | None = None,
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
    entries: list[str] = []

    def before_change(kind: str, **data: object) -> None:
        if journal is not None:
            entries.append(journal.record(kind, **data))

    created, work = exports.prepare_directories(server, spec, owner, workdir, before_change)
    written = with_block(original, block, run_id)
    # No reload command in the entry: a pid in it may name another process by the time it is undone.
    before_change("file", path=str(config), original=original, written=written, apply=None,
                  ganesha_pidfile=str(pidfile))
    handle = GaneshaExport(server.name, server_name, spec, config, pidfile, original, export_id, created, work,
                           tuple(entries))
    try:
        server.write_text(str(config), written)
        server.run(*reload)
        wait_listed(observers, server_name, spec.path, listed=True, timeout=timeout)
    except BaseException as exc:
        restore_ganesha_config(server, handle, observers, timeout=timeout, check_withdrawn=False, journal=journal)
        if not isinstance(exc, Exception):
            raise
        why = (" (ganesha's log says why: the journal of the nfs-ganesha unit, /var/log/ganesha/, "
               "or wherever its -L option points)") if isinstance(exc, WaitTimeout) else ""
        raise ExportError(f"ganesha export of {spec.path} on {server.name} failed: {exc}{why}") from exc
    return handle


def restore_ganesha_config(server: Host, handle: GaneshaExport, observers: Sequence[Host], *,
                           timeout: float = RELOAD_TIMEOUT_S, check_withdrawn: bool = True,
                           journal: Recorder | None = None) -> None:
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
    if journal is not None:  # every change undone (an exception above leaves them for the next run)
        for entry in handle.journal_entries:
            journal.done(entry)
