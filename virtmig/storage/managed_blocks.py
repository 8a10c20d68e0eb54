"""The marker-delimited blocks virtmig writes into a server's exports file (or ganesha.conf).

A block is the text between a BEGIN and an END comment line.  The run's
own export has the plain markers; a tagged block (a test case's extra
export, or one pair's export in a run of several pairs) has its tag in
both, so that adding, changing or stripping it never touches another.  A
marker may name the run that wrote it (`... [run ID]`), so that an operator
reading the file, and the next run's cleanup, can tell whose block it is.
Pure text functions: reading and writing the file is virtmig.storage.exports'.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Protocol

BEGIN = "# BEGIN virtmig managed export"
END = "# END virtmig managed export"
_TAG_RE = re.compile(r"^[a-z0-9-]+$")
#: A run id as it may stand in a marker line (virtmig.journal's run ids: hex tokens, timestamps).
_RUN_ID_RE = re.compile(r"^[A-Za-z0-9._-]+$")


class _Spec(Protocol):
    """What a block holds: one exports(5) line (virtmig.storage.exports.ExportSpec)."""

    def line(self) -> str: ...


def markers(tag: str | None = None) -> tuple[str, str]:
    """BEGIN/END lines of a managed block; a tagged block (a test case's extra export) has its own,
    so that adding, changing or stripping it never touches the run's main block, and vice versa."""
    if tag is None:
        return BEGIN, END
    if not _TAG_RE.match(tag):
        raise ValueError(f"export block tag {tag!r} is not [a-z0-9-]+")
    return f"{BEGIN}: {tag}", f"{END}: {tag}"


def run_marked(marker: str, run_id: str | None) -> str:
    """A marker line naming the run that wrote the block (`... [run ID]`), so an operator reading the
    server's file, and the next run's cleanup, can tell whose block it is."""
    if run_id is None:
        return marker
    if not _RUN_ID_RE.match(run_id):
        raise ValueError(f"run id {run_id!r} is not [A-Za-z0-9._-]+")
    return f"{marker} [run {run_id}]"


def is_marker(line: str, marker: str) -> bool:
    """Whether *line* is *marker*, with or without the run that wrote it."""
    line = line.rstrip("\n")
    if line == marker:
        return True
    rest = line.removeprefix(f"{marker} [run ")
    return rest != line and rest.endswith("]") and bool(_RUN_ID_RE.match(rest[:-1]))


def with_managed_block(original: str, spec: _Spec, tag: str | None = None, run_id: str | None = None) -> str:
    """`original` /etc/exports text with our block (the one named *tag*, marked with *run_id*) replaced or
    appended."""
    begin, end = markers(tag)
    kept = strip_managed_block(original, tag)
    if kept and not kept.endswith("\n"):
        kept += "\n"
    return f"{kept}{run_marked(begin, run_id)}\n{spec.line()}\n{run_marked(end, run_id)}\n"


def strip_managed_block(text: str, tag: str | None = None) -> str:
    """`text` without any managed block named *tag*, whichever run wrote it (an aborted run's leftovers)."""
    begin, end = markers(tag)
    out: list[str] = []
    inside = False
    for line in text.splitlines(keepends=True):
        if is_marker(line, begin):
            inside = True
        elif inside and is_marker(line, end):
            inside = False
        elif not inside:
            out.append(line)
    return "".join(out)


def strip_every_managed_block(text: str) -> str:
    """`text` without any virtmig block, the run's and every tagged one (a killed case's extra export too)."""
    prefix = f"{BEGIN}: "
    tags = {line[len(prefix):].split(" [run ", 1)[0] for line in text.splitlines() if line.startswith(prefix)}
    for tag in [None, *sorted(t for t in tags if _TAG_RE.match(t))]:
        text = strip_managed_block(text, tag)
    return text


def _begin(line: str) -> tuple[str | None, str | None] | None:
    """(tag, run id) of a BEGIN marker line of any block, None if *line* is none."""
    line = line.rstrip("\n")
    run_id = None
    if line.endswith("]") and " [run " in line:
        line, _, rest = line.rpartition(" [run ")
        run_id = rest[:-1] if _RUN_ID_RE.match(rest[:-1]) else None
        if run_id is None:
            return None
    if line == BEGIN:
        return None, run_id
    tag = line.removeprefix(f"{BEGIN}: ")
    return (tag, run_id) if tag != line and _TAG_RE.match(tag) else None


def strip_blocks_of_dead_runs(text: str, live_runs: Collection[str]) -> str:
    """`text` without the blocks that no live run wrote: those of runs not in *live_runs*, and those of no run.

    A run of several pairs keeps one block per pair, and the pairs' xdist
    workers are runs of their own: a worker starting must remove what a
    killed run left, never a sibling's block that is in use.
    """
    for line in text.splitlines():
        found = _begin(line)
        if found is not None and found[1] not in live_runs:
            text = strip_managed_block(text, found[0])
    return text
