"""The clock-offset method against the one case whose truth is known: the lab's hosts share our kernel clock.

h1 and h2 are namespaces on this machine, so their true offset from the
controller is 0.  `virtmig.migration.clocks` reports a bound, not a guess:
0 must lie inside every offset ± uncertainty it gives, over channels kept
open and reused, as every hop reuses them.  How tight the bound is (the
goal: within ±2 ms, uncertainty <= 2 ms) is a figure for bench/test_clocks.py,
not an assert here: a loaded machine widens it without anything being wrong.
"""

from __future__ import annotations

import pytest

from virtmig.lab.topology import H1, H2, SSH_CONFIG
from virtmig.migration.clocks import HostClock
from virtmig.sshhost import SshHost

pytestmark = pytest.mark.lab


def test_lab_offsets_bound_the_true_zero(lab_up: None) -> None:
    # The lab held for this test only (lab_up), not for the session: later
    # tests start inner runs that take the lab's lock themselves.
    for name in (H1.name, H2.name):
        with SshHost(name, ssh_config=SSH_CONFIG) as host:
            clock = HostClock(host)
            clock.open()
            try:
                assert clock.method == "python3", "the lab's hosts have python3: the in-process loop answers"
                for _ in range(5):  # the same channel, again and again, as hop after hop
                    off = clock.measure()
                    assert off.consistent, off
                    assert abs(off.offset_ms) <= off.uncertainty_ms, off
            finally:
                clock.close()
