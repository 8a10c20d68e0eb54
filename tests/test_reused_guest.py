"""When the live suite's modes share one guest (fixtures.running_guest.ReusedGuest) and when it is booted again.

The rule is the whole point of sharing: a guest is handed on only if the
test before left it running on the source and answering, and no test
failed since.  Checked here with a stand-in for the starter, which the lab
runs of suites/live (tests/test_lab.py) exercise for real.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from fixtures.running_guest import GuestStarter, ReusedGuest, RunningGuest
from virtmig.storage.shared import SharedStorage


@dataclass
class Starter:
    """Counts boots; says the guest is at home while `home` is True."""

    home: bool = True
    boots: int = 0

    def start(self) -> RunningGuest:
        self.boots += 1
        self.home = True
        return RunningGuest(f"boot {self.boots}", "127.0.0.1", 0, "", "qemu", cast(SharedStorage, None))

    def at_home(self) -> bool:
        return self.home

    def remove(self) -> None:
        self.home = False


def test_a_guest_left_at_home_is_handed_on_and_booted_again_otherwise() -> None:
    starter = Starter()
    consoles_cleared: list[int] = []
    reused = ReusedGuest(cast(GuestStarter, starter), before_boot=lambda: consoles_cleared.append(starter.boots))
    assert reused.ready(failures=0).name == "boot 1"  # the first test boots it
    assert reused.ready(failures=0).name == "boot 1"  # at home, nothing failed: handed on
    starter.home = False  # a test left it on the destination, or silent
    assert reused.ready(failures=0).name == "boot 2"
    assert reused.ready(failures=1).name == "boot 3"  # a test failed since: booted afresh though it answers
    assert reused.ready(failures=1).name == "boot 3"  # no new failure
    assert starter.boots == 3
    assert consoles_cleared == [0, 1, 2], "each boot starts a fresh console file"
