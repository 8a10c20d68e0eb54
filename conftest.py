"""Root conftest: loads the harness's pytest plugins (wiring lives in fixtures/)."""

pytest_plugins = [
    "fixtures.options",
    "fixtures.report",
    "fixtures.lab",
    "fixtures.hosts",
    "fixtures.journal",
    "fixtures.storage",
    "fixtures.guest",
    "fixtures.verdict",
    "fixtures.progress",
    "fixtures.timeouts",
]
