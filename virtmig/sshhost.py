"""A `virtmig.host.Host` reached over SSH (Fabric), as the operator's ssh config says.

The connection follows the operator's ssh config (HostName, User, Port,
IdentityFile, known hosts) and refuses unknown host keys, unlike Fabric's
default of trusting any key on first use.  Commands are quoted by
`virtmig.host` for the remote login shell; answers and errors are the
interface's own (`CommandResult`, `CommandError`, `CommandTimeout`).

Kept apart from `virtmig.host` because of what it imports: Fabric, Invoke
and paramiko are for talking to real hosts, not for the lab's helper
scripts, which use the interface's types only.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import fabric
import invoke
import paramiko

from virtmig import sshconfig
from virtmig.host import (
    CommandResult,
    CommandTimeout,
    HostConnectionError,
    LineChannel,
    command_line,
    script_argv,
    script_shown,
    temp_name,
)

#: Bounds on every SSH step, so that no wait on a host is unbounded.  The
#: connect timeout is the config's ConnectTimeout when it names one; the
#: keepalive interval its ServerAliveInterval.  A command with no timeout of
#: its own gets DEFAULT_COMMAND_TIMEOUT_S (long enough for any step the
#: harness runs; short enough that a hung NFS operation ends the run's
#: wait); an SFTP call that gets no answer for SFTP_TIMEOUT_S fails.
DEFAULT_CONNECT_TIMEOUT_S = 15.0
DEFAULT_KEEPALIVE_S = 10
DEFAULT_COMMAND_TIMEOUT_S = 900.0
SFTP_TIMEOUT_S = 60.0

#: Known-hosts files OpenSSH reads when the config names none.
_DEFAULT_USER_KNOWN_HOSTS = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
_DEFAULT_GLOBAL_KNOWN_HOSTS = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")


def ssh_wrapper(config: Path, dest: Path) -> Path:
    """Write an executable *dest* that runs ``ssh -F CONFIG "$@"``; return *dest*.

    libvirt spawns plain `ssh` for qemu+ssh URIs and has no way to pass ``-F``;
    its ``command=`` URI parameter can name this wrapper instead, so libvirt
    sees the same aliases and known hosts as `SshHost`.  Written atomically so a
    concurrent libvirt never executes a half-written script.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    tmp.write_text(f'#!/bin/sh\nexec ssh -F {command_line([str(config.absolute())])} "$@"\n')
    tmp.chmod(0o755)
    os.replace(tmp, dest)
    return dest


