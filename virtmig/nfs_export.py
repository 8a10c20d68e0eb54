"""Provision an NFS export and mount it on the hosts, the classic way, and undo it.

Server side: a block in `/etc/exports` between marker comments, written
atomically, applied with `exportfs -ra`.  The original file is kept as text
and written back byte for byte at teardown (or removed, if there was none).
A block left by an aborted run (same markers) is replaced, never doubled.

Host side: `mount -t nfs SERVER:EXPORT MOUNTPOINT`; at teardown only what
was mounted (and the mount point directory, if it was created) is removed.

Defaults are `rw,sync,root_squash` for the two hosts only; a wildcard client
or `no_root_squash` is allowed only when asked, and flagged as insecure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from virtmig.host import Host

EXPORTS = "/etc/exports"
BEGIN = "# BEGIN virtmig managed export"
END = "# END virtmig managed export"
DEFAULT_OPTIONS = "rw,sync,root_squash,no_subtree_check"
_OPTION_RE = re.compile(r"^[a-z_]+(=[A-Za-z0-9_:./-]+)?$")


class ExportError(RuntimeError):
    """The export could not be provisioned; the message names server and step."""


@dataclass(frozen=True)
class ExportSpec:
    """What to export, to whom, how."""

    path: PurePosixPath
    clients: tuple[str, ...]
    options: str = DEFAULT_OPTIONS

    def __post_init__(self) -> None:
        if not self.path.is_absolute():
            raise ValueError(f"export path {self.path} is not absolute")
        if not self.clients:
            raise ValueError("an export needs at least one client")
        for opt in self.options.split(","):
            if not _OPTION_RE.match(opt):
                raise ValueError(f"export option {opt!r} is not valid exports(5) syntax")

    def insecurities(self) -> list[str]:
        """Why this export is weaker than the default, for the report (empty: fine)."""
        found = []
        if any(c == "*" or c.startswith("*") for c in self.clients):
            found.append("export open to any client ('*')")
        if "no_root_squash" in self.options.split(","):
            found.append("no_root_squash: root on the hosts is root on the export")
        return found

    def line(self) -> str:
        clients = " ".join(f"{c}({self.options})" for c in self.clients)
        return f"{self.path} {clients}"


def with_managed_block(original: str, spec: ExportSpec) -> str:
    """`original` /etc/exports text with our block replaced or appended."""
    kept = strip_managed_block(original)
    if kept and not kept.endswith("\n"):
        kept += "\n"
    return f"{kept}{BEGIN}\n{spec.line()}\n{END}\n"


def strip_managed_block(text: str) -> str:
    """`text` without any managed block (an aborted run's leftovers)."""
    out: list[str] = []
    inside = False
    for line in text.splitlines(keepends=True):
        if line.rstrip("\n") == BEGIN:
            inside = True
        elif line.rstrip("\n") == END and inside:
            inside = False
        elif not inside:
            out.append(line)
    return "".join(out)


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


def provision_export(server: Host, spec: ExportSpec, owner: tuple[int, int], workdir: str) -> ProvisionedExport:
    """Create the export directory if needed and our work dir in it, add our block, apply it."""
    exists = server.run("test", "-e", EXPORTS, check=False).ok
    original = server.read_text(EXPORTS) if exists else None
    created = not server.run("test", "-d", str(spec.path), check=False).ok
    if created:
        server.run("install", "-d", "-m", "0755", str(spec.path))
    work = spec.path / workdir
    server.run("rm", "-rf", "--one-file-system", str(work))  # an aborted run's leftovers
    server.run("install", "-d", "-o", str(owner[0]), "-g", str(owner[1]), "-m", "0755", str(work))
    server.write_text(EXPORTS, with_managed_block(strip_managed_block(original or ""), spec), mode=0o644)
    applied = server.run("exportfs", "-ra", check=False)
    handle = ProvisionedExport(server.name, spec, original, created, work)
    if not applied.ok:
        restore_exports(server, handle)
        raise ExportError(f"exportfs -ra on {server.name} failed: {applied.stderr.strip()}")
    return handle


def restore_exports(server: Host, handle: ProvisionedExport) -> None:
    """Put /etc/exports back byte for byte, re-apply, remove a directory we made."""
    if handle.original is None:
        server.run("rm", "-f", EXPORTS)
    else:
        server.write_text(EXPORTS, handle.original, mode=0o644)
    server.run("exportfs", "-ra")
    server.run("rm", "-rf", "--one-file-system", str(handle.workdir))
    if handle.created_dir:
        server.run("rm", "-rf", "--one-file-system", str(handle.spec.path))


def exported_to(host: Host, server: str) -> list[str]:
    """Export paths `showmount -e SERVER` lists, as seen from `host`."""
    result = host.run("showmount", "-e", server, check=False)
    if not result.ok:
        raise ExportError(f"showmount -e {server} from {host.name} failed: {result.stderr.strip()}")
    return [line.split()[0] for line in result.stdout.splitlines()[1:] if line.strip()]


@dataclass(frozen=True)
class Mounted:
    """A mount we made on a host (so that teardown removes only that)."""

    host: str
    source: str
    mount_point: PurePosixPath
    created_dir: bool


def current_source(host: Host, mount_point: PurePosixPath) -> str | None:
    """What is mounted at `mount_point` on `host` (SOURCE), or None."""
    result = host.run("findmnt", "-n", "-o", "SOURCE", "--mountpoint", str(mount_point), check=False)
    return result.stdout.strip() or None if result.ok else None


def mount_nfs(host: Host, source: str, mount_point: PurePosixPath, options: Sequence[str] = ()) -> Mounted | None:
    """Mount `source` at `mount_point`; None if it was mounted there already."""
    if current_source(host, mount_point) == source:
        return None
    created = not host.run("test", "-d", str(mount_point), check=False).ok
    if created:
        host.run("mkdir", "-p", str(mount_point))
    argv = ["mount", "-t", "nfs"] + (["-o", ",".join(options)] if options else []) + [source, str(mount_point)]
    result = host.run(*argv, check=False)
    if not result.ok:
        if created:
            host.run("rmdir", str(mount_point), check=False)
        raise ExportError(f"{' '.join(argv)} on {host.name} failed: {result.stderr.strip()}")
    return Mounted(host.name, source, mount_point, created)


def unmount(host: Host, mounted: Mounted) -> None:
    host.run("umount", str(mounted.mount_point))
    if mounted.created_dir:
        host.run("rmdir", str(mounted.mount_point), check=False)
