"""One pair, one run at a time: a lock directory under /run on each host of the pair.

Two runs against one pair migrate each other's guests, fill each other's
reports with the other's downtime, and tear down each other's mounts.  So a
run takes, on each host, `/run/virtmig-pair.lock` (mkdir is atomic) with a
`holder.json` saying who: owner, controller, pytest's pid and its start
time, when, which run.  /run is a tmpfs: a host's reboot frees its lock.

A second run either stops at once naming the holder, or waits
(--wait-for-pair SECONDS, polled through virtmig.waiters).  A lock whose
holder is dead is taken over, and the taker says so: a holder on this
controller is dead when its pid is gone or belongs to another process (the
start time differs); a holder on another controller cannot be asked, so it
counts as dead only after STALE_FOREIGN_S, longer than any certification runs.
Hosts are locked in name order, so two runs on h1->h2 and h2->h1 never each
hold one half and wait for the other.

The xdist workers of one run share the pair: each joins as a member
(`members/CONTROLLER:PID:START`), the run holds the lock while any member
is alive, and the last member to leave removes it (rmdir of the members
directory succeeds only when it is empty, atomically).  Otherwise the
first worker to end would free the pair while the others still migrate.
"""

from __future__ import annotations

import functools
import json
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from virtmig.host import Host
from virtmig.journal import process_start
from virtmig.waiters import WaitTimeout, wait_for

LOCK_DIR = "/run/virtmig-pair.lock"
#: A holder on another controller is taken for dead after this long (no certification runs 12 h).
STALE_FOREIGN_S = 12 * 3600
#: A lock directory without a readable holder (a taker between mkdir and write) is dead after this long.
STALE_UNWRITTEN_S = 60

#: $1 lock dir, $2 holder JSON, $3 member name: prints "acquired", or "held", the holder file's age in
#: seconds, the members (one line, space-separated) and the holder's text.
_ACQUIRE = r"""
if mkdir "$1" 2>/dev/null; then
    mkdir "$1/members" && : > "$1/members/$3" && printf '%s\n' "$2" > "$1/holder.json" && echo acquired && exit 0
    rm -rf "$1"; exit 1
fi
now=$(date +%s)
ref="$1/holder.json"; [ -e "$ref" ] || ref="$1"
echo held $((now - $(stat -c %Y "$ref" 2>/dev/null || echo "$now")))
echo $(ls "$1/members" 2>/dev/null)
cat "$1/holder.json" 2>/dev/null
exit 0
"""
#: $1 lock dir, $2 the run's holder text as seen, $3 member name: "joined" only if the lock is still that run's
#: after the member file is made (a last member leaving meanwhile takes the members directory with it).
_JOIN = r"""
[ "$(cat "$1/holder.json" 2>/dev/null)" = "$2" ] && : > "$1/members/$3" 2>/dev/null &&
    [ "$(cat "$1/holder.json" 2>/dev/null)" = "$2" ] && echo joined
exit 0
"""
#: $1 lock dir, $2 the holder text seen as stale: moved aside (atomic) only if it is still that holder.
_TAKE_OVER = r"""
seen=$(cat "$1/holder.json" 2>/dev/null)
[ "$seen" = "$2" ] || { echo changed; exit 0; }
mv "$1" "$1.stale.$$" && rm -rf "$1.stale.$$" && echo removed
"""
#: $1 lock dir, $2 member name: this member leaves; the last one out removes the lock.
_RELEASE = r"""
rm -f "$1/members/$2"
rmdir "$1/members" 2>/dev/null && rm -rf "$1"
exit 0
"""
#: How often a worker retries joining its own run's lock while the run's last member is leaving it.
_JOIN_TRIES = 5


class PairBusy(RuntimeError):
    """Another run holds the pair; the message names it and what to do."""


@dataclass(frozen=True)
class Holder:
    """Who holds a host: the run's owner (user@controller), pytest's pid and its start time there, when."""

    owner: str
    controller: str
    pid: int
    pid_start: str
    started_at: str
    run: str
    pair: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Holder | None:
        try:
            raw = json.loads(text)
            return cls(str(raw["owner"]), str(raw["controller"]), int(raw["pid"]), str(raw["pid_start"]),
                       str(raw["started_at"]), str(raw["run"]), str(raw["pair"]))
        except (ValueError, KeyError, TypeError):
            return None

    def describe(self) -> str:
        return f"{self.owner} (pytest pid {self.pid}, run {self.run}, pair {self.pair}, since {self.started_at})"

    @property
    def member(self) -> str:
        """This process's member name in the lock: controller, pid and the pid's start time."""
        return f"{self.controller}:{self.pid}:{self.pid_start}"


def parse_member(name: str) -> tuple[str, int, str] | None:
    """(controller, pid, start) of a member name; None for anything else."""
    controller, _, rest = name.partition(":")
    pid, _, start = rest.partition(":")
    return (controller, int(pid), start) if controller and pid.isdigit() and start else None


