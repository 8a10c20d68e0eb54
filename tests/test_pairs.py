"""--pairs as pure functions: the spec's syntax, the pairs planned over a group's hosts, the rounds."""

from __future__ import annotations

import math

import pytest

from virtmig.pairs import HostPair, PairError, PairSpec, mesh, parse_pair_spec, plan_pairs, ring, schedule

H4 = ("h1", "h2", "h3", "h4")


def pairs(text: str) -> tuple[HostPair, ...]:
    """'h1-h2 h3-h4' -> the pairs, to keep the expectations readable."""
    return tuple(HostPair(*item.split("-")) for item in text.split())


def test_keywords_and_lists_parse() -> None:
    assert parse_pair_spec("ring") == PairSpec("ring")
    assert parse_pair_spec(" mesh ") == PairSpec("mesh")
    assert parse_pair_spec("h1:h2, h3:h4") == PairSpec("list", pairs("h1-h2 h3-h4"))
    assert str(parse_pair_spec("h1:h2,h3:h4")) == "h1:h2,h3:h4"


@pytest.mark.parametrize(("value", "message"), [
    ("h1:h1", "names host 'h1' twice"),
    ("h1:h2,h1:h2", "'h1:h2' is listed twice"),
    ("h1", "is not SRC:DST"),
    ("h1:h2,", "'' is not SRC:DST"),
    ("h1:-oProxyCommand=x", "is not SRC:DST"),
    ("h1:h2:h3", "is not SRC:DST"),
    ("Ring", "is not SRC:DST"),
    ("a..b:c", "is not SRC:DST"),
])
def test_bad_specs_are_refused(value: str, message: str) -> None:
    with pytest.raises(PairError, match=message):
        parse_pair_spec(value)


def test_ring_makes_every_host_source_once_and_destination_once() -> None:
    assert ring(H4) == pairs("h1-h2 h2-h3 h3-h4 h4-h1")
    assert ring(("a", "b")) == pairs("a-b b-a")


def test_mesh_is_every_ordered_pair() -> None:
    got = mesh(("a", "b", "c"))
    assert got == pairs("a-b a-c b-a b-c c-a c-b")
    assert len(mesh(H4)) == 4 * 3


@pytest.mark.parametrize("kind", ["ring", "mesh"])
@pytest.mark.parametrize("hosts", [(), ("h1",)])
def test_too_few_hosts(kind: str, hosts: tuple[str, ...]) -> None:
    with pytest.raises(PairError, match=f"--pairs {kind} needs at least 2 hosts; there (is|are) {len(hosts)}"):
        plan_pairs(PairSpec(kind), hosts)


def test_a_listed_pair_must_name_hosts_of_the_group() -> None:
    assert plan_pairs(parse_pair_spec("h3:h1"), H4) == pairs("h3-h1")
    with pytest.raises(PairError, match=r"'h9' is not among the hosts \(h1, h2, h3, h4\)"):
        plan_pairs(parse_pair_spec("h1:h9"), H4)


def test_a_group_naming_a_host_twice_is_refused() -> None:
    with pytest.raises(PairError, match="name a host twice"):
        plan_pairs(PairSpec("ring"), ("h1", "h2", "h1"))


def test_ring_of_four_takes_two_rounds_of_disjoint_pairs() -> None:
    assert schedule(ring(H4)) == (pairs("h1-h2 h3-h4"), pairs("h2-h3 h4-h1"))


@pytest.mark.parametrize("n", range(2, 9))
def test_ring_rounds_reach_the_lower_bound(n: int) -> None:
    hosts = tuple(f"h{i}" for i in range(1, n + 1))
    rounds = schedule(ring(hosts))
    assert len(rounds) == math.ceil(n / (n // 2))  # 2 when n is even, 3 when odd
    assert_valid(ring(hosts), rounds)


@pytest.mark.parametrize("n", range(2, 7))
def test_mesh_rounds_never_share_a_host(n: int) -> None:
    all_pairs = mesh(tuple(f"h{i}" for i in range(1, n + 1)))
    assert_valid(all_pairs, schedule(all_pairs))


def test_listed_pairs_keep_their_order_within_rounds() -> None:
    listed = pairs("a-b b-c c-d d-e")
    assert schedule(listed) == (pairs("a-b c-d"), pairs("b-c d-e"))
    assert schedule(()) == ()


def assert_valid(planned: tuple[HostPair, ...], rounds: tuple[tuple[HostPair, ...], ...]) -> None:
    """Every pair in exactly one round, no host twice in a round."""
    assert sorted(p.label for r in rounds for p in r) == sorted(p.label for p in planned)
    for members in rounds:
        hosts = [h for p in members for h in (p.src, p.dst)]
        assert len(hosts) == len(set(hosts)), members
