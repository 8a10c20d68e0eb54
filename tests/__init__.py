"""The harness's own unit tests (a package, so its conftest is tests.conftest, distinct from the root one)."""
