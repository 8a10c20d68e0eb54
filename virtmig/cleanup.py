"""Undo what a dead run left on the hosts, from the journals it wrote there (virtmig.journal).

A run's entries are undone newest first across all its hosts (the guest
before the mounts it used, the mounts before the export they came from),
each entry dropped once its change is undone; a run whose every entry is
gone has its journal removed.  Each step is described as it happens, so
the next run's report and `python -m virtmig cleanup` can say what was
cleaned.

How each kind of change is undone:

* `file` (the NFS server's exports file or ganesha.conf): if the file is still what the
  run wrote, the original goes back byte for byte; if it changed since,
  only the run's managed block is stripped (a stale block is removed, never
  restored); then the server re-reads it (`apply`).
* `mount`: unmounted if the same source is still mounted there (lazily if
  the server does not answer), and the mount point removed if the run made it.
* `dir`: removed with everything in it: it is journalled only after the
  harness found it absent and just before it created it.
* `domain`: destroyed and undefined if it carries the run's tag in its
  libvirt metadata; a domain of that name without the tag is not the run's.
* `firewall` (the fault suite's network cut): each journalled iptables rule
  deleted for as long as `iptables -C` finds it.
* `stopped-process` (the fault suite's NFS stall): SIGCONT to the pid, if
  /proc/PID/comm still names the process that was stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import PurePosixPath
from typing import Any

from virtmig.host import Host
from virtmig.journal import DOMAIN_TAG_URI, JOURNAL_ROOT, Entry, Owner, forget, runs_on
from virtmig.storage.exports import NFS_COMMAND_TIMEOUT_S, Mounted, current_source, strip_managed_block, unmount
from virtmig.storage.ganesha import reload_command

#: libvirt on a host, as the harness's own commands reach it there.
VIRSH = ("virsh", "-c", "qemu:///system")


def undo(host: Host, entry: Entry) -> str:
    """Undo one entry's change on *host*; say what was done."""
    data: dict[str, Any] = entry.data
    if entry.kind == "file":
        return _undo_file(host, data)
    if entry.kind == "mount":
        mounted = Mounted(host.name, data["source"], PurePosixPath(data["mount_point"]), data["created_dir"])
        if current_source(host, mounted.mount_point) != mounted.source:
            return f"{mounted.source} is not mounted at {mounted.mount_point}: nothing to unmount"
        lazily = unmount(host, mounted)
        return f"unmounted {mounted.source} from {mounted.mount_point}" + (" (lazily: no answer)" if lazily else "")
    if entry.kind == "dir":
        host.run("rm", "-rf", "--one-file-system", "--", data["path"], timeout=NFS_COMMAND_TIMEOUT_S)
        return f"removed {data['path']}"
    if entry.kind == "domain":
        return _undo_domain(host, data["name"], entry.run_id)
    if entry.kind == "firewall":
        return _undo_firewall(host, data["rules"])
    if entry.kind == "stopped-process":
        return _undo_stopped(host, str(data["pid"]), data["comm"])
    raise ValueError(f"journal entry {entry.name} on {host.name}: unknown kind {entry.kind!r}")


def _undo_file(host: Host, data: dict[str, Any]) -> str:
    path, original, written = data["path"], data["original"], data["written"]
    exists = host.run("test", "-e", path, check=False, timeout=NFS_COMMAND_TIMEOUT_S).ok
    current = host.read_text(path) if exists else None
    if current == written:
        if original is None:
            host.run("rm", "-f", "--", path, timeout=NFS_COMMAND_TIMEOUT_S)
        else:
            host.write_text(path, original, mode=0o644)
        done = f"{path} put back as it was before the run"
    elif current is not None:
        stripped = strip_managed_block(current, data.get("tag"))
        if stripped == current:
            return f"{path} changed since the run and holds no block of it: left as it is"
        host.write_text(path, stripped)
        done = f"{path}: the run's managed block removed (the file changed since the run)"
    else:
        return f"{path} is gone: nothing to put back"
    apply = data.get("apply")
    if data.get("ganesha_pidfile"):  # how to reload ganesha is looked up now, as restore does
        apply = list(reload_command(host, PurePosixPath(data["ganesha_pidfile"])))
    if apply:
        host.run(*apply, timeout=NFS_COMMAND_TIMEOUT_S)
        done += f", applied with {' '.join(apply)}"
    return done


