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
