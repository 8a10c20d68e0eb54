"""Moving a guest that stops: offline migration, cold move, save/restore (virtmig.migration.offline).

Each test moves the running guest from the source to the destination once.
The downtime is the probe's: the guest's last answer on the source to its
first answer on the destination.  The disk pattern must survive every kind,
the RAM pattern the save/restore (the only kind that carries RAM over).
"""

from __future__ import annotations

import libvirt
import pytest

from fixtures.report import MigrationLog
from fixtures.running_guest import RunningGuest
from virtmig.config import RunConfig
from virtmig.guest import domains
from virtmig.host import Host
from virtmig.migration.clocks import HostClock
from virtmig.migration.deadline import DeadlinePolicy
from virtmig.migration.measure import GuestAccess, Leg
from virtmig.migration.offline import KINDS, measured_move

pytestmark = [pytest.mark.offline, pytest.mark.lab]


@pytest.mark.parametrize("kind", KINDS)
def test_move(
    request: pytest.FixtureRequest,
    kind: str,
    run_config: RunConfig,
    test_domain: RunningGuest,
    src_host: Host, dst_host: Host,
    src_conn: libvirt.virConnect, dst_conn: libvirt.virConnect,
    migration_log: MigrationLog,
    host_clocks: tuple[HostClock, HostClock],
) -> None:
    storage = test_domain.storage
    if kind == "save-restore" and storage.save_blocker:
        pytest.skip(storage.save_blocker)
    leg = Leg(src_host.name, dst_host.name, src_conn, dst_conn, f"qemu+ssh://{dst_host.name}/system")
    guest = GuestAccess(test_domain.ip, test_domain.agent_port, dirty_rate_mib_s=run_config.dirty_rate_mib_s,
                        relay=test_domain.relay)
    save_path = str(storage.path / test_domain.name / "saved-state.img")
    measured = measured_move(kind, leg, test_domain.name, guest=guest, test_id=request.node.nodeid,
                             storage=storage.label, save_path=save_path, clock_hosts=host_clocks,
                             deadline=DeadlinePolicy(fixed_s=run_config.migration_timeout_s))
    migration_log.add(measured.record)
    assert measured.outcome.ok, f"{kind} failed: {measured.outcome.error}"
    assert domains.state_name(dst_conn, test_domain.name) == "running"
    assert domains.state_name(src_conn, test_domain.name) == "absent"
    assert dst_conn.lookupByName(test_domain.name).isPersistent(), "not persistent on the destination"
    assert not measured.problems, "; ".join(measured.problems)
