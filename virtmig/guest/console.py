"""The guest's serial console, kept in a file on each host, read back when the guest goes silent.

A guest that stops answering after a migration is either hung, cut off by
the network (a bridge still forwarding its MAC to the old host), or alive
with a stuck agent.  libvirt's statistics cannot tell these apart; the
guest's own console can (the lab guest prints a heartbeat with its packet
counters every second), and so can each host's bridge forwarding table.
`silent_guest_evidence` gathers both over the hosts' ordinary SSH access.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath

from virtmig.host import Host

#: libvirt's per-domain log directory on Debian, Fedora and RHEL alike; the
#: qemu user may write there, and each host keeps its own copy.
CONSOLE_DIR = PurePosixPath("/var/log/libvirt/qemu")

#: Console lines kept in evidence: enough for several heartbeats and a whole kernel oops.
TAIL_LINES = 80


def console_log_path(domain: str) -> str:
    """Where the domain's serial console is written, on whichever host runs it."""
    return str(CONSOLE_DIR / f"{domain}-console.log")


def console_tail(host: Host, domain: str, lines: int = TAIL_LINES) -> list[str]:
    """The last lines of the console file on `host` (empty if there is none)."""
    result = host.run("tail", "-n", str(lines), console_log_path(domain), check=False, timeout=20)
    return [line.rstrip("\r") for line in result.stdout.splitlines()] if result.ok else []


def console_crash_lines(host: Host, domain: str, limit: int = 5) -> list[str]:
    """The first lines anywhere in the console file that say the guest crashed.

    An oops prints its header, then registers and a trace, then the
    heartbeat goes on (or stops) for many lines: by the time anyone looks,
    the header has often left the tail.
    """
    markers = [arg for marker in _CRASH_MARKERS for arg in ("-e", marker)]
    result = host.run("grep", "-F", "-m", str(limit), *markers, "--", console_log_path(domain),
                      check=False, timeout=20)
    return [line.rstrip("\r") for line in result.stdout.splitlines()] if result.ok else []


def fdb_entries(host: Host, mac: str) -> list[str]:
    """The host's bridge forwarding entries for `mac` (where the host sends the guest's frames)."""
    script = "bridge fdb show 2>/dev/null | grep -i -- \"$1\" || echo '(no entry)'"
    result = host.run_script(script, args=(mac,), check=False, timeout=20)
    return result.stdout.strip().splitlines() or ["(bridge fdb unavailable)"]


def silent_guest_evidence(hosts: Sequence[Host], running_on: Host, domain: str, mac: str) -> list[str]:
    """The console's crash lines and tail from the host the guest runs on, and every host's forwarding entries."""
    tail = console_tail(running_on, domain)
    crashed = [line for line in console_crash_lines(running_on, domain) if line not in tail]
    evidence = [f"{running_on.name} console: {line}" for line in crashed]  # earlier than the tail
    evidence += [f"{running_on.name} console: {line}" for line in tail]
    if not evidence:
        evidence.append(f"{running_on.name} console: (no console file at {console_log_path(domain)})")
    for host in hosts:
        evidence += [f"{host.name} fdb: {entry}" for entry in fdb_entries(host, mac)]
    return evidence


#: Lines a Linux guest prints when it dies or finds its own memory corrupt.
#: ("is not a head!" is virtio_net finding its ring in a state the guest never wrote.)
#: ("exited with irqs disabled" is what the kernel says of a task an oops killed: it
#: outlives the oops header in a console tail.)
_CRASH_MARKERS = ("Kernel panic - not syncing", "list_add corruption", "list_del corruption",
                  "kernel BUG at", "general protection fault", "BUG: ", "Oops: ", "is not a head!",
                  "detected stalls on CPUs", "exited with irqs disabled")

#: First QEMU release whose TCG migration keeps every dirty page (libvirt's version number: 9.0.0),
#: and the upstream commit that fixed it (named in the diagnosis, so reports can be searched for it).
TCG_DIRTY_FIX_VERSION = 9_000_000
TCG_DIRTY_FIX_COMMIT = "03bfc2188f"


def crash_lines(lines: Sequence[str]) -> list[str]:
    """The console lines that say the guest kernel crashed (empty: no sign of a crash)."""
    return [line for line in lines if any(marker in line for marker in _CRASH_MARKERS)]


def crash_diagnosis(lines: Sequence[str], host: str, domain_type: str, qemu_version: int) -> str | None:
    """What a guest crash right after a move means, or None if the console shows none.

    qemu_version is libvirt's encoding (major * 1_000_000 + minor * 1_000 + micro),
    as virConnect.getVersion() returns it.
    """
    found = crash_lines(lines)
    if not found:
        return None
    text = f"the guest kernel crashed on {host} after the move: {found[0].split('] ', 1)[-1].strip()}"
    if domain_type == "qemu" and qemu_version < TCG_DIRTY_FIX_VERSION:
        major, minor = qemu_version // 1_000_000, qemu_version // 1_000 % 1_000
        text += (f"; QEMU {major}.{minor} with TCG loses pages the guest dirties during migration "
                 f"(upstream fix {TCG_DIRTY_FIX_COMMIT} 'physmem: Fix migration dirty bitmap coherency with TCG memory "
                 "access', QEMU 9.0): migrate KVM guests, or use QEMU 9.0 or later for TCG")
    return text
