"""Faults during a live migration: the guest comes through safe (issue #11, item 2).

One case per `virtmig.migration.faults.FAULTS`, each a single hop from the
source to the destination while the guest dirties memory at `--dirty-rate`,
slowed by a bandwidth limit so the fault lands while memory moves:

* network-cut: the destination drops the source's migration and ssh traffic
  for a few seconds (an iptables rule, journalled, always removed);
* libvirtd-killed: the destination's libvirtd is SIGKILLed, then restarted;
* nfs-stalled: the NFS server's ganesha is SIGSTOPped, then SIGCONTed;
* no-convergence: the guest dirties faster than the limit moves memory, and
  the harness's deadline (`--migration-timeout`, else 20 s) aborts the job.

After each, the guest must run on exactly one host (the source where the
fault must make libvirt give up: the killed libvirtd, the deadline), answer,
and keep its RAM and disk patterns; the other host must hold no domain and
no job be left.  The record names the fault, when it came and went
(seconds into the migration job), how long the probe saw the guest
unreachable and how long recovery took.

Post-copy is the documented exception and is not faulted here: once
switched over, the guest's memory is split between the hosts and libvirt
cannot return to the source; a fault then leaves the guest paused
("post-copy failed"), which is what libvirt promises, not a finding.

On a site's hosts (--src/--dst) the cases change production machines, so
they run only with --allow-faults; on the lab they always run.  A case
whose fault cannot be made on these hosts (no iptables, a kernel NFS
server, no NFS server of the run) skips with the reason before its guest
starts.  Under pytest-xdist (-n) they skip too: a fault breaks the whole
pair, and with it the migrations the other workers run at the same time.
"""

from __future__ import annotations

import dataclasses

import libvirt
import pytest

from fixtures.guest import GuestIdentity
from fixtures.journal import RunJournals
from fixtures.report import MigrationLog
from fixtures.running_guest import RunningGuest
from virtmig.config import RunConfig
from virtmig.guest.console import crash_diagnosis, silent_guest_evidence
from virtmig.guest.domains import open_connection
from virtmig.guest.integrity import lab_agent
from virtmig.guest.libvirt_events import reopen_if_dead
from virtmig.guest.waits import wait_for_agent
from virtmig.migration.clocks import HostClock
from virtmig.migration.deadline import DeadlinePolicy
from virtmig.migration.faults import FAULTS, Fault, FaultHosts, FaultKind, Restarter, bind
from virtmig.migration.injection import FaultWindow, faulted_move_problems, migration_end, wait_settled
from virtmig.migration.measure import GuestAccess, Leg, measured_live_migration
from virtmig.migration.runner import ProgressCallback
from virtmig.sshhost import SshHost
from virtmig.waiters import WaitTimeout

pytestmark = [pytest.mark.faults, pytest.mark.lab]

#: How long a guest safe on a host may take to answer its agent after the fault.
ANSWER_TIMEOUT_S = 30.0


@pytest.fixture
def fault(kind: FaultKind, run_config: RunConfig, src_host: SshHost, dst_host: SshHost, run_journals: RunJournals,
          libvirtd_restarter: Restarter, guest_identity: GuestIdentity, worker_id: str) -> Fault:
    """The fault of this case on the pair; skips (before any guest starts) when it may not or cannot run here."""
    if not run_config.lab and not run_config.allow_faults:
        pytest.skip("faults change a site's hosts mid-migration (a firewall rule, libvirtd killed, the NFS "
                    "daemon stopped): give --allow-faults to run them")
    if worker_id != "master":
        pytest.skip("a fault breaks the whole pair, and with it the other workers' migrations: "
                    "faults run only in a session without -n")
    server = run_journals.server
    me = guest_identity
    bound = bind(kind, FaultHosts(
        src_host, dst_host, server.host if server else None, run_journals.dst, server, libvirtd_restarter,
        lab_agent(me.ip, me.agent_port), run_config.dirty_rate_mib_s))
    if reason := bound.blocker():
        pytest.skip(reason)  # the verdict's fault row names the case
    return bound


