"""Which shard an actor lives in, and which live node should own each shard (DESIGN
"Sharding across nodes").

A key's shard never changes (the shard count is fixed for a deployment), so stored state,
leases and fencing epochs can all be per shard. Rendezvous (highest random weight) hashing
gives each shard to the live node with the highest score for it: when a node joins it takes
about 1/N of the shards from the others and no shard moves between two nodes that stayed,
and when one leaves only its shards move. Every node computes the same answer from the same
live set, so no coordinator is needed to agree on the plan (leases still decide who holds a
shard at any moment).

Pure: no I/O, no clock. The hash is blake2b, not Python's `hash()`, which is salted per
process and would differ between nodes.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from hashlib import blake2b

DEFAULT_SHARDS = 256


def _h64(data: bytes) -> int:
    return int.from_bytes(blake2b(data, digest_size=8).digest(), "big")


@functools.lru_cache(maxsize=65_536)
def shard_of(kind: str, key: str, shards: int = DEFAULT_SHARDS) -> int:
    """The shard of actor `kind:key`, stable across processes, nodes and restarts. Remembered
    for recent keys: every ask and every write of an actor asks it (blake2b costs ~1 us)."""
    return _h64(f"{kind}:{key}".encode()) % shards


def owner_of(shard: int, nodes: Iterable[str]) -> str | None:
    """The live node that should own `shard` (None with no live node). Ties, which need a
    64-bit collision, go to the smaller node id so every node still agrees."""
    best: tuple[int, str] | None = None
    for node in nodes:
        score = _h64(f"{node}/{shard}".encode())
        if best is None or score > best[0] or (score == best[0] and node < best[1]):
            best = (score, node)
    return None if best is None else best[1]


def plan(nodes: Iterable[str], shards: int = DEFAULT_SHARDS) -> dict[int, str]:
    """shard -> the node that should own it, for every shard (empty with no live node)."""
    live = sorted(set(nodes))
    if not live:
        return {}
    return {s: owner for s in range(shards) if (owner := owner_of(s, live)) is not None}


def shards_for(node: str, nodes: Iterable[str], shards: int = DEFAULT_SHARDS) -> frozenset[int]:
    """The shards `node` should own given the live set (`node` counted as live)."""
    live = {*nodes, node}
    return frozenset(s for s, owner in plan(live, shards).items() if owner == node)
