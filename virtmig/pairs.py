"""Which host pairs a run certifies: one --src/--dst pair, or many (--pairs, --inventory).

A pair is an ordered (source, destination) of ssh names.  Its `label`
("h1-h2") is what test ids, xdist groups, guest names and the report use to
tell the pairs apart, so it is made here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HostPair:
    """One ordered pair: guests go from *src* to *dst* (and back, on a round trip)."""

    src: str
    dst: str

    @property
    def label(self) -> str:
        """The pair as test ids and the report name it: "SRC-DST"."""
        return f"{self.src}-{self.dst}"

    @property
    def hosts(self) -> frozenset[str]:
        return frozenset((self.src, self.dst))
