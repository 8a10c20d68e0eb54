"""From a failure's text and host evidence to a named cause and its fix.

`diagnose` is pure (tested on recorded text); `gather_evidence` reads a host
over the `Host` interface.  The message table lives in `causes`.
"""

from __future__ import annotations

from virtmig.diagnose.causes import RULES, Cause, Family, Rule, paths_in, qemu_ids_in
from virtmig.diagnose.engine import FIXES, Diagnosis, diagnose
from virtmig.diagnose.evidence import Evidence, Mount, PathCheck, gather_evidence

__all__ = [
    "FIXES", "RULES", "Cause", "Diagnosis", "Evidence", "Family", "Mount", "PathCheck", "Rule",
    "diagnose", "gather_evidence", "paths_in", "qemu_ids_in",
]
