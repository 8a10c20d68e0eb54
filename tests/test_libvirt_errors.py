"""libvirt's error messages reach the user through the harness, not as stray stderr lines.

libvirt's test driver (`test:///default`) runs inside the client library, so
these need no daemon.  Each check runs in its own interpreter: the handler is
process-wide and registered once, and stderr is only clean if it was
registered before the first error.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import libvirt
import pytest

from virtmig.guest import domains

REPO = Path(__file__).resolve().parent.parent
MISSING = "virtmig-no-such-domain"

#: Opens the test driver, the harness's way or libvirt's own, and looks up a
#: domain that does not exist, both as the harness does and with the bare call.
SCRIPT = f"""
import sys
import libvirt
from virtmig.guest import domains
how = sys.argv[1]
conn = domains.open_connection("test:///default") if how == "harness" else libvirt.open("test:///default")
print("lookup:", domains.lookup(conn, {MISSING!r}))
try:
    conn.lookupByName({MISSING!r})
except libvirt.libvirtError as exc:
    print("raised:", exc.get_error_code(), exc.get_error_message())
"""


def run(how: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SCRIPT, how], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env=dict(os.environ, PYTHONPATH=str(REPO)))


def libvirt_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("libvirt:")]


def test_without_the_harness_libvirt_prints_its_errors() -> None:
    """The control: the bare library does print, so the next test could see it."""
    proc = run("bare")
    assert proc.returncode == 0, proc.stderr
    assert libvirt_lines(proc.stderr), proc.stderr


def test_a_harness_connection_prints_no_libvirt_line() -> None:
    proc = run("harness")
    assert proc.returncode == 0, proc.stderr
    assert libvirt_lines(proc.stderr) == [], proc.stderr
    # The error still reaches the caller, with libvirt's code and message.
    assert "lookup: None" in proc.stdout
    assert f"raised: {libvirt.VIR_ERR_NO_DOMAIN} Domain not found" in proc.stdout, proc.stdout


def test_libvirts_message_goes_to_the_debug_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=domains.LIBVIRT_LOG.name)
    conn = domains.open_connection("test:///default")
    try:
        with pytest.raises(libvirt.libvirtError):
            conn.lookupByName(MISSING)
    finally:
        conn.close()
    assert any(r.name == domains.LIBVIRT_LOG.name and "Domain not found" in r.getMessage() for r in caplog.records)
