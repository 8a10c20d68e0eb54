"""The lab's exportfs checks ganesha's reload by the export list ganesha logs, not by sleeping.

The log lines are nfs-ganesha 4.3's own (recorded from `ganesha.nfsd -L
/dev/stderr` with this module's LOG block, perms fields shortened).  `reload`
runs against a stand-in process that writes them to its stderr on SIGHUP, as
ganesha does, so the wait, its end and its verdicts run for real.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from virtmig.lab import ganesha_reload
from virtmig.lab.netns import LabError
from virtmig.waiters import WaitTimeout

_P = "01/12/2026 23:59:22 : epoch 6b0f5f54 : nfs : nfs-ganesha-26945[sigmgr] "
HUP = _P + "sigmgr_thread :MAIN :EVENT :SIGHUP_HANDLER: Received SIGHUP.... initiating export list reload\n"
COMPLETE = _P + "reread_exports :CONFIG :EVENT :Reread exports complete\n"
LISTING = _P + "reread_exports :EXPORT :INFO :Exports after update\n"
ROOT = _P + "reread_exports :EXPORT :INFO :Export     0 pseudo (/) with path (/) and tag ((null)) perms (...)\n"
_LIST = _P + "reread_exports :EXPORT :INFO :"
VM = (_LIST + "Export     1 pseudo (/srv/vm) with path (/srv/vm) and tag ((null)) perms (...)\n"
      + _LIST + "   NETWORK_CLIENT: 198.18.0.11/32 (options=033023e2/0001f3ff root_squash)\n")
CASE = (_LIST + "Export     2 pseudo (/srv/vm/case) with path (/srv/vm/case) and tag ((null)) perms (...)\n"
        + _LIST + "   MATCH_ANY_CLIENT: * (options=033023e2/0001f3ff root_squash)\n")
CLASH = _P + "export_commit_common :CONFIG :CRIT :Path for export update 2 /srv/vm/other doesn't match /srv/vm/case\n"
LATE_ERRORS = (_P + "config_errs_to_log :CONFIG :CRIT :Config File (/etc/ganesha/exports.conf:20): "
               "1 validation errors in block EXPORT\n")
SYNTAX = _P + "ganesha_yyerror :CONFIG :CRIT :Config file (/etc/ganesha/ganesha.conf:9) error: syntax error\n"

BOTH = {1: "/srv/vm", 2: "/srv/vm/case"}

#: A process that, on each SIGHUP, writes its reload's lines to stderr (after a pause, the rest).
STAND_IN = """
import signal, sys, time
first, rest, pause = open(sys.argv[1]).read(), open(sys.argv[2]).read(), float(sys.argv[3])
def hup(*_):
    sys.stderr.write(first); sys.stderr.flush()
    time.sleep(pause)
    sys.stderr.write(rest); sys.stderr.flush()
    if 'EXIT' in rest:
        sys.exit(1)
signal.signal(signal.SIGHUP, hup)
print('ready', flush=True)
while True:
    time.sleep(0.05)
"""


class StandIns:
    """Starts stand-ins for ganesha; each logs `first` on SIGHUP, then `rest` `pause` s later."""

    def __init__(self, tmp_path: Path) -> None:
        self._dir = tmp_path
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, first: str, rest: str = "", pause: float = 0.0) -> int:
        (self._dir / "first").write_text(first)
        (self._dir / "rest").write_text(rest)
        with (self._dir / "ganesha.log").open("a") as log:
            argv = [sys.executable, "-c", STAND_IN, str(self._dir / "first"), str(self._dir / "rest"), str(pause)]
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True)
        self.procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        return proc.pid


@pytest.fixture
def ganesha(tmp_path: Path) -> Iterator[StandIns]:
    stand_ins = StandIns(tmp_path)
    yield stand_ins
    for proc in stand_ins.procs:
        proc.kill()
        proc.wait()


def test_the_listing_names_what_ganesha_serves_without_the_pseudo_root() -> None:
    assert ganesha_reload.served_exports(HUP + COMPLETE + LISTING + ROOT + VM + CASE) == BOTH
    assert ganesha_reload.served_exports(HUP + COMPLETE) is None


def test_ganesha_6_listing_with_the_exports_address_is_read_too() -> None:
    """nfs-ganesha 6.5 (Debian 13) writes the export's address before its id (recorded there)."""
    p6 = "02/12/2026 00:19:42 : epoch 6b0f641c : vm : nfs-ganesha-7846[sigmgr] reread_exports :EXPORT :INFO :"
    log = (HUP + COMPLETE + LISTING
           + p6 + "Export 0x5609fb849828     1 pseudo (/srv/vm) with path (/srv/vm) and tag ((null)) perms (...)\n"
           + p6 + "Export 0x5609fb84f6a8     0 pseudo (/) with path (/) and tag ((null)) perms (...)\n")
    assert ganesha_reload.served_exports(log) == {1: "/srv/vm"}


