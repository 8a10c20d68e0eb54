"""A fake Host that replays recorded CommandResults, for the diagnosis's parsing tests.

Commands are matched by their exact argv (run) or by the script's first line
and its arguments (run_script); an unrecorded command answers like a missing
tool (rc 127), which is itself evidence (e.g. no getenforce: no SELinux).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from virtmig.host import CommandError, CommandResult

DATA = Path(__file__).resolve().parent / "data"


class ReplayHost:
    """Answers commands from a table {command line: (rc, stdout, stderr)}."""

    def __init__(self, name: str, recorded: dict[str, tuple[int, str, str]]) -> None:
        self.name = name
        self.recorded = recorded
        self.calls: list[str] = []

    def _answer(self, line: str, check: bool) -> CommandResult:
        self.calls.append(line)
        rc, out, err = self.recorded.get(line, (127, "", f"sh: 1: {line.split()[0]}: not found\n"))
        result = CommandResult(rc=rc, stdout=out, stderr=err, command=line, host=self.name)
        if check and not result.ok:
            raise CommandError(result)
        return result

    def run(self, *argv: str, check: bool = True, timeout: float | None = None,
            stdin: str | None = None) -> CommandResult:
        return self._answer(shlex.join(argv), check)

    def run_script(self, script: str, *, args: Sequence[str] = (), check: bool = True,
                   timeout: float | None = None) -> CommandResult:
        return self._answer(script_key(script, args), check)


def script_key(script: str, args: Sequence[str] = ()) -> str:
    """How a run_script call is named in a recording: its first non-blank line, then its args."""
    first = next(line for line in script.splitlines() if line.strip())
    return shlex.join(["script:" + first.strip(), *args])


def data(*parts: str) -> str:
    return DATA.joinpath(*parts).read_text()