def _undo_domain(host: Host, name: str, run_id: str) -> str:
    tag = host.run(*VIRSH, "metadata", name, "--uri", DOMAIN_TAG_URI, check=False, timeout=NFS_COMMAND_TIMEOUT_S)
    if not tag.ok:
        return f"no domain {name} tagged by the run"
    if f"'{run_id}'" not in tag.stdout and f'"{run_id}"' not in tag.stdout:
        return f"domain {name} is not the run's (tag {tag.stdout.strip()!r}): left as it is"
    host.run(*VIRSH, "destroy", name, check=False, timeout=NFS_COMMAND_TIMEOUT_S)
    host.run(*VIRSH, "undefine", name, check=False, timeout=NFS_COMMAND_TIMEOUT_S)
    return f"domain {name} destroyed and undefined"


def _undo_firewall(host: Host, rules: list[list[str]]) -> str:
    removed = 0
    for rule in rules:
        while host.run("iptables", "-C", *rule, check=False, timeout=NFS_COMMAND_TIMEOUT_S).ok:
            host.run("iptables", "-D", *rule, timeout=NFS_COMMAND_TIMEOUT_S)
            removed += 1
    return f"{removed} iptables rule(s) of the run removed" if removed else "no iptables rule of the run left"


def _undo_stopped(host: Host, pid: str, comm: str) -> str:
    found = host.run("cat", f"/proc/{pid}/comm", check=False, timeout=NFS_COMMAND_TIMEOUT_S).stdout.strip()
    if found != comm:
        return f"pid {pid} is no longer {comm}: nothing to resume"
    host.run("kill", "-CONT", pid, timeout=NFS_COMMAND_TIMEOUT_S)
    return f"{comm} (pid {pid}) resumed (SIGCONT)"


def clean_dead_runs(hosts: Sequence[Host], say: Callable[[str], None], *,
                    alive: Callable[[Owner], bool | None] = Owner.alive, root: str = JOURNAL_ROOT) -> list[str]:
    """Undo the journals of runs whose owner is gone, on all *hosts*; return what was done, as said.

    A run whose owner still runs is left alone; one that ran on another
    machine (its owner's liveness cannot be told from here) is reported and
    left alone too.  A journal without an owner file is a run that died
    while closing its journal: its entries are undone.
    """
    by_host = {h.name: h for h in hosts}
    runs: dict[str, tuple[Owner | None, list[Entry]]] = {}
    for host in hosts:
        for run_id, (owner, entries) in runs_on(host, root).items():
            known, collected = runs.get(run_id, (None, []))
            runs[run_id] = (known or owner, collected + entries)
    done: list[str] = []

    def step(line: str) -> None:
        done.append(line)
        say(line)

    for run_id, (owner, entries) in sorted(runs.items()):
        state = None if owner is None else alive(owner)
        who = owner.describe() if owner else f"run {run_id} (no owner file)"
        if state is True:
            continue
        if state is None and owner is not None:
            say(f"{who}: ran on another machine, cannot tell whether it still runs; left alone")
            continue
        step(f"cleaning up after {who}, which is gone: {len(entries)} change(s)")
        for entry in sorted(entries, key=lambda e: e.seq, reverse=True):
            host = by_host[entry.host]
            step(f"  {entry.host}: {undo(host, entry)}")
            host.run("rm", "-f", "--", f"{root}/{run_id}/{entry.name}", timeout=NFS_COMMAND_TIMEOUT_S)
        for host in hosts:
            forget(host, run_id, root)
    return done
