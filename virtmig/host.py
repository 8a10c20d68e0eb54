"""How the harness reaches a host: one small `Host` interface, over SSH or on this machine.

Everything the harness does on a hypervisor or NFS server goes through a
`Host` (after pytest-testinfra), so quoting and error reporting are decided
here once:

* commands are argv lists, quoted with `shlex.join` in this module and nowhere
  else; a value never becomes shell syntax by accident;
* pipelines are literal `sh` scripts (`Host.run_script`) that take values as
  positional parameters, again with no interpolation;
* every command answers with the same `CommandResult`, and fails with the
  same `CommandError` / `CommandTimeout`, whichever transport ran it.

`Host` is the protocol code annotates with.  It is implemented by
`virtmig.sshhost.SshHost` (a real host, over SSH) and `virtmig.localhost.LocalHost`
(this machine, with subprocesses).  This module imports no SSH stack, so
that the lab's helper scripts can answer with the same `CommandResult`
without loading Fabric and paramiko.
"""

from __future__ import annotations

import shlex
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

#: How much of stderr a CommandError message quotes (the end is what explains).
_STDERR_TAIL = 2000
_COMMAND_SHOWN = 1000


def _clip(text: str, limit: int, *, tail: bool) -> str:
    if len(text) <= limit:
        return text
    return "..." + text[-limit:] if tail else text[:limit] + "..."


class CommandError(RuntimeError):
    """A command on a host exited non-zero; the message says where, what and why."""

    def __init__(self, result: CommandResult) -> None:
        self.result = result
        stderr = _clip(result.stderr.rstrip(), _STDERR_TAIL, tail=True) or "(empty)"
        super().__init__(
            f"{result.host}: command failed with rc={result.rc}: "
            f"{_clip(result.command, _COMMAND_SHOWN, tail=False)}\nstderr: {stderr}"
        )


class CommandTimeout(TimeoutError):
    """A command on a host outlived its timeout (its channel was closed, or its process group killed)."""

    def __init__(self, host: str, command: str, timeout: float, stdout: str, stderr: str) -> None:
        self.host, self.command, self.timeout = host, command, timeout
        self.stdout, self.stderr = stdout, stderr
        super().__init__(f"{host}: command timed out after {timeout:g} s: {_clip(command, _COMMAND_SHOWN, tail=False)}")


class HostConnectionError(ConnectionError):
    """The host cannot be reached: for SSH, unreachable, authentication refused, or host key unknown/changed."""


@dataclass(frozen=True)
class CommandResult:
    """What a command on a host did, whichever transport ran it.

    `command` is the command as quoted shell (for messages and logs); `host` the host's name.
    """

    rc: int
    stdout: str
    stderr: str
    command: str
    host: str = ""

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def check(self) -> CommandResult:
        """Return self if the command succeeded, else raise `CommandError`."""
        if not self.ok:
            raise CommandError(self)
        return self


def temp_name(path: str) -> str:
    """A fresh name beside *path* for an atomic replace (same directory: same file system, so mv is a rename)."""
    return f"{path}.virtmig-{uuid.uuid4().hex[:12]}.tmp"


def command_line(argv: Sequence[str]) -> str:
    """argv as one POSIX shell line, each word quoted: what a login shell must be sent, and what messages show."""
    if not argv:
        raise ValueError("Host.run needs a command")
    return shlex.join(argv)


def script_argv(script: str, args: Sequence[str]) -> list[str]:
    """The argv that runs a literal sh script with *args* as "$1", "$2", ... (never formatted into it)."""
    return ["sh", "-c", script, "sh", *args]


def script_shown(script: str, args: Sequence[str]) -> str:
    """How a `run_script` call is named in messages: the arguments, then the script as a here-document."""
    return f"sh -c <<'SCRIPT' {shlex.join(args)}\n{script.rstrip()}\nSCRIPT"


