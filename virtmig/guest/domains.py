"""Domain lifecycle on a libvirt host: open, define and start, find, remove.

Removal is used both before creating (a run cleans what an aborted run left)
and in teardown, so it accepts a domain in any state, or none at all.
"""

from __future__ import annotations

import libvirt

_STATE_NAMES = {
    libvirt.VIR_DOMAIN_NOSTATE: "nostate",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_SHUTOFF: "shutoff",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "pmsuspended",
}


def open_connection(uri: str) -> libvirt.virConnect:
    """Open a read-write connection; libvirt's own error names the URI on failure."""
    conn = libvirt.open(uri)
    if conn is None:  # older bindings returned None instead of raising
        raise libvirt.libvirtError(f"cannot connect to {uri}")
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
    """`running`, `paused`, `shutoff`, ... or `absent` when not on this host."""
    dom = lookup(conn, name)
    if dom is None:
        return "absent"
    state, _reason = dom.state()
    return _STATE_NAMES.get(state, f"state-{state}")


def define_and_start(conn: libvirt.virConnect, xml: str) -> libvirt.virDomain:
    """Define a persistent domain from XML and start it."""
    dom = conn.defineXML(xml)
    dom.create()
    return dom


def remove(conn: libvirt.virConnect, name: str) -> bool:
    """Destroy and undefine `name` if present; True if there was something to remove."""
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
