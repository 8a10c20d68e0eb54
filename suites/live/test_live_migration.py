"""Live migration of a running guest to the destination and back.

After each hop the guest must run on the destination only, be gone from the
source, and still answer; every hop is measured by libvirt and by the probe.
"""

from __future__ import annotations

import libvirt
import pytest

from fixtures.guest import LabGuest
from fixtures.report import MigrationLog
from virtmig import domains
from virtmig.host import Host
from virtmig.measure import Leg, measured_live_migration
from virtmig.migration import P2P
from virtmig.probe import agent_command

pytestmark = [pytest.mark.live, pytest.mark.lab]


def test_round_trip_peer_to_peer(
    request: pytest.FixtureRequest,
    test_domain: LabGuest,
    src_host: Host, dst_host: Host,
    src_conn: libvirt.virConnect, dst_conn: libvirt.virConnect,
    migration_log: MigrationLog,
) -> None:
    there = Leg(src_host.name, dst_host.name, src_conn, dst_conn, f"qemu+ssh://{dst_host.name}/system")
    back = Leg(dst_host.name, src_host.name, dst_conn, src_conn, f"qemu+ssh://{src_host.name}/system")
    storage = test_domain.storage
    for hop, leg in enumerate((there, back), start=1):
        measured = measured_live_migration(
            leg, test_domain.name, P2P, guest_ip=test_domain.ip, agent_port=test_domain.agent_port,
            test_id=f"{request.node.nodeid}#hop{hop}", storage=storage.kind,
            unsafe_reason=storage.why if storage.unsafe else None,
        )
        migration_log.add(measured.record)
        assert measured.outcome.ok, f"hop {hop} {leg.src_name}->{leg.dst_name} failed: {measured.outcome.error}"
        assert domains.state_name(leg.dst, test_domain.name) == "running"
        assert domains.state_name(leg.src, test_domain.name) == "absent"
        assert agent_command(test_domain.ip, test_domain.agent_port, "ping") == "ok pong"
        assert measured.outcome.stats is not None, "libvirt kept no completed-job statistics"
        assert measured.probe.received > 0, "the probe saw no reply at all"
