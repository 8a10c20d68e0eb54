"""A deadline for every live migration: past it the job is aborted, and the guest stays on the source.

`migrateToURI3`/`migrate3` block until libvirt says the job is over; a
migration that cannot converge (the guest dirties memory faster than the
link carries it) or a peer that stopped answering would hold the run for
ever.  `JobWatchdog` runs beside the call: once the job has run longer than
its budget it calls `virDomain.abortJob` (libvirt then cancels the job,
removes the half-made destination domain and leaves the guest running on
the source), and the runner waits for the job to end before it reports
"aborted after S s".

The budget is `--migration-timeout` when given.  Otherwise it is derived
from what is being moved and how fast it moves: a fixed allowance for
setting up (ssh, the destination QEMU starting) plus the time to send the
guest's memory `passes` times at the measured rate (the median of the
running job's throughput samples; a floor rate until there are any).  A
healthy pre-copy sends memory two or three times; ten is generous enough
never to cut a slow but converging migration, small enough that a stuck
one ends in minutes.
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import libvirt

from virtmig.migration.jobstats import JobProgress
from virtmig.waiters import WaitTimeout, wait_for

MIB = 2**20


@dataclass(frozen=True)
class DeadlinePolicy:
    """How long a live migration may run.

    fixed_s: --migration-timeout (None: derived from memory and rate); fixed_by: who set it.
    setup_s: allowance before any memory moves.
    passes: how many times the guest's memory may be sent.
    floor_rate_bytes_s: the rate assumed until the job reports one.
    cap_s: no derived budget is longer than this.
    """

    fixed_s: float | None = None
    #: Who fixed it, for the record (a suite may fix its own when the option is not given).
    fixed_by: str = "--migration-timeout"
    setup_s: float = 60.0
    passes: float = 10.0
    floor_rate_bytes_s: float = 4 * MIB
    cap_s: float = 3600.0

    def budget_s(self, memory_bytes: int, rate_bytes_s: float | None) -> float:
        """Seconds the job may run, for a guest of *memory_bytes* moving at *rate_bytes_s* (None: unknown)."""
        if self.fixed_s is not None:
            return self.fixed_s
        rate = max(rate_bytes_s or 0.0, self.floor_rate_bytes_s)
        return min(self.setup_s + self.passes * memory_bytes / rate, self.cap_s)

    def explain(self, memory_bytes: int, rate_bytes_s: float | None) -> str:
        """How the budget was reached, for the record."""
        budget = self.budget_s(memory_bytes, rate_bytes_s)
        if self.fixed_s is not None:
            return f"deadline {budget:g} s ({self.fixed_by})"
        rate = max(rate_bytes_s or 0.0, self.floor_rate_bytes_s)
        measured = "measured" if rate_bytes_s and rate_bytes_s >= self.floor_rate_bytes_s else "floor"
        return (f"deadline {budget:.0f} s: {self.setup_s:g} s setup + {self.passes:g} x "
                f"{memory_bytes / MIB:.0f} MiB at {rate / MIB:.1f} MiB/s ({measured} rate)")


def measured_rate(samples: Sequence[JobProgress]) -> float | None:
    """The median memory throughput of the running job's samples, bytes/s (None: none reported yet)."""
    rates = [s.memory_bytes_per_s for s in samples if s.memory_bytes_per_s]
    return float(statistics.median(rates)) if rates else None


class JobWatchdog:
    """Aborts the domain's migration job once it has run past its budget (a daemon thread).

    `samples` returns the progress samples so far (the runner's sampler);
    the budget is recomputed from them as the job runs.  After `stop`,
    `aborted_after_s` is the job's age when it was aborted (None: it was
    not), `abort_error` why abortJob failed (post-copy after switch-over
    cannot be aborted), and `explain()` how the budget was reached.
    """

    def __init__(self, dom: libvirt.virDomain, policy: DeadlinePolicy, memory_bytes: int,
                 samples: Callable[[], Sequence[JobProgress]], *, interval_s: float = 0.2) -> None:
        self._dom = dom
        self._policy = policy
        self._memory = memory_bytes
        self._samples = samples
        self._interval = interval_s
        self._stop = threading.Event()
        self._started = time.monotonic()
        self.aborted_after_s: float | None = None
        self.abort_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="virtmig-deadline", daemon=True)

    def __enter__(self) -> JobWatchdog:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def budget_s(self) -> float:
        return self._policy.budget_s(self._memory, measured_rate(self._samples()))

    def explain(self) -> str:
        return self._policy.explain(self._memory, measured_rate(self._samples()))

    def _due(self) -> bool | None:
        """True when stopped or past the budget (None: keep waiting), for wait_for."""
        if self._stop.is_set() or time.monotonic() - self._started > self.budget_s():
            return True
        return None

    def _run(self) -> None:
        with contextlib.suppress(WaitTimeout):  # the hard cap itself: abort as for any other deadline
            wait_for(self._due, target="the migration job", state="finished or past its deadline",
                     timeout=self._policy.fixed_s or self._policy.cap_s, interval=self._interval)
        if self._stop.is_set():
            return
        age = time.monotonic() - self._started
        try:
            self._dom.abortJob()
        except libvirt.libvirtError as exc:
            self.abort_error = str(exc)
        self.aborted_after_s = age


def wait_job_ended(dom: libvirt.virDomain, name: str, timeout: float = 60.0) -> None:
    """Wait until the domain has no job (an aborted migration is cleaned up by then)."""
    def ended() -> bool | None:
        try:
            return True if dom.jobInfo()[0] == libvirt.VIR_DOMAIN_JOB_NONE else None
        except libvirt.libvirtError:
            return True  # the domain is gone from this host: no job can be left on it

    def last() -> str:
        return f"job type {dom.jobInfo()[0]}"

    wait_for(ended, target=f"{name}'s migration job", state="ended after abortJob", timeout=timeout,
             interval=0.2, describe=last)
