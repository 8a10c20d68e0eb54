"""One pair, one run at a time: the lock directory, run for real through LocalHost in a temporary directory.

The same scripts run on a pair's hosts over ssh; here two "hosts" are two
LocalHosts, and the lock directory is the test's own (never this machine's /run).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from virtmig import pairlock
from virtmig.journal import process_start
from virtmig.localhost import LocalHost
from virtmig.pairlock import Holder, PairBusy, stale_reason

HOSTS = [LocalHost("h2"), LocalHost("h1")]


def run(token: str, **kw: object) -> Holder:
    return dataclasses.replace(pairlock.this_run(token, "h1->h2"), **kw)  # type: ignore[arg-type]


@contextlib.contextmanager
def a_process() -> Iterator[tuple[int, str]]:
    """A live process of this machine (pid, start time), ended when the block ends: a holder that will die."""
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        start = process_start(sleeper.pid)
        assert start is not None
        yield sleeper.pid, start
    finally:
        sleeper.kill()
        sleeper.wait()


def holder_of(lock: Path) -> Holder | None:
    return Holder.from_json((lock / "holder.json").read_text())


def test_the_first_run_takes_the_pair_and_gives_it_back(tmp_path: Path) -> None:
    lock = tmp_path / "pair.lock"
    me = run("run-a")
    assert pairlock.acquire(HOSTS, me, 0, str(lock)) == []
    assert holder_of(lock) == me and me.pid == os.getpid() and me.pid_start == process_start(os.getpid())
    worker = run("run-a", pid=1)
    assert pairlock.acquire(HOSTS, worker, 0, str(lock)) == []  # another worker of the same run joins
    assert sorted(p.name for p in (lock / "members").iterdir()) == sorted([me.member, worker.member])
    pairlock.release(HOSTS, me, str(lock))
    assert holder_of(lock) == me, "the first worker to end must not free the pair while another still runs"
    pairlock.release(HOSTS, worker, str(lock))
    assert not lock.exists()


def test_a_second_live_run_stops_at_once_naming_the_holder(tmp_path: Path) -> None:
    lock = tmp_path / "pair.lock"
    first = run("run-a")
    pairlock.acquire(HOSTS, first, 0, str(lock))
    with pytest.raises(PairBusy, match=r"h1: held by .*run run-a, pair h1->h2.*--wait-for-pair SECONDS"):
        pairlock.acquire(HOSTS, run("run-b"), 0, str(lock))
    pairlock.release(HOSTS, run("run-b", pid=2), str(lock))  # not ours (another process): left alone
    assert holder_of(lock) == first


def test_a_waiting_run_gets_the_pair_when_the_holder_ends(tmp_path: Path) -> None:
    lock = tmp_path / "pair.lock"
    with a_process() as (pid, start):
        dead_soon = run("run-a", pid=pid, pid_start=start)
        pairlock.acquire(HOSTS, dead_soon, 0, str(lock))
        with pytest.raises(PairBusy):
            pairlock.acquire(HOSTS, run("run-b"), 1.5, str(lock))
    notes = pairlock.acquire(HOSTS, run("run-b"), 5, str(lock))
    assert notes == [f"h1: took over a stale pair lock of {dead_soon.describe()}: "
                     f"its pytest (pid {pid} on {dead_soon.controller}) is gone"]
    assert holder_of(lock) == run("run-b", started_at=holder_of(lock).started_at)  # type: ignore[union-attr]


def test_a_run_lives_while_any_of_its_workers_does(tmp_path: Path) -> None:
    """The worker that wrote the holder ended; another worker of its run still holds the pair."""
    lock = tmp_path / "pair.lock"
    with a_process() as (pid, start):
        gone = run("run-a", pid=2**22 + 7, pid_start="1")  # no such process
        pairlock.acquire(HOSTS, gone, 0, str(lock))
        pairlock.acquire(HOSTS, run("run-a", pid=pid, pid_start=start), 0, str(lock))
        with pytest.raises(PairBusy, match="h1: held by"):
            pairlock.acquire(HOSTS, run("run-b"), 0, str(lock))
    notes = pairlock.acquire(HOSTS, run("run-b"), 5, str(lock))
    assert notes and f"pid {pid}, {2**22 + 7} on" in notes[0] and notes[0].endswith("is gone")


def test_staleness() -> None:
    mine = run("r", controller="ctl")
    alive = {(mine.pid, mine.pid_start)}

    def is_alive(pid: int, start: str) -> bool:
        return (pid, start) in alive

    assert stale_reason(mine, 10, "ctl", is_alive) is None
    assert stale_reason(dataclasses.replace(mine, pid_start="other"), 10, "ctl", is_alive) is not None  # pid reused
    foreign = dataclasses.replace(mine, controller="ci-7")
    assert stale_reason(foreign, 3600, "ctl", is_alive) is None
    assert "longer than any run" in (stale_reason(foreign, pairlock.STALE_FOREIGN_S + 1, "ctl", is_alive) or "")
    assert stale_reason(None, 5, "ctl", is_alive) is None
    assert "no holder written" in (stale_reason(None, 120, "ctl", is_alive) or "")
    assert Holder.from_json("{not json") is None and Holder.from_json('{"owner": "x"}') is None
