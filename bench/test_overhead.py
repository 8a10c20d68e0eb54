"""Benchmarks of the harness itself: its overhead, and its probe against libvirt.

Run with `make bench` (pytest -s, so the figures print).  Both figures are
taken on the same lab, in one run, with the same guest:

* overhead: wall time per hop of the bare procedure an operator would type,
  `virsh -c SRC migrate --live --p2p --persistent --undefinesource DOM
  qemu+ssh://DST/system` followed by `virsh -c DST domjobinfo --completed
  DOM`, against wall time per hop of `measured_live_migration` (patterns
  written and verified, clock offsets, 5 ms probe, sampler, stats, checks).
  The ratio is harness / bare.
* the probe: its resolution (interval, round trip, worst scheduling stall)
  and how its longest gap compares with libvirt's downtime, hop by hop.

No timed asserts: a slow night is a figure to read, not a failure.
"""

from __future__ import annotations

import statistics
import subprocess
import time

import libvirt
import pytest

from fixtures.guest import RunningGuest
from virtmig.config import RunConfig
from virtmig.migration.clocks import HostClock
from virtmig.migration.measure import GuestAccess, Leg, MeasuredMigration, measured_live_migration
from virtmig.migration.modes import P2P
from virtmig.sshhost import SshHost

pytestmark = [pytest.mark.live, pytest.mark.lab]

#: Round trips of each procedure (two hops each).
ROUND_TRIPS = 3


def _bare_hop(src: SshHost, dst: SshHost, domain: str, unsafe: bool) -> tuple[float, str]:
    """One `virsh migrate` + `virsh domjobinfo --completed`; (wall s, domjobinfo text)."""
    migrate = ["virsh", "-q", "-c", src.libvirt_uri(), "migrate", "--live", "--p2p", "--persistent",
               "--undefinesource", *(["--unsafe"] if unsafe else []), domain, f"qemu+ssh://{dst.name}/system"]
    info = ["virsh", "-q", "-c", dst.libvirt_uri(), "domjobinfo", "--completed", "--keep-completed", domain]
    t0 = time.monotonic()
    subprocess.run(migrate, check=True, capture_output=True, text=True, timeout=300)
    out = subprocess.run(info, check=True, capture_output=True, text=True, timeout=60).stdout
    return time.monotonic() - t0, out


def _downtime_from_domjobinfo(text: str) -> float | None:
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Total downtime":
            return float(value.split()[0])
    return None


def test_overhead_and_probe_agreement(
    run_config: RunConfig, test_domain: RunningGuest, src_host: SshHost, dst_host: SshHost,
    src_conn: libvirt.virConnect, dst_conn: libvirt.virConnect, host_clocks: tuple[HostClock, HostClock],
) -> None:
    unsafe = test_domain.storage.unsafe
    bare: list[float] = []
    bare_downtime: list[float] = []
    for _ in range(ROUND_TRIPS):
        for a, b in ((src_host, dst_host), (dst_host, src_host)):
            wall, info = _bare_hop(a, b, test_domain.name, unsafe)
            bare.append(wall)
            down = _downtime_from_domjobinfo(info)
            if down is not None:
                bare_downtime.append(down)

    there = Leg(src_host.name, dst_host.name, src_conn, dst_conn, f"qemu+ssh://{dst_host.name}/system")
    back = Leg(dst_host.name, src_host.name, dst_conn, src_conn, f"qemu+ssh://{src_host.name}/system")
    guest = GuestAccess(test_domain.ip, test_domain.agent_port, dirty_rate_mib_s=run_config.dirty_rate_mib_s)
    harness: list[float] = []
    measured: list[MeasuredMigration] = []
    for trip in range(ROUND_TRIPS):
        for leg in (there, back):
            t0 = time.monotonic()
            m = measured_live_migration(
                leg, test_domain.name, P2P, guest=guest, test_id=f"bench#{trip}", storage=test_domain.storage.label,
                unsafe_reason=test_domain.storage.why if unsafe else None, clock_hosts=host_clocks)
            harness.append(time.monotonic() - t0)
            measured.append(m)
            assert m.outcome.ok, m.outcome.error

    ratio = statistics.mean(harness) / statistics.mean(bare)
    print(f"\n== harness overhead ({len(bare)} bare hops, {len(harness)} harness hops, p2p, "
          f"dirty {run_config.dirty_rate_mib_s} MiB/s in the harness hops) ==")
    print(f"bare virsh migrate + domjobinfo: mean {statistics.mean(bare):.2f} s, "
          f"min {min(bare):.2f}, max {max(bare):.2f}")
    print(f"harness measured_live_migration: mean {statistics.mean(harness):.2f} s, "
          f"min {min(harness):.2f}, max {max(harness):.2f}")
    print(f"overhead ratio harness/bare: {ratio:.2f}")
    if bare_downtime:
        print(f"bare hops, libvirt downtime: {', '.join(f'{d:.0f}' for d in bare_downtime)} ms")

    print("\n== probe resolution and agreement with libvirt downtime ==")
    print(f"{'hop':>3} {'libvirt ms':>10} {'probe gap ms':>12} {'gap-libvirt':>11} {'lost':>5} "
          f"{'rtt p50 ms':>10} {'max send gap ms':>15}  agrees")
    excess: list[float] = []
    for i, m in enumerate(measured, 1):
        down = m.agreement.libvirt_ms
        print(f"{i:>3} {down if down is not None else float('nan'):>10.0f} {m.probe.longest_gap_ms:>12.1f} "
              f"{m.agreement.excess_ms if m.agreement.excess_ms is not None else float('nan'):>+11.1f} "
              f"{m.probe.lost:>5} {m.probe.rtt_p50_ms or float('nan'):>10.2f} "
              f"{m.probe.longest_send_gap_ms:>15.1f}  {m.agreement.agrees}")
        if m.agreement.excess_ms is not None:
            excess.append(m.agreement.excess_ms)
    interval = measured[0].probe.interval_ms
    print(f"probe interval {interval:g} ms; gap - libvirt downtime: "
          + (f"mean {statistics.mean(excess):+.1f} ms, min {min(excess):+.1f}, max {max(excess):+.1f}"
             if excess else "n/a")
          + f"; tolerance: {measured[0].agreement.tolerance}")
