"""What every permission case asserts after its migration failed, and the happy path after the fix."""

from __future__ import annotations

import libvirt

from virtmig import domains
from virtmig.diagnose import Diagnosis, gather_evidence, paths_in
from virtmig.diagnose import diagnose as diagnose_text
from virtmig.host import Host
from virtmig.lab.topology import GUEST_AGENT_PORT, GUEST_IP
from virtmig.migration import P2P, MigrationOutcome, migrate
from virtmig.probe import agent_command


def migrate_p2p(src: libvirt.virConnect, dst: libvirt.virConnect, dst_host: Host, name: str,
                unsafe: bool) -> MigrationOutcome:
    return migrate(src, dst, f"qemu+ssh://{dst_host.name}/system", name, P2P, unsafe=unsafe)


def diagnose_on(host: Host, error: str) -> Diagnosis:
    """The diagnosis with *host*'s evidence (the destination's, for a failed incoming migration)."""
    return diagnose_text(error, gather_evidence(host, next(iter(paths_in(error)), None)))


def assert_left_intact(src: libvirt.virConnect, dst: libvirt.virConnect, name: str) -> None:
    """After a failed migration: the guest runs on the source, answers, and nothing is on the destination."""
    assert domains.state_name(src, name) == "running"
    assert domains.state_name(dst, name) == "absent"
    assert agent_command(GUEST_IP, GUEST_AGENT_PORT, "ping") == "ok pong"


def assert_happy_path(src: libvirt.virConnect, dst: libvirt.virConnect, dst_host: Host, name: str,
                      unsafe: bool) -> None:
    """With the fix applied, the same migration succeeds and the guest answers from the destination."""
    outcome = migrate_p2p(src, dst, dst_host, name, unsafe)
    assert outcome.ok, f"after the fix the migration still fails: {outcome.error}"
    assert domains.state_name(dst, name) == "running"
    assert domains.state_name(src, name) == "absent"
    assert agent_command(GUEST_IP, GUEST_AGENT_PORT, "ping") == "ok pong"