class SshHost:
    """A `Host` named as for `ssh NAME`, optionally with an explicit ssh config file (``-F``).

    The SSH connection opens on first use and is reused; `close` (or leaving
    the ``with`` block) ends it.  Not thread-safe: give each thread its own SshHost.
    """

    def __init__(self, name: str, ssh_config: Path | None = None, *, ssh_wrapper: Path | None = None) -> None:
        #: The ssh name the operator gave (an alias or a host name).
        self.name = name
        #: The explicit ssh config file, or None for OpenSSH's defaults.
        self.ssh_config = ssh_config
        self._ssh_wrapper = ssh_wrapper
        self._wrapper_dir: Path | None = None
        self._conn: Any = None

    def __repr__(self) -> str:
        return f"SshHost({self.name!r}, ssh_config={self.ssh_config!r})"

    def __enter__(self) -> SshHost:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- connection ---------------------------------------------------------

    def _connection(self) -> Any:
        """The open Fabric Connection, built and opened on first use."""
        if self._conn is None:
            cfg = sshconfig.load(self.ssh_config)
            opts = sshconfig.lookup(cfg, self.name)
            connect_timeout = float(opts.get("connecttimeout", DEFAULT_CONNECT_TIMEOUT_S))
            connect_kwargs: dict[str, Any] = {"banner_timeout": connect_timeout, "auth_timeout": connect_timeout,
                                              "channel_timeout": connect_timeout}
            if str(opts.get("identitiesonly", "no")).lower() == "yes":
                connect_kwargs.update(allow_agent=False, look_for_keys=False)
            # lazy=True: no Fabric/Invoke config files or environment are read;
            # everything comes from the ssh config given here.
            conn = fabric.Connection(self.name, config=fabric.Config(ssh_config=cfg, lazy=True),
                                     connect_timeout=connect_timeout, connect_kwargs=connect_kwargs)
            _check_host_keys(conn)
            try:
                conn.open()
            except (paramiko.SSHException, OSError, EOFError) as exc:
                conn.close()
                raise HostConnectionError(
                    f"{self.name}: cannot ssh to {conn.user}@{conn.host}:{conn.port}: {exc or type(exc).__name__}"
                ) from exc
            conn.transport.set_keepalive(int(opts.get("serveraliveinterval", DEFAULT_KEEPALIVE_S)))
            self._conn = conn
        return self._conn

    def _sftp(self) -> Any:
        """The connection's SFTP client, whose calls fail after SFTP_TIMEOUT_S without an answer."""
        sftp = self._connection().sftp()
        sftp.get_channel().settimeout(SFTP_TIMEOUT_S)
        return sftp

    def close(self) -> None:
        """Close the SSH connection (if open) and remove any wrapper this SshHost created."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._wrapper_dir is not None:
            shutil.rmtree(self._wrapper_dir, ignore_errors=True)
            self._wrapper_dir = None

    # -- commands -----------------------------------------------------------

    def run(self, *argv: str, check: bool = True, timeout: float | None = None,
            stdin: str | None = None) -> CommandResult:
        """Run argv on the host (quoted here, for the remote login shell) and wait for it.

        stdin, if given, is sent and then closed; otherwise the command sees
        an empty stdin (never the harness's own).  With check (the default) a
        non-zero exit raises `CommandError`; a timeout always raises `CommandTimeout`.
        Without a timeout the command gets DEFAULT_COMMAND_TIMEOUT_S: none runs unbounded.
        """
        line = command_line(argv)
        return self._exec(line, line, check=check, timeout=timeout, stdin=stdin)

    def run_script(self, script: str, *, args: Sequence[str] = (), check: bool = True,
                   timeout: float | None = None) -> CommandResult:
        """Run a literal sh script as ``sh -c SCRIPT sh ARGS...``, with an empty stdin.

        The script is never formatted: values reach it as "$1", "$2", ... and
        are quoted by `run`'s rules.  It travels as an argument, not on stdin:
        a command that ends before the stdin writer has sent anything closes
        the channel under it (paramiko's "Socket is closed").
        """
        line = command_line(script_argv(script, args))
        return self._exec(line, script_shown(script, args), check=check, timeout=timeout, stdin=None)

    def open_channel(self, script: str, *, args: Sequence[str] = ()) -> LineChannel:
        """Start a literal sh script on its own channel of this connection and keep it open (`LineChannel`).

        The channel shares the SSH connection, so it costs no new handshake;
        it may be used from another thread than this SshHost's commands
        (paramiko multiplexes channels), but each channel from one thread.
        """
        chan = self._connection().client.get_transport().open_session()
        chan.exec_command(command_line(script_argv(script, args)))

        def recv(timeout: float) -> bytes:
            chan.settimeout(timeout)  # recv then raises socket.timeout, which is TimeoutError
            data: bytes = chan.recv(4096)
            return data

        def end() -> None:
            with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                chan.shutdown_write()
            chan.close()

        return LineChannel(self.name, script_shown(script, args), chan.sendall, recv, end)

    def _exec(self, line: str, shown: str, *, check: bool, timeout: float | None,
              stdin: str | None) -> CommandResult:
        conn = self._connection()
        timeout = DEFAULT_COMMAND_TIMEOUT_S if timeout is None else timeout
        started = time.monotonic()
        try:
            res = conn.run(line, hide=True, warn=True, pty=False, timeout=timeout,
                           in_stream=io.StringIO(stdin or ""), encoding="utf-8")
        except invoke.exceptions.CommandTimedOut as exc:
            raise CommandTimeout(self.name, shown, float(timeout),
                                 exc.result.stdout, exc.result.stderr) from exc
        if res.return_code == -1 and timeout is not None and time.monotonic() - started >= timeout:
            # invoke's timer closed the channel before its own check ran: the
            # command got no exit status.  It is the same timeout; say so.
            raise CommandTimeout(self.name, shown, float(timeout), res.stdout, res.stderr)
        result = CommandResult(rc=res.return_code, stdout=res.stdout, stderr=res.stderr,
                               command=shown, host=self.name)
        return result.check() if check else result

    # -- files --------------------------------------------------------------

    def put(self, local: Path, path: str, mode: int | None = None) -> None:
        """Copy a local file to *path* (SFTP); set *mode* if given, else keep the local mode."""
        sftp = self._sftp()
        sftp.put(str(local), path)
        sftp.chmod(path, stat.S_IMODE(local.stat().st_mode) if mode is None else mode)

    def get(self, remote: str, local: Path) -> None:
        """Copy *remote* to the local path *local* (SFTP)."""
        self._sftp().get(remote, str(local))

    def read_text(self, path: str) -> str:
        """The remote file's content, decoded as UTF-8."""
        with self._sftp().open(path, "rb") as f:
            data: bytes = f.read()
        return data.decode()

    def write_text(self, path: str, text: str, mode: int | None = None) -> None:
        """Replace *path* atomically (temp file in the same directory, then mv).

        Readers never see a partial file.  The mode is *mode*, else the old
        file's, else the server's default; it is set before any data is
        written, so a secret is never briefly world-readable.
        """
        sftp = self._sftp()
        if mode is None:
            with contextlib.suppress(FileNotFoundError):
                mode = stat.S_IMODE(sftp.stat(path).st_mode)
        tmp = temp_name(path)
        try:
            with sftp.open(tmp, "wbx") as f:
                if mode is not None:
                    f.chmod(mode)
                f.write(text.encode())
            self.run("mv", "-f", "--", tmp, path)
        except BaseException:
            with contextlib.suppress(Exception):  # keep the original error
                self.run("rm", "-f", "--", tmp, check=False)
            raise

    # -- libvirt ------------------------------------------------------------

    def libvirt_uri(self) -> str:
        """The qemu+ssh URI for this host's system libvirtd, as seen from this machine.

        With an explicit ssh config the URI names an `ssh_wrapper` via
        ``command=`` (created in a private temporary directory unless one was
        given), since libvirt would otherwise ignore the config.  The wrapper
        is local, so the URI is for connections made here, not for a libvirtd
        on another host (peer-to-peer migration).
        """
        uri = f"qemu+ssh://{self.name}/system"
        if self.ssh_config is None:
            return uri
        wrapper = self._ssh_wrapper
        if wrapper is None:
            if self._wrapper_dir is None:
                self._wrapper_dir = Path(tempfile.mkdtemp(prefix="virtmig-ssh-"))
            wrapper = self._wrapper_dir / "ssh"
            if not wrapper.exists():
                ssh_wrapper(self.ssh_config, wrapper)
        return f"{uri}?command={quote(str(wrapper), safe='/')}"


def _check_host_keys(conn: Any) -> None:
    """Make *conn* (and any ProxyJump hops) verify host keys as OpenSSH would.

    Fabric trusts unknown keys (AutoAddPolicy) and reads no known_hosts; here
    the known_hosts files named by the config (or OpenSSH's defaults) are
    loaded and unknown keys are rejected.  Only ``StrictHostKeyChecking no``
    (an explicit opt-out in the operator's config) accepts them, with a
    warning; ``accept-new`` is treated as ``yes`` since nothing is written back.
    A changed key is refused in every case.
    """
    opts = conn.ssh_config
    user_files = str(opts.get("userknownhostsfile", " ".join(_DEFAULT_USER_KNOWN_HOSTS))).split()
    global_files = str(opts.get("globalknownhostsfile", " ".join(_DEFAULT_GLOBAL_KNOWN_HOSTS))).split()
    keys = conn.client.get_host_keys()
    for name in user_files + global_files:
        path = Path(os.path.expanduser(name))
        if name != "/dev/null" and path.is_file():
            keys.load(str(path))
    strict = str(opts.get("stricthostkeychecking", "ask")).lower()
    policy = paramiko.WarningPolicy() if strict in ("no", "off") else paramiko.RejectPolicy()
    conn.client.set_missing_host_key_policy(policy)
    if isinstance(conn.gateway, fabric.Connection):
        _check_host_keys(conn.gateway)
