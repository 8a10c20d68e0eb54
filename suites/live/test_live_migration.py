"""Live migration of a running guest to the destination and back, over the flag matrix.

One test per column of `virtmig.migration.modes.LIVE_MATRIX` (ids are the mode names:
p2p, direct, p2p-tunnelled, postcopy, auto-converge, bandwidth-limit,
max-downtime), each going there and back `--round-trips` times while the
guest dirties memory at `--dirty-rate`.  After each hop the guest must run
on the destination only and still answer; its RAM and disk patterns must be
intact; libvirt's statistics and the probe must both have seen the outage.
Every hop is recorded, failed or not, before anything is asserted.
The modes share one guest (`fixtures.running_guest.reused_domain`): a round trip
ends where it began, so only a failure costs another boot.
"""

from __future__ import annotations

import libvirt
import pytest

from fixtures.report import MigrationLog
from fixtures.running_guest import RunningGuest
from virtmig.config import RunConfig
from virtmig.guest import domains
from virtmig.guest.console import crash_diagnosis, silent_guest_evidence
from virtmig.host import ChannelHost
from virtmig.migration.announce import AnnounceTarget
from virtmig.migration.clocks import HostClock
from virtmig.migration.deadline import DeadlinePolicy
from virtmig.migration.measure import GuestAccess, Leg, measured_live_migration
from virtmig.migration.modes import LIVE_MATRIX, MigrationMode
from virtmig.migration.runner import ProgressCallback, postcopy_blocker

pytestmark = [pytest.mark.live, pytest.mark.lab]


@pytest.mark.parametrize("mode", LIVE_MATRIX, ids=[m.name for m in LIVE_MATRIX])
def test_round_trip(
    request: pytest.FixtureRequest,
    mode: MigrationMode,
    run_config: RunConfig,
    reused_domain: RunningGuest,
    src_host: ChannelHost, dst_host: ChannelHost,
    src_conn: libvirt.virConnect, dst_conn: libvirt.virConnect,
    migration_log: MigrationLog,
    host_clocks: tuple[HostClock, HostClock],
    migration_progress: ProgressCallback | None,
) -> None:
    if mode.switch_to_postcopy:
        for host in (src_host, dst_host):  # each is the destination of one hop
            if reason := postcopy_blocker(host.read_text):
                pytest.skip(f"{host.name}: {reason}")
    there = Leg(src_host.name, dst_host.name, src_conn, dst_conn, f"qemu+ssh://{dst_host.name}/system")
    back = Leg(dst_host.name, src_host.name, dst_conn, src_conn, f"qemu+ssh://{src_host.name}/system")
    storage = reused_domain.storage
    hosts = {src_host.name: src_host, dst_host.name: dst_host}
    guest = GuestAccess(reused_domain.ip, reused_domain.agent_port, dirty_rate_mib_s=run_config.dirty_rate_mib_s,
                        relay=reused_domain.relay)
    for trip in range(1, run_config.round_trips + 1):
        for hop, leg in enumerate((there, back), start=1):
            where = f"trip {trip} hop {hop} {leg.src_name}->{leg.dst_name}"
            measured = measured_live_migration(
                leg, reused_domain.name, mode, guest=guest, test_id=f"{request.node.nodeid}#trip{trip}-hop{hop}",
                storage=storage.label, unsafe_reason=storage.why if storage.unsafe else None,
                clock_hosts=host_clocks, on_progress=migration_progress,
                deadline=DeadlinePolicy(fixed_s=run_config.migration_timeout_s),
                announce=AnnounceTarget(hosts[leg.dst_name], run_config.guest.network, reused_domain.mac),
            )
            evidence: list[str] = []
            if measured.problems:  # what the guest and the bridges say, while it is still there to see
                evidence = silent_guest_evidence((src_host, dst_host), hosts[leg.dst_name],
                                                 reused_domain.name, reused_domain.mac)
                crash = crash_diagnosis(evidence, leg.dst_name, reused_domain.virt_type, leg.dst.getVersion())
                if crash:
                    measured.problems.insert(0, crash)
                    measured.record.notes.append(f"PROBLEM: {crash}")
                measured.record.notes.extend(f"evidence: {line}" for line in evidence)
            migration_log.add(measured.record)
            assert not measured.problems or measured.outcome.ok, f"{where}: " + "; ".join(measured.problems)
            assert measured.outcome.ok, f"{where} failed: {measured.outcome.error}"
            assert domains.state_name(leg.dst, reused_domain.name) == "running", where
            assert domains.state_name(leg.src, reused_domain.name) == "absent", where
            assert not measured.problems, f"{where}: " + "; ".join(measured.problems) + "\n" + "\n".join(evidence)
