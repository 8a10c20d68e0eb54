"""The tests' one stand-in host: a `virtmig.host.Host` that replays recorded command output.

Commands are matched by their exact argv (run) or by the script's first line
and its arguments (run_script); an unrecorded command answers like a missing
tool (rc 127), which is itself evidence (e.g. no getenforce: no SELinux).
Answers are real `CommandResult`s and `check` raises the real `CommandError`,
so code under test sees exactly what a `SshHost` would give it.

Files live in `files` (read_text / write_text / put).  A recording may be a
function instead of a tuple, answered at call time: for a host whose state
the test changes as it goes (a daemon that re-reads its config on SIGHUP).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeAlias

from virtmig.host import CommandResult, script_argv

DATA = Path(__file__).resolve().parent / "data"

#: What a command printed: (rc, stdout, stderr).
Recorded: TypeAlias = tuple[int, str, str]
#: A recording, or a function giving it when the command runs.
Answer: TypeAlias = Recorded | Callable[[], Recorded]


class ReplayHost:
    """Answers commands from a table {command line: answer}, and files from {path: text}."""

    def __init__(self, name: str, recorded: Mapping[str, Answer] | None = None,
                 files: Mapping[str, str] | None = None) -> None:
        self.name = name
        #: the recordings (a copy: a test changes them here, as the host's state changes)
        self.recorded: dict[str, Answer] = dict(recorded or {})
        #: the host's files by path (a copy, likewise)
        self.files: dict[str, str] = dict(files or {})
        #: every command line asked, in order (run_script calls as their `script_key`)
        self.calls: list[str] = []
        #: every file written, in order
        self.writes: list[str] = []

    def __repr__(self) -> str:
        return f"ReplayHost({self.name!r})"

    def _answer(self, line: str, shown: str, check: bool) -> CommandResult:
        self.calls.append(line)
        answer = self.recorded.get(line, (127, "", f"sh: 1: {line.split()[0]}: not found\n"))
        rc, out, err = answer() if callable(answer) else answer
        result = CommandResult(rc=rc, stdout=out, stderr=err, command=shown, host=self.name)
        return result.check() if check else result

    def run(self, *argv: str, check: bool = True, timeout: float | None = None,
            stdin: str | None = None) -> CommandResult:
        line = shlex.join(argv)
        return self._answer(line, line, check)

    def run_script(self, script: str, *, args: Sequence[str] = (), check: bool = True,
                   timeout: float | None = None) -> CommandResult:
        return self._answer(script_key(script, args), shlex.join(script_argv(script, args)), check)

    def read_text(self, path: str) -> str:
        try:
            return self.files[path]
        except KeyError:
            raise FileNotFoundError(2, "No such file", path) from None

    def write_text(self, path: str, text: str, mode: int | None = None) -> None:
        self.writes.append(path)
        self.files[path] = text

    def put(self, local: Path, path: str, mode: int | None = None) -> None:
        self.write_text(path, local.read_bytes().decode(errors="replace"))


def script_key(script: str, args: Sequence[str] = ()) -> str:
    """How a run_script call is named in a recording: its first non-blank line, then its args."""
    first = next(line for line in script.splitlines() if line.strip())
    return shlex.join(["script:" + first.strip(), *args])


def data(*parts: str) -> str:
    return DATA.joinpath(*parts).read_text()


def handwritten_rhel9(name: str) -> str:
    """A file of the hand-written RHEL 9 SELinux set (tests/data/selinux/rhel9-handwritten/README.md says why)."""
    return data("selinux", "rhel9-handwritten", name)


def captured(*parts: str) -> tuple[str, Recorded]:
    """A capture of a real host (tests/data/selinux/debian12-captured/README.md): its command and what it gave.

    The file is `# COMMAND`, the output (stdout and stderr as the terminal
    showed them, so all of it is returned as stdout), then `# rc=N`.
    """
    lines = data(*parts).splitlines(keepends=True)
    if not (lines and lines[0].startswith("# ") and lines[-1].startswith("# rc=")):
        raise ValueError(f"{'/'.join(parts)} is not a capture (# COMMAND ... # rc=N)")
    return lines[0][2:].strip(), (int(lines[-1].strip()[5:]), "".join(lines[1:-1]), "")
