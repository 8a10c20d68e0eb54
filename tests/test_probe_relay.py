"""The probe relay (`--probe-from`, virtmig.guest.relay): its line protocol, its clock translation, its program.

The protocol's format/parse and the translation are pure and tested on
literal lines and samples.  The relay program itself (probe.py's source plus
`RELAY_MAIN`) runs here, over the test sshd as it runs on a far host (and
as a local process), against the loopback stand-in for the guest agent the probe's own
tests use (tests/echo_agent.py): nothing leaves this machine.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.conftest import Sshd
from tests.echo_agent import EchoAgent
from tests.test_report import make_record
from virtmig.guest.probe import AgentError, Sample, summarize
from virtmig.guest.relay import (
    Relay,
    RelayError,
    format_request,
    on_controller_clock,
    parse_reply,
    parse_samples,
)
from virtmig.localhost import LocalHost
from virtmig.migration.clocks import offset_over
from virtmig.migration.measure import GuestAccess, Measurement
from virtmig.report import DASH
from virtmig.report.tables import probe_from_text
from virtmig.sshhost import SshHost
from virtmig.waiters import wait_for_probe_answer

# -- the line protocol -------------------------------------------------------------------------------


def test_a_request_is_one_json_line_even_with_a_newline_in_a_value() -> None:
    line = format_request("agent", ip="198.19.200.100", port=7, text="ram-write a\nb", timeout=2.0, retries=1)
    assert "\n" not in line
    assert json.loads(line) == {"op": "agent", "ip": "198.19.200.100", "port": 7, "text": "ram-write a\nb",
                                "timeout": 2.0, "retries": 1}


def test_an_ok_reply_is_returned_whole() -> None:
    assert parse_reply("h1", '{"ok":true,"reply":"ok pong"}') == {"ok": True, "reply": "ok pong"}


def test_the_agents_failure_comes_back_as_the_agents_error_naming_the_relay_host() -> None:
    with pytest.raises(AgentError, match=r"^via h1: agent 198\.19\.200\.100:7 did not answer"):
        parse_reply("h1", '{"ok":false,"kind":"agent","error":"agent 198.19.200.100:7 did not answer \'!ping\'"}')


def test_a_relay_failure_is_a_relay_error() -> None:
    with pytest.raises(RelayError, match="h1: the probe relay failed: RuntimeError: no probe started"):
        parse_reply("h1", '{"ok":false,"kind":"relay","error":"RuntimeError: no probe started"}')


@pytest.mark.parametrize("line", ["no python3 on h1", "", "[1, 2]", '{"reply": "x"}', '{"ok": "yes"}'])
def test_anything_but_the_protocol_is_a_relay_error_quoting_the_line(line: str) -> None:
    with pytest.raises(RelayError, match="h1: the probe relay answered .* not the relay protocol"):
        parse_reply("h1", line)


def test_stop_samples_parse_with_lost_replies_as_none() -> None:
    got = parse_samples("h1", {"ok": True, "samples": [[10, 15], [20, None]], "duplicates": 1, "stray": 2,
                               "send_errors": 3, "scheduling": "SCHED_FIFO 10"})
    assert got.samples == [(10, 15), (20, None)]
    assert (got.duplicates, got.stray, got.send_errors, got.scheduling) == (1, 2, 3, "SCHED_FIFO 10")


@pytest.mark.parametrize("reply", [{"ok": True}, {"ok": True, "samples": [[1]], "duplicates": 0, "stray": 0,
                                                   "send_errors": 0, "scheduling": ""},
                                   {"ok": True, "samples": [["x", 1]], "duplicates": 0, "stray": 0,
                                    "send_errors": 0, "scheduling": ""}])
def test_malformed_samples_are_a_relay_error(reply: dict[str, object]) -> None:
    with pytest.raises(RelayError, match="h1: malformed samples"):
        parse_samples("h1", reply)


# -- the clock translation ----------------------------------------------------------------------------

#: A 5 ms probe on a host whose monotonic clock reads 7 s more than ours; seqs 3..5 lost (an outage).
REMOTE: list[Sample] = [(7_000_000_000 + k * 5_000_000,
                         None if 3 <= k <= 5 else 7_000_000_000 + k * 5_000_000 + 300_000) for k in range(10)]


def test_samples_move_onto_the_controllers_clock_and_lost_replies_stay_lost() -> None:
    local = on_controller_clock(REMOTE, 7_000_000_000)
    assert local[0] == (0, 300_000)
    assert local[4] == (20_000_000, None)
    assert [r is None for _, r in local] == [r is None for _, r in REMOTE]


def test_the_translation_moves_the_gaps_ends_and_changes_no_duration() -> None:
    remote = summarize(REMOTE, interval_s=0.005)
    local = summarize(on_controller_clock(REMOTE, 7_000_000_000), interval_s=0.005)
    assert (local.longest_gap_ms, local.longest_send_gap_ms, local.rtt_p50_ms, local.gap_lost) == \
        (remote.longest_gap_ms, remote.longest_send_gap_ms, remote.rtt_p50_ms, remote.gap_lost) == \
        (20.0, 5.0, 0.3, 3)
    assert (local.gap_start_ns, local.gap_end_ns) == (remote.gap_start_ns - 7_000_000_000,
                                                      remote.gap_end_ns - 7_000_000_000) == (10_300_000, 30_300_000)


def test_a_negative_offset_moves_the_other_way() -> None:
    assert on_controller_clock([(100, 150)], -1_000) == [(1_100, 1_150)]


# -- the report shows where the probe ran, beside the controller's ------------------------------------


def test_the_report_names_where_the_probe_ran_and_its_resolution() -> None:
    controller = {"interval_ms": 5.0, "longest_send_gap_ms": 5.21}
    assert probe_from_text(make_record("t::a", probe=controller)) == "controller: 5.0 / 5.2"
    remote = {**controller, "vantage": "h1", "clock_offset_ms": 0.001, "clock_uncertainty_ms": 0.0123}
    assert probe_from_text(make_record("t::b", probe=remote)) == "h1: 5.0 / 5.2 (clock ± 0.012)"
    assert probe_from_text(make_record("t::c", probe=None)) == DASH


# -- the relay program, run here over loopback ---------------------------------------------------------


@pytest.fixture(params=[pytest.param("ssh", marks=pytest.mark.sshd), "local"])  # as tests/test_host.py's host
def relay(request: pytest.FixtureRequest) -> Iterator[Relay]:
    """The relay program on this machine: over the test sshd (as on a far host), and as a local process."""
    if request.param == "local":
        with Relay(LocalHost()) as r:
            yield r
        return
    sshd: Sshd = request.getfixturevalue("sshd")
    with SshHost(sshd.alias, sshd.ssh_config) as host, Relay(host) as r:
        yield r


def test_the_relay_greets_with_its_python(relay: Relay) -> None:
    assert relay.python.startswith("3.")


def test_agent_commands_go_through_the_relay(relay: Relay) -> None:
    with EchoAgent() as agent:
        assert relay.agent_command("127.0.0.1", agent.port, "ping") == "ok pong"
        assert agent.log.commands == [b"!ping"]


def test_a_silent_agent_is_the_agents_error_through_the_relay(relay: Relay) -> None:
    with EchoAgent() as agent:
        agent.paused.set()
        with pytest.raises(AgentError, match=rf"via {relay.name}: agent 127\.0\.0\.1:{agent.port} did not answer"):
            relay.agent_command("127.0.0.1", agent.port, "ping", timeout=0.1, retries=1)


def test_stop_before_start_is_the_relays_error_and_the_relay_goes_on(relay: Relay) -> None:
    with pytest.raises(RelayError, match="no probe started"):
        relay.request("stop")
    assert relay.exchange("t", 5).isdigit()


def test_a_probe_on_the_relay_reports_like_the_controllers_on_our_clock(relay: Relay) -> None:
    clock = offset_over(relay.exchange, relay.name, now=time.monotonic_ns, method="probe relay, monotonic")
    assert abs(clock.offset_ms) <= clock.uncertainty_ms  # one machine, one monotonic clock
    with EchoAgent() as agent:
        probe = relay.probe("127.0.0.1", agent.port, interval_s=0.005, drain_s=0.05,
                            offset_ns=round(clock.offset_ms * 1e6), uncertainty_ms=clock.uncertainty_ms)
        before = time.monotonic_ns()
        probe.start()
        assert wait_for_probe_answer(probe, time.monotonic_ns(), timeout=10)
        result = probe.stop()
        after = time.monotonic_ns()
    assert result.vantage == relay.name and result.clock_uncertainty_ms == clock.uncertainty_ms
    assert result.sent >= 1 and result.received == result.sent - result.lost
    assert result.interval_ms == 5.0
    samples = probe.samples()
    # On our clock: every send between our start and stop calls, within the offset's bound.
    slack = int(clock.uncertainty_ms * 1e6) + 1
    assert before - slack <= samples[0][0] and samples[-1][0] <= after + slack
    assert probe.scheduling.endswith(f" on {relay.name}")


def test_a_measurement_picks_the_relay_by_one_field(relay: Relay) -> None:
    """GuestAccess.relay set: the measurement's probe and agent both go through it, and its notes say so."""
    with EchoAgent() as agent:
        meas = Measurement(GuestAccess("127.0.0.1", agent.port, relay=relay), seed="s", areas=())
        with meas:
            assert meas.agent is not None and meas.agent("ping") == "ok pong"
            meas.finish()
    assert meas.probe is not None and meas.answered_after
    assert meas.probe.vantage == relay.name and meas.probe_clock is not None
    assert meas.probe.clock_uncertainty_ms == meas.probe_clock.uncertainty_ms
    assert any(n.startswith(f"probe ran on {relay.name} (--probe-from), every 5 ms") for n in meas.notes())


def test_without_a_relay_the_controller_probes_as_before() -> None:
    with EchoAgent() as agent:
        meas = Measurement(GuestAccess("127.0.0.1", agent.port), seed="s", areas=())
        with meas:
            meas.finish()
    assert meas.probe is not None and meas.probe.vantage == "controller" and meas.probe_clock is None
    assert meas.probe.clock_offset_ms is None and not any("--probe-from" in n for n in meas.notes())
