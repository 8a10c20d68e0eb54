"""Domain lifecycle on a libvirt host: open, define and start, find, remove.

Removal is used both before creating (a run cleans what an aborted run left)
and in teardown, so it accepts a domain in any state, or none at all.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

import libvirt

from virtmig.guest.libvirt_events import keep_alive, start_event_loop
from virtmig.journal import DOMAIN_TAG_KEY, DOMAIN_TAG_URI, domain_tag
from virtmig.waiters import call_bounded

#: Where libvirt's own error reports go instead of stderr (see `quiet_libvirt`).
LIBVIRT_LOG = logging.getLogger("virtmig.libvirt")

#: libvirt's virDomainState values, spelled as `virsh domstate` prints them: the one
#: table of state names, so an operator reads in messages and the report what virsh shows.
STATE_NAMES: dict[int, str] = {
    libvirt.VIR_DOMAIN_NOSTATE: "no state",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "idle",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "in shutdown",
    libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "pmsuspended",
}


@functools.cache
def quiet_libvirt() -> None:
    """Send libvirt's error reports to a debug log instead of stderr (once per process).

    Without a handler the C library prints every error it raises to stderr
    ("libvirt: QEMU Driver error : Domain not found ..."), also the ones the
    harness expects and handles, such as looking a domain up to see that it
    is gone: dozens of lines a run, where a person looks for the real error.
    Every such error also reaches the caller as the libvirtError its call
    raises, with the same message, and the harness reports the ones it does
    not expect in its own errors and the report.  The log (DEBUG, logger
    "virtmig.libvirt") keeps the rest, e.g. a keepalive failure that fails
    no call, for whoever runs with --log-level=DEBUG.
    """
    libvirt.registerErrorHandler(_log_libvirt_error, None)


def _log_libvirt_error(_ctx: object, error: Sequence[object]) -> None:
    """libvirt's handler signature; `error` is virGetLastError()'s tuple, message third."""
    LIBVIRT_LOG.debug("libvirt: %s", error[2] if len(error) > 2 else error)


def open_connection(uri: str) -> libvirt.virConnect:
    """Open a read-write connection with keepalive; libvirt's own error names the URI on failure.

    The event loop runs first (virtmig.guest.libvirt_events), so that the
    keepalive makes a dead peer fail the waiting call in seconds.
    """
    quiet_libvirt()
    start_event_loop()
    conn = libvirt.open(uri)
    if conn is None:  # older bindings returned None instead of raising
        raise libvirt.libvirtError(f"cannot connect to {uri}")
    keep_alive(conn)
    return conn


def lookup(conn: libvirt.virConnect, name: str) -> libvirt.virDomain | None:
    """The domain called `name`, or None if this host has no such domain."""
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


def state_name(conn: libvirt.virConnect, name: str) -> str:
    """`running`, `paused`, `shut off`, ... (as virsh prints them) or `absent` when not on this host."""
    dom = lookup(conn, name)
    if dom is None:
        return "absent"
    try:
        state, _reason = dom.state()
    except libvirt.libvirtError as exc:  # gone between the lookup and the question (a migration cleaned up)
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return "absent"
        raise
    return STATE_NAMES.get(state, f"state {state}")


def tag_with_run(dom: libvirt.virDomain, run_id: str) -> None:
    """Tag the domain with the run that made it (libvirt metadata, live and persistent; it migrates with it).

    virtmig.cleanup removes a dead run's domain by this tag, not by its name alone.
    """
    flags = libvirt.VIR_DOMAIN_AFFECT_LIVE | libvirt.VIR_DOMAIN_AFFECT_CONFIG
    dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, domain_tag(run_id), DOMAIN_TAG_KEY, DOMAIN_TAG_URI, flags)


def define_and_start(conn: libvirt.virConnect, xml: str, *, paused: bool = False) -> libvirt.virDomain:
    """Define a persistent domain from XML and start it (paused: QEMU opens every file, no vCPU runs).

    Paused is enough wherever only the start is under test (the SELinux suite):
    the host's checks all happen at QEMU's start, and a nested TCG guest that
    never runs costs nothing.
    """
    dom = conn.defineXML(xml)
    dom.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED if paused else 0)
    return dom


#: Bound on removing a domain (libvirt itself gives up killing a QEMU stuck in the kernel after ~15 s).
REMOVE_TIMEOUT_S = 60.0


def remove(conn: libvirt.virConnect, name: str, timeout: float = REMOVE_TIMEOUT_S) -> bool:
    """Destroy and undefine `name` if present; True if there was something to remove.

    Bounded (WaitTimeout after *timeout*): a QEMU blocked on a stalled NFS
    server cannot be killed, and a libvirtd worker that stats its disk
    blocks with it, so the call might never return.  The caller's teardown
    goes on; the domain's journal entry stays for the next run's cleanup.
    """
    return call_bounded(lambda: _remove(conn, name), target=f"removal of domain {name}",
                        state="destroyed and undefined", timeout=timeout)


def _remove(conn: libvirt.virConnect, name: str) -> bool:
    dom = lookup(conn, name)
    if dom is None:
        return False
    persistent = dom.isPersistent()  # a transient domain vanishes when destroyed
    if dom.isActive():
        try:
            dom.destroy()
        except libvirt.libvirtError:
            if dom.isActive():
                raise
    if persistent:
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
    return True
