"""How far each host's wall clock is from the controller's, and how sure we are.

Why it matters: the probe runs on the controller and times everything on the
controller's clock, so its own figures need no clock agreement (a probe run on
another host, `--probe-from`, is put on the controller's clock with
`offset_over` against that host's monotonic clock); but
libvirt's downtime and anything a host logs or timestamps are on the
*hosts'* clocks, and comparing those with the probe (or the two hosts with
each other) is only honest if the offsets are known.  So every record
carries them.

Method, NTP's idea over one long-lived channel per host (`HostClock`): a small
loop on the host (`CLOCK_LOOP`) answers each line it reads with its wall
clock in ns.  One exchange: read the controller's wall clock t0, send a line,
read the answer h, read t1.  The host read its clock somewhere in [t0, t1],
so the offset (host minus controller) lies in [h - t1, h - t0]: a bound, not
an estimate, as long as neither clock steps during the exchange.  Many
exchanges, the `KEEP` with the shortest round trips kept: the offset lies in
every one of their intervals, so in their intersection; we report its middle
± half its width.  A fresh SSH exec per sample (what this module did before)
costs tens of ms of round trip, all of it uncertainty; a channel kept open
answers in the time the link takes (well under a millisecond in the lab),
and it is opened once per host and reused by every hop.

Where the host runs chrony, what `chronyc tracking` says of the host's own
offset from NTP time is recorded beside ours (taken when the channel opens).

In the embedded lab all namespaces share one kernel clock, so the offsets
must come out as 0 within their uncertainty: a check of the method itself
(`bench/test_clocks.py` prints it; `tests/test_lab_clocks.py` checks the
bound holds).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from types import TracebackType
from typing import Any

from virtmig.host import ChannelHost, Host, LineChannel

#: The loop run on the host: prints how it reads the clock, then one line of
#: ns since the epoch per line it reads, until its input ends.  python3 when
#: the host has it (the clock read in-process); else `date` (a fork per
#: sample, which lands inside the round trip, so inside the bound).
CLOCK_LOOP = r"""
if command -v python3 >/dev/null 2>&1; then
  exec python3 -c '
import sys, time
r, w = sys.stdin.buffer, sys.stdout.buffer
w.write(b"python3\n"); w.flush()
while r.readline():
    w.write(b"%d\n" % time.time_ns()); w.flush()
'
fi
echo date
while read -r _; do date +%s%N; done
"""

#: Exchanges per measurement, and how many of the shortest round trips are kept.
SAMPLES = 32
KEEP = 8
#: How long one exchange may take before the channel is called stuck, s.
EXCHANGE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ClockOffset:
    """Host clock minus controller clock, ms, ± uncertainty_ms: a bound from the kept exchanges.

    rtt_ms: the shortest round trip seen; samples/kept: exchanges made and
    used; method: how the host read its clock ("python3", "date", or
    "exec" for a single command); consistent: False when the kept intervals
    did not overlap (a clock stepped or slewed fast meanwhile): the figure is
    then the shortest exchange's alone.  chrony: what chronyc said, or None.
    """

    host: str
    offset_ms: float
    uncertainty_ms: float
    rtt_ms: float
    samples: int = 1
    kept: int = 1
    method: str = "exec"
    consistent: bool = True
    chrony: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Exchange:
    """One exchange, ns: controller before (t0), host's reading, controller after (t1)."""

    t0_ns: int
    host_ns: int
    t1_ns: int

    @property
    def rtt_ns(self) -> int:
        return self.t1_ns - self.t0_ns


def offset_from_exchanges(host: str, exchanges: Sequence[Exchange], keep: int = KEEP, *,
                          method: str = "exec", chrony: dict[str, Any] | None = None) -> ClockOffset:
    """The offset the `keep` shortest exchanges bound (pure; see the module docstring)."""
    if not exchanges:
        raise ValueError("no clock samples")
    for e in exchanges:
        if e.t1_ns < e.t0_ns:
            raise ValueError(f"controller clock went backwards ({e.t0_ns} -> {e.t1_ns} ns)")
    kept = sorted(exchanges, key=lambda e: e.rtt_ns)[:max(1, keep)]
    low = max(e.host_ns - e.t1_ns for e in kept)
    high = min(e.host_ns - e.t0_ns for e in kept)
    consistent = low <= high
    if not consistent:
        best = kept[0]
        low, high = best.host_ns - best.t1_ns, best.host_ns - best.t0_ns
    return ClockOffset(host, (low + high) / 2e6, (high - low) / 2e6, kept[0].rtt_ns / 1e6, len(exchanges),
                       len(kept), method, consistent, chrony)


