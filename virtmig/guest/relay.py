"""The probe and the guest agent's commands from another host (`--probe-from`), over one SSH channel.

Why: in many labs the controller (the CI runner) has no route to the VM
network, so the UDP echo probe and the agent's '!'-commands cannot leave it.
A host that does reach the guest (the NFS server, one of the pair) runs them
instead, and the controller sends nothing to the guest.

The remote side is one self-contained python3 program sent as an argument
of a long-lived channel (`ChannelHost.open_channel`): this package's own
`virtmig/guest/probe_sender.py` and `probe.py` (standard library only)
followed by `RELAY_MAIN`, a line loop, and the probe's native sender, a
static binary copied to /run for the channel's life and removed when it
closes.  So the far host runs the very `UdpEchoProbe` and `agent_command`
the controller runs, with the same scheduling and the same interval.

Line protocol (one request line, one reply line, both JSON objects, except
the clock line):

* ``t`` -> the host's monotonic clock in ns, a bare integer: the clock
  loop's protocol (`virtmig.migration.clocks.CLOCK_LOOP`), so the offset is
  measured over this channel by the same code (`clocks.offset_over`);
* ``{"op": "agent", "ip", "port", "text", "timeout", "retries"}`` ->
  ``{"ok": true, "reply": LINE}``, or ``{"ok": false, "kind": "agent", ...}``
  (the agent's `AgentError`: silence, fail, err);
* ``{"op": "start", "ip", "port", "interval_s", "drain_s"}`` -> ``{"ok": true}``;
* ``{"op": "answered", "since_ns"}`` -> ``{"ok": true, "answered": BOOL}``
  (`since_ns` on the host's clock);
* ``{"op": "stop"}`` -> ``{"ok": true, "samples": [[send_ns, recv_ns|null], ...],
  "duplicates", "stray", "send_errors", "scheduling"}``, times on the host's
  monotonic clock.

The first line the program prints is a greeting (``{"ok": true, "relay":
..., "python": VERSION}``); without python3 the host prints a line saying so.

The samples come back on the far host's monotonic clock.  The analysis only
needs durations, but the outage breakdown compares the gap's ends with
libvirt's events on the controller's clock, so `RelayProbe` moves every
sample by the offset it was given (measured just before the probe starts)
and records that offset and its uncertainty in the result.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from virtmig.guest.probe import AgentCommand, AgentError, ProbeResult, Sample, agent_command, summarize
from virtmig.guest.probe_sender import sender_binary
from virtmig.host import ChannelHost, LineChannel

#: The program's loop, appended to probe.py's source (whose names it uses).
RELAY_MAIN = r'''

def _relay_main():
    import json
    import sys
    rd, out = sys.stdin.readline, sys.stdout

    def reply(obj):
        out.write(json.dumps(obj, separators=(",", ":")) + "\n")
        out.flush()

    reply({"ok": True, "relay": "virtmig", "python": sys.version.split()[0]})
    probe = None
    while True:
        line = rd()
        if not line:
            return
        line = line.strip()
        if line == "t":
            out.write("%d\n" % time.monotonic_ns())
            out.flush()
            continue
        try:
            req = json.loads(line)
            op = req["op"]
            if op == "agent":
                text = agent_command(req["ip"], int(req["port"]), req["text"],
                                     timeout=float(req["timeout"]), retries=int(req["retries"]))
                reply({"ok": True, "reply": text})
            elif op == "start":
                if probe is not None and probe._result is None:
                    raise RuntimeError("a probe is already running")
                probe = UdpEchoProbe(req["ip"], int(req["port"]), interval_s=float(req["interval_s"]),
                                     drain_s=float(req["drain_s"]), sender=Path(sys.argv[1]))
                probe.start()
                reply({"ok": True})
            elif op == "answered":
                if probe is None:
                    raise RuntimeError("no probe started")
                reply({"ok": True, "answered": probe.answered_since(int(req["since_ns"]))})
            elif op == "stop":
                if probe is None:
                    raise RuntimeError("no probe started")
                result = probe.stop()
                reply({"ok": True, "samples": probe.samples(), "duplicates": result.duplicates,
                       "stray": result.stray, "send_errors": result.send_errors, "scheduling": probe.scheduling})
            else:
                raise ValueError("unknown op %r" % (op,))
        except AgentError as exc:
            reply({"ok": False, "kind": "agent", "error": str(exc)})
        except Exception as exc:
            reply({"ok": False, "kind": "relay", "error": "%s: %s" % (type(exc).__name__, exc)})


_relay_main()
'''

#: The shell side: python3 or a line naming what is missing (the preflight check reads it too).
RELAY_SHELL = """
command -v python3 >/dev/null 2>&1 || { echo "no python3 on $(hostname)"; exit 127; }
exec python3 -c "$1" "$2"
"""

#: How long the greeting, a clock line, start, answered and stop may take, s (stop carries every sample).
REPLY_TIMEOUT_S = 30.0
#: Added to an agent command's own timeouts for the trip to the relay and back, s.
AGENT_MARGIN_S = 10.0


class RelayError(RuntimeError):
    """The relay said something other than the protocol's answer, or failed a request; the message says which."""