class LineChannel:
    """A long-lived command on a host that answers each line it is sent with one line.

    Why: some measurements need many short exchanges with a host (the clock
    offsets, `virtmig.migration.clocks`), and a fresh command per exchange
    costs a whole SSH exec (tens of ms) that then sits in every figure.  One
    command kept open answers in the time the link takes.  The transports
    (`SshHost.open_channel`, `LocalHost.open_channel`) supply the byte stream;
    the line handling is here, once.

    send(data): write all of it; recv(timeout): up to a few KiB, b"" at end of
    stream, TimeoutError when nothing came in time; end(): close the stream
    and reap the command.
    """

    def __init__(self, host: str, command: str, send: Callable[[bytes], None],
                 recv: Callable[[float], bytes], end: Callable[[], None]) -> None:
        self.host, self.command = host, command
        self._send, self._recv, self._end = send, recv, end
        self._buffer = b""
        self.closed = False

    def exchange(self, line: str, timeout: float) -> str:
        """Send *line* (a newline is added) and return the next line the command prints, without its newline."""
        if self.closed:
            raise ConnectionError(f"{self.host}: channel to {self.command!r} is closed")
        self._send(line.encode() + b"\n")
        return self.read_line(timeout)

    def read_line(self, timeout: float) -> str:
        """The next line the command prints (CommandTimeout after *timeout* s, ConnectionError at its end)."""
        while b"\n" not in self._buffer:
            try:
                data = self._recv(timeout)
            except TimeoutError:
                raise CommandTimeout(self.host, self.command, timeout, self._buffer.decode(errors="replace"),
                                     "") from None
            if not data:
                raise ConnectionError(f"{self.host}: {self.command!r} ended; it had printed "
                                      f"{self._buffer.decode(errors='replace')!r}")
            self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode(errors="replace")

    def close(self) -> None:
        """End the command (its stdin closes first, so a read loop ends by itself)."""
        if not self.closed:
            self.closed = True
            self._end()


@runtime_checkable
class Host(Protocol):
    """What the harness needs of a host, whatever reaches it: this is the type code annotates with.

    Implemented by `virtmig.sshhost.SshHost` (a real host over SSH), `virtmig.localhost.LocalHost`
    (this machine) and the tests' recorded replay.  Kept small on purpose:
    anything a transport cannot do the same way on all of them (SFTP
    downloads, a qemu+ssh URI) stays on the class that has it.
    Runtime-checkable so that a hook can tell a host fixture from other values.
    """

    @property
    def name(self) -> str:
        """The host's name as the operator gave it (an ssh alias, or a label); messages use it."""
        ...

    def run(self, *argv: str, check: bool = True, timeout: float | None = None,
            stdin: str | None = None) -> CommandResult:
        """Run argv (no shell) and wait; stdin is *stdin* then EOF, else empty.

        With check, a non-zero exit raises `CommandError`; a timeout always
        raises `CommandTimeout`.  A missing program is rc 127, as from a shell.
        """
        ...

    def run_script(self, script: str, *, args: Sequence[str] = (), check: bool = True,
                   timeout: float | None = None) -> CommandResult:
        """Run a literal sh script with *args* as its positional parameters, with an empty stdin."""
        ...

    def read_text(self, path: str) -> str:
        """The file's content, decoded as UTF-8 (FileNotFoundError if absent)."""
        ...

    def write_text(self, path: str, text: str, mode: int | None = None) -> None:
        """Replace the file atomically; its mode is *mode*, else the old file's, else the default."""
        ...

    def put(self, local: Path, path: str, mode: int | None = None) -> None:
        """Copy a file of this machine to *path* on the host; mode *mode*, else the local file's."""
        ...


@runtime_checkable
class ChannelHost(Host, Protocol):
    """A `Host` that can also keep a command open and talk to it line by line (SshHost, LocalHost)."""

    def open_channel(self, script: str, *, args: Sequence[str] = ()) -> LineChannel:
        """Start a literal sh script (as `run_script` does) and keep it open: see `LineChannel`."""
        ...