_CHRONY_SYSTEM_TIME = re.compile(r"^System time\s*:\s*([0-9.]+) seconds (fast|slow)", re.MULTILINE)
_CHRONY_FIELD = re.compile(r"^(Reference ID|Stratum|Last offset|RMS offset|Leap status)\s*:\s*(.+)$", re.MULTILINE)


def parse_chrony_tracking(text: str) -> dict[str, Any]:
    """`chronyc tracking`'s figures that say how good the host's clock is (pure).

    system_time_ms: the host's clock minus NTP time as chronyd estimates it
    (chronyc prints "N seconds fast/slow of NTP time"; fast is positive).
    """
    found: dict[str, Any] = {"status": "ok"}
    if m := _CHRONY_SYSTEM_TIME.search(text):
        value = float(m.group(1)) * 1e3
        found["system_time_ms"] = value if m.group(2) == "fast" else -value
    for key, value in _CHRONY_FIELD.findall(text):
        found[key.lower().replace(" ", "_")] = value.strip()
    return found


def chrony_tracking(host: Host) -> dict[str, Any]:
    """What chronyc says of `host`'s clock; status says why there is nothing when chrony is not there."""
    result = host.run("chronyc", "tracking", check=False, timeout=10)
    if result.rc == 127:
        return {"status": "chronyc not installed"}
    if not result.ok:
        return {"status": f"chronyd not answering: {(result.stderr or result.stdout).strip()[:200]}"}
    return parse_chrony_tracking(result.stdout)


@dataclass
class HostClock:
    """One host's clock, read over one channel kept open (`CLOCK_LOOP`): open once, measure each hop.

    Use as a context manager, or `open()`/`close()` from a fixture.  `now`
    is the controller's wall clock in ns (a test may shift it).
    """

    host: ChannelHost
    samples: int = SAMPLES
    keep: int = KEEP
    now: Callable[[], int] = time.time_ns
    method: str = ""
    chrony: dict[str, Any] | None = None
    _channel: LineChannel | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.host.name

    def open(self) -> HostClock:
        if self._channel is None:
            self.chrony = chrony_tracking(self.host)
            self._channel = self.host.open_channel(CLOCK_LOOP)
            self.method = self._channel.read_line(EXCHANGE_TIMEOUT_S).strip()
        return self

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def __enter__(self) -> HostClock:
        return self.open()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def measure(self) -> ClockOffset:
        """`samples` exchanges over the open channel (opened now if it is not), the shortest `keep` kept."""
        channel = self.open()._channel
        assert channel is not None
        return offset_over(channel.exchange, self.name, now=self.now, samples=self.samples, keep=self.keep,
                           method=self.method, chrony=self.chrony)


def offset_over(exchange: Callable[[str, float], str], name: str, *, now: Callable[[], int] = time.time_ns,
                samples: int = SAMPLES, keep: int = KEEP, method: str = "exec",
                chrony: dict[str, Any] | None = None) -> ClockOffset:
    """The offset of the clock that answers `t` over `exchange` (a channel's), against `now`: `samples` exchanges.

    `HostClock` measures the wall clock over `CLOCK_LOOP`; the probe relay
    (`virtmig.guest.relay`) answers `t` with its host's monotonic clock, measured
    against ours (`now=time.monotonic_ns`) to put the far probe's samples on our clock.
    """
    exchanges: list[Exchange] = []
    for _ in range(max(1, samples)):
        t0 = now()
        text = exchange("t", EXCHANGE_TIMEOUT_S)
        t1 = now()
        try:
            exchanges.append(Exchange(t0, int(text), t1))
        except ValueError as exc:
            raise ValueError(f"{name}: the clock loop ({method}) printed {text!r}") from exc
    return offset_from_exchanges(name, exchanges, keep, method=method, chrony=chrony)


def measure_offset(host: ChannelHost) -> ClockOffset:
    """One measurement of `host` on a channel opened and closed for it (preflight's single look)."""
    with HostClock(host) as clock:
        return clock.measure()


def measure_offsets(*clocks: HostClock) -> dict[str, dict[str, object]]:
    """{host name: ClockOffset.to_dict()} for the record, over the clocks' open channels."""
    return {c.name: c.measure().to_dict() for c in clocks}
