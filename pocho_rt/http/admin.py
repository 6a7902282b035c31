"""HTTP routes: admin (PROTOCOL "Ops").

    GET  /admin/vendors/pending?limit=     {vendors: [vendor...]}: unverified, oldest first;
                                           limit 1..200, default 50
    POST /admin/vendors/{id}/verify        200 vendor (verified: true); idempotent
    GET  /admin/actors?kind=&limit=        actors in this node's memory
    GET  /admin/actors/{kind}/{id}         one actor's live state (404 if not in memory)
    POST /admin/actors/{kind}/{id}/passivate  drop an idle actor from memory (409 if busy)

Access: an ADMIN bearer token, or `X-Admin-Key` equal to POCHO_ADMIN_KEY. No or wrong
credentials: 401; a valid token of another role: 403 (`require_admin`).

Verifying writes, in one transaction: the vendor (verified, verified_at, verified_by =
the admin's user id, or NULL with the shared key), an `audit_log` row (actor_id = admin id
and actor_kind 'admin', or actor_id NULL and actor_kind 'admin_key'; action
'vendor.verify'), and a search outbox upsert. Verifying an already verified vendor
changes and records nothing and answers the same vendor. After commit
`svc.negotiation.vendor_changed` is awaited (see pocho_rt.http.catalogue) so the vendor
joins the geo index that matches meal requests.

The actor routes answer for every node: each question goes to the node that owns the actor
(`svc.cluster`).
"""

from __future__ import annotations

from aiohttp import web

from engine.runtime.ops import ActorState, PassivateActor
from persistence import catalogue as cat
from persistence import users as users_db
from persistence.audit import audit
from pocho_rt import views
from pocho_rt.auth.principal import require_admin
from pocho_rt.context import services
from pocho_rt.errors import ApiError
from pocho_rt.http.catalogue import nudge_search, path_uuid, vendor_changed
from pocho_rt.http.middleware import json_response
from pocho_rt.http.pagination import limit_param
from pocho_rt.logs import request_id

routes = web.RouteTableDef()


@routes.get("/admin/vendors/pending")
async def pending_vendors(request: web.Request) -> web.Response:
    await require_admin(request)
    limit = limit_param(request, default=50, maximum=200)
    rows = await cat.pending_vendors(services(request).pool, limit)
    return json_response({"vendors": [views.vendor_view(r) for r in rows]})


@routes.post("/admin/vendors/{id}/verify")
async def verify_vendor(request: web.Request) -> web.Response:
    principal = await require_admin(request)
    vendor_id = path_uuid(request, "vendor")
    admin_id = principal.user_id if principal is not None else None
    svc = services(request)
    async with svc.pool.acquire() as conn, conn.transaction():
        if admin_id is not None and not await users_db.user_exists(conn, admin_id):
            raise ApiError("unauthorized", "the account of this token no longer exists")
        row, changed = await cat.verify_vendor(conn, vendor_id, admin_id)
        if row is None:
            raise ApiError("not_found", "vendor not found")
        if changed:
            await audit(
                conn,
                "vendor.verify",
                actor_id=admin_id,
                actor_kind="admin" if admin_id else "admin_key",
                target_kind="vendor",
                target_id=str(vendor_id),
                details={"displayName": row["display_name"]},
                request_id=request_id.get(),
            )
    if changed:
        nudge_search(svc)
        await vendor_changed(svc, vendor_id)
    return json_response(views.vendor_view(row))


@routes.get("/admin/actors")
async def list_actors(request: web.Request) -> web.Response:
    """Actors in memory on every live node: {count, actors: [{kind, id, node}]}."""
    await require_admin(request)
    kind = request.query.get("kind") or None
    limit = limit_param(request, default=100, maximum=1000)
    count, actors = await services(request).cluster.list_actors(kind, limit)
    return json_response({"count": count, "actors": actors})


@routes.get("/admin/actors/{kind}/{id}")
async def get_actor(request: web.Request) -> web.Response:
    """The live in-memory state of one actor, from whichever node owns it (404 when it is
    not in memory there)."""
    await require_admin(request)
    kind, actor_id = request.match_info["kind"], request.match_info["id"]
    node, state = await services(request).cluster.ask_owner(kind, actor_id, ActorState(kind, actor_id))
    if state is None:
        raise ApiError("not_found", "actor not in memory on its node")
    return json_response({"kind": kind, "id": actor_id, "node": node, "state": state})


@routes.post("/admin/actors/{kind}/{id}/passivate")
async def passivate_actor(request: web.Request) -> web.Response:
    """Drop an idle actor from its node's memory (409 while it is busy or has writes in flight)."""
    principal = await require_admin(request)
    svc = services(request)
    kind, actor_id = request.match_info["kind"], request.match_info["id"]
    node, done = await svc.cluster.ask_owner(kind, actor_id, PassivateActor(kind, actor_id))
    if done is None:
        raise ApiError("not_found", "actor not in memory on its node")
    if not done:
        raise ApiError("conflict", "actor is busy, retry")
    await audit(
        svc.pool,
        "actor.passivate",
        actor_id=principal.user_id if principal else None,
        actor_kind="admin" if principal else "admin_key",
        target_kind=kind,
        target_id=actor_id,
        request_id=request_id.get(),
    )
    return json_response({"passivated": True, "node": node})


@routes.get("/admin/nodes")
async def list_nodes(request: web.Request) -> web.Response:
    """The live nodes: {nodes: [{id, address, started, lastHeartbeat, shards, liveActors}]}."""
    await require_admin(request)
    return json_response({"nodes": await services(request).cluster.nodes()})


@routes.get("/admin/shards")
async def list_shards(request: web.Request) -> web.Response:
    """Every shard: {shards: [{shard, node, epoch}]} (node null while the shard moves)."""
    await require_admin(request)
    return json_response({"shards": await services(request).cluster.shards()})


def setup(app: web.Application) -> None:
    app.add_routes(routes)
