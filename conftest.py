"""Root conftest: loads the harness's pytest plugins (wiring lives in fixtures/)."""

pytest_plugins = [
    "fixtures.lab",  # first: fixtures.options imports it for the lab's defaults
    "fixtures.options",
    "fixtures.pairs",
    "fixtures.report",
    "fixtures.hosts",
    "fixtures.journal",
    "fixtures.storage",
    "fixtures.guest",
    "fixtures.running_guest",
    "fixtures.verdict",
    "fixtures.progress",
    "fixtures.timeouts",
]
