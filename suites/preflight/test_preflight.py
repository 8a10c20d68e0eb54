"""Preflight: the host pair can migrate at all (ssh, versions, UUIDs, names, port, CPU, clocks, storage,
the guest's network and address, the --probe-from host).

One test per check, so the report lists each; every result is filed for the
verdict with its evidence, passed or not.
"""

from __future__ import annotations

import libvirt
import pytest

from fixtures.guest import GuestIdentity
from fixtures.verdict import CheckLog
from virtmig import preflight
from virtmig.guest.platform import GuestPlatform
from virtmig.host import ChannelHost
from virtmig.storage.shared import SharedStorage, StorageConfig

pytestmark = [pytest.mark.preflight, pytest.mark.lab]


@pytest.fixture(scope="module")
def pair(src_host: ChannelHost, dst_host: ChannelHost, src_conn: libvirt.virConnect, dst_conn: libvirt.virConnect,
         shared_storage: SharedStorage, storage_config: StorageConfig,
         guest_identity: GuestIdentity, guest_platform: GuestPlatform,
         probe_host: ChannelHost | None) -> preflight.Pair:
    return preflight.Pair(src_host, dst_host, src_conn, dst_conn, storage_path=str(shared_storage.path),
                          qemu_user=storage_config.qemu_user, guest_network=guest_identity.network,
                          guest_ip=guest_identity.ip, guest_cpu_xml=guest_platform.cpu.xml(),
                          domain_type=guest_platform.virt_type, probe_host=probe_host)


@pytest.mark.parametrize("name", list(preflight.CHECKS))
def test_preflight(name: str, pair: preflight.Pair, check_log: CheckLog) -> None:
    result = preflight.run_check(name, pair)
    check_log.add(result)
    assert result.ok, f"{name}: " + "; ".join(result.evidence) + (f"\nfix: {result.fix}" if result.fix else "")