def this_run(run: str, pair: str) -> Holder:
    """The holder record of this process's run."""
    user = os.environ.get("USER") or str(os.getuid())
    controller = socket.gethostname()
    return Holder(f"{user}@{controller}", controller, os.getpid(), process_start(os.getpid()) or "?",
                  datetime.now(UTC).isoformat(timespec="seconds"), run, pair)


def stale_reason(holder: Holder | None, age_s: int, controller: str,
                 alive: Callable[[int, str], bool], members: Sequence[str] = ()) -> str | None:
    """Why a lock is dead (None: its holder may be alive).  *alive(pid, start)* asks this controller.

    A run on this controller is alive while its holder's process or any of
    its members (*members*: the lock's member names; xdist workers) is.
    """
    if holder is None:
        return f"no holder written {age_s} s after the lock was made" if age_s > STALE_UNWRITTEN_S else None
    if holder.controller == controller:
        processes = {(holder.pid, holder.pid_start)} | {
            (pid, start) for name in members if (m := parse_member(name)) and m[0] == controller
            for _, pid, start in [m]}
        if any(alive(pid, start) for pid, start in processes):
            return None
        pids = ", ".join(str(pid) for pid, _ in sorted(processes))
        return f"its pytest (pid {pids} on {controller}) is gone"
    if age_s > STALE_FOREIGN_S:
        return f"taken {age_s} s ago from {holder.controller}, longer than any run ({STALE_FOREIGN_S} s)"
    return None


def _alive_here(pid: int, start: str) -> bool:
    return process_start(pid) == start


@dataclass
class _Attempts:
    """What the tries on one host saw: the last holder (for the timeout's message) and any takeover notes."""

    last: str = ""
    notes: list[str] = field(default_factory=list)


def _try(host: Host, me: Holder, seen: _Attempts, lock_dir: str) -> bool | None:
    """True when *host* is ours now (taken, or joined as a worker of the run holding it); None while another
    live run holds it."""
    for _ in range(_JOIN_TRIES):
        res = host.run_script(_ACQUIRE, args=[lock_dir, me.to_json(), me.member], check=True, timeout=30)
        first, _, rest = res.stdout.partition("\n")
        if first == "acquired":
            return True
        words = first.split()
        age = int(words[1]) if len(words) == 2 and words[1].lstrip("-").isdigit() else 0
        members_line, _, holder_text = rest.partition("\n")
        holder = Holder.from_json(holder_text.strip())
        if holder is None or holder.run != me.run:
            break
        joined = host.run_script(_JOIN, args=[lock_dir, holder_text.strip(), me.member], check=True, timeout=30)
        if joined.stdout.strip() == "joined":
            return True  # a worker of this run: the pair is ours while any of us is alive
    else:
        return None  # our own run's lock kept changing under us: try again at the next poll
    why = stale_reason(holder, age, me.controller, _alive_here, members_line.split())
    if why is None:
        seen.last = f"{host.name}: held by {holder.describe() if holder else 'a run still writing its holder'}"
        return None
    took = host.run_script(_TAKE_OVER, args=[lock_dir, holder_text.strip()], check=True, timeout=30)
    if took.stdout.strip() == "removed":
        seen.notes.append(f"{host.name}: took over a stale pair lock of "
                          f"{holder.describe() if holder else 'an unknown run'}: {why}")
    return _try(host, me, seen, lock_dir)


def acquire(hosts: Sequence[Host], me: Holder, wait_s: float, lock_dir: str = LOCK_DIR) -> list[str]:
    """Lock every host (in name order), waiting up to *wait_s* for each; the notes of stale locks taken over.

    PairBusy names the holder and the options when a live run keeps a host
    past the wait; whatever this call had locked by then is released.
    """
    notes: list[str] = []
    taken: list[Host] = []
    try:
        for host in sorted(hosts, key=lambda h: h.name):
            seen = _Attempts()
            try:
                wait_for(functools.partial(_try, host, me, seen, lock_dir), target=f"the pair lock on {host.name}",
                         state="free", timeout=wait_s, interval=1.0, describe=functools.partial(getattr, seen, "last"))
            except WaitTimeout as exc:
                raise PairBusy(f"{seen.last}: one pair, one run at a time; wait with --wait-for-pair SECONDS, "
                               f"or if that run is gone, remove {lock_dir} on {host.name} ({exc})") from exc
            taken.append(host)
            notes.extend(seen.notes)
    except BaseException:
        release(taken, me, lock_dir)
        raise
    return notes


def release(hosts: Sequence[Host], me: Holder, lock_dir: str = LOCK_DIR) -> None:
    """Leave the lock on each host; the run's last member removes it (another run's lock keeps its members)."""
    for host in hosts:
        host.run_script(_RELEASE, args=[lock_dir, me.member], check=False, timeout=30)
