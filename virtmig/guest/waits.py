"""Waits on the test guest's agent, built on `virtmig.waiters.wait_for`.

They live here, not in `virtmig.waiters`, because they need the agent
client (`virtmig.guest.probe`): waiters is the bottom layer, imported by the
lab's helper scripts, and imports nothing of the guest.
"""

from __future__ import annotations

from virtmig.guest.probe import AgentCommand, AgentError, agent_command
from virtmig.waiters import wait_for


def wait_for_agent(ip: str, port: int, timeout: float, interval: float = 0.5, *,
                   send: AgentCommand = agent_command) -> str:
    """Wait until the guest agent answers `!ping` (from here, or through `send`: a relay's); returns its reply.

    The timeout message gives the agent's last error (no answer, a refusal),
    which says whether the guest is still booting or its network is wrong.
    """
    last_error = "no attempt"

    def ping() -> str | None:
        nonlocal last_error
        try:
            return send(ip, port, "ping", timeout=min(1.0, max(timeout, 0.05)), retries=1)
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
