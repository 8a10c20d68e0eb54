"""The probe's send loop as a native process (probe_sender.c), built once on this machine and cached.

Why a process of its own: the probe's resolution is its worst gap between
sends, and a Python thread waits for the GIL (13-31 ms worst gaps at a 5 ms
interval with TCG guests busy on the same cores).  The C loop sleeps to
absolute deadlines on CLOCK_MONOTONIC under SCHED_FIFO where permitted; the
Python side only reads its event lines, so nothing Python does delays a send.

`SenderEvents` parses those lines (pure, testable without a process);
`sender_binary` compiles the source once per content (the cache is keyed by
its hash, so an edited source is rebuilt and two workers building at once
both end with a whole binary: each renames its own into place).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

#: Where built senders are kept, one per source hash.
CACHE = Path("/var/cache/virtmig/probe-sender")


#: What the build depends on besides the source (a change of flags is a new binary).
_BUILD_FLAGS = "-O2 -static"


class SenderBuildError(RuntimeError):
    """The sender could not be compiled; the message has the compiler's words and the fix."""


def source() -> Path:
    """probe_sender.c beside this module (a function: a relay runs this module's text without a file)."""
    return Path(__file__).resolve().parent / "probe_sender.c"


def sender_binary(cache: Path = CACHE) -> Path:
    """The compiled sender for the current source, built now if it is not cached."""
    src = source()
    digest = hashlib.sha256(src.read_bytes() + _BUILD_FLAGS.encode()).hexdigest()[:16]
    binary = cache / f"virtmig-probe-sender-{digest}"
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".build-", dir=cache)
    os.close(fd)
    try:
        # Static: a relay copies it to the probe host (--probe-from), whose libc may differ.
        proc = subprocess.run(["gcc", "-O2", "-Wall", "-static", "-o", tmp, str(src)], capture_output=True,
                              text=True)
    except FileNotFoundError as exc:
        os.unlink(tmp)
        raise SenderBuildError("the probe's sender needs gcc on the controller (make deps installs it)") from exc
    if proc.returncode != 0:
        os.unlink(tmp)
        raise SenderBuildError(f"gcc could not build {src.name}: {proc.stderr.strip()}")
    os.chmod(tmp, 0o755)
    os.replace(tmp, binary)
    return binary


@dataclass(frozen=True)
class Sent:
    seq: int
    send_ns: int
    error: int | None = None  # errno of a failed send (EHOSTUNREACH while the guest moves)


@dataclass(frozen=True)
class Reply:
    seq: int
    echoed_send_ns: int
    recv_ns: int


@dataclass(frozen=True)
class Stray:
    recv_ns: int


@dataclass(frozen=True)
class Scheduling:
    policy: str


Event = Sent | Reply | Stray | Scheduling


def parse_event(line: str) -> Event:
    """One line of the sender's stdout (see probe_sender.c) as an event; ValueError for anything else."""
    kind, _, rest = line.rstrip("\n").partition(" ")
    fields = rest.split()
    if kind == "s" and len(fields) == 2:
        return Sent(int(fields[0]), int(fields[1]))
    if kind == "e" and len(fields) == 3:
        return Sent(int(fields[0]), int(fields[1]), error=int(fields[2]))
    if kind == "r" and len(fields) == 3:
        return Reply(int(fields[0]), int(fields[1]), int(fields[2]))
    if kind == "x" and len(fields) == 1:
        return Stray(int(fields[0]))
    if kind == "p" and rest:
        return Scheduling(rest)
    raise ValueError(f"not a probe sender event: {line!r}")
