"""A test-only stand-in for --pairs: `-p tests.pairs_plugin --test-pairs h1:h2,h2:h1` fills RunConfig.pairs.

The run's pairs come from --pairs/--inventory (another branch's options); the
multi-pair tests need only the contract (`RunConfig.pairs`), so they set it
here, after fixtures.options built the RunConfig, and need nothing else.
"""

from __future__ import annotations

import dataclasses

import pytest

from virtmig.pairs import HostPair


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--test-pairs", dest="test_pairs", default=None, metavar="SRC:DST,...",
                     help="(tests only) the run's pairs, as RunConfig.pairs")


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    from fixtures.options import RUN_CONFIG_KEY  # noqa: PLC0415 - at load it would skip assert rewriting
    value = config.getoption("test_pairs", None)
    run = config.stash.get(RUN_CONFIG_KEY, None)
    if not value or run is None:
        return
    pairs = tuple(HostPair(*item.split(":", 1)) for item in str(value).split(","))
    config.stash[RUN_CONFIG_KEY] = dataclasses.replace(run, pairs=pairs)
