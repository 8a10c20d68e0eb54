"""A stand-in for the guest agent on loopback, for the probe's tests and its benchmark.

It answers like virtmig/guest/guest_agent.c (echo, '!ping' -> 'ok pong') and
keeps a log of what it did with each probe datagram, so a test can say
exactly which datagrams an outage swallowed instead of guessing from times:
an outage is "the datagrams from seq N on, until released", or "everything
while `paused` is set", and the test waits for what the agent did, not for
a number of milliseconds.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from virtmig.guest.probe import _PAYLOAD
from virtmig.waiters import wait_for

#: Longest wait for a condition the test itself brings about.  Not a timing
#: figure: it only stops a broken probe from hanging the run.
LIMIT_S = 30.0


@dataclass
class AgentLog:
    """What the agent did with each probe datagram: (seq, send_ns as echoed) per outcome."""

    echoed: list[tuple[int, int]] = field(default_factory=list)
    dropped: list[tuple[int, int]] = field(default_factory=list)
    #: '!'-commands received, answered or not, in arrival order.
    commands: list[bytes] = field(default_factory=list)


class EchoAgent:
    """Echo on 127.0.0.1; '!ping' -> 'ok pong'; outages on demand.

    paused: while set, every datagram vanishes (commands are still logged).
    drop_from: probe datagrams with this seq or above vanish until `release()`.
    """

    def __init__(self, drop_from: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.02)
        self.port: int = self.sock.getsockname()[1]
        self.paused = threading.Event()
        self.drop_from = drop_from
        self.log = AgentLog()
        self._released = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def release(self) -> None:
        """End the `drop_from` outage: datagrams processed from now on are answered."""
        self._released.set()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            if data.startswith(b"!"):
                self.log.commands.append(data)
                if self.paused.is_set():
                    continue
                if data.startswith(b"!ping"):
                    self.sock.sendto(b"ok pong\n", peer)
                elif data.startswith(b"!ram-verify"):
                    self.sock.sendto(b"fail ram-verify s1 offset=4096\n", peer)
                else:
                    self.sock.sendto(b"err unknown command\n", peer)
                continue
            probe = _PAYLOAD.unpack(data) if len(data) == _PAYLOAD.size else None
            outage = self.drop_from is not None and not self._released.is_set()
            if self.paused.is_set() or (probe is not None and outage and probe[0] >= (self.drop_from or 0)):
                if probe is not None:
                    self.log.dropped.append(probe)
                continue
            if probe is not None:
                self.log.echoed.append(probe)
            self.sock.sendto(data, peer)

    def __enter__(self) -> EchoAgent:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def until(check: Callable[[], bool], what: str, limit_s: float = LIMIT_S) -> None:
    """Wait until `check()` is true (polled every millisecond); WaitTimeout after `limit_s`."""
    wait_for(lambda: True if check() else None, target="loopback agent and probe", state=what,
             timeout=limit_s, interval=0.001)
