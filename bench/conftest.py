"""Bench wiring: the session's goal table (`bench.goals`), printed once at the end of `make bench`."""

from __future__ import annotations

import pytest

from bench.goals import GoalTable

_TABLE_KEY = pytest.StashKey[GoalTable]()


@pytest.fixture(scope="session")
def goal_table(pytestconfig: pytest.Config) -> GoalTable:
    """Where each bench files its figure against its goal."""
    return pytestconfig.stash.setdefault(_TABLE_KEY, GoalTable())


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    table = config.stash.get(_TABLE_KEY, None)
    if table is not None:
        terminalreporter.section("goals (issues #12, #13)")
        terminalreporter.write_line(table.render())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Benches that hold the lab themselves (the `lab_lock` fixture: bench/test_pairs) run first.

    Why: the others hold the lab through the session's `lab` fixture (fixtures.lab) from their
    first use to the end of the session.  A bench that then asks for the lab's lock again waits
    for its own session (a second FileLock on the file, in the same process, blocks) until its
    timeout: `make bench` sat 30 minutes in bench/test_pairs after bench/test_overhead.
    """
    items.sort(key=lambda item: "lab_lock" not in getattr(item, "fixturenames", ()))
