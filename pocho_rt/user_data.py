"""Data rights (NDPA 2023): a copy of everything stored about a person, and erasure.

Export (`GET /api/v1/me/export`): one JSON document, camelCase keys like the rest of the
API, one list per kind of record (persistence.user_data.export_rows), each capped at
EXPORT_MAX_ROWS newest rows; `truncated` names the lists that were cut.

Erasure (`DELETE /api/v1/me`): refused with 409 while an order the person takes part in is
still running (the other parties need it to finish). Otherwise: the person's open meal
requests are cancelled and a vendor's live offers withdrawn through their actors (so
customers and vendors see it happen), then one transaction tombstones the person
(persistence.user_data.erase) and writes the audit row; after commit every session and
socket ends (`session:revoked` {reason: "account_erased"}), the vendor leaves matching and
search, and the actors that held the person's requests and orders are dropped from memory
so they reload the scrubbed rows.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from engine import negotiation as n
from engine.assignment import ORDER_KIND
from engine.clock import iso, utcnow
from engine.errors import EngineError
from engine.meal_request_actor import MealRequestActor
from persistence import catalogue as catalogue_db
from persistence import refresh_tokens
from persistence import user_data as data_db
from persistence import users as users_db
from persistence.audit import audit
from pocho_rt.account_control import end_user_everywhere, stop_matching
from pocho_rt.context import Services
from pocho_rt.errors import ApiError
from pocho_rt.logs import request_id
from pocho_rt.metrics import ACCOUNT_EVENTS

log = logging.getLogger("pocho.users")
EXPORT_MAX_ROWS = 10_000
EXPORT_VERSION = 1


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(w.title() for w in rest)


def _camelise(value: Any) -> Any:
    """Keys of stored rows as the API spells them; stored JSON payloads are camelCase already."""
    if isinstance(value, dict):
        return {_camel(k): v for k, v in value.items()}
    return value


async def export(svc: Services, user_id: str) -> dict[str, Any]:
    async with svc.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        rows = await data_db.export_rows(conn, svc.pii, user_id, EXPORT_MAX_ROWS)
        sessions = await refresh_tokens.all_families(conn, user_id, EXPORT_MAX_ROWS)
    if not rows["user"] or rows["user"][0].get("erased_at") is not None:
        raise ApiError("unauthorized", "the account of this token no longer exists")
    sections = {
        "mealRequests": rows["meal_requests"],
        "offers": rows["offers"],
        "orders": rows["orders"],
        "payments": rows["payments"],
        "reviews": rows["reviews"],
        "notifications": rows["notifications"],
        "auditEntries": rows["audit_entries"],
        "riderLocations": rows["rider_locations"],
    }
    session_rows = [
        {
            "sid": s["family_id"],
            "createdAt": iso(s["created_at"]),
            "lastUsedAt": iso(s["last_used_at"]),
            "userAgent": s["user_agent"],
            "ipPrefix": s["ip_prefix"],
            "revokedAt": iso(s["revoked_at"]) if s["revoked_at"] else None,
        }
        for s in sessions
    ]
    ACCOUNT_EVENTS.labels("export").inc()
    return {
        "version": EXPORT_VERSION,
        "exportedAt": iso(datetime.now(UTC)),
        "profile": _camelise(rows["user"][0]),
        "vendor": _camelise(rows["vendor"][0]) if rows["vendor"] else None,
        "rider": _camelise(rows["rider"][0]) if rows["rider"] else None,
        "vendorSettlement": [_camelise(r) for r in rows["vendor_settlement"]],
        **{name: [_camelise(r) for r in items] for name, items in sections.items()},
        "sessions": session_rows,
        "truncated": sorted(
            [name for name, items in sections.items() if len(items) >= EXPORT_MAX_ROWS]
            + (["sessions"] if len(session_rows) >= EXPORT_MAX_ROWS else [])
        ),
    }


async def _cancel_open_requests(svc: Services, user_id: str) -> None:
    for open_id in await data_db.open_request_ids(svc.pool, user_id):
        cmd = n.CancelRequest(customer_id=user_id, now=utcnow())
        try:
            await svc.negotiation.request(open_id, cmd, user_id, None)
        except EngineError as exc:  # closed meanwhile: nothing left to cancel
            if exc.code not in ("conflict", "expired"):
                raise


def _drop_actors(svc: Services, request_ids: list[str], order_ids: list[str]) -> None:
    for req_id in request_ids:
        svc.actors.passivate(MealRequestActor.kind, req_id)
    for order_id in order_ids:
        svc.actors.passivate(ORDER_KIND, order_id)


async def erase(svc: Services, user_id: str) -> None:
    active = await data_db.active_order_ids(svc.pool, user_id)
    if active:
        raise ApiError(
            "conflict",
            "orders you take part in are still running; erase the account once they are delivered or canceled",
            {"orders": active[:20]},
        )
    current = await users_db.user_by_id(svc.pool, svc.pii, user_id)
    if current is None or current["erased_at"] is not None:
        raise ApiError("unauthorized", "the account of this token no longer exists")
    await _cancel_open_requests(svc, user_id)
    await stop_matching(svc, user_id, current["role"])
    async with svc.pool.acquire() as conn, conn.transaction():
        user = await users_db.user_by_id(conn, svc.pii, user_id, for_update=True)
        if user is None or user["erased_at"] is not None:
            raise ApiError("unauthorized", "the account of this token no longer exists")
        if await data_db.active_order_ids(conn, user_id):
            raise ApiError("conflict", "an order started meanwhile; try again once it is finished")
        families = await refresh_tokens.revoke_user_families(conn, user_id)
        request_ids, order_ids = await data_db.actor_keys(conn, user_id)
        vendor_id = await data_db.erase(conn, svc.pii, user_id)
        if vendor_id is not None:
            await catalogue_db.enqueue_search(conn, catalogue_db.VENDOR_ENTITY, uuid.UUID(vendor_id))
        await audit(
            conn,
            "user.erased",
            actor_id=user_id,
            target_kind="user",
            target_id=user_id,
            details={"role": user["role"], "sessionsEnded": len(families)},
            request_id=request_id.get(),
        )
    await end_user_everywhere(svc, user_id, families, "account_erased")
    if vendor_id is not None:
        await svc.negotiation.vendor_changed(vendor_id)
    _drop_actors(svc, request_ids, order_ids)
    ACCOUNT_EVENTS.labels("erased").inc()
    log.info("account erased", extra={"userId": user_id, "requests": len(request_ids), "orders": len(order_ids)})
