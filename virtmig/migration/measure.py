"""One migration, measured two independent ways, checked, and turned into a record.

libvirt's completed-job statistics say what the hypervisors think happened;
the UDP echo probe says what a client of the guest saw.  They are taken by
different parties on different clocks, so agreement between them is
evidence and disagreement is a finding (`virtmig.migration.criteria.compare_downtime`).
Around the move, the guest writes a fresh RAM and disk pattern and verifies
both afterwards (`virtmig.guest.integrity`), and each host's clock offset is taken
(`virtmig.migration.clocks`, over channels the caller keeps open across
hops) so host-side times can be compared with ours.

With `--probe-from` the probe and every agent command run on another host
(`GuestAccess.relay`, `virtmig.guest.relay`): the controller sends nothing to
the guest.  That host's monotonic clock is measured against ours over the
relay's own channel (`clocks.offset_over`) just before the probe starts, and
the samples are moved onto our clock, so the outage breakdown can still
compare them with libvirt's events; the offset's uncertainty is in the record.

The probe is kept running after the migration call returns until the guest
answers a datagram sent after that moment (bounded): stopping it at once
would cut an outage that outlasts libvirt's call short.

`Measurement` is the shared part: the offline, cold and save/restore
procedures (`virtmig.migration.offline`) use it around their own operations.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType

import libvirt

from virtmig.guest import domains, integrity
from virtmig.guest.integrity import Agent, AreaCheck
from virtmig.guest.probe import EchoProbe, ProbeResult, UdpEchoProbe
from virtmig.guest.relay import Relay, agent_command_via
from virtmig.migration import announce as announcement
from virtmig.migration import criteria
from virtmig.migration.announce import AnnounceCapture, AnnounceTarget, bridge_of
from virtmig.migration.breakdown import OutageBreakdown, outage_breakdown
from virtmig.migration.clocks import ClockOffset, HostClock, measure_offsets, offset_over
from virtmig.migration.deadline import DeadlinePolicy
from virtmig.migration.modes import MigrationMode
from virtmig.migration.records import MigrationRecord
from virtmig.migration.runner import MigrationOutcome, ProgressCallback, migrate
from virtmig.waiters import wait_for_probe_answer

#: How long the probe keeps going after an operation for the guest to answer.
ANSWER_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Leg:
    """One direction of travel: names for the record, connections and the URI."""

    src_name: str
    dst_name: str
    src: libvirt.virConnect
    dst: libvirt.virConnect
    dst_uri: str


@dataclass(frozen=True)
class GuestAccess:
    """How the measurement reaches the guest: its address and agent, its workload.

    dirty_rate_mib_s: set with `!dirty N` before every operation (None: leave
        the guest's rate alone and record none).
    relay: the host that probes the guest and sends its agent commands
        (`--probe-from`); None: this machine does.
    """

    ip: str
    agent_port: int
    dirty_rate_mib_s: int | None = None
    probe_interval_s: float = 0.005
    answer_timeout_s: float = ANSWER_TIMEOUT_S
    #: How long the probe waits for late replies when stopped: the guest has already answered a
    #: datagram sent after the call, so this only needs to cover a round trip or two.
    probe_drain_s: float = 0.05
    relay: Relay | None = None

    def agent(self) -> Agent:
        return integrity.lab_agent(self.ip, self.agent_port, send=agent_command_via(self.relay))

    def start_probe(self) -> tuple[EchoProbe, ClockOffset | None]:
        """The probe from this machine, or from the relay's host with its clock measured against ours."""
        if self.relay is None:
            probe: EchoProbe = UdpEchoProbe(self.ip, self.agent_port, interval_s=self.probe_interval_s,
                                            drain_s=self.probe_drain_s)
            probe.start()
            return probe, None
        clock = offset_over(self.relay.exchange, self.relay.name, now=time.monotonic_ns,
                            method="probe relay, monotonic")
        probe = self.relay.probe(self.ip, self.agent_port, interval_s=self.probe_interval_s,
                                 drain_s=self.probe_drain_s, offset_ns=round(clock.offset_ms * 1e6),
                                 uncertainty_ms=clock.uncertainty_ms)
        probe.start()
        return probe, clock


@dataclass
class Measurement:
    """Everything measured around one operation, filled in as it goes.

    Use as a context manager around the operation: entering sets the dirty
    rate, writes the patterns, takes the clock offsets and starts the probe;
    `finish()` waits for the guest to answer, stops the probe and verifies.
    """

    guest: GuestAccess
    seed: str
    areas: Sequence[str]
    clock_hosts: Sequence[HostClock] = ()
    agent: Agent | None = None
    started_at: str = ""
    clock_offsets: dict[str, dict[str, object]] | None = None
    probe: ProbeResult | None = None
    answered_after: bool = False
    integrity_checks: list[AreaCheck] = field(default_factory=list)
    #: Seconds each part of the measurement cost (dirty rate and patterns, clock offsets, probe start,
    #: waiting for the answer and stopping the probe, verification): the harness's overhead, by part.
    costs: dict[str, float] = field(default_factory=dict)
    #: The probe host's monotonic clock against ours, when the probe ran there (`GuestAccess.relay`).
    probe_clock: ClockOffset | None = None
    _probe: EchoProbe | None = None

    def _cost(self, part: str, since: float) -> float:
        now = time.monotonic()
        self.costs[part] = self.costs.get(part, 0.0) + now - since
        return now

    def __enter__(self) -> Measurement:
        t = time.monotonic()
        send = self.agent or self.guest.agent()
        self.agent = send
        if self.guest.dirty_rate_mib_s is not None:
            send(f"dirty {self.guest.dirty_rate_mib_s}")
        if self.areas:
            integrity.write_patterns(send, self.seed, self.areas)
        t = self._cost("patterns", t)
        if self.clock_hosts:
            self.clock_offsets = measure_offsets(*self.clock_hosts)
        t = self._cost("clock offsets", t)
        self.started_at = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        self._probe, self.probe_clock = self.guest.start_probe()
        self._cost("probe start/stop", t)
        return self

    def finish(self, *, verify: bool | None = True) -> None:
        """Wait (bounded) for an answer sent after now, stop the probe, verify the patterns.

        verify None: only if the guest answered after the call (a guest that is
        gone would cost the agent's timeout per area and say nothing new).
        """
        assert self._probe is not None, "finish() outside the with block"
        t = time.monotonic()
        if self.probe is None:
            self.answered_after = wait_for_probe_answer(
                self._probe, time.monotonic_ns(), timeout=self.guest.answer_timeout_s)
            t = self._cost("probe: wait for an answer after the call", t)
            self.probe = self._probe.stop()
            t = self._cost("probe start/stop", t)
        if (verify or (verify is None and self.answered_after)) and self.areas and self.agent is not None \
                and not self.integrity_checks:
            self.integrity_checks = integrity.verify_patterns(self.agent, self.seed, self.areas)
            self._cost("verification", t)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._probe is not None and self.probe is None:
            # An exception: stop the probe thread but verify nothing.
            self.probe = self._probe.stop()

    def problems(self) -> list[str]:
        """Probe and integrity problems (statistics are judged by the caller)."""
        found = [] if self.probe is None else criteria.probe_problems(self.probe, answered_after=self.answered_after)
        found += [f"{c.area} pattern not intact after the move: {c.reply}" for c in self.integrity_checks if not c.ok]
        return found

    def notes(self) -> list[str]:
        if self.probe is None:
            return []
        found = criteria.probe_caveats(self.probe)
        if self._probe is not None and not self._probe.scheduling.startswith("SCHED_FIFO"):
            found.append(f"probe sender ran {self._probe.scheduling}: its send gaps may stretch under load")
        if (clock := self.probe_clock) is not None:
            found.append(
                f"probe ran on {self.probe.vantage} (--probe-from), every {self.probe.interval_ms:g} ms, worst send "
                f"gap {self.probe.longest_send_gap_ms:.1f} ms; its times put on the controller's clock: "
                f"{clock.offset_ms:+.3f} ms ± {clock.uncertainty_ms:.3f} ms (round trip {clock.rtt_ms:.3f} ms): "
                "the outage's segments against libvirt's events carry that uncertainty, its durations do not")
            if not clock.consistent:
                found.append(f"probe host {clock.host}'s clock moved while it was measured: its offset is the "
                             "shortest exchange's alone")
        return found


@dataclass(frozen=True)
class MeasuredMigration:
    """The outcome, the probe's view, the record, and every problem found.

    problems: failed checks (statistics, probe, integrity); a suite fails
    the test when there is any.  The downtime disagreement is not among
    them: it is in record.notes and record.downtime_agreement.
    """

    outcome: MigrationOutcome
    probe: ProbeResult
    record: MigrationRecord
    problems: list[str]
    agreement: criteria.DowntimeAgreement
    breakdown: OutageBreakdown | None = None
    costs: dict[str, float] = field(default_factory=dict)


def _on_our_clock(stamps_s: list[float], host: str,
                  offsets: dict[str, dict[str, object]] | None) -> tuple[list[int], str | None]:
    """The destination's announcement stamps on our monotonic clock, or none and why (no offset for *host*)."""
    if not stamps_s:
        return [], None
    offset = (offsets or {}).get(host, {}).get("offset_ms")
    if not isinstance(offset, (int, float)):
        return [], f"no clock offset for {host} to place its capture on ours"
    shift = announcement.real_minus_mono_ns()
    return [announcement.to_controller_mono_ns(s, float(offset), shift) for s in stamps_s], None


def abort_aftermath(leg: Leg, domain: str, meas: Measurement) -> tuple[list[str], list[str]]:
    """(notes, problems) once a deadline aborted the job: where the guest is now, and what is wrong with it.

    The guest must be running on the source, absent on the destination, and
    its patterns intact (the measurement verified them on the source).
    """
    src_state, dst_state = domains.state_name(leg.src, domain), domains.state_name(leg.dst, domain)
    note = f"after the abort the guest is {src_state} on {leg.src_name} and {dst_state} on {leg.dst_name}"
    return [note], criteria.abort_problems(src_state, dst_state) + meas.problems()


def measured_live_migration(
    leg: Leg, domain: str, mode: MigrationMode, *, guest: GuestAccess, test_id: str, storage: str,
    unsafe_reason: str | None = None, clock_hosts: Sequence[HostClock] = (),
    on_progress: ProgressCallback | None = None, agent: Agent | None = None,
    tolerance: criteria.DowntimeTolerance = criteria.DEFAULT_TOLERANCE,
    deadline: DeadlinePolicy | None = None, announce: AnnounceTarget | None = None,
) -> MeasuredMigration:
    """Migrate `domain` along `leg` with the probe running and the patterns in place; record and judge.

    announce: where to capture the guest's announcement on the destination (see virtmig.migration.announce).
    """
    meas = Measurement(guest, integrity.new_seed(mode.name), integrity.AREAS, clock_hosts, agent)
    with meas:
        capture = AnnounceCapture(announce, bridge_of(announce.network, leg.dst)) if announce else None
        if capture:
            capture.start()
        try:
            outcome = migrate(leg.src, leg.dst, leg.dst_uri, domain, mode,
                              unsafe=unsafe_reason is not None, on_progress=on_progress, deadline=deadline)
        finally:
            announced_s = capture.stop() if capture else []
        # An aborted or failed job leaves the guest on the source: its patterns must be intact there
        # too (the fault suite judges them); after a failure, if the guest answers at all.
        meas.finish(verify=True if outcome.ok or outcome.aborted_after_s is not None else None)
    assert meas.probe is not None
    problems = [] if not outcome.ok else criteria.stats_problems(outcome.stats) + meas.problems()
    after_abort: list[str] = []
    if outcome.aborted_after_s is not None:
        after_abort, more = abort_aftermath(leg, domain, meas)
        problems += more
    if mode.switch_to_postcopy and outcome.postcopy_switched is False and outcome.ok:
        problems.append("the post-copy mode never switched to post-copy")
    stats = outcome.stats.to_dict() if outcome.stats else None
    agreement = criteria.compare_downtime(
        None if outcome.stats is None or outcome.stats.downtime_ms is None else float(outcome.stats.downtime_ms),
        meas.probe.longest_gap_ms if meas.answered_after else None, tolerance,
        postcopy=outcome.postcopy_switched is True)
    notes = [f"--unsafe: {unsafe_reason}"] if unsafe_reason else []
    if mode.describe():
        notes.append(f"mode: {mode.describe()}")
    notes += list(outcome.notes) + after_abort + meas.notes()
    announces_ns, announce_note = _on_our_clock(announced_s, leg.dst_name, meas.clock_offsets)
    if capture and capture.unavailable:
        announce_note = capture.unavailable
    breakdown = (outage_breakdown(meas.probe, outcome.events, outcome.stats, announces_ns=announces_ns,
                                  announce_note=announce_note)
                 if outcome.events and meas.answered_after else None)
    if breakdown is not None:
        notes.append(breakdown.describe())
        if outcome.postcopy_switched is not True and (pause := breakdown.pause_note()):
            notes.append(pause)
    if agreement.note:
        notes.append(agreement.note)
    notes += [f"PROBLEM: {p}" for p in problems]
    record = MigrationRecord(
        test_id=test_id, kind="live", mode=mode.name, src=leg.src_name, dst=leg.dst_name, domain=domain,
        started_at=meas.started_at, wall_s=round(outcome.wall_s, 3), ok=outcome.ok and not problems,
        storage=storage, error=outcome.error, stats=stats, probe=meas.probe.to_dict(),
        progress=[p.to_dict() for p in outcome.progress], notes=notes,
        dirty_rate_asked_mib_s=guest.dirty_rate_mib_s, clock_offsets=meas.clock_offsets,
        integrity=integrity.summary(meas.integrity_checks) if meas.integrity_checks else None,
        downtime_agreement=agreement.to_dict(), outage=breakdown.to_dict() if breakdown else None,
    )
    return MeasuredMigration(outcome, meas.probe, record, problems, agreement, breakdown, meas.costs)
