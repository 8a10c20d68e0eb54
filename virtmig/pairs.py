"""Which host pairs a run certifies: one --src/--dst pair, or many (--pairs, --inventory).

A pair is an ordered (source, destination) of ssh names.  Its `label`
("h1-h2") is what test ids, xdist groups, guest names and the report use to
tell the pairs apart, so it is made here and nowhere else.

Everything here is pure (no files, no hosts): `parse_pair_spec` checks the
syntax of --pairs while argparse parses, `plan_pairs` turns a spec into pairs
over a group's hosts once the inventory is read, and `schedule` splits the
pairs into rounds in which no host migrates twice at once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

#: The --pairs keywords; anything else is a list "SRC:DST,SRC:DST".
RING, MESH = "ring", "mesh"
#: The fewest hosts a ring or a mesh is made of: one pair there and back.
MIN_HOSTS = 2

#: A host in a listed pair: the syntax virtmig.config.check_host_name accepts (repeated here:
#: config imports this module, so this module cannot import config).
_HOST = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,251}[A-Za-z0-9_])?")


class PairError(ValueError):
    """--pairs cannot be planned: bad syntax, a host named twice, unknown or too few hosts.

    virtmig.config turns it into its ConfigError (a usage error), adding the
    inventory file it was checked against.
    """


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


@dataclass(frozen=True)
class PairSpec:
    """What --pairs asked for: a *kind* (ring, mesh or list) and, for a list, its pairs in order.

    Kept apart from the hosts: the spec is checked as the option is parsed,
    the hosts are known only once the inventory (or the lab) is read.
    """

    kind: str
    listed: tuple[HostPair, ...] = ()

    def __str__(self) -> str:
        return ",".join(f"{p.src}:{p.dst}" for p in self.listed) if self.kind == "list" else self.kind


def parse_pair_spec(value: str) -> PairSpec:
    """--pairs VALUE as a PairSpec: "ring", "mesh" or "h1:h2,h3:h4"; else PairError.

    A listed pair naming one host twice (h1:h1) or listed twice is refused
    here: the first cannot migrate, the second would give two tests one id.
    """
    text = value.strip()
    if text in (RING, MESH):
        return PairSpec(text)
    pairs: list[HostPair] = []
    for item in text.split(","):
        src, sep, dst = item.strip().partition(":")
        if not sep or not _HOST.fullmatch(src) or not _HOST.fullmatch(dst) or ".." in item:
            raise PairError(f"--pairs {value!r}: {item.strip()!r} is not SRC:DST (two host names) ; "
                            f"give {RING}, {MESH} or a list such as h1:h2,h3:h4")
        pair = HostPair(src, dst)
        if src == dst:
            raise PairError(f"--pairs {value!r}: the pair {item.strip()!r} names host {src!r} twice; "
                            "a migration needs two hosts")
        if pair in pairs:
            raise PairError(f"--pairs {value!r}: the pair {item.strip()!r} is listed twice")
        pairs.append(pair)
    return PairSpec("list", tuple(pairs))


def ring(hosts: Sequence[str]) -> tuple[HostPair, ...]:
    """h1->h2, ..., hN->h1: every host is source once and destination once (two hosts: there and back)."""
    _enough(RING, hosts)
    return tuple(HostPair(hosts[i], hosts[(i + 1) % len(hosts)]) for i in range(len(hosts)))


def mesh(hosts: Sequence[str]) -> tuple[HostPair, ...]:
    """Every ordered pair of distinct hosts, N*(N-1) of them, grouped by source in the hosts' order."""
    _enough(MESH, hosts)
    return tuple(HostPair(a, b) for a in hosts for b in hosts if a != b)


def plan_pairs(spec: PairSpec, hosts: Sequence[str]) -> tuple[HostPair, ...]:
    """The pairs *spec* asks for over *hosts* (a group's hosts, in the inventory's order), else PairError."""
    if len(set(hosts)) != len(hosts):
        raise PairError(f"the hosts {', '.join(hosts)} name a host twice")
    if spec.kind == RING:
        return ring(hosts)
    if spec.kind == MESH:
        return mesh(hosts)
    unknown = sorted({h for p in spec.listed for h in (p.src, p.dst)} - set(hosts))
    if unknown:
        raise PairError(f"--pairs {spec}: {', '.join(map(repr, unknown))} "
                        f"{'is' if len(unknown) == 1 else 'are'} not among the hosts "
                        f"({', '.join(hosts) or 'none'})")
    return spec.listed


def schedule(pairs: Sequence[HostPair]) -> tuple[tuple[HostPair, ...], ...]:
    """The pairs in rounds such that no host is in two pairs of one round; in order, every pair once.

    How: greedy first fit in the given order.  Each pair goes into the first
    round none of whose pairs shares a host with it, a new round if there is
    none.  A host in two pairs of a round would carry two of the night's
    migrations at once, and each would then measure the other's load.

    A round holds at most floor(N/2) pairs of N hosts, so a ring of N (N
    pairs) needs at least ceil(N / floor(N/2)) rounds, and first fit reaches
    that bound: 2 when N is even (ring of 4: {h1-h2, h3-h4}, {h2-h3, h4-h1};
    h1->h2, h2->h1 for two hosts), 3 when N is odd (ring of 5: {h1-h2,
    h3-h4}, {h2-h3, h4-h5}, {h5-h1}: the last pair touches both earlier
    rounds).  A mesh of N needs at least 2*(N-1) rounds (each host is in
    2*(N-1) pairs); first fit may use a few more, never a round with a clash.
    """
    rounds: list[list[HostPair]] = []
    busy: list[set[str]] = []
    for pair in pairs:
        for members, hosts in zip(rounds, busy, strict=True):
            if not hosts & pair.hosts:
                members.append(pair)
                hosts |= pair.hosts
                break
        else:
            rounds.append([pair])
            busy.append(set(pair.hosts))
    return tuple(tuple(members) for members in rounds)


def _enough(kind: str, hosts: Sequence[str]) -> None:
    if len(hosts) < MIN_HOSTS:
        raise PairError(f"--pairs {kind} needs at least {MIN_HOSTS} hosts; there "
                        f"{'is' if len(hosts) == 1 else 'are'} {len(hosts)} ({', '.join(hosts) or 'none'})")

