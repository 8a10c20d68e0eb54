"""A journal, on each host, of what a run is about to change there, so that a killed run is undone later.

Teardown undoes a run's changes, but a run killed with SIGKILL (CI ending a
job that overran, an operator's ^C twice) runs no teardown: its export
block, mounts, directories and guest stay behind and break the next run.
So before the harness changes a host it writes an entry saying what it
will change into `JOURNAL_ROOT/<run id>/` on that host; teardown undoes the
change and then drops the entry.  The directory's `owner.json` names the
process that owns the run (machine, pid and the pid's start time, so a
reused pid is not taken for the owner).  The next run, or `python -m
virtmig cleanup`, finds runs whose owner is gone and undoes their entries
(virtmig.cleanup), newest first.

Entries are JSON files named `<ns timestamp>-<kind>.json`: the timestamp
orders a run's entries across hosts, the kind says how to undo it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from virtmig.host import Host

JOURNAL_ROOT = "/var/lib/virtmig/journal"
OWNER_FILE = "owner.json"
#: Bound on each journal step: they are small files on the host's own disk.
STEP_TIMEOUT_S = 30.0


class Recorder(Protocol):
    """What a provisioning step needs of a journal: write an entry before a change, drop it after the undo."""

    def record(self, kind: str, **data: Any) -> str:
        """Write an entry of *kind* (what `virtmig.cleanup.undo` needs in *data*); return its name."""
        ...

    def done(self, entry: str) -> None:
        """The change of *entry* was undone: drop the entry."""
        ...


def process_start(pid: int) -> str | None:
    """This machine's start time of *pid* (field 22 of /proc/PID/stat, clock ticks since boot); None: no such process.

    With the pid it names one process for good: a pid reused later has another start time.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(") ")[2].split()
    return fields[19] if len(fields) > 19 else None


def _boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


@dataclass(frozen=True)
class Owner:
    """The process a run belongs to: run id, machine (host name and boot), pid and the pid's start time."""

    run_id: str
    machine: str
    boot_id: str
    pid: int
    start_ticks: str
    started_at: str = ""

    @classmethod
    def current(cls, run_id: str) -> Owner:
        pid = os.getpid()
        return cls(run_id, socket.gethostname(), _boot_id(), pid, process_start(pid) or "",
                   time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    def alive(self) -> bool | None:
        """Whether the owning process still runs: None when it ran on another machine (cannot tell from here)."""
        if self.machine != socket.gethostname():
            return None
        if self.boot_id != _boot_id():
            return False  # the machine rebooted since: the process is gone
        return process_start(self.pid) == self.start_ticks

    def describe(self) -> str:
        return f"run {self.run_id} (pid {self.pid} on {self.machine}, started {self.started_at})"

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Owner:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class Entry:
    """One recorded change: on which host, in which run's journal, its order, kind and data."""

    host: str
    run_id: str
    name: str
    kind: str
    data: dict[str, Any]

    @property
    def seq(self) -> int:
        return int(self.name.split("-", 1)[0])


@dataclass
class Journal:
    """One run's journal on one host (a `Recorder`)."""

    host: Host
    owner: Owner
    entries: list[str] = field(default_factory=list)
    root: str = JOURNAL_ROOT

    @property
    def directory(self) -> str:
        return f"{self.root}/{self.owner.run_id}"

    def open(self) -> Journal:
        self.host.run("install", "-d", "-m", "0700", self.directory, timeout=STEP_TIMEOUT_S)
        self.host.write_text(f"{self.directory}/{OWNER_FILE}", self.owner.to_json() + "\n", mode=0o600)
        return self

    def record(self, kind: str, **data: Any) -> str:
        name = f"{time.time_ns()}-{kind}.json"
        self.host.write_text(f"{self.directory}/{name}", json.dumps({"kind": kind, "data": data}) + "\n",
                             mode=0o600)
        self.entries.append(name)
        return name

    def done(self, entry: str) -> None:
        self.host.run("rm", "-f", "--", f"{self.directory}/{entry}", timeout=STEP_TIMEOUT_S)
        if entry in self.entries:
            self.entries.remove(entry)

    def close(self) -> bool:
        """Remove the journal if every change was undone; True if it was (else it stays for the next run)."""
        if self.entries:
            return False
        forget(self.host, self.owner.run_id, self.root)
        return True


_FORGET = r"""
rm -f -- "$1/$2" "$1"/*.virtmig-*.tmp
rmdir -- "$1" 2>/dev/null || true
"""


def forget(host: Host, run_id: str, root: str = JOURNAL_ROOT) -> None:
    """Remove a run's journal directory from *host*, once its entries are gone.

    Besides the owner file it may hold temporary files of `Host.write_text`
    (`virtmig.host.temp_name`): a write the run was killed in the middle of.
    Such a file never became an entry, and an entry is written before its
    change is made, so there is nothing behind it to undo: it goes too.
    """
    host.run_script(_FORGET, args=[f"{root}/{run_id}", OWNER_FILE], timeout=STEP_TIMEOUT_S)


_LIST = r"""
[ -d "$1" ] || exit 0
for d in "$1"/*/; do
    [ -d "$d" ] || continue
    for f in "$d"*.json; do [ -f "$f" ] && printf '%s\n' "$f"; done
done
"""


def runs_on(host: Host, root: str = JOURNAL_ROOT) -> dict[str, tuple[Owner | None, list[Entry]]]:
    """Every run's journal on *host*: run id -> (owner, entries oldest first); owner None if its file is gone."""
    listed = host.run_script(_LIST, args=[root], timeout=STEP_TIMEOUT_S).stdout.split()
    found: dict[str, tuple[Owner | None, list[Entry]]] = {}
    for path in sorted(listed):
        run_id, name = path[len(root) + 1:].split("/", 1)
        owner, entries = found.get(run_id, (None, []))
        text = host.read_text(path)
        if name == OWNER_FILE:
            owner = Owner.from_json(text)
        else:
            raw = json.loads(text)
            entries.append(Entry(host.name, run_id, name, raw["kind"], raw["data"]))
        found[run_id] = (owner, entries)
    return found


def live_runs(host: Host, root: str = JOURNAL_ROOT) -> set[str]:
    """Runs with a journal on *host* that may still run, by cleanup's rule: an owner that is alive, or on
    another machine (cannot be told); a journal without an owner file is a dead run's."""
    return {run for run, (owner, _) in runs_on(host, root).items() if owner is not None and owner.alive() is not False}


#: The libvirt metadata element that tags a run's guest (virDomainSetMetadata), so that
#: cleanup removes a domain by the run that made it, not by its name alone.
DOMAIN_TAG_URI = "https://virtmig.invalid/run"
DOMAIN_TAG_KEY = "virtmig"


def domain_tag(run_id: str) -> str:
    """The metadata element naming *run_id* (run ids are [A-Za-z0-9._-]: no quoting needed)."""
    return f"<run id='{run_id}'/>"
