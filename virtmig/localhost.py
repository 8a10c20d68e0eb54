"""This machine as a `virtmig.host.Host`: commands run as subprocesses, as pytest-testinfra's local backend does.

Why a second transport: code written against `Host` (evidence gathering,
export provisioning, clock offsets) can then be exercised on the real
kernel and real tools without an sshd, and the lab's namespace runner
answers with the same `CommandResult`.  It behaves as `SshHost` does, so a
caller cannot tell them apart by their answers:

* argv runs directly (no shell, so nothing to quote); a missing program is
  rc 127 and an unexecutable one rc 126, as a remote shell would say;
* stdin is the text given, then EOF, else empty (never the harness's own);
* a command killed by a signal is rc 128+N, as a shell reports it;
* on timeout the command's whole process group is killed (the SSH channel
  closing) and `CommandTimeout` carries what it had printed;
* files are replaced atomically, with their mode set before any data lands.

Commands run in the caller's working directory and environment.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path

from virtmig.host import (
    CommandResult,
    CommandTimeout,
    LineChannel,
    command_line,
    script_argv,
    script_shown,
    temp_name,
)

#: What a shell answers for a program it cannot find / cannot execute.
_NOT_FOUND_RC = 127
_NOT_EXECUTABLE_RC = 126


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", errors="replace")


class LocalHost:
    """Runs commands on the machine the harness runs on, under *name* in messages (default "localhost")."""

    def __init__(self, name: str = "localhost") -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"LocalHost({self.name!r})"

    # -- commands -----------------------------------------------------------

    def run(self, *argv: str, check: bool = True, timeout: float | None = None,
            stdin: str | None = None) -> CommandResult:
        """Run argv here and wait for it (see `virtmig.host.Host.run`)."""
        return self._exec(list(argv), command_line(argv), check=check, timeout=timeout, stdin=stdin)

    def run_script(self, script: str, *, args: Sequence[str] = (), check: bool = True,
                   timeout: float | None = None) -> CommandResult:
        """Run a literal sh script as ``sh -c SCRIPT sh ARGS...``, with an empty stdin."""
        return self._exec(script_argv(script, args), script_shown(script, args), check=check, timeout=timeout,
                          stdin=None)

    def _exec(self, argv: list[str], shown: str, *, check: bool, timeout: float | None,
              stdin: str | None) -> CommandResult:
        try:
            # A session of its own: on timeout the whole group goes, as when an SSH channel closes.
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        except FileNotFoundError:
            return self._result(_NOT_FOUND_RC, "", f"{argv[0]}: not found\n", shown, check)
        except PermissionError:
            return self._result(_NOT_EXECUTABLE_RC, "", f"{argv[0]}: Permission denied\n", shown, check)
        try:
            out, err = proc.communicate(None if stdin is None else stdin.encode(), timeout=timeout)
        except subprocess.TimeoutExpired:
            out, err = self._kill(proc)
            raise CommandTimeout(self.name, shown, float(timeout or 0), _text(out), _text(err)) from None
        except BaseException:
            self._kill(proc)
            raise
        rc = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
        return self._result(rc, _text(out), _text(err), shown, check)

    def open_channel(self, script: str, *, args: Sequence[str] = ()) -> LineChannel:
        """Start a literal sh script here and keep it open (`LineChannel`); stderr is discarded."""
        proc = subprocess.Popen(script_argv(script, args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        assert proc.stdin is not None and proc.stdout is not None
        stdin, stdout = proc.stdin.fileno(), proc.stdout.fileno()

        def send(data: bytes) -> None:
            view = memoryview(data)
            while view:
                view = view[os.write(stdin, view):]

        def recv(timeout: float) -> bytes:
            ready, _, _ = select.select([stdout], [], [], timeout)
            if not ready:
                raise TimeoutError
            return os.read(stdout, 4096)

        def end() -> None:
            proc.stdin.close()  # type: ignore[union-attr]
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:  # it ignored its end of input: as a closed SSH channel would
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            proc.stdout.close()  # type: ignore[union-attr]

        return LineChannel(self.name, script_shown(script, args), send, recv, end)

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
        """Kill the command's process group and collect what it had printed."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.communicate()

    def _result(self, rc: int, stdout: str, stderr: str, shown: str, check: bool) -> CommandResult:
        result = CommandResult(rc=rc, stdout=stdout, stderr=stderr, command=shown, host=self.name)
        return result.check() if check else result

    # -- files --------------------------------------------------------------

    def read_text(self, path: str) -> str:
        """The file's content, decoded as UTF-8."""
        return Path(path).read_bytes().decode()

    def write_text(self, path: str, text: str, mode: int | None = None) -> None:
        """Replace *path* atomically (temp file in the same directory, then rename).

        The mode is *mode*, else the old file's, else the default (umask);
        it is set before any data is written, as `SshHost.write_text` does.
        """
        if mode is None:
            with contextlib.suppress(FileNotFoundError):
                mode = stat.S_IMODE(os.stat(path).st_mode)
        tmp = temp_name(path)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if mode is not None else 0o666)
        try:
            with os.fdopen(fd, "wb") as f:
                if mode is not None:
                    os.fchmod(f.fileno(), mode)
                f.write(text.encode())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):  # keep the original error
                os.unlink(tmp)
            raise

    def put(self, local: Path, path: str, mode: int | None = None) -> None:
        """Copy *local* to *path*; set *mode* if given, else keep the local mode."""
        shutil.copyfile(local, path)
        os.chmod(path, stat.S_IMODE(local.stat().st_mode) if mode is None else mode)

    def get(self, path: str, local: Path) -> None:
        """Copy *path* to *local* (as `SshHost.get`)."""
        shutil.copyfile(path, local)
