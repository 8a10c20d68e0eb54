"""Root conftest: loads the harness's pytest plugins."""

pytest_plugins = ["fixtures.options"]