def _answers(guest: RunningGuest) -> bool:
    try:
        wait_for_agent(guest.ip, guest.agent_port, timeout=ANSWER_TIMEOUT_S)
    except WaitTimeout:
        return False
    return True


@pytest.mark.parametrize("kind", FAULTS, ids=[k.name for k in FAULTS])
def test_the_guest_survives_a_fault_mid_migration(
    request: pytest.FixtureRequest,
    kind: FaultKind,
    fault: Fault,
    run_config: RunConfig,
    test_domain: RunningGuest,
    src_host: SshHost, dst_host: SshHost,
    src_conn: libvirt.virConnect, dst_conn: libvirt.virConnect,
    migration_log: MigrationLog,
    host_clocks: tuple[HostClock, HostClock],
    migration_progress: ProgressCallback | None,
) -> None:
    leg = Leg(src_host.name, dst_host.name, src_conn, dst_conn, f"qemu+ssh://{dst_host.name}/system")
    storage = test_domain.storage
    guest = GuestAccess(test_domain.ip, test_domain.agent_port, dirty_rate_mib_s=run_config.dirty_rate_mib_s)
    deadline = (DeadlinePolicy(fixed_s=run_config.migration_timeout_s) if run_config.migration_timeout_s
                else DeadlinePolicy(fixed_s=kind.deadline_s, fixed_by=f"the {kind.name} case's own deadline"))
    with FaultWindow(fault, forward=migration_progress) as window:
        measured = measured_live_migration(
            leg, test_domain.name, kind.mode, guest=guest, test_id=f"{request.node.nodeid}#hop1",
            storage=storage.label, unsafe_reason=storage.why if storage.unsafe else None,
            clock_hosts=host_clocks, on_progress=window.on_progress, deadline=deadline,
        )
        window.migration_returned()
    # The fault is lifted.  A killed libvirtd took the harness's connection with it.
    for conn, host in ((src_conn, src_host), (dst_conn, dst_host)):
        reopen_if_dead(conn, lambda host=host: open_connection(host.libvirt_uri()))  # type: ignore[misc]
    src_state, dst_state = wait_settled(src_conn, dst_conn, test_domain.name)
    answers = _answers(test_domain)
    window.recovered()

    ended = migration_end(measured.outcome.error, measured.outcome.aborted_after_s)
    guest_on = {("running", "absent"): src_host.name, ("absent", "running"): dst_host.name}.get(
        (src_state, dst_state), "")
    record = window.record(migration=ended, guest_on=guest_on, unreachable_ms=measured.probe.longest_gap_ms)
    problems = faulted_move_problems(kind, measured, injected=window.injected_at_s is not None,
                                     src_state=src_state, dst_state=dst_state, answers=answers)
    notes = [f"fault: {record.describe()}", *(f"fault step: {s}" for s in record.steps)]
    if problems:  # what the guest and the bridges say, while it is still there to see
        running_on, conn = (dst_host, leg.dst) if ended == "completed" else (src_host, leg.src)
        evidence = silent_guest_evidence((src_host, dst_host), running_on, test_domain.name, test_domain.mac)
        crash = crash_diagnosis(evidence, running_on.name, test_domain.virt_type, conn.getVersion())
        if crash:
            problems.insert(0, crash)
        notes += [f"evidence: {line}" for line in evidence]
    if window.error:
        problems.append(f"the fault could not be made or lifted: {window.error}")
    old_problems = {f"PROBLEM: {p}" for p in measured.problems}
    notes = [*notes, *(n for n in measured.record.notes if n not in old_problems), *(f"PROBLEM: {p}" for p in problems)]
    migration_log.add(dataclasses.replace(
        measured.record, mode=f"{kind.mode.name}+{kind.name}", ok=not problems, notes=notes, fault=record.to_dict()))
    assert not problems, f"{kind.name}: " + "; ".join(problems)