#: The one import of probe.py that the program replaces with probe_sender.py's own source.
_SENDER_IMPORT = "from virtmig.guest.probe_sender import"
_FUTURE = "from __future__ import annotations\n"


def relay_program() -> str:
    """The python3 program the far host runs: probe_sender.py's source, probe.py's, then `RELAY_MAIN`.

    probe.py imports its sender's wrapper (`virtmig.guest.probe_sender`); the
    far host has no virtmig, so that module's source goes first and the
    import line is dropped (and the second `from __future__` with it).
    """
    here = Path(__file__).parent
    sender = here.joinpath("probe_sender.py").read_text(encoding="utf-8")
    probe = here.joinpath("probe.py").read_text(encoding="utf-8")
    kept = [line for line in probe.splitlines(keepends=True)
            if not line.startswith(_SENDER_IMPORT) and line != _FUTURE]
    return sender + "".join(kept) + RELAY_MAIN


def format_request(op: str, **fields: object) -> str:
    """One request line (no newline): a JSON object; JSON escapes any newline in a value, so it stays one line."""
    return json.dumps({"op": op, **fields}, separators=(",", ":"))


def parse_reply(host: str, line: str) -> dict[str, Any]:
    """The reply's object if it says ok; `AgentError` for the agent's failure, `RelayError` for anything else."""
    try:
        reply = json.loads(line)
    except ValueError:
        reply = None
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        raise RelayError(f"{host}: the probe relay answered {line[:300]!r}, not the relay protocol")
    if not reply["ok"]:
        error = str(reply.get("error", "(no message)"))
        if reply.get("kind") == "agent":
            raise AgentError(f"via {host}: {error}")
        raise RelayError(f"{host}: the probe relay failed: {error}")
    return reply


@dataclasses.dataclass(frozen=True)
class RemoteSamples:
    """What `stop` brings back: the samples on the far host's clock and the probe's counters."""

    samples: list[Sample]
    duplicates: int
    stray: int
    send_errors: int
    scheduling: str


