"""A run of several pairs in results.json: one entry per pair, beside the run's fields of one.

The run-level fields (`run.src`, `run.pair`, `summary`, `trends`,
`migrations`) stay as a single-pair run writes them, so the index page and
the trends of older readers keep working; `pairs` adds, per pair, its
verdict, its matrix row, its own summary and trends and which of the
run's migrations are its own (indices into `migrations`).  Trends compare
a pair with the runs of the same two hosts (unordered, as `trends.pair_of`):
a past run of several pairs counts through its entries of those hosts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from virtmig.migration.records import MigrationRecord
from virtmig.pairs import HostPair
from virtmig.report.tables import summary_counts
from virtmig.report.trends import Trends


def hosts_key(pair: HostPair) -> tuple[str, ...]:
    """The pair as trends name it: its two hosts, sorted (h1-h2 and h2-h1 share a history)."""
    return tuple(sorted(pair.hosts))


def records_of(label: str, records: Sequence[MigrationRecord], labels: Sequence[str | None]) -> list[MigrationRecord]:
    """The records a pair's tests filed (*labels*: each record's pair, in the same order)."""
    return [r for r, lab in zip(records, labels, strict=True) if lab == label]


def pair_entries(pairs: Sequence[HostPair], records: Sequence[MigrationRecord], labels: Sequence[str | None],
                 summaries: Mapping[str, Mapping[str, Any]], trends: Mapping[str, Trends | None], *,
                 budget_ms: float | None) -> list[dict[str, Any]]:
    """results.json's `pairs`: one object per pair of the run, in the run's order."""
    out = []
    for pair in pairs:
        mine = records_of(pair.label, records, labels)
        said = summaries.get(pair.label, {})
        found = trends.get(pair.label)
        out.append({
            "label": pair.label,
            "src": pair.src,
            "dst": pair.dst,
            "verdict": said.get("verdict"),
            "reasons": list(said.get("reasons", [])),
            "unreachable": said.get("unreachable"),
            "suites": dict(said.get("suites", {})),
            "summary": summary_counts(mine, budget_ms=budget_ms),
            "trends": None if found is None else found.to_dict(),
            "migrations": [i for i, lab in enumerate(labels) if lab == pair.label],
        })
    return out
