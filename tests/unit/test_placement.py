"""Shard placement: stable shards, every shard owned exactly once, minimal movement."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from engine.runtime.placement import DEFAULT_SHARDS, owner_of, plan, shard_of, shards_for

node_ids = st.lists(st.text(alphabet="abcdefghij0123456789-", min_size=1, max_size=12), min_size=1, max_size=8)


def test_shard_is_stable_across_processes() -> None:
    """Python's own hash() is salted per process; ours must not be."""
    here = [shard_of("meal_request", f"r{i}") for i in range(20)]
    code = (
        "from engine.runtime.placement import shard_of; print([shard_of('meal_request', f'r{i}') for i in range(20)])"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={})
    assert other.stdout.strip() == str(here)


def test_shard_depends_on_kind_and_key_and_stays_in_range() -> None:
    shards = {shard_of(kind, str(i)) for kind in ("order", "rider") for i in range(2000)}
    assert shards <= set(range(DEFAULT_SHARDS)) and len(shards) > DEFAULT_SHARDS * 0.9
    assert shard_of("order", "x", 7) in range(7)


def test_no_node_no_owner() -> None:
    assert owner_of(3, []) is None and plan([]) == {}


def test_shards_spread_evenly_over_three_nodes() -> None:
    counts = Counter(plan(["n1", "n2", "n3"]).values())
    assert set(counts) == {"n1", "n2", "n3"}
    assert all(50 <= c <= 120 for c in counts.values()), counts  # ~85 each


@given(node_ids)
def test_every_shard_has_exactly_one_owner_among_the_live(nodes: list[str]) -> None:
    p = plan(nodes, 64)
    assert set(p) == set(range(64)) and set(p.values()) <= set(nodes)
    assert sorted(s for n in set(nodes) for s in shards_for(n, nodes, 64)) == list(range(64))


@given(node_ids, st.text(alphabet="xyz", min_size=1, max_size=5))
def test_a_joining_node_only_takes_shards(nodes: list[str], joiner: str) -> None:
    """Shards never move between two nodes that both stayed: only to the newcomer."""
    if joiner in nodes:
        return
    before, after = plan(nodes, 64), plan([*nodes, joiner], 64)
    assert all(after[s] in (before[s], joiner) for s in range(64))


@given(node_ids)
def test_a_leaving_node_only_gives_its_own_shards(nodes: list[str]) -> None:
    live = sorted(set(nodes))
    if len(live) < 2:
        return
    gone = live[0]
    before, after = plan(live, 64), plan(live[1:], 64)
    assert all(after[s] == before[s] for s in range(64) if before[s] != gone)
    assert gone not in after.values()


def test_order_of_the_live_set_does_not_matter() -> None:
    assert plan(["b", "a", "c"]) == plan(["c", "b", "a", "a"])
