"""The live-migration deadline: how the budget follows the guest's memory and the measured rate.

That the budget really ends a migration (abortJob, the guest left running
on the source, nothing on the destination) is shown on the lab
(tests/test_lab_deadline.py); here only the arithmetic and its explanation.
"""

from __future__ import annotations

import pytest

from virtmig.migration.deadline import MIB, DeadlinePolicy, measured_rate
from virtmig.migration.jobstats import JobProgress
from virtmig.option_values import ConfigError, check_migration_timeout

pytest_plugins = ["pytester"]


def test_fixed_timeout_wins_over_everything() -> None:
    policy = DeadlinePolicy(fixed_s=7)
    assert policy.budget_s(64 * 2**30, None) == 7
    assert policy.explain(128 * MIB, 60 * MIB) == "deadline 7 s (--migration-timeout)"


def test_derived_budget_is_setup_plus_passes_of_memory_at_the_rate() -> None:
    policy = DeadlinePolicy(setup_s=60, passes=10)
    assert policy.budget_s(128 * MIB, 64 * MIB) == pytest.approx(60 + 10 * 2)
    assert "measured rate" in policy.explain(128 * MIB, 64 * MIB)


def test_before_any_rate_is_known_the_floor_rate_bounds_it() -> None:
    policy = DeadlinePolicy(setup_s=60, passes=10, floor_rate_bytes_s=4 * MIB)
    assert policy.budget_s(128 * MIB, None) == pytest.approx(60 + 10 * 32)
    assert policy.budget_s(128 * MIB, 1 * MIB) == policy.budget_s(128 * MIB, None)  # never slower than the floor
    assert "floor rate" in policy.explain(128 * MIB, None)


def test_a_huge_guest_on_a_slow_link_is_still_capped() -> None:
    assert DeadlinePolicy(cap_s=3600).budget_s(2**40, None) == 3600


def test_the_rate_is_the_median_of_the_samples_that_report_one() -> None:
    samples = [JobProgress(memory_bytes_per_s=r) for r in (None, 0, 10 * MIB, 50 * MIB, 1000 * MIB)]
    assert measured_rate(samples) == 50 * MIB
    assert measured_rate([JobProgress()]) is None


@pytest.mark.parametrize("value", [0.0, 0.5, -1.0, float("nan"), 1e9])
def test_migration_timeout_out_of_bounds_is_refused(value: float) -> None:
    with pytest.raises(ConfigError, match="--migration-timeout"):
        check_migration_timeout(value)


@pytest.mark.parametrize("value", ["0", "x", "nan"])
def test_migration_timeout_option_is_a_usage_error(pytester: pytest.Pytester, value: str) -> None:
    result = pytester.runpytest("-p", "fixtures.options", "--migration-timeout", value)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--migration-timeout*"])
