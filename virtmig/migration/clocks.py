"""How far each host's wall clock is from the controller's, and how sure we are.

Why it matters: the probe runs on the controller and times everything on the
controller's monotonic clock, so its own figures need no clock agreement;
but libvirt's `downtime_net` and anything a host logs are on the *hosts'*
clocks, and comparing those with the probe (or the two hosts with each
other) is only honest if the offsets are known.  So every record carries
them.

Method (simple on purpose, NTP's idea in one exchange): read the controller's
wall clock t0, run `date +%s.%N` on the host over the existing ssh
connection, read t1.  The host's reading was taken somewhere in [t0, t1], so
offset = host - (t0 + t1) / 2 with an uncertainty of +-(t1 - t0) / 2.  The
ssh round trip (a few ms to tens of ms) bounds the error; we keep the best
(shortest round trip) of a few samples.  In the embedded lab all namespaces
share one kernel clock, so the offsets must come out as 0 within their
uncertainty: a check of the method itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from virtmig.host import Host


@dataclass(frozen=True)
class ClockOffset:
    """Host clock minus controller clock, ms, +- uncertainty_ms (half the round trip)."""

    host: str
    offset_ms: float
    uncertainty_ms: float
    rtt_ms: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def offset_from_exchange(host: str, t0_s: float, host_s: float, t1_s: float) -> ClockOffset:
    """The offset one exchange implies (pure: t0/t1 controller, host_s host)."""
    if t1_s < t0_s:
        raise ValueError(f"controller clock went backwards ({t0_s} -> {t1_s})")
    rtt = t1_s - t0_s
    return ClockOffset(host, (host_s - (t0_s + t1_s) / 2) * 1e3, rtt / 2 * 1e3, rtt * 1e3)


def best_of(offsets: Sequence[ClockOffset]) -> ClockOffset:
    """The exchange with the shortest round trip: the tightest bound."""
    if not offsets:
        raise ValueError("no clock samples")
    return min(offsets, key=lambda o: o.rtt_ms)


def measure_offset(host: Host, samples: int = 3, now: Callable[[], float] = time.time) -> ClockOffset:
    """Measure `host`'s clock offset against this machine's (best of `samples`)."""
    found: list[ClockOffset] = []
    for _ in range(max(1, samples)):
        t0 = now()
        result = host.run("date", "+%s.%N", timeout=10)
        t1 = now()
        text = result.stdout.strip()
        try:
            host_s = float(text)
        except ValueError as exc:
            raise ValueError(f"{host.name}: `date +%s.%N` printed {text!r}") from exc
        found.append(offset_from_exchange(host.name, t0, host_s, t1))
    return best_of(found)


def measure_offsets(*hosts: Host) -> dict[str, dict[str, object]]:
    """{host name: ClockOffset.to_dict()} for the record."""
    return {h.name: measure_offset(h).to_dict() for h in hosts}