def parse_samples(host: str, reply: dict[str, Any]) -> RemoteSamples:
    """The samples and counters of a `stop` reply; `RelayError` names what is malformed."""
    try:
        samples: list[Sample] = [(int(s), None if r is None else int(r)) for s, r in reply["samples"]]
        return RemoteSamples(samples, int(reply["duplicates"]), int(reply["stray"]), int(reply["send_errors"]),
                             str(reply["scheduling"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise RelayError(f"{host}: malformed samples from the probe relay: {exc!r}") from exc


def on_controller_clock(samples: Sequence[Sample], offset_ns: int) -> list[Sample]:
    """Samples taken on a host whose monotonic clock reads `offset_ns` more than ours, on our clock (pure)."""
    return [(s - offset_ns, None if r is None else r - offset_ns) for s, r in samples]


class Relay:
    """The relay on one host: open once (`open`), then agent commands and probes through it, `close` at the end.

    One channel serves everything; a lock keeps each request and its reply
    together if two threads use it.
    """

    def __init__(self, host: ChannelHost) -> None:
        self.host = host
        self.python = ""
        self._channel: LineChannel | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.host.name

    def open(self) -> Relay:
        if self._channel is None:
            # The probe's native sender (static: it runs on any x86-64 Linux) goes where the program finds it.
            self.host.put(sender_binary(), self.sender_path, mode=0o700)
            channel = self.host.open_channel(RELAY_SHELL, args=[relay_program(), self.sender_path])
            try:
                hello = parse_reply(self.name, channel.read_line(REPLY_TIMEOUT_S))
            except BaseException:
                channel.close()
                raise
            self.python = str(hello.get("python", ""))
            self._channel = channel
        return self

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
            self.host.run("rm", "-f", "--", self.sender_path, check=False, timeout=30)

    @property
    def sender_path(self) -> str:
        """Where the sender lives on the far host while the relay runs (/run: root's, a tmpfs)."""
        return f"/run/{sender_binary().name}"

    def __enter__(self) -> Relay:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def exchange(self, line: str, timeout: float) -> str:
        """Send one line, return the reply line (the clock's `t` goes through here: `clocks.offset_over`)."""
        channel = self.open()._channel
        assert channel is not None
        with self._lock:
            return channel.exchange(line, timeout)

    def request(self, op: str, *, reply_timeout: float = REPLY_TIMEOUT_S, **fields: object) -> dict[str, Any]:
        """One request and its reply (`parse_reply`), the reply waited for up to `reply_timeout` s."""
        return parse_reply(self.name, self.exchange(format_request(op, **fields), reply_timeout))

    def agent_command(self, ip: str, port: int, text: str, timeout: float = 2.0, retries: int = 3) -> str:
        """`virtmig.guest.probe.agent_command`, run on the relay's host: same arguments, same answers and errors."""
        reply = self.request("agent", reply_timeout=timeout * max(1, retries) + AGENT_MARGIN_S, ip=ip, port=port,
                             text=text, timeout=timeout, retries=retries)
        return str(reply["reply"])

    def probe(self, ip: str, port: int, *, interval_s: float, drain_s: float, offset_ns: int,
              uncertainty_ms: float) -> RelayProbe:
        """A probe that runs on the relay's host; `offset_ns`: its monotonic clock minus ours (± uncertainty_ms)."""
        return RelayProbe(self, ip, port, interval_s, drain_s, offset_ns, uncertainty_ms)


class RelayProbe:
    """`UdpEchoProbe`'s interface (`EchoProbe`) for a probe running on the relay's host.

    stop() brings the samples back, moves them onto the controller's clock
    and summarizes them with the same `summarize`, so the result reads as
    the controller probe's does, plus where it ran and how well its clock
    is known.
    """

    def __init__(self, relay: Relay, ip: str, port: int, interval_s: float, drain_s: float, offset_ns: int,
                 uncertainty_ms: float) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.relay = relay
        self.target = (ip, port)
        self.interval_s, self.drain_s = interval_s, drain_s
        self.offset_ns, self.uncertainty_ms = offset_ns, uncertainty_ms
        self.scheduling = ""
        self._started = False
        self._result: ProbeResult | None = None
        self._samples: list[Sample] = []

    def start(self) -> None:
        if self._started:
            raise RuntimeError("probe already started")
        self.relay.request("start", ip=self.target[0], port=self.target[1], interval_s=self.interval_s,
                           drain_s=self.drain_s)
        self._started = True

    def answered_since(self, t_ns: int) -> bool:
        """As `UdpEchoProbe.answered_since`, `t_ns` on the controller's clock."""
        return bool(self.relay.request("answered", since_ns=t_ns + self.offset_ns)["answered"])

    def stop(self) -> ProbeResult:
        if self._result is not None:
            return self._result
        if not self._started:
            raise RuntimeError("probe not started")
        reply = self.relay.request("stop", reply_timeout=REPLY_TIMEOUT_S + self.drain_s)
        remote = parse_samples(self.relay.name, reply)
        self.scheduling = f"{remote.scheduling} on {self.relay.name}"
        self._samples = on_controller_clock(remote.samples, self.offset_ns)
        result = summarize(self._samples, interval_s=self.interval_s, duplicates=remote.duplicates,
                           stray=remote.stray, send_errors=remote.send_errors)
        self._result = dataclasses.replace(result, vantage=self.relay.name,
                                           clock_offset_ms=self.offset_ns / 1e6,
                                           clock_uncertainty_ms=self.uncertainty_ms)
        return self._result

    def samples(self) -> list[Sample]:
        """The samples on the controller's clock; complete after stop()."""
        return list(self._samples)


def agent_command_via(relay: Relay | None) -> AgentCommand:
    """How this run reaches the guest agent: through `relay` (`--probe-from`), else from this machine."""
    return agent_command if relay is None else relay.agent_command
