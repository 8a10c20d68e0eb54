"""Test-only: `-p tests.pairs_plugin --test-pairs h1:h2,h1:dead [--test-ssh-config F]` sets RunConfig.pairs.

The lab's --pairs may name only the lab's hypervisors, and --inventory is
not read yet; a test of an unreachable pair needs a host the lab does not
have (an alias to 127.0.0.x in an ssh config of its own).  This sets the
contract itself (`RunConfig.pairs`, `ssh_config`), after fixtures.options
built the RunConfig, and nothing else.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from virtmig.pairs import HostPair


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--test-pairs", dest="test_pairs", default=None, metavar="SRC:DST,...",
                     help="(tests only) the run's pairs, as RunConfig.pairs")
    parser.addoption("--test-ssh-config", dest="test_ssh_config", default=None, metavar="FILE",
                     help="(tests only) the run's ssh config, instead of the one the options gave")


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    from fixtures.options import RUN_CONFIG_KEY  # noqa: PLC0415 - at load it would skip assert rewriting
    value = config.getoption("test_pairs", None)
    run = config.stash.get(RUN_CONFIG_KEY, None)
    if not value or run is None:
        return
    pairs = tuple(HostPair(*item.split(":", 1)) for item in str(value).split(","))
    ssh_config = config.getoption("test_ssh_config", None)
    config.stash[RUN_CONFIG_KEY] = dataclasses.replace(
        run, pairs=pairs, ssh_config=Path(ssh_config) if ssh_config else run.ssh_config)
