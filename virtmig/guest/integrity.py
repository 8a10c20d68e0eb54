"""Nothing lost: a known pattern in the guest's RAM and on its disk, checked after the move.

Why from inside the guest: only the guest sees what a migration really
delivered, i.e. memory as QEMU restored it and the disk through the
destination's QEMU and storage stack (the agent reads the disk with O_DIRECT,
so not from its own page cache).  libvirt saying "completed" proves neither.

Protocol (virtmig/guest/guest_agent.c): `!ram-write SEED` / `!disk-write SEED`
answer `ok <verb> SEED <checksum>`; `!ram-verify SEED` / `!disk-verify SEED`
answer `ok <verb> SEED`, or `fail <verb> SEED offset=N` at the first bad
byte.  The seed is fresh for every migration, so a verify can only pass on
the pattern written for *this* migration, never on a leftover one.

The check is split so it can be shown to fail: `judge_reply` is pure, and
`write_patterns`/`verify_patterns` take the agent as a callable, so the
self-tests feed them `fail` replies and silence without a guest.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from virtmig.guest.probe import AgentCommand, AgentError, agent_command

#: Sends one '!'-command to the guest agent and returns its reply line; raises
#: AgentError on silence or a fail/err reply (as `virtmig.guest.probe.agent_command`).
Agent = Callable[[str], str]

#: Which patterns exist: "ram" (16 MiB buffer) and "disk" (first 4 MiB of vda).
AREAS: tuple[str, ...] = ("ram", "disk")

#: A pattern command runs on the agent's worker thread and can take seconds
#: under TCG; one long wait, because a retry while it runs gets `err busy`.
COMMAND_TIMEOUT_S = 30.0


class IntegrityError(AssertionError):
    """A pattern did not survive (or could not be checked); the message says which."""


@dataclass(frozen=True)
class AreaCheck:
    """The outcome of one verify: area, seed, whether it passed, and the agent's words."""

    area: str
    seed: str
    ok: bool
    reply: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def new_seed(label: str = "") -> str:
    """A fresh seed (1-64 printable chars, no spaces), optionally prefixed by `label`."""
    clean = "".join(c for c in label if c.isalnum() or c in "-_.")[:40]
    return f"{clean}-{uuid.uuid4().hex[:16]}" if clean else uuid.uuid4().hex


def judge_reply(area: str, seed: str, reply: str) -> AreaCheck:
    """Whether `reply` to `!{area}-verify {seed}` says the pattern is intact.

    Only the exact `ok {area}-verify {seed}` passes: an ok for another seed
    or verb (a stale or misrouted reply) is a failure, not a pass.
    """
    expected = f"ok {area}-verify {seed}"
    return AreaCheck(area, seed, reply.strip() == expected, reply.strip())


def lab_agent(ip: str, port: int, timeout: float = COMMAND_TIMEOUT_S, *,
              send: AgentCommand = agent_command) -> Agent:
    """An Agent that talks UDP to the guest at ip:port, from here or through `send` (a relay's, `--probe-from`)."""
    def command(text: str) -> str:
        return send(ip, port, text, timeout=timeout, retries=1)
    return command


def write_patterns(agent: Agent, seed: str, areas: Sequence[str] = AREAS) -> dict[str, str]:
    """Write the pattern of `seed` to each area; {area: checksum}. Raises IntegrityError."""
    sums: dict[str, str] = {}
    for area in _checked(areas):
        try:
            reply = agent(f"{area}-write {seed}")
        except AgentError as exc:
            raise IntegrityError(f"could not write the {area} pattern before migrating: {exc}") from exc
        words = reply.split()
        if words[:3] != ["ok", f"{area}-write", seed] or len(words) != 4:
            raise IntegrityError(f"unexpected answer to {area}-write {seed}: {reply!r}")
        sums[area] = words[3]
    return sums


def verify_patterns(agent: Agent, seed: str, areas: Sequence[str] = AREAS) -> list[AreaCheck]:
    """Verify each area from inside the guest; every area is checked, none raises."""
    checks: list[AreaCheck] = []
    for area in _checked(areas):
        try:
            reply = agent(f"{area}-verify {seed}")
        except AgentError as exc:
            checks.append(AreaCheck(area, seed, False, str(exc)))
            continue
        checks.append(judge_reply(area, seed, reply))
    return checks


def summary(checks: Sequence[AreaCheck]) -> dict[str, object]:
    """For a record: {area: "ok" | the failing reply}."""
    return {c.area: "ok" if c.ok else c.reply for c in checks}


def _checked(areas: Sequence[str]) -> Sequence[str]:
    unknown = [a for a in areas if a not in AREAS]
    if unknown or not areas:
        raise ValueError(f"areas must be a non-empty subset of {AREAS}, got {list(areas)}")
    return areas
