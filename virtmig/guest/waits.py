"""Waits on the test guest's agent, built on `virtmig.waiters.wait_for`.

They live here, not in `virtmig.waiters`, because they need the agent
client (`virtmig.guest.probe`): waiters is the bottom layer, imported by the
lab's helper scripts, and imports nothing of the guest.
"""

from __future__ import annotations

from virtmig.guest.probe import AgentCommand, AgentError, agent_command
from virtmig.waiters import wait_for

#: How long one `!ping` waits for its answer while the guest boots.  The agent answers a live
#: network in well under a millisecond; a booting guest answers nothing, so each attempt costs
#: all of it.  With 1 s (and 0.5 s between attempts) the wait saw a ready guest up to 1.5 s
#: late: lab boots came out at 3.0 or 4.5 s, never between.
ATTEMPT_S = 0.25


def wait_for_agent(ip: str, port: int, timeout: float, interval: float = 0.1, *,
                   send: AgentCommand = agent_command) -> str:
    """Wait until the guest agent answers `!ping` (from here, or through `send`: a relay's); returns its reply.

    The timeout message gives the agent's last error (no answer, a refusal),
    which says whether the guest is still booting or its network is wrong.
    Attempts are short (`ATTEMPT_S`) and close together, so the wait ends
    within about a third of a second of the guest's answer.
    """
    last_error = "no attempt"

    def ping() -> str | None:
        nonlocal last_error
        try:
            return send(ip, port, "ping", timeout=min(ATTEMPT_S, max(timeout, 0.05)), retries=1)
        except AgentError as exc:
            last_error = str(exc)
            return None

    return wait_for(
        ping,
        target=f"guest agent {ip}:{port}",
        state="answering !ping",
        timeout=timeout,
        interval=interval,
        describe=lambda: last_error,
    )
