"""A small in-process Meilisearch: a real aiohttp server on 127.0.0.1:<random port>
implementing the parts of Meilisearch's documented REST API that adapters/meilisearch.py
calls, with the same request and response shapes:

    POST   /indexes                              {uid, primaryKey}          -> 202 task summary
    GET    /indexes/{uid}                                                   -> index | 404 index_not_found
    GET    /indexes/{uid}/settings, PATCH /indexes/{uid}/settings          -> settings | 202 task
    POST   /indexes/{uid}/documents              [doc...] add or replace    -> 202 task
    PUT    /indexes/{uid}/documents              [doc...] add or update     -> 202 task
    GET    /indexes/{uid}/documents/{id}                                    -> doc | 404 document_not_found
    POST   /indexes/{uid}/documents/delete-batch [id...]                    -> 202 task
    POST   /indexes/{uid}/search                 {q, filter, limit, sort}   -> {hits, query, limit, ...}
    GET    /tasks/{taskUid}                                                 -> task

Tasks are processed synchronously (already `succeeded`/`failed` when first read).
Authorization: `Authorization: Bearer <key>` must match the master key: missing -> 401
`missing_authorization_header`, wrong -> 403 `invalid_api_key` (as Meilisearch does).

Search: a document matches when every query word matches a word of a searchable
attribute case-insensitively, as a prefix or within one typo (edit distance 1 for words
of 5+ letters). Hits are ordered by the number of exact word matches (more relevant
first), then `_geoPoint(lat,lng):asc` distance when asked, with `_geoDistance` in metres.
Filters: `attr = value` clauses joined by AND (value true/false/number/'string').

Test controls: `fail_writes` (documents endpoints answer 500), `requests` (method, path).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.fakes.local import serve

_GEO_SORT = re.compile(r"^_geoPoint\(\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*\):(asc|desc)$")
_WORD = re.compile(r"\w+", re.UNICODE)


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _err(status: int, code: str, message: str, typ: str = "invalid_request") -> web.Response:
    return web.json_response(
        {"message": message, "code": code, "type": typ, "link": f"https://docs.meilisearch.com/errors#{code}"},
        status=status,
    )


def _edit1(a: str, b: str) -> bool:
    """Edit distance of a and b is at most 1."""
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = j = diffs = 0
    while i < len(a) and j < len(b):
        if a[i] == b[j]:
            i += 1
            j += 1
            continue
        diffs += 1
        if diffs > 1:
            return False
        if len(a) == len(b):
            i += 1
        j += 1
    return diffs + (len(b) - j) + (len(a) - i) <= 1


def _haversine_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371008.8 * math.asin(min(1.0, math.sqrt(h)))


class FakeMeilisearch:
    def __init__(self, master_key: str = "test-master-key") -> None:
        self.master_key = master_key
        self.indexes: dict[str, dict[str, Any]] = {}  # uid -> {primaryKey, settings, docs}
        self.tasks: dict[int, dict[str, Any]] = {}
        self.fail_writes = False
        self.requests: list[tuple[str, str]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> str:
        app = web.Application(middlewares=[self._auth])
        r = app.router
        r.add_post("/indexes", self.create_index)
        r.add_get("/indexes/{uid}", self.get_index)
        r.add_get("/indexes/{uid}/settings", self.get_settings)
        r.add_patch("/indexes/{uid}/settings", self.update_settings)
        r.add_post("/indexes/{uid}/documents", self.add_documents)
        r.add_put("/indexes/{uid}/documents", self.add_documents)
        r.add_post("/indexes/{uid}/documents/delete-batch", self.delete_batch)
        r.add_get("/indexes/{uid}/documents/{id}", self.get_document)
        r.add_post("/indexes/{uid}/search", self.search)
        r.add_get("/tasks/{task_uid}", self.get_task)
        self._runner, self.url = await serve(app)
        return self.url

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        header = request.headers.get("Authorization")
        if not header:
            return _err(
                401,
                "missing_authorization_header",
                "The Authorization header is missing. It must use the bearer authorization method.",
                "auth",
            )
        scheme, _, key = header.partition(" ")
        if scheme != "Bearer" or key != self.master_key:
            return _err(403, "invalid_api_key", "The provided API key is invalid.", "auth")
        result: web.StreamResponse = await handler(request)
        return result

    # ------------------------------------------------------------ tasks

    def _task(
        self,
        index_uid: str | None,
        typ: str,
        error: dict[str, Any] | None = None,
        details: dict[str, Any] | None = None,
    ) -> web.Response:
        uid = len(self.tasks)
        now = _now()
        self.tasks[uid] = {
            "uid": uid,
            "batchUid": uid,
            "indexUid": index_uid,
            "status": "failed" if error else "succeeded",
            "type": typ,
            "canceledBy": None,
            "details": details or {},
            "error": error,
            "duration": "PT0.001S",
            "enqueuedAt": now,
            "startedAt": now,
            "finishedAt": now,
        }
        return web.json_response(
            {"taskUid": uid, "indexUid": index_uid, "status": "enqueued", "type": typ, "enqueuedAt": now}, status=202
        )

    async def get_task(self, request: web.Request) -> web.Response:
        task = self.tasks.get(int(request.match_info["task_uid"]))
        if task is None:
            return _err(404, "task_not_found", "Task not found.")
        return web.json_response(task)

    # ------------------------------------------------------------ indexes and settings

    def _ensure(self, uid: str, primary_key: str | None = None) -> dict[str, Any]:
        return self.indexes.setdefault(
            uid,
            {
                "primaryKey": primary_key,
                "docs": {},
                "createdAt": _now(),
                "settings": {"searchableAttributes": ["*"], "filterableAttributes": [], "sortableAttributes": []},
            },
        )

    async def create_index(self, request: web.Request) -> web.Response:
        body = await request.json()
        uid = body.get("uid")
        if not isinstance(uid, str) or not uid:
            return _err(400, "missing_index_uid", "`uid` is missing.")
        if uid in self.indexes:
            return self._task(
                uid,
                "indexCreation",
                error={
                    "message": f"Index `{uid}` already exists.",
                    "code": "index_already_exists",
                    "type": "invalid_request",
                    "link": "https://docs.meilisearch.com/errors#index_already_exists",
                },
            )
        self._ensure(uid, body.get("primaryKey"))
        return self._task(uid, "indexCreation", details={"primaryKey": body.get("primaryKey")})

    async def get_index(self, request: web.Request) -> web.Response:
        uid = request.match_info["uid"]
        idx = self.indexes.get(uid)
        if idx is None:
            return _err(404, "index_not_found", f"Index `{uid}` not found.")
        return web.json_response(
            {"uid": uid, "primaryKey": idx["primaryKey"], "createdAt": idx["createdAt"], "updatedAt": idx["createdAt"]}
        )

    async def get_settings(self, request: web.Request) -> web.Response:
        idx = self.indexes.get(request.match_info["uid"])
        if idx is None:
            return _err(404, "index_not_found", "Index not found.")
        return web.json_response(idx["settings"])

    async def update_settings(self, request: web.Request) -> web.Response:
        uid = request.match_info["uid"]
        body = await request.json()
        known = {"searchableAttributes", "filterableAttributes", "sortableAttributes"}
        bad = set(body) - known
        if bad:
            return _err(400, "bad_request", f"Unknown field `{sorted(bad)[0]}`")
        self._ensure(uid)["settings"].update(body)
        return self._task(uid, "settingsUpdate", details=body)

    # ------------------------------------------------------------ documents

    async def add_documents(self, request: web.Request) -> web.Response:
        uid = request.match_info["uid"]
        if self.fail_writes:
            return _err(500, "internal", "simulated failure", "internal")
        docs = await request.json()
        if not isinstance(docs, list):
            return _err(400, "malformed_payload", "expected an array of documents")
        idx = self._ensure(uid)
        pk = idx["primaryKey"] or "id"
        idx["primaryKey"] = pk
        for doc in docs:
            if pk not in doc:
                return self._task(
                    uid,
                    "documentAdditionOrUpdate",
                    error={
                        "message": "missing primary key",
                        "code": "missing_document_id",
                        "type": "invalid_request",
                        "link": "",
                    },
                )
        for doc in docs:
            key = str(doc[pk])
            if request.method == "PUT" and key in idx["docs"]:
                idx["docs"][key] = {**idx["docs"][key], **doc}
            else:
                idx["docs"][key] = dict(doc)
        return self._task(
            uid, "documentAdditionOrUpdate", details={"receivedDocuments": len(docs), "indexedDocuments": len(docs)}
        )

    async def delete_batch(self, request: web.Request) -> web.Response:
        uid = request.match_info["uid"]
        if self.fail_writes:
            return _err(500, "internal", "simulated failure", "internal")
        ids = await request.json()
        idx = self._ensure(uid)
        deleted = sum(1 for i in ids if idx["docs"].pop(str(i), None) is not None)
        return self._task(uid, "documentDeletion", details={"providedIds": len(ids), "deletedDocuments": deleted})

    async def get_document(self, request: web.Request) -> web.Response:
        idx = self.indexes.get(request.match_info["uid"])
        doc = idx["docs"].get(request.match_info["id"]) if idx else None
        if doc is None:
            return _err(404, "document_not_found", "Document not found.")
        return web.json_response(doc)

    # ------------------------------------------------------------ search

    @staticmethod
    def _filter(doc: dict[str, Any], expr: str | None) -> bool:
        if not expr:
            return True
        for clause in re.split(r"\s+AND\s+", expr.strip()):
            attr, _, raw = clause.partition("=")
            attr, raw = attr.strip(), raw.strip()
            if raw in ("true", "false"):
                want: Any = raw == "true"
            elif raw[:1] in ("'", '"'):
                want = raw[1:-1]
            else:
                want = float(raw)
            have = doc.get(attr)
            if isinstance(have, list):
                if want not in have:
                    return False
            elif have != want:
                return False
        return True

    @staticmethod
    def _words(doc: dict[str, Any], attrs: list[str]) -> list[str]:
        fields = list(doc) if attrs == ["*"] else attrs
        words: list[str] = []
        for f in fields:
            value = doc.get(f)
            values = value if isinstance(value, list) else [value]
            for v in values:
                if isinstance(v, str):
                    words += [w.lower() for w in _WORD.findall(v)]
        return words

    @staticmethod
    def _score(terms: list[str], words: list[str]) -> int | None:
        """None when a term matches nothing; else the number of exact word matches."""
        exact = 0
        for t in terms:
            if t in words:
                exact += 1
            elif not any(
                w.startswith(t) or ((len(t) >= 5 and _edit1(t, w[: len(t) + 1])) or (len(t) >= 5 and _edit1(t, w)))
                for w in words
            ):
                return None
        return exact

    async def search(self, request: web.Request) -> web.Response:
        uid = request.match_info["uid"]
        idx = self.indexes.get(uid)
        if idx is None:
            return _err(404, "index_not_found", f"Index `{uid}` not found.")
        body = await request.json()
        q = str(body.get("q") or "")
        limit = int(body.get("limit", 20))
        settings = idx["settings"]
        expr = body.get("filter")
        for attr in re.findall(r"(\w+)\s*=", expr or ""):
            if attr not in settings["filterableAttributes"]:
                return _err(400, "invalid_search_filter", f"Attribute `{attr}` is not filterable.")
        geo: tuple[float, float] | None = None
        for s in body.get("sort") or []:
            m = _GEO_SORT.match(s)
            if not m or "_geo" not in settings["sortableAttributes"]:
                return _err(400, "invalid_search_sort", f"Invalid sort `{s}`.")
            geo = (float(m.group(1)), float(m.group(2)))
        terms = [t.lower() for t in _WORD.findall(q)]
        hits: list[tuple[int, float, dict[str, Any]]] = []
        for doc in idx["docs"].values():
            if not self._filter(doc, expr):
                continue
            score = self._score(terms, self._words(doc, settings["searchableAttributes"])) if terms else 0
            if score is None:
                continue
            hit = dict(doc)
            dist = 0.0
            if geo is not None and isinstance(doc.get("_geo"), dict):
                dist = _haversine_m(geo[0], geo[1], doc["_geo"]["lat"], doc["_geo"]["lng"])
                hit["_geoDistance"] = round(dist)
            hits.append((score, dist, hit))
        hits.sort(key=lambda h: (-h[0], h[1]))
        return web.json_response(
            {
                "hits": [h for _, _, h in hits[:limit]],
                "query": q,
                "processingTimeMs": 0,
                "limit": limit,
                "offset": 0,
                "estimatedTotalHits": len(hits),
            }
        )
