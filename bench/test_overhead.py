"""Benchmarks of the harness itself: its overhead on equal work, and where each hop's outage goes.

Run with `make bench` (pytest -s, so the figures print).  Both figures are
taken on the same lab, in one run, with the same guest:

* overhead: the bare procedure an operator would type, `virsh -c SRC
  migrate --live --p2p --persistent --undefinesource DOM qemu+ssh://DST/system`
  then `virsh -c DST domjobinfo --completed DOM`, against
  `measured_live_migration` (dirty rate and patterns, clock offsets over the
  session's channels, 5 ms probe, sampler, stats, verification).  Equal work:
  the same guest, p2p both, the guest dirtying at --dirty-rate for both
  (set once before the first hop; the harness sets it again each hop, which
  is part of its cost), and the two interleaved hop by hop (A B A B ...), so
  a drift of the machine's load hits both alike.  The ratio is harness /
  bare mean wall time per hop; the harness's own parts are printed beside it.
* where the outage goes (virtmig.migration.breakdown): per harness hop, the
  probe's gap cut at the source's stop and the destination's resume, beside
  libvirt's downtime, setup and total time; and the probe's worst send gap.
* the probe's send gap against a control: a second, identical sender (the
  same native process, SCHED_FIFO, absolute deadlines) sending to a stand-in
  agent on loopback for the whole run.  Its worst send gap within each
  harness hop is what this machine's scheduling alone costs a sender at that
  moment: where the two stall alike, the probe's gap is the machine's, not
  the harness's or the path's to the guest.

No timed asserts: a slow night is a figure to read, not a failure.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Sequence

import libvirt
import pytest

from bench.goals import GoalTable
from fixtures.running_guest import RunningGuest
from tests.echo_agent import EchoAgent
from virtmig.config import RunConfig
from virtmig.guest.probe import Sample, UdpEchoProbe, summarize
from virtmig.migration.clocks import HostClock
from virtmig.migration.measure import GuestAccess, Leg, MeasuredMigration, measured_live_migration
from virtmig.migration.modes import P2P
from virtmig.sshhost import SshHost

pytestmark = [pytest.mark.live, pytest.mark.lab]

#: Hops of each procedure (issue #13: N >= 6 each).
HOPS_EACH = 6


def control_send_gap_ms(samples: Sequence[Sample], start_ns: int, end_ns: int, interval_s: float) -> float:
    """The control sender's longest send gap within one hop's window (pure)."""
    inside = [sample for sample in samples if start_ns <= sample[0] <= end_ns]
    return summarize(inside, interval_s=interval_s).longest_send_gap_ms


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


def test_overhead_and_outage_breakdown(
    run_config: RunConfig, test_domain: RunningGuest, src_host: SshHost, dst_host: SshHost,
    src_conn: libvirt.virConnect, dst_conn: libvirt.virConnect, host_clocks: tuple[HostClock, HostClock],
    goal_table: GoalTable,
) -> None:
    unsafe = test_domain.storage.unsafe
    guest = GuestAccess(test_domain.ip, test_domain.agent_port, dirty_rate_mib_s=run_config.dirty_rate_mib_s,
                        relay=test_domain.relay)
    if guest.dirty_rate_mib_s is not None:
        guest.agent()(f"dirty {guest.dirty_rate_mib_s}")  # the bare hops dirty at the same rate
    there = Leg(src_host.name, dst_host.name, src_conn, dst_conn, f"qemu+ssh://{dst_host.name}/system")
    back = Leg(dst_host.name, src_host.name, dst_conn, src_conn, f"qemu+ssh://{src_host.name}/system")
    # A B A B ...: bare there, harness back, for the first half; then harness there, bare back, so that
    # neither procedure always runs in one direction.  The guest starts on the source.
    order = [("bare", there), ("harness", back)] * (HOPS_EACH // 2)
    order += [("harness", there), ("bare", back)] * (HOPS_EACH - HOPS_EACH // 2)
    bare: list[float] = []
    bare_downtime: list[float] = []
    harness: list[float] = []
    measured: list[MeasuredMigration] = []
    windows: list[tuple[int, int]] = []  # each harness hop, on the monotonic clock the senders stamp with
    hosts = {src_host.name: src_host, dst_host.name: dst_host}
    with EchoAgent() as stand_in, \
            UdpEchoProbe("127.0.0.1", stand_in.port, interval_s=guest.probe_interval_s) as control:
        for i, (kind, leg) in enumerate(order):
            if kind == "bare":
                wall, info = _bare_hop(hosts[leg.src_name], hosts[leg.dst_name], test_domain.name, unsafe)
                bare.append(wall)
                if (down := _downtime_from_domjobinfo(info)) is not None:
                    bare_downtime.append(down)
                continue
            t0 = time.monotonic_ns()
            m = measured_live_migration(
                leg, test_domain.name, P2P, guest=guest, test_id=f"bench#{i}", storage=test_domain.storage.label,
                unsafe_reason=test_domain.storage.why if unsafe else None, clock_hosts=host_clocks)
            windows.append((t0, time.monotonic_ns()))
            harness.append((windows[-1][1] - t0) / 1e9)
            measured.append(m)
            assert m.outcome.ok, m.outcome.error
    control_gaps = [control_send_gap_ms(control.samples(), start, end, guest.probe_interval_s)
                    for start, end in windows]

    ratio = statistics.mean(harness) / statistics.mean(bare)
    print(f"\n== harness overhead on equal work ({len(bare)} bare hops, {len(harness)} harness hops, "
          f"interleaved, p2p, guest dirtying {run_config.dirty_rate_mib_s} MiB/s in both) ==")
    print(f"bare virsh migrate + domjobinfo: mean {statistics.mean(bare):.2f} s, "
          f"min {min(bare):.2f}, max {max(bare):.2f}")
    print(f"harness measured_live_migration: mean {statistics.mean(harness):.2f} s, "
          f"min {min(harness):.2f}, max {max(harness):.2f}")
    if bare_downtime:
        print(f"libvirt downtime, bare hops: {', '.join(f'{d:.0f}' for d in bare_downtime)} ms; harness hops: "
              + ", ".join(f"{m.agreement.libvirt_ms:.0f}" for m in measured if m.agreement.libvirt_ms is not None)
              + " ms")
    parts = sorted({p for m in measured for p in m.costs})
    print("harness parts, mean s per hop: " + ", ".join(
        f"{p} {statistics.mean(m.costs.get(p, 0.0) for m in measured):.3f}" for p in parts)
        + f"; migrate call {statistics.mean(m.outcome.wall_s for m in measured):.3f}")
    print(f"overhead ratio harness/bare: {ratio:.2f}")

    print("\n== where the outage goes (controller's clock; ms) ==")
    print(f"{'hop':>3} {'gap':>7} {'lead':>7} {'paused':>7} {'return':>7} {'libvirt':>8} {'setup':>6} "
          f"{'total':>7} {'send gap max':>12} {'control':>8}")
    worst_send_gap = 0.0
    for i, (m, control_gap) in enumerate(zip(measured, control_gaps, strict=True), 1):
        b = m.breakdown
        worst_send_gap = max(worst_send_gap, m.probe.longest_send_gap_ms)

        def cell(v: float | None, width: int) -> str:
            return f"{'?':>{width}}" if v is None else f"{v:>{width}.1f}"

        if b is None:
            print(f"{i:>3} {m.probe.longest_gap_ms:>7.1f}  (no events: no breakdown)")
            continue
        print(f"{i:>3} {b.gap_ms:>7.1f} {cell(b.lead_ms, 7)} {cell(b.paused_ms, 7)} {cell(b.return_ms, 7)} "
              f"{cell(b.libvirt_downtime_ms, 8)} {cell(b.libvirt_setup_ms, 6)} {cell(b.libvirt_total_ms, 7)} "
              f"{m.probe.longest_send_gap_ms:>12.2f} {control_gap:>8.2f}")
    print("send gap max: the probe's to the guest; control: the loopback sender's in the same hop (the machine's)")
    goal_table.add("harness/bare wall time, equal work", "<= 1.10", f"{ratio:.2f}", ratio <= 1.10)
    goal_table.add("probe worst send gap (5 ms interval)", "<= 5.5 ms",
                   f"{worst_send_gap:.2f} ms (loopback control: {max(control_gaps, default=0.0):.2f})",
                   worst_send_gap <= 5.5)
    seen = sum(1 for m in measured if m.breakdown is not None and m.breakdown.paused_ms is not None)
    goal_table.add("downtime breakdown for every hop", f"{len(measured)} of {len(measured)}",
                   f"{seen} of {len(measured)}", seen == len(measured))
