"""The last-resort per-test bound (pytest-timeout) fails a hung test and says what that means."""

from __future__ import annotations

import pytest

from fixtures.timeouts import EXPLANATION
from tests.inner_run import REPO

pytest_plugins = ["pytester"]


def test_a_hung_test_is_ended_and_explained(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the inner pytest loads fixtures.timeouts from the checkout
    pytester.makepyfile(
        """
        import threading

        def test_hangs():
            threading.Event().wait()  # waits for ever, as a step with no bound of its own
        """
    )
    result = pytester.runpytest_subprocess("-p", "fixtures.timeouts", "--timeout", "1", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Timeout (>1.0s) from pytest-timeout*", "*virtmig: per-test timeout*",
                                 f"*{EXPLANATION[:60]}*"])
