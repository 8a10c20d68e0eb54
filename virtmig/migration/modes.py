"""The live migration matrix as data: one `MigrationMode` per column.

Why data and not test code: the suites parametrize over `LIVE_MATRIX`, the
bench and the report name modes by `MigrationMode.name`, and a new column
is one line here.  Each mode says *how* libvirt is asked to migrate
(flags, typed parameters, a max-downtime setting, a post-copy switch);
whether `VIR_MIGRATE_UNSAFE` is added is not a property of the mode but
of the storage, so `virtmig.migration.runner.migrate` takes it separately.

libvirt 9.0 has no VIR_MIGRATE_PARAM_* for the downtime limit (the
parameters are BANDWIDTH, BANDWIDTH_POSTCOPY, AUTO_CONVERGE_*, COMPRESSION_*,
URI, ...), so max-downtime is set with `virDomainMigrateSetMaxDowntime` on the
source domain just before the migration starts; libvirt records QEMU's
migration parameters at the start of the job, so the limit set before is
the one the job uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import libvirt

#: Flags every live mode shares: the domain keeps running, is defined on the
#: destination afterwards and no longer on the source.
LIVE_BASE = libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
_P2P = libvirt.VIR_MIGRATE_PEER2PEER

#: Bandwidth of the `bandwidth-limit` column, MiB/s: below what the lab moves
#: unthrottled (about 60 MiB/s under TCG) so the limit really binds, and above
#: the default dirty rate so the migration still converges.
BANDWIDTH_LIMIT_MIB_S = 32
#: Downtime limit of the `max-downtime` column, ms (QEMU's default is 300).
MAX_DOWNTIME_MS = 50


@dataclass(frozen=True)
class MigrationMode:
    """A named set of migration flags and parameters (one column of the matrix).

    params: typed migration parameters (VIR_MIGRATE_PARAM_* -> value).
    switch_to_postcopy: ask for the switch to post-copy as soon as the job
        runs, and confirm it happened (needs VIR_MIGRATE_POSTCOPY in flags;
        see `virtmig.migration.runner` for why not after the first pass).
    max_downtime_ms: set with migrateSetMaxDowntime before the migration.
    """

    name: str
    flags: int
    params: Mapping[str, int] = field(default_factory=dict)
    switch_to_postcopy: bool = False
    max_downtime_ms: int | None = None

    @property
    def peer_to_peer(self) -> bool:
        return bool(self.flags & libvirt.VIR_MIGRATE_PEER2PEER)

    def with_flags(self, extra: int, suffix: str) -> MigrationMode:
        return replace(self, name=f"{self.name}-{suffix}", flags=self.flags | extra)

    def describe(self) -> str:
        """What is set beyond the flags, for a record's notes ('' if nothing)."""
        parts = [f"{k}={v}" for k, v in sorted(self.params.items())]
        if self.max_downtime_ms is not None:
            parts.append(f"max_downtime={self.max_downtime_ms}ms")
        if self.switch_to_postcopy:
            parts.append("post-copy switch asked for as soon as the job runs")
        return ", ".join(parts)


P2P = MigrationMode("p2p", LIVE_BASE | _P2P)
DIRECT = MigrationMode("direct", LIVE_BASE)
TUNNELLED = MigrationMode("p2p-tunnelled", LIVE_BASE | _P2P | libvirt.VIR_MIGRATE_TUNNELLED)
POSTCOPY = MigrationMode("postcopy", LIVE_BASE | _P2P | libvirt.VIR_MIGRATE_POSTCOPY, switch_to_postcopy=True)
AUTO_CONVERGE = MigrationMode("auto-converge", LIVE_BASE | _P2P | libvirt.VIR_MIGRATE_AUTO_CONVERGE)
BANDWIDTH_LIMIT = MigrationMode(
    "bandwidth-limit", LIVE_BASE | _P2P, params={libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: BANDWIDTH_LIMIT_MIB_S},
)
MAX_DOWNTIME = MigrationMode("max-downtime", LIVE_BASE | _P2P, max_downtime_ms=MAX_DOWNTIME_MS)

#: The live matrix, in the order the suite runs it.
LIVE_MATRIX: tuple[MigrationMode, ...] = (
    P2P, DIRECT, TUNNELLED, POSTCOPY, AUTO_CONVERGE, BANDWIDTH_LIMIT, MAX_DOWNTIME,
)
