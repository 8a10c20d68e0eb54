"""Diagnose an error against the evidence of the hosts it may have happened on.

A migration failure may be the destination's (most are: it opens the image
second) or the source's; the caller seldom knows.  Each host's evidence is
weighed and the most specific cause wins, destination first.
"""

from __future__ import annotations

from collections.abc import Sequence

from virtmig.diagnose.causes import Cause, Family, match, paths_in
from virtmig.diagnose.engine import Diagnosis, diagnose
from virtmig.diagnose.evidence import gather_evidence
from virtmig.host import Host

#: Causes that only say the evidence did not settle it.
WEAK = frozenset({Cause.UNKNOWN, Cause.PERMISSION_DENIED_UNEXPLAINED, Cause.IMAGE_MISSING})


def diagnose_on_hosts(error_text: str, hosts: Sequence[Host], *,
                      export_options: tuple[str, ...] = (), qemu_user: str | None = None) -> Diagnosis:
    """The most specific diagnosis over *hosts* (in order); evidence is gathered only if the text needs it.

    qemu_user: the user QEMU runs as, when the operator named it (else looked up on each host).
    """
    found = match(error_text)
    if found is None or not isinstance(found[0].target, Family) or not hosts:
        return diagnose(error_text)
    path = next(iter(paths_in(error_text)), None)
    first: Diagnosis | None = None
    for host in hosts:
        result = diagnose(error_text, gather_evidence(host, path, export_options=export_options, user=qemu_user))
        if result.cause not in WEAK:
            return result
        first = first or result
    assert first is not None
    return first
