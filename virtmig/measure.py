"""One migration, measured two independent ways, turned into a record.

libvirt's completed-job statistics say what the hypervisors think happened;
the UDP echo probe says what a client of the guest saw.  They are taken by
different parties on different clocks, so agreement between them is
evidence and disagreement is a finding.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import libvirt

from virtmig.migration import MigrationMode, MigrationOutcome, migrate
from virtmig.probe import ProbeResult, UdpEchoProbe
from virtmig.records import MigrationRecord


@dataclass(frozen=True)
class Leg:
    """One direction of travel: names for the record, connections and the URI."""

    src_name: str
    dst_name: str
    src: libvirt.virConnect
    dst: libvirt.virConnect
    dst_uri: str


@dataclass(frozen=True)
class MeasuredMigration:
    outcome: MigrationOutcome
    probe: ProbeResult
    record: MigrationRecord


def measured_live_migration(
    leg: Leg, domain: str, mode: MigrationMode, *, guest_ip: str, agent_port: int,
    test_id: str, storage: str, unsafe_reason: str | None = None, probe_interval_s: float = 0.005,
) -> MeasuredMigration:
    """Migrate `domain` along `leg` with the probe running, and record both views."""
    started_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
    with UdpEchoProbe(guest_ip, agent_port, interval_s=probe_interval_s) as probe:
        outcome = migrate(leg.src, leg.dst, leg.dst_uri, domain, mode, unsafe=unsafe_reason is not None)
    result = probe.stop()
    notes = [f"--unsafe: {unsafe_reason}"] if unsafe_reason else []
    record = MigrationRecord(
        test_id=test_id, kind="live", mode=mode.name, src=leg.src_name, dst=leg.dst_name, domain=domain,
        started_at=started_at, wall_s=round(outcome.wall_s, 3), ok=outcome.ok, storage=storage,
        error=outcome.error, stats=outcome.stats.to_dict() if outcome.stats else None,
        probe=result.to_dict(), progress=[p.to_dict() for p in outcome.progress], notes=notes,
    )
    return MeasuredMigration(outcome, result, record)
