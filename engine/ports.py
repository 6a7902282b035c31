"""The small interfaces through which the engine and the server reach the outside world.

Adapters (`adapters/`) and persistence implement these; nothing here does I/O itself.
"""

from __future__ import annotations

from typing import Any, Protocol


class SmsSender(Protocol):
    """Sends one text message (phone verification codes, order notices)."""

    async def send(self, phone: str, body: str, *, user_id: str | None, kind: str) -> None: ...


class SearchIndex(Protocol):
    """Typo-tolerant search over verified vendors and available menu items."""

    async def search(self, q: str, lat: float | None, lng: float | None, limit: int) -> dict[str, list[dict[str, Any]]]:
        """{"vendors": [...], "menuItems": [...]} ranked by relevance (and distance when given)."""
        ...

    async def upsert(self, entity: str, docs: list[dict[str, Any]]) -> None: ...

    async def delete(self, entity: str, ids: list[str]) -> None: ...
