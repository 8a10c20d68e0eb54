"""Machine-readable results of a run: `<run dir>/results.json` and `reports/latest`.

The HTML report is for people; benchmarks compare runs across hosts and
libvirt versions, and that needs the numbers in a stable, documented form.
The layout is described in docs/results-schema.md; in short::

    {
      "schema_version": 1,              # of this file's layout (RESULTS_SCHEMA_VERSION)
      "record_schema_version": 1,       # of each migration (virtmig.migration.records.SCHEMA_VERSION)
      "run": {
        "run_id": str | null,
        "started_at": str | null,       # ISO 8601, UTC
        "finished_at": str,             # ISO 8601, UTC
        "src": str | null,              # null when migrations used several sources
        "dst": str | null,
        ...                             # whatever else the writer passed in run_meta
      },
      "summary": {"total", "ok", "failed", "no_stats", "no_probe", "over_budget": int},
      "environment": {...} | null,      # both hosts' kernel, libvirt, QEMU, CPU (virtmig.environment)
      "guest": {...} | null,            # the guest used: network, address, MAC, type, CPU and why
      "trends": {...} | null,           # against earlier runs of the pair (virtmig.report.trends)
      "migrations": [MigrationRecord fields, in the order recorded]
    }

Each migration is exactly `MigrationRecord.to_json()`'s object, so
`read_run` gives back equal records.  The file is written to a temporary
name and renamed, so a reader never sees half a file; `reports/latest` is
replaced the same way, so it always points at a complete run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from virtmig.migration.records import SCHEMA_VERSION as RECORD_SCHEMA_VERSION
from virtmig.migration.records import MigrationRecord
from virtmig.report.tables import summary_counts

#: Bump on an incompatible change to the file layout (not to a record's).
RESULTS_SCHEMA_VERSION: Final = 1
RESULTS_NAME: Final = "results.json"
LATEST_NAME: Final = "latest"

_RECORD_FIELDS: Final = frozenset(f.name for f in fields(MigrationRecord))


def utc_now() -> str:
    """The timestamp format used throughout results.json."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def _single(values: Sequence[str]) -> str | None:
    distinct = sorted(set(values))
    return distinct[0] if len(distinct) == 1 else None


#: Top-level sections a writer may add beside the fixed ones (null when not known).
SECTIONS: Final = ("environment", "guest", "trends", "pairs")


def build_document(records: Sequence[MigrationRecord], *, run_meta: Mapping[str, Any],
                   sections: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The results.json object; run_meta wins over values derived from records.

    `sections` fills the optional top-level `SECTIONS` (each null if absent);
    other keys are refused so the documented layout stays the whole layout.
    """
    unknown = set(sections or {}) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown results.json sections: {sorted(unknown)}")
    run: dict[str, Any] = {
        "run_id": None,
        "started_at": None,
        "finished_at": utc_now(),
        "src": _single([r.src for r in records]),
        "dst": _single([r.dst for r in records]),
    }
    run.update(run_meta)
    budget = run.get("downtime_budget_ms")
    budget_ms = float(budget) if isinstance(budget, (int, float)) and not isinstance(budget, bool) else None
    return {
        "schema_version": RESULTS_SCHEMA_VERSION,
        "record_schema_version": RECORD_SCHEMA_VERSION,
        "run": run,
        "summary": summary_counts(records, budget_ms=budget_ms),
        **{name: (sections or {}).get(name) for name in SECTIONS},
        "migrations": [asdict(r) for r in records],
    }


def write_run(records: Sequence[MigrationRecord], out_dir: Path, *, run_meta: Mapping[str, Any],
              sections: Mapping[str, Any] | None = None) -> Path:
    """Write `out_dir/results.json` atomically and return its path (see `build_document`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / RESULTS_NAME
    tmp = out_dir / f".{RESULTS_NAME}.{os.getpid()}.tmp"
    doc = build_document(records, run_meta=run_meta, sections=sections)
    text = json.dumps(doc, indent=2, sort_keys=True, default=str)
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return target


def record_from_dict(raw: Mapping[str, Any]) -> MigrationRecord:
    """A record from its JSON object; keys a newer writer added are ignored."""
    return MigrationRecord(**{k: v for k, v in raw.items() if k in _RECORD_FIELDS})


def read_run(path: Path) -> tuple[dict[str, Any], list[MigrationRecord]]:
    """(document without "migrations", records) from a results.json file."""
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    version = doc.get("schema_version")
    if version != RESULTS_SCHEMA_VERSION:
        raise ValueError(f"{path}: results schema_version {version!r}, this reader knows {RESULTS_SCHEMA_VERSION}")
    records = [record_from_dict(m) for m in doc.pop("migrations", [])]
    return doc, records


def update_latest(reports_root: Path, run_dir: Path) -> Path:
    """Point `reports_root/latest` at `run_dir`, atomically; return the link.

    The link is relative when run_dir lies under reports_root, so the
    reports tree can be copied or archived as a whole.  A real directory
    named "latest" is never deleted: that raises FileExistsError.
    """
    reports_root.mkdir(parents=True, exist_ok=True)
    link = reports_root / LATEST_NAME
    if link.exists() and not link.is_symlink():
        raise FileExistsError(f"{link} exists and is not a symlink; not replacing it")
    root, target_dir = reports_root.resolve(), run_dir.resolve()
    target = os.path.relpath(target_dir, root) if target_dir.is_relative_to(root) else str(target_dir)
    tmp = reports_root / f".{LATEST_NAME}.{os.getpid()}.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, tmp, target_is_directory=True)
    os.replace(tmp, link)
    return link
