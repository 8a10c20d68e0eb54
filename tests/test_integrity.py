"""The integrity check, fed replies from a stand-in agent: it must fail on `fail`, silence and stale replies.

Failures are read where a run reads them: `Measurement.problems()`, the list
a suite fails its test on, and `integrity.summary`, what the record keeps.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from virtmig.guest import integrity
from virtmig.guest.integrity import AreaCheck, IntegrityError
from virtmig.guest.probe import AgentError
from virtmig.migration.measure import GuestAccess, Measurement


class FakeAgent:
    """Answers like guest_agent.c; `corrupt` areas answer `fail`, `silent` ones never answer."""

    def __init__(self, corrupt: tuple[str, ...] = (), silent: tuple[str, ...] = (), stale: bool = False) -> None:
        self.corrupt, self.silent, self.stale = corrupt, silent, stale
        self.sent: list[str] = []

    def __call__(self, text: str) -> str:
        self.sent.append(text)
        verb, seed = text.split()
        area, action = verb.split("-")
        if area in self.silent:
            raise AgentError(f"agent did not answer '!{text}'")
        if action == "write":
            return f"ok {verb} {seed} 0123456789abcdef"
        if area in self.corrupt:
            raise AgentError(f"agent answered '!{text}' with 'fail {verb} {seed} offset=4096'")
        return f"ok {verb} {'old-seed' if self.stale else seed}"


def problems(checks: Sequence[AreaCheck]) -> list[str]:
    """What a measured migration reports for these verifies (the probe aside)."""
    meas = Measurement(GuestAccess("192.0.2.1", 7007), "s1", integrity.AREAS, integrity_checks=list(checks))
    return meas.problems()


def test_intact_patterns_pass() -> None:
    agent = FakeAgent()
    seed = integrity.new_seed("p2p")
    assert integrity.write_patterns(agent, seed) == {"ram": "0123456789abcdef", "disk": "0123456789abcdef"}
    checks = integrity.verify_patterns(agent, seed)
    assert [(c.area, c.ok) for c in checks] == [("ram", True), ("disk", True)]
    assert problems(checks) == []
    assert integrity.summary(checks) == {"ram": "ok", "disk": "ok"}
    assert agent.sent == [f"ram-write {seed}", f"disk-write {seed}", f"ram-verify {seed}", f"disk-verify {seed}"]


@pytest.mark.parametrize("area", integrity.AREAS)
def test_a_fail_reply_fails(area: str) -> None:
    agent = FakeAgent(corrupt=(area,))
    checks = integrity.verify_patterns(agent, "s1")
    (found,) = problems(checks)
    assert found.startswith(f"{area} pattern not intact after the move: ")
    assert f"fail {area}-verify s1 offset=4096" in found
    assert integrity.summary(checks)[area] != "ok"
    other = [c for c in checks if c.area != area]
    assert all(c.ok for c in other), "one bad area must not hide the result of the other"


def test_silence_after_the_move_fails() -> None:
    (found,) = problems(integrity.verify_patterns(FakeAgent(silent=("disk",)), "s1"))
    assert found.startswith("disk pattern not intact after the move: ") and "did not answer" in found


def test_an_ok_for_another_seed_fails() -> None:
    found = problems(integrity.verify_patterns(FakeAgent(stale=True), "s1"))
    assert len(found) == 2 and all("old-seed" in p for p in found), found


@pytest.mark.parametrize("reply", ["fail ram-verify s offset=0", "ok ram-verify s2", "ok disk-verify s", "", "ok"])
def test_judge_reply_rejects(reply: str) -> None:
    assert not integrity.judge_reply("ram", "s", reply).ok


def test_judge_reply_accepts_exactly_the_expected_line() -> None:
    assert integrity.judge_reply("ram", "s", "ok ram-verify s\n").ok


def test_nothing_checked_is_not_a_pass() -> None:
    # A verify of no area refuses to run rather than return an empty (passing) list.
    with pytest.raises(ValueError, match="non-empty"):
        integrity.verify_patterns(FakeAgent(), "s1", ())


def test_a_write_that_fails_stops_the_migration() -> None:
    with pytest.raises(IntegrityError, match="could not write the ram pattern"):
        integrity.write_patterns(FakeAgent(silent=("ram",)), "s1")


def test_unknown_areas_are_refused() -> None:
    with pytest.raises(ValueError):
        integrity.verify_patterns(FakeAgent(), "s1", ("swap",))


def test_seeds_are_fresh_and_valid_for_the_agent() -> None:
    a, b = integrity.new_seed("max downtime/x"), integrity.new_seed("max downtime/x")
    assert a != b
    for seed in (a, b, integrity.new_seed()):
        assert 1 <= len(seed) <= 64 and all("!" <= c <= "~" for c in seed)
