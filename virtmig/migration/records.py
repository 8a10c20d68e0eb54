"""What one migration leaves behind for the report: a plain, JSON-able record.

Records travel from the test that measured them to the report through
pytest's `user_properties`, which pytest-xdist carries from workers to the
controller; so a record holds only JSON types.  The figures inside are the
`to_dict()` forms of `virtmig.migration.jobstats.JobStats` (libvirt's view) and
`virtmig.guest.probe.ProbeResult` (the guest's reachability seen from outside).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

#: Key under which a record is stored in a test item's user_properties.
USER_PROPERTY = "virtmig_migration"

#: Version of the record layout written to JSON; bump on incompatible change.
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class MigrationRecord:
    """One migration, measured.

    kind: "live", "offline", "cold" or "save-restore".
    mode: readable name of the flag set, e.g. "p2p", "direct", "p2p-tunnelled".
    stats: libvirt's completed-job statistics (JobStats.to_dict()), or None
        when the migration failed before libvirt recorded any.
    probe: the external probe's result (ProbeResult.to_dict()), or None.
    progress: job samples taken while the migration ran (JobProgress.to_dict()).
    storage: how the disk was shared, e.g. "nfs-mount", "lab-shared-dir".
    dirty_rate_asked_mib_s: the guest workload's dirtying rate the harness
        asked for (`--dirty-rate`), to read beside libvirt's measured rate.
    clock_offsets: {host: virtmig.migration.clocks.ClockOffset.to_dict()}, each host's
        clock against the controller's when the migration was measured.
    integrity: {"ram"/"disk": "ok" or the agent's failing reply}.
    downtime_agreement: virtmig.migration.criteria.DowntimeAgreement.to_dict(): libvirt's
        downtime against the probe's gap, and whether they agree.
    fault: the fault injected into this migration (the fault suite), as
        virtmig.migration.injection.FaultRecord.to_dict(): its kind, when it came
        and went, how long the guest was unreachable and how long recovery took.
    outage: where a live hop's outage went, virtmig.migration.breakdown.OutageBreakdown.to_dict().
    """

    test_id: str
    kind: str
    mode: str
    src: str
    dst: str
    domain: str
    started_at: str
    wall_s: float
    ok: bool
    storage: str
    error: str | None = None
    stats: dict[str, Any] | None = None
    probe: dict[str, Any] | None = None
    progress: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    dirty_rate_asked_mib_s: int | None = None
    clock_offsets: dict[str, Any] | None = None
    integrity: dict[str, Any] | None = None
    downtime_agreement: dict[str, Any] | None = None
    fault: dict[str, Any] | None = None
    outage: dict[str, Any] | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> MigrationRecord:
        raw = json.loads(text)
        return cls(**raw)
