"""Provision an NFS export and mount it on the hosts, the classic way, and undo it.

Server side: a block in `/etc/exports` between marker comments, written
atomically, applied with `exportfs -ra`.  The original file is kept as text
and written back byte for byte at teardown (or removed, if there was none).
A block left by an aborted run (same markers) is replaced, never doubled.

An nfs-ganesha server gets the same export as an EXPORT block instead
(virtmig.storage.ganesha); the directories and the host side are shared.

Host side: `mount -t nfs SERVER:EXPORT MOUNTPOINT`; at teardown only what
was mounted (and the mount point directory, if it was created) is removed.

Defaults are `rw,sync,root_squash` for the two hosts only; a wildcard client
or `no_root_squash` is allowed only when asked, and flagged as insecure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from virtmig.host import CommandTimeout, Host
from virtmig.journal import Recorder
from virtmig.option_values import check_storage_path
from virtmig.storage.managed_blocks import BEGIN as BEGIN
from virtmig.storage.managed_blocks import END as END
from virtmig.storage.managed_blocks import is_marker as is_marker
from virtmig.storage.managed_blocks import markers as markers
from virtmig.storage.managed_blocks import run_marked as run_marked
from virtmig.storage.managed_blocks import strip_blocks_of_dead_runs as strip_blocks_of_dead_runs
from virtmig.storage.managed_blocks import strip_every_managed_block as strip_every_managed_block
from virtmig.storage.managed_blocks import strip_managed_block as strip_managed_block
from virtmig.storage.managed_blocks import with_managed_block as with_managed_block
from virtmig.waiters import wait_for_export_listing

EXPORTS = "/etc/exports"
#: In an export directory virtmig made for the pairs of a run: the pair that leaves last removes it.
MADE_BY_VIRTMIG = ".virtmig-made-for-pairs"
#: Bound on each NFS step (exportfs, showmount, mount, umount, a removal on the
#: export): a server that stopped answering must end the step, not the run.
NFS_COMMAND_TIMEOUT_S = 60.0
DEFAULT_OPTIONS = "rw,sync,root_squash,no_subtree_check"
_OPTION_RE = re.compile(r"^[a-z_]+(=[A-Za-z0-9_:./-]+)?$")
#: exports(5) clients: a host name, an address, a network (addr/len), a wildcard or an @netgroup;
#: never a space, '(' or '#', which would start another client, its options or a comment.
_CLIENT_RE = re.compile(r"^[A-Za-z0-9_.:*?@][A-Za-z0-9_.:*?@/-]*$")


class ExportError(RuntimeError):
    """The export could not be provisioned; the message names server and step."""


@dataclass(frozen=True)
class ExportSpec:
    """What to export, to whom, how."""

    path: PurePosixPath
    clients: tuple[str, ...]
    options: str = DEFAULT_OPTIONS

    def __post_init__(self) -> None:
        check_storage_path(self.path, "export path")  # a ConfigError is a ValueError
        if not self.clients:
            raise ValueError("an export needs at least one client")
        for client in self.clients:
            if not _CLIENT_RE.match(client):
                raise ValueError(f"export client {client!r} is not an exports(5) host, network, wildcard "
                                 "or netgroup")
        for opt in self.options.split(","):
            if not _OPTION_RE.match(opt):
                raise ValueError(f"export option {opt!r} is not valid exports(5) syntax")

    def insecurities(self) -> list[str]:
        """Why this export is weaker than the default, for the report (empty: fine)."""
        found = []
        wide = [c for c in self.clients if _is_wildcard(c)]
        if wide:
            found.append(f"export open to any client matching {', '.join(repr(c) for c in wide)}")
        opts = self.options.split(",")
        if "no_root_squash" in opts:
            found.append("no_root_squash: root on the hosts is root on the export")
        for opt in ("anonuid=0", "anongid=0"):
            if opt in opts:
                found.append(f"{opt}: squashed requests act as root")
        if "insecure" in opts:
            found.append("insecure: clients may connect from unprivileged ports (any local user's process)")
        return found

    def line(self) -> str:
        """The exports(5) line: one line whatever the spec holds (its parts were checked when it was made)."""
        clients = " ".join(f"{c}({self.options})" for c in self.clients)
        line = f"{self.path} {clients}"
        if "\n" in line or "\r" in line or "#" in line:  # unreachable after __post_init__; never write it
            raise ValueError(f"export line {line!r} would not be a single exports(5) line")
        return line


def _is_wildcard(client: str) -> bool:
    """Whether an exports(5) client admits hosts nobody named: a wildcard or a /0 network."""
    return "*" in client or "?" in client or client.endswith("/0")


@dataclass(frozen=True)
class ProvisionedExport:
    """An export we made; `original` is /etc/exports as it was (None: absent).

    `workdir` is a directory inside the export owned by the qemu user: with
    root_squash the hosts' root cannot write in the export, qemu's user can.
    """

    server: str
    spec: ExportSpec
    original: str | None
    created_dir: bool
    workdir: PurePosixPath
    journal_entries: tuple[str, ...] = ()
    #: The pair's block tag in a run of several pairs (None: the run's one block).
    tag: str | None = None


#: Called with a journal entry's kind and data just before the change it describes
#: (virtmig.journal.Recorder.record, or a caller's wrapper of it).
BeforeChange = Callable[..., object]


def prepare_directories(server: Host, spec: ExportSpec, owner: tuple[int, int],
                        workdir: str, before_change: BeforeChange | None = None) -> tuple[bool, PurePosixPath]:
    """Create the export directory if needed and our work dir in it: (created export dir, work dir).

    Shared by every kind of server: the directories are the same whatever
    serves them.  The work dir must not exist yet: teardown removes it with everything in
    it (rm -rf), which the harness only does to a directory it created.  One
    that is there already (another run's, or the operator's) is refused, not
    emptied.
    """
    work = spec.path / workdir
    if server.run("test", "-e", str(work), check=False).ok:
        raise ExportError(f"{work} exists already on {server.name}: virtmig removes only directories it "
                          "created, so it will not reuse or empty it; if an interrupted virtmig run left it, "
                          "remove it by hand (or choose another --export)")
    created = not server.run("test", "-d", str(spec.path), check=False).ok
    if created:
        if before_change:
            before_change("dir", path=str(spec.path))
        server.run("install", "-d", "-m", "0755", str(spec.path))
    if before_change:
        before_change("dir", path=str(work))
    server.run("install", "-d", "-o", str(owner[0]), "-g", str(owner[1]), "-m", "0755", str(work))
    return created, work


def remove_directories(server: Host, spec: ExportSpec, created_dir: bool, workdir: PurePosixPath) -> None:
    """Remove our work dir, and the export directory if we created it."""
    server.run("rm", "-rf", "--one-file-system", str(workdir), timeout=NFS_COMMAND_TIMEOUT_S)
    if created_dir:
        server.run("rm", "-rf", "--one-file-system", str(spec.path), timeout=NFS_COMMAND_TIMEOUT_S)


def _read_exports(server: Host) -> str | None:
    """/etc/exports as it is now (None: there is none)."""
    return server.read_text(EXPORTS) if server.run("test", "-e", EXPORTS, check=False).ok else None


def _put_back_exports(server: Host, original: str | None) -> None:
    """/etc/exports byte for byte as `original` (None: removed), re-applied."""
    if original is None:
        server.run("rm", "-f", EXPORTS)
    else:
        server.write_text(EXPORTS, original, mode=0o644)
    server.run("exportfs", "-ra", timeout=NFS_COMMAND_TIMEOUT_S)


def provision_export(server: Host, spec: ExportSpec, owner: tuple[int, int], workdir: str,
                     journal: Recorder | None = None, run_id: str | None = None, *,
                     tag: str | None = None, live_runs: Collection[str] = ()) -> ProvisionedExport:
    """Create the export directory if needed and our work dir in it, add our block, apply it.

    What teardown puts back is the file without any managed block: a block
    an aborted run left (its own or a case's tagged one) is removed, never restored.  With a *journal*, each
    change is recorded on the server just before it is made.

    With a *tag* (one pair's export in a run of several pairs, whose xdist
    workers provision side by side), the block is the pair's own, and the
    blocks of *live_runs* (the sibling pairs') stay; the caller holds the
    server's turn meanwhile, so that no two read-modify-writes interleave.
    """
    current = _read_exports(server)
    original = None if current is None else strip_every_managed_block(current)
    base = original if tag is None or current is None else strip_blocks_of_dead_runs(current, live_runs)
    entries: list[str] = []

    def before_change(kind: str, **data: object) -> None:
        if journal is not None:
            entries.append(journal.record(kind, **data))

    created, work = prepare_directories(server, spec, owner, workdir, before_change)
    if tag is not None:
        created = _mark_made_by_virtmig(server, spec.path, created)
    written = with_managed_block(base or "", spec, tag, run_id)
    before_change("file", path=EXPORTS, original=original, written=written, apply=["exportfs", "-ra"], tag=tag)
    server.write_text(EXPORTS, written, mode=0o644)
    applied = server.run("exportfs", "-ra", check=False, timeout=NFS_COMMAND_TIMEOUT_S)
    handle = ProvisionedExport(server.name, spec, original, created, work, tuple(entries), tag)
    if not applied.ok:
        restore_exports(server, handle, journal)
        raise ExportError(f"exportfs -ra on {server.name} failed: {applied.stderr.strip()}")
    return handle


def _mark_made_by_virtmig(server: Host, path: PurePosixPath, created: bool) -> bool:
    """Whether a pair's export directory is virtmig's to remove, marked in it for the other pairs.

    The first pair of a run creates it; whichever pair leaves last must
    remove it, and only a file in the directory tells that pair it was made by virtmig.
    """
    marker = str(path / MADE_BY_VIRTMIG)
    if created:
        server.write_text(marker, "made by virtmig for the pairs of a run; the last pair removes it\n", mode=0o644)
        return True
    return server.run("test", "-e", marker, check=False).ok


def restore_exports(server: Host, handle: ProvisionedExport, journal: Recorder | None = None) -> None:
    """Put /etc/exports back byte for byte, re-apply, remove a directory we made; then drop the journal entries.

    The exports file goes back first: it is the server's own disk, never
    NFS, so it cannot hang on a stalled export, and the next start of the
    server must find the operator's file whatever fails after.  A pair's
    tagged block is taken out of the file as it is now (the other pairs'
    blocks stay); the pair that takes out the last block puts the original
    back byte for byte and removes the export directory if virtmig made it.
    """
    created, last = handle.created_dir, True
    try:
        if handle.tag is None:
            _put_back_exports(server, handle.original)
        else:
            rest = strip_managed_block(_read_exports(server) or "", handle.tag)
            last = strip_every_managed_block(rest) == rest
            _put_back_exports(server, handle.original if last else rest)
    finally:  # the server's own disk: removable even when exportfs hangs on a stalled NFS server
        remove_directories(server, handle.spec, created and last, handle.workdir)
    if journal is not None:  # every change undone (an exception above leaves them for the next run's cleanup)
        for entry in handle.journal_entries:
            journal.done(entry)


@dataclass(frozen=True)
class ExtraExport:
    """A further export in its own tagged block; `original` is /etc/exports before it (None: absent)."""

    server: str
    tag: str
    original: str | None
    journal_entries: tuple[str, ...] = ()


def add_export(server: Host, spec: ExportSpec, tag: str, journal: Recorder | None = None) -> ExtraExport:
    """Export an existing directory once more, in a block named *tag*, and apply it.

    For cases that need a second export beside the run's (a read-only one,
    a sub-directory mounted elsewhere).  The directory is not created: it is
    the caller's.  On failure the file is put back before raising.  With a
    *journal*, the change is recorded on the server just before it is made.
    """
    original = _read_exports(server)
    entries: tuple[str, ...] = ()
    if journal is not None:
        entries = (journal.record("file", path=EXPORTS, original=original, tag=tag, apply=["exportfs", "-ra"],
                                  written=with_managed_block(original or "", spec, tag)),)
    handle = ExtraExport(server.name, tag, original, entries)
    try:
        set_export(server, spec, tag)
    except ExportError:
        remove_export(server, handle, journal)
        raise
    return handle


def set_export(server: Host, spec: ExportSpec, tag: str) -> None:
    """Replace the block named *tag* in the current /etc/exports with *spec* and apply it (exportfs -ra)."""
    server.write_text(EXPORTS, with_managed_block(_read_exports(server) or "", spec, tag), mode=0o644)
    applied = server.run("exportfs", "-ra", check=False, timeout=NFS_COMMAND_TIMEOUT_S)
    if not applied.ok:
        raise ExportError(f"exportfs -ra on {server.name} failed: {applied.stderr.strip()}")


def remove_export(server: Host, handle: ExtraExport, journal: Recorder | None = None) -> None:
    """Put /etc/exports back byte for byte as before `add_export` and re-apply; then drop the journal entry."""
    _put_back_exports(server, handle.original)
    if journal is not None:
        for entry in handle.journal_entries:
            journal.done(entry)


#: How long a new or withdrawn export may take to show in the hosts' `showmount -e`.
LISTED_TIMEOUT_S = 20.0


def exported_to(host: Host, server: str) -> list[str]:
    """Export paths `showmount -e SERVER` lists, as seen from `host`."""
    result = host.run("showmount", "-e", server, check=False, timeout=NFS_COMMAND_TIMEOUT_S)
    if not result.ok:
        raise ExportError(f"showmount -e {server} from {host.name} failed: {result.stderr.strip()}")
    return [line.split()[0] for line in result.stdout.splitlines()[1:] if line.strip()]


def wait_listed(observers: Sequence[Host], server_name: str, path: PurePosixPath, *, listed: bool,
                timeout: float = LISTED_TIMEOUT_S) -> None:
    """Wait until every observer's `showmount -e SERVER` lists `path` (or, listed=False, no longer does)."""
    wait_for_export_listing(observers, server_name, str(path), listed=listed, exported_to=exported_to,
                            timeout=timeout)


@dataclass(frozen=True)
class Mounted:
    """A mount we made on a host (so that teardown removes only that)."""

    host: str
    source: str
    mount_point: PurePosixPath
    created_dir: bool


def current_source(host: Host, mount_point: PurePosixPath) -> str | None:
    """What is mounted at `mount_point` on `host` (SOURCE), or None."""
    result = host.run("findmnt", "-n", "-o", "SOURCE", "--mountpoint", str(mount_point), check=False,
                      timeout=NFS_COMMAND_TIMEOUT_S)
    return result.stdout.strip() or None if result.ok else None


def mount_nfs(host: Host, source: str, mount_point: PurePosixPath, options: Sequence[str] = (),
              before_change: BeforeChange | None = None) -> Mounted | None:
    """Mount `source` at `mount_point`; None if it was mounted there already.

    *before_change*, if given, is told the mount (source, mount point,
    whether the directory is made for it) just before it is made.
    """
    if current_source(host, mount_point) == source:
        return None
    created = not host.run("test", "-d", str(mount_point), check=False).ok
    if before_change:
        before_change("mount", source=source, mount_point=str(mount_point), created_dir=created)
    if created:
        host.run("mkdir", "-p", str(mount_point))
    argv = ["mount", "-t", "nfs"] + (["-o", ",".join(options)] if options else []) + [source, str(mount_point)]
    result = host.run(*argv, check=False, timeout=NFS_COMMAND_TIMEOUT_S)
    if not result.ok:
        if created:
            host.run("rmdir", str(mount_point), check=False)
        raise ExportError(f"{' '.join(argv)} on {host.name} failed: {result.stderr.strip()}")
    return Mounted(host.name, source, mount_point, created)


#: How long a mount may take to answer statfs before teardown takes its server for stalled.
STALL_PROBE_S = 10.0


def mount_answers(host: Host, path: str | PurePosixPath, timeout: float = STALL_PROBE_S) -> bool:
    """Whether the file system at *path* on *host* answers statfs within *timeout* (an NFS server may be stalled).

    Teardown asks before anything that would wait on the server: a stalled
    server must cost it seconds, not a timeout per step.
    """
    try:
        return host.run("stat", "-f", "--", str(path), check=False, timeout=timeout).ok
    except CommandTimeout:
        return False


def unmount(host: Host, mounted: Mounted, timeout: float = NFS_COMMAND_TIMEOUT_S) -> bool:
    """Unmount what we mounted; lazily (umount -l) when the server no longer answers. True if lazily.

    An NFS server that is gone or stalled makes umount wait for it: a mount
    that does not answer statfs is detached lazily at once, and one whose
    umount still outlasts *timeout* likewise, so the host no longer shows
    it and teardown goes on.  A mount that is busy (umount fails at once)
    is an error, not detached: something still uses it.
    """
    lazy = not mount_answers(host, mounted.mount_point)
    if not lazy:
        try:
            host.run("umount", str(mounted.mount_point), timeout=timeout)
        except CommandTimeout:
            lazy = True
    if lazy:
        host.run("umount", "-l", str(mounted.mount_point), timeout=timeout)
    if mounted.created_dir:
        host.run("rmdir", str(mounted.mount_point), check=False, timeout=timeout)
    return lazy
