"""Reload the lab's nfs-ganesha with SIGHUP and check which exports it serves afterwards.

ganesha 4.x and 6.x re-read their config on SIGHUP and add, update and remove
exports.  Only its log says how that went: `showmount -e` cannot check
(ganesha lists an export only to the clients it lets mount it, and the
server itself is none of them), and the lab runs no D-Bus for ganesha's own
ShowExports.  So the exports file ends with `LOG_BLOCK`, which makes ganesha
list the exports it serves after every reload ("Exports after update", its
EXPORT component at INFO), and `reload` reads that list from the daemon's
stderr (/proc/PID/fd/2, the node's ganesha.log).  An export ganesha refused
is missing from the list, whatever its error lines say.

ganesha writes no line at the end of a reload: the list and the config
errors follow "Reread exports complete" (or a failed re-read's "Error while
parsing ..."), written by the same thread.  So the reload counts as done when
one of those lines is in and the log has then been quiet for `QUIET_S`.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Collection, Mapping

from virtmig.lab.netns import LabError, is_alive
from virtmig.waiters import wait_for

#: Appended to the exports file: ganesha then lists its exports in its log after each reload.
LOG_BLOCK = "# ganesha lists the exports it serves after each reload; exportfs checks that list.\n" \
            "LOG {\n    COMPONENTS {\n        EXPORT = INFO;\n    }\n}\n"
#: How long the log must stay quiet after the reload's last milestone (see the module docstring).
QUIET_S = 0.3

_COMPLETE = "Reread exports complete"
_FAILED = "Error while parsing"
_LISTING = ":EXPORT :INFO :Exports after update"
#: 4.3 writes "Export     1 pseudo (...)", 6.5 "Export 0x5609fb849828     1 pseudo (...)" (the export's address first).
_LISTED = re.compile(r":EXPORT :INFO :Export +(?:0x[0-9a-f]+ +)?(\d+) pseudo \(.*?\) with path \((.*?)\) and tag")
#: The pseudo file system's root, which ganesha serves whatever the config says.
_PSEUDO_ROOT_ID = 0
#: A log line's message: what follows its " :COMPONENT :LEVEL :" (components may hold spaces).
_MESSAGE = re.compile(r" :[A-Z0-9 _]+ :[A-Z_]+ :(.*)$")


def served_exports(log: str) -> dict[int, str] | None:
    """Export_Id -> path as ganesha's last "Exports after update" list in `log` names them; None if none."""
    start = log.rfind(_LISTING)
    if start < 0:
        return None
    found = {int(m.group(1)): m.group(2) for m in _LISTED.finditer(log, start)}
    found.pop(_PSEUDO_ROOT_ID, None)
    return found


def config_errors(log: str) -> list[str]:
    """The config errors ganesha logged (its CRIT/MAJ lines), as their messages."""
    return [_message(line) for line in log.splitlines()
            if ":CONFIG :CRIT" in line or ":CONFIG :MAJ" in line or "EXPORT :CRIT" in line]


def _message(line: str) -> str:
    match = _MESSAGE.search(line)
    return match.group(1) if match else line


def _path(path: str | None) -> str | None:
    return None if path is None else path.rstrip("/") or "/"


def mismatches(served: Mapping[int, str], expected: Mapping[int, str], managed: Collection[int]) -> list[str]:
    """How the served exports differ from `expected`, among the Export_Ids `managed` (and `expected`) only.

    Other ids are someone else's: the harness's own ganesha provisioning
    writes its EXPORT blocks (60000 up) into ganesha.conf on the same server.
    """
    wrong = []
    for export_id in sorted(set(managed) | set(expected)):
        want, got = _path(expected.get(export_id)), _path(served.get(export_id))
        if want != got:
            wrong.append(f"Export_Id {export_id}: {got or 'not served'}, expected {want or 'not served'}")
    return wrong


def reload(pid: int, expected: Mapping[int, str], managed: Collection[int], *, timeout: float) -> None:
    """SIGHUP ganesha (`pid`); return once it serves exactly `expected` among the ids it manages.

    Raises LabError when its log cannot be read (the reload could not be
    checked), when it rejected the config, or when it serves other exports;
    `virtmig.waiters.WaitTimeout` when the reload does not end in time.
    """
    try:
        log = open(f"/proc/{pid}/fd/2", "rb")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise LabError(f"cannot read ganesha's log (pid {pid}), so cannot check its reload: {exc}") from exc
    text = ""
    with log:
        log.seek(0, os.SEEK_END)
        os.kill(pid, signal.SIGHUP)
        last_growth = time.monotonic()

        def done() -> str | None:
            nonlocal text, last_growth
            chunk = log.read().decode(errors="replace")
            now = time.monotonic()
            if chunk:
                text, last_growth = text + chunk, now
            if (_COMPLETE in text or _FAILED in text) and now - last_growth >= QUIET_S:
                return text
            if not is_alive(pid):
                raise LabError(f"ganesha (pid {pid}) ended during the reload: {_last_line(text)}")
            return None

        wait_for(done, target=f"ganesha (pid {pid})", state=f"done re-reading its exports (log quiet for {QUIET_S} s)",
                 timeout=timeout, interval=0.05, describe=lambda: _last_line(text))
    errors = config_errors(text)
    if errors or _COMPLETE not in text:
        raise LabError(f"ganesha (pid {pid}) rejected exports: {'; '.join(errors) or _last_line(text)}")
    served = served_exports(text)
    if served is None:
        raise LabError(f"ganesha (pid {pid}) did not list its exports after the reload (no {_LISTING!r} in its log)")
    wrong = mismatches(served, expected, managed)
    if wrong:
        raise LabError(f"after the reload ganesha (pid {pid}) does not serve the export table: {'; '.join(wrong)}")


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return _message(lines[-1]) if lines else "nothing logged since the SIGHUP"
