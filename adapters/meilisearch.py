"""Catalogue search in Meilisearch: the `SearchIndex` used when MEILISEARCH_URL is set.

Why httpx.AsyncClient against the REST API instead of the `meilisearch` package: that
client is synchronous (requests), so every call would take a thread from the default
executor (shared with DNS lookups and other blocking work) and a new HTTP connection
pool per thread; httpx is already a dependency, is natively async (cancellable on
shutdown, real timeouts), keeps one pooled keep-alive connection set, and the handful of
endpoints we use are small and stable:

    POST  /indexes                                  {uid, primaryKey}        -> task
    PATCH /indexes/{uid}/settings                   {searchableAttributes, filterableAttributes,
                                                     sortableAttributes}      -> task
    POST  /indexes/{uid}/documents                  [doc...] (add or replace) -> task
    POST  /indexes/{uid}/documents/delete-batch     [id...]                   -> task
    POST  /indexes/{uid}/search                     {q, filter, limit, sort}  -> {hits}
    GET   /tasks/{taskUid}                                                    -> {status, error}

Every request carries `Authorization: Bearer <MEILISEARCH_API_KEY>` when a key is set.

Two indexes, `vendors` and `menu_items` (primary key `id`), documents as built by
`persistence.catalogue.vendor_doc` / `item_doc`; both carry `_geo` {lat, lng} (an item
has its vendor's location) so `_geoPoint(lat,lng):asc` sorting works. Meilisearch's
default ranking rules put `sort` after words/typo/proximity/attribute, so with a location
results are ordered by relevance first and distance among equally relevant ones; hits
then carry `_geoDistance` (metres), returned as `distanceKm`. Only verified vendors and
available items of verified vendors are ever upserted (see `persistence.catalogue.
sync_search`); searches also filter on those flags as a second line of defence.

Writes wait for their task to finish, so the outbox row is marked done only once the
document is really indexed; a failed task or any HTTP error raises `SearchError`, which
fails the batch and the outbox retries it. Settings are idempotent (PATCH the same
values; "index already exists" is fine), applied by `configure()` on startup.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from engine.errors import EngineError

INDEXES = {"vendor": "vendors", "menu_item": "menu_items"}

SETTINGS: dict[str, dict[str, Any]] = {
    "vendors": {
        "searchableAttributes": ["displayName", "categories"],
        "filterableAttributes": ["verified", "categories", "_geo"],
        "sortableAttributes": ["_geo"],
    },
    "menu_items": {
        "searchableAttributes": ["name", "cuisineTag", "description", "vendorName"],
        "filterableAttributes": ["isAvailable", "vendorVerified", "vendorId", "cuisineTag", "_geo"],
        "sortableAttributes": ["_geo", "priceKobo"],
    },
}
_FILTERS = {"vendors": "verified = true", "menu_items": "isAvailable = true AND vendorVerified = true"}
_HIDDEN = {"_geo", "_geoDistance", "_rankingScore", "_formatted", "verified", "isAvailable", "vendorVerified"}


class SearchError(EngineError):
    """Meilisearch is unreachable or refused a request (PROTOCOL `unavailable`)."""

    def __init__(self, message: str) -> None:
        super().__init__("unavailable", message)


class MeiliSearchIndex:
    """`engine.ports.SearchIndex` backed by a Meilisearch server."""

    def __init__(
        self, url: str, api_key: str = "", *, timeout: float = 10.0, task_timeout: float = 30.0, index_prefix: str = ""
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(base_url=url.rstrip("/"), headers=headers, timeout=timeout)
        self.task_timeout = task_timeout
        self.prefix = index_prefix

    def _uid(self, entity_or_index: str) -> str:
        return self.prefix + INDEXES.get(entity_or_index, entity_or_index)

    async def close(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, body: Any = None) -> Any:
        try:
            resp = await self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise SearchError(f"meilisearch {method} {path}: {type(exc).__name__}") from exc
        if resp.status_code >= 400:
            try:
                err = resp.json()
                detail = f"{err.get('code')}: {err.get('message')}"
            except ValueError:
                detail = resp.text[:200]
            raise SearchError(f"meilisearch {method} {path} -> {resp.status_code} {detail}")
        return resp.json() if resp.content else None

    async def wait_task(self, task: dict[str, Any], *, allow: tuple[str, ...] = ()) -> dict[str, Any]:
        """Poll a task until it succeeds; raise SearchError if it fails (unless its error
        code is in `allow`) or does not finish within `task_timeout`."""
        uid = task.get("taskUid", task.get("uid"))
        deadline = time.monotonic() + self.task_timeout
        delay = 0.01
        while True:
            info: dict[str, Any] = await self._request("GET", f"/tasks/{uid}")
            status = info.get("status")
            if status == "succeeded":
                return info
            if status in ("failed", "canceled"):
                error = info.get("error") or {}
                if error.get("code") in allow:
                    return info
                raise SearchError(f"meilisearch task {uid} {status}: {error.get('code')} {error.get('message')}")
            if time.monotonic() > deadline:
                raise SearchError(f"meilisearch task {uid} still {status} after {self.task_timeout}s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def configure(self) -> None:
        """Create both indexes and apply their settings; idempotent, run on every start."""
        for name, settings in SETTINGS.items():
            uid = self._uid(name)
            task = await self._request("POST", "/indexes", {"uid": uid, "primaryKey": "id"})
            await self.wait_task(task, allow=("index_already_exists",))
            task = await self._request("PATCH", f"/indexes/{uid}/settings", settings)
            await self.wait_task(task)

    async def upsert(self, entity: str, docs: list[dict[str, Any]]) -> None:
        if docs:
            await self.wait_task(await self._request("POST", f"/indexes/{self._uid(entity)}/documents", docs))

    async def delete(self, entity: str, ids: list[str]) -> None:
        if ids:
            await self.wait_task(
                await self._request("POST", f"/indexes/{self._uid(entity)}/documents/delete-batch", ids)
            )

    async def _search_one(
        self, index: str, q: str, lat: float | None, lng: float | None, limit: int
    ) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"q": q, "limit": limit, "filter": _FILTERS[index]}
        if lat is not None and lng is not None:
            body["sort"] = [f"_geoPoint({lat},{lng}):asc"]
        result = await self._request("POST", f"/indexes/{self._uid(index)}/search", body)
        out = []
        for hit in result.get("hits", []):
            doc = {k: v for k, v in hit.items() if k not in _HIDDEN}
            meters = hit.get("_geoDistance")
            doc["distanceKm"] = round(meters / 1000, 3) if meters is not None and lat is not None else None
            out.append(doc)
        return out

    async def search(self, q: str, lat: float | None, lng: float | None, limit: int) -> dict[str, list[dict[str, Any]]]:
        vendors, items = await asyncio.gather(
            self._search_one("vendors", q, lat, lng, limit), self._search_one("menu_items", q, lat, lng, limit)
        )
        return {"vendors": vendors, "menuItems": items}
