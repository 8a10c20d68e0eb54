"""External reachability probe: how long the guest really stopped answering.

libvirt's `downtime` is measured by QEMU around the CPU pause; what users
see also includes the network switching over to the destination (QEMU's
announce, bridge learning). The probe measures that from outside: it sends a
sequence-numbered UDP datagram every `interval_s` to the guest agent, which
echoes every datagram whose first byte is not '!', and records when replies
arrive. The longest interval between consecutive replies, on this side's
monotonic clock, is the observed outage.

The analysis (`probe_gap`, `summarize`) is pure so that it can be tested on
synthetic timelines; the thread only records (send_ns, recv_ns) per seq.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

from virtmig.guest.probe_sender import Event, Reply, Sent, Stray, parse_event, sender_binary

#: UDP port the guest agent listens on (virtmig/guest/guest_agent.c): echo for the probe, '!' commands.
AGENT_PORT = 7

#: 8-byte seq + 8-byte send time, big-endian: the first byte is 0 for any seq
#: below 2**56, so a probe datagram is never mistaken for an agent command.
_PAYLOAD = struct.Struct("!QQ")

#: (send_ns, recv_ns or None) for one seq; a list of them is indexed by seq.
Sample = tuple[int, int | None]


class AgentError(RuntimeError):
    """The guest agent did not answer, or answered fail/err."""


@dataclass(frozen=True)
class Gap:
    """The longest stretch without a (new, in-order) reply.

    [start_ns, end_ns] are monotonic times: the previous reply (or the first
    send, if the gap opens the window) and the next reply (or the window
    end). first/last_lost_seq bound the seqs sent in between that never got
    a reply; `lost` counts them (None/None/0 when nothing was lost).
    """

    start_ns: int
    end_ns: int
    first_lost_seq: int | None
    last_lost_seq: int | None
    lost: int

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def duration_ms(self) -> float:
        return self.duration_ns / 1e6


def probe_gap(samples: Sequence[Sample], window_end_ns: int | None = None) -> Gap:
    """Longest interval between consecutive replies in `samples` (index = seq).

    Replies are taken in arrival order and one whose seq is not above every
    seq already seen is ignored: a late reply from before an outage must not
    split the outage in two. The window runs from the first send to
    `window_end_ns` (default: the last send), so no replies at all gives a
    gap over the whole window, and replies that stop early give a gap from
    the last reply to the window end.
    """
    if not samples:
        return Gap(0, 0, None, None, 0)
    window_start = samples[0][0]
    window_end = samples[-1][0] if window_end_ns is None else window_end_ns
    arrivals = sorted((recv, seq) for seq, (_, recv) in enumerate(samples) if recv is not None)

    # Candidate gaps as (start_ns, end_ns, first seq inside, last seq inside).
    candidates: list[tuple[int, int, int, int]] = []
    prev_ns, prev_seq = window_start, -1
    for recv, seq in arrivals:
        if seq <= prev_seq:
            continue  # out of order (or an impossible duplicate): not news
        candidates.append((prev_ns, recv, prev_seq + 1, seq - 1))
        prev_ns, prev_seq = recv, seq
    candidates.append((prev_ns, max(prev_ns, window_end), prev_seq + 1, len(samples) - 1))

    start, end, lo, hi = max(candidates, key=lambda c: c[1] - c[0])
    lost_seqs = [s for s in range(lo, hi + 1) if samples[s][1] is None]
    if not lost_seqs:
        return Gap(start, end, None, None, 0)
    return Gap(start, end, lost_seqs[0], lost_seqs[-1], len(lost_seqs))


@dataclass(frozen=True)
class ProbeResult:
    """Summary of one probe run; times in ms, gap bounds as monotonic ns."""

    sent: int
    received: int
    lost: int
    duplicates: int
    stray: int
    send_errors: int
    interval_ms: float
    duration_ms: float
    longest_gap_ms: float
    gap_start_ns: int
    gap_end_ns: int
    gap_first_lost_seq: int | None
    gap_last_lost_seq: int | None
    gap_lost: int
    #: Longest interval between our own sends: if this is large the probe
    #: thread itself stalled and longest_gap_ms overstates the outage.
    longest_send_gap_ms: float
    rtt_p50_ms: float | None
    rtt_max_ms: float | None
    #: Where the probe ran: "controller" (this process), else the SSH name of the host that ran it
    #: (`--probe-from`, `virtmig.guest.relay`); its times were then put on the controller's clock
    #: with clock_offset_ms (that host's monotonic clock minus ours), known to ± clock_uncertainty_ms.
    vantage: str = "controller"
    clock_offset_ms: float | None = None
    clock_uncertainty_ms: float | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def summarize(
    samples: Sequence[Sample],
    *,
    interval_s: float,
    window_end_ns: int | None = None,
    duplicates: int = 0,
    stray: int = 0,
    send_errors: int = 0,
) -> ProbeResult:
    """ProbeResult from recorded samples; pure, like probe_gap."""
    gap = probe_gap(samples, window_end_ns)
    rtts = sorted(r - s for s, r in samples if r is not None)
    sends = [s for s, _ in samples]
    send_gaps = [b - a for a, b in zip(sends, sends[1:], strict=False)]
    end = (sends[-1] if window_end_ns is None else window_end_ns) if sends else 0
    return ProbeResult(
        sent=len(samples),
        received=len(rtts),
        lost=len(samples) - len(rtts),
        duplicates=duplicates,
        stray=stray,
        send_errors=send_errors,
        interval_ms=interval_s * 1e3,
        duration_ms=(end - sends[0]) / 1e6 if sends else 0.0,
        longest_gap_ms=gap.duration_ms,
        gap_start_ns=gap.start_ns,
        gap_end_ns=gap.end_ns,
        gap_first_lost_seq=gap.first_lost_seq,
        gap_last_lost_seq=gap.last_lost_seq,
        gap_lost=gap.lost,
        longest_send_gap_ms=max(send_gaps, default=0) / 1e6,
        # Lower median: an actual observed value, not an average of two.
        rtt_p50_ms=rtts[(len(rtts) - 1) // 2] / 1e6 if rtts else None,
        rtt_max_ms=rtts[-1] / 1e6 if rtts else None,
    )


class ProbeLog:
    """What the probe thread records: one send time and first reply per seq.

    Separate from the thread so the bookkeeping (duplicates, stray and
    mismatched replies) is testable without sockets.
    """

    def __init__(self) -> None:
        self._send_ns: list[int] = []
        self._recv_ns: list[int | None] = []
        self.duplicates = 0
        self.stray = 0
        #: Send time of the newest datagram that got a reply (0: none yet);
        #: read by other threads to see that the guest answers again.
        self.last_answered_send_ns = 0

    def sent(self, send_ns: int) -> int:
        """Record a send; returns the seq to put in the datagram."""
        self._send_ns.append(send_ns)
        self._recv_ns.append(None)
        return len(self._send_ns) - 1

    def received(self, seq: int, echoed_send_ns: int, recv_ns: int) -> None:
        """Record a reply; only the first reply to a seq we sent counts."""
        if not 0 <= seq < len(self._send_ns) or self._send_ns[seq] != echoed_send_ns:
            self.stray += 1
        elif self._recv_ns[seq] is not None:
            self.duplicates += 1
        else:
            self._recv_ns[seq] = recv_ns
            self.last_answered_send_ns = max(self.last_answered_send_ns, echoed_send_ns)

    def samples(self) -> list[Sample]:
        return list(zip(self._send_ns, self._recv_ns, strict=False))


#: Real-time priority of the probe's sender where the process may ask for it (SCHED_FIFO, 1..99).
PROBE_RT_PRIORITY = 10


class EchoProbe(Protocol):
    """What a measurement needs of a running probe.

    `UdpEchoProbe` runs here; `virtmig.guest.relay.RelayProbe` on another host (`--probe-from`).
    """

    target: tuple[str, int]
    #: The probe thread's scheduling policy, once it runs.
    scheduling: str

    def start(self) -> None: ...

    def stop(self) -> ProbeResult: ...

    def answered_since(self, t_ns: int) -> bool: ...


class UdpEchoProbe:
    """Background UDP echo probe against the guest agent.

    The sends come from a native process (`virtmig.guest.probe_sender`):
    scheduled on absolute deadlines (start + k*interval), so the rate does
    not drift, skipping missed slots instead of bursting, under SCHED_FIFO
    where permitted (`scheduling` says what it got).  A thread here reads
    its events into the `ProbeLog` as they happen, so `answered_since`
    works while it runs.  Use as a context manager or start()/stop().
    """

    def __init__(self, target_ip: str, port: int, interval_s: float = 0.005, drain_s: float = 0.2,
                 sender: Path | None = None) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.target = (target_ip, port)
        #: The sender's binary (None: built here by `sender_binary`; a relay's far host is handed its copy).
        self.sender = sender
        self.interval_s = interval_s
        self.drain_s = drain_s
        self._log = ProbeLog()
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None
        self._send_errors = 0
        self._error: BaseException | None = None
        self._result: ProbeResult | None = None
        #: The sender's scheduling policy, once it runs.
        self.scheduling = ""

    def start(self) -> None:
        if self._proc is not None:
            raise RuntimeError("probe already started")
        ip, port = self.target
        self._proc = subprocess.Popen(
            [str(self.sender or sender_binary()), ip, str(port), str(max(1, int(self.interval_s * 1e9))),
             str(int(self.drain_s * 1e9)), str(PROBE_RT_PRIORITY)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
        )
        self._thread = threading.Thread(target=self._read, name=f"udp-probe-{ip}", daemon=True)
        self._thread.start()

    def stop(self) -> ProbeResult:
        """Stop sending (EOF on the sender's stdin), let it wait drain_s for late replies, and summarize."""
        if self._result is not None:
            return self._result
        if self._proc is None or self._thread is None:
            raise RuntimeError("probe not started")
        assert self._proc.stdin is not None and self._proc.stderr is not None
        self._proc.stdin.close()
        self._thread.join()
        rc = self._proc.wait()
        errors = self._proc.stderr.read().strip()
        self._proc.stderr.close()
        if self._error is not None:
            raise RuntimeError(f"probe reader failed: {self._error!r}") from self._error
        if rc != 0:
            raise RuntimeError(f"probe sender exited {rc}: {errors}")
        self._result = summarize(
            self._log.samples(),
            interval_s=self.interval_s,
            duplicates=self._log.duplicates,
            stray=self._log.stray,
            send_errors=self._send_errors,
        )
        return self._result

    @property
    def result(self) -> ProbeResult:
        if self._result is None:
            raise RuntimeError("probe not stopped yet")
        return self._result

    def answered_since(self, t_ns: int) -> bool:
        """True once a datagram sent at or after monotonic `t_ns` got its reply.

        Safe while running: lets a caller keep the probe going until the
        guest is back, so the outage is not cut off by stopping too early.
        """
        return self._log.last_answered_send_ns >= t_ns

    def samples(self) -> list[Sample]:
        """Raw (send_ns, recv_ns) per seq; complete only after stop()."""
        return self._log.samples()

    def __enter__(self) -> UdpEchoProbe:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._proc is not None and self._result is None:
            self.stop()

    def _read(self) -> None:
        """The sender's events into the log, in the order it wrote them (a send before its reply)."""
        assert self._proc is not None and self._proc.stdout is not None
        try:
            for line in self._proc.stdout:
                self._record(parse_event(line))
        except BaseException as exc:  # noqa: BLE001 - surfaced by stop(), not lost in a thread
            self._error = exc

    def _record(self, event: Event) -> None:
        if isinstance(event, Sent):
            seq = self._log.sent(event.send_ns)
            if seq != event.seq:
                raise ValueError(f"probe sender skipped from seq {seq} to {event.seq}")
            if event.error is not None:
                self._send_errors += 1  # EHOSTUNREACH etc. while the guest moves: a lost probe
        elif isinstance(event, Reply):
            self._log.received(event.seq, event.echoed_send_ns, event.recv_ns)
        elif isinstance(event, Stray):
            self._log.stray += 1
        else:
            self.scheduling = event.policy


class AgentCommand(Protocol):
    """How a '!'-command reaches the guest agent: `agent_command` from here, or a relay's from another host."""

    def __call__(self, ip: str, port: int, text: str, timeout: float = 2.0, retries: int = 3) -> str: ...


def agent_command(ip: str, port: int, text: str, timeout: float = 2.0, retries: int = 3) -> str:
    """Send one '!'-command to the guest agent and return its reply line.

    `text` may omit the '!'. The guest agent (virtmig/guest/guest_agent.c)
    answers 'ok ...' (e.g. '!ping' -> 'ok pong'), 'fail ...' when a check
    found a difference, 'err ...' when it could not run the command.

    Retries only on silence (UDP loses datagrams, and the guest may be
    between hosts); a reply starting with 'fail' or 'err' raises at once.
    Commands should therefore be idempotent: a retried command may run twice
    if only its reply was lost.
    """
    message = text if text.startswith("!") else "!" + text
    last_problem = "no reply"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((ip, port))
        except OSError as exc:  # no route from here: say so, not a bare OSError from deep in a fixture
            raise AgentError(f"agent {ip}:{port} cannot be reached from {socket.gethostname()}: {exc} "
                             "(a host on the guest's network can reach it: --probe-from)") from exc
        for _ in range(max(1, retries)):
            deadline = time.monotonic() + timeout
            try:
                sock.send(message.encode())
            except OSError as exc:
                last_problem = f"send failed: {exc}"
                time.sleep(max(0.0, min(deadline - time.monotonic(), 0.5)))
                continue
            while (remaining := deadline - time.monotonic()) > 0:
                sock.settimeout(remaining)
                try:
                    data = sock.recv(4096)
                except TimeoutError:
                    break
                except ConnectionRefusedError:
                    last_problem = "port unreachable (agent not listening)"
                    time.sleep(max(0.0, min(deadline - time.monotonic(), 0.5)))
                    break
                lines = data.decode(errors="replace").strip().splitlines()
                if not lines:
                    continue
                reply = lines[0].strip()
                if reply.lower().startswith(("fail", "err")):
                    raise AgentError(f"agent {ip}:{port} answered {message!r} with {reply!r}")
                return reply
    raise AgentError(
        f"agent {ip}:{port} did not answer {message!r} ({retries} attempts of {timeout:g} s; last: {last_problem})"
    )
