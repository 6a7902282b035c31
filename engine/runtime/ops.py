"""Questions ops asks a node about its actors, sent between nodes like actor messages (the
wire format rebuilds only engine dataclasses). The node answers them itself, not an actor."""

from __future__ import annotations

from dataclasses import dataclass

NODE_KIND = "node"  # the pseudo actor kind these travel under


@dataclass(frozen=True, slots=True)
class ListActors:
    kind: str | None
    limit: int


@dataclass(frozen=True, slots=True)
class ActorState:
    kind: str
    actor_id: str


@dataclass(frozen=True, slots=True)
class PassivateActor:
    kind: str
    actor_id: str