def test_only_the_last_listing_counts() -> None:
    log = HUP + COMPLETE + LISTING + VM + CASE + HUP + COMPLETE + LISTING + ROOT + VM
    assert ganesha_reload.served_exports(log) == {1: "/srv/vm"}


def test_an_id_clash_is_rejected() -> None:
    assert ganesha_reload.config_errors(HUP + CLASH + COMPLETE) == [
        "Path for export update 2 /srv/vm/other doesn't match /srv/vm/case"]


def test_mismatches_among_the_managed_ids_only() -> None:
    served = {1: "/srv/vm/", 60000: "/srv/harness"}  # 60000: the harness's own ganesha export
    assert ganesha_reload.mismatches(served, {1: "/srv/vm"}, managed=[1, 2]) == []
    assert ganesha_reload.mismatches(served, BOTH, managed=[1, 2]) == [
        "Export_Id 2: not served, expected /srv/vm/case"]
    assert ganesha_reload.mismatches({1: "/srv/vm", 2: "/srv/vm/case"}, {1: "/srv/vm"}, managed=[1, 2]) == [
        "Export_Id 2: /srv/vm/case, expected not served"]


def test_reload_returns_once_ganesha_serves_the_table(ganesha: StandIns) -> None:
    pid = ganesha.start(HUP + COMPLETE + LISTING + ROOT + VM + CASE)
    ganesha_reload.reload(pid, BOTH, managed=[1, 2], timeout=5)


def test_errors_logged_after_complete_are_waited_for(ganesha: StandIns) -> None:
    """ganesha writes a reload's config errors after its "complete" line; the wait must not end before them."""
    pid = ganesha.start(HUP + COMPLETE + LISTING + ROOT + VM + CASE, LATE_ERRORS, pause=0.1)
    with pytest.raises(LabError, match=r"rejected exports: Config File .*: 1 validation errors in block EXPORT"):
        ganesha_reload.reload(pid, BOTH, managed=[1, 2], timeout=5)


def test_an_export_missing_from_the_listing_fails_without_error_lines(ganesha: StandIns) -> None:
    pid = ganesha.start(HUP + COMPLETE + LISTING + ROOT + VM)
    with pytest.raises(LabError, match="does not serve the export table: Export_Id 2: not served, expected /srv/vm/c"):
        ganesha_reload.reload(pid, BOTH, managed=[1, 2], timeout=5)


def test_a_syntax_error_unexports_everything_and_fails(ganesha: StandIns) -> None:
    """Recorded: on a syntax error ganesha 4.3 still says "complete", and then serves nothing."""
    pid = ganesha.start(HUP + SYNTAX + COMPLETE + LISTING + ROOT)
    with pytest.raises(LabError, match="syntax error"):
        ganesha_reload.reload(pid, BOTH, managed=[1, 2], timeout=5)


def test_without_the_listing_the_reload_is_not_taken_on_trust(ganesha: StandIns) -> None:
    pid = ganesha.start(HUP + COMPLETE)
    with pytest.raises(LabError, match="did not list its exports"):
        ganesha_reload.reload(pid, BOTH, managed=[1, 2], timeout=5)


def test_a_reload_that_never_ends_times_out_naming_ganesha_and_its_line(ganesha: StandIns) -> None:
    pid = ganesha.start(HUP)
    with pytest.raises(WaitTimeout) as info:
        ganesha_reload.reload(pid, BOTH, managed=[1, 2], timeout=0.5)
    msg = str(info.value)
    assert f"ganesha (pid {pid})" in msg
    assert "done re-reading its exports" in msg
    assert "SIGHUP_HANDLER: Received SIGHUP" in msg


def test_ganesha_ending_during_the_reload_is_named(ganesha: StandIns) -> None:
    pid = ganesha.start(HUP, "EXIT\n", pause=0.05)
    with pytest.raises(LabError, match=rf"ganesha \(pid {pid}\) ended during the reload"):
        ganesha_reload.reload(pid, BOTH, managed=[1, 2], timeout=5)


def test_an_unreadable_log_is_an_error_not_a_success() -> None:
    with pytest.raises(LabError, match="cannot check its reload"):
        ganesha_reload.reload(2**22 + 12345, BOTH, managed=[1, 2], timeout=1)
