"""Admin vendor verification: GET /admin/vendors/pending, POST /admin/vendors/{id}/verify."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from tests.helpers import Client
from tests.integration.test_catalogue import account, err, new_vendor


async def test_pending_lists_unverified_oldest_first(client: Client, db: asyncpg.Connection) -> None:
    _, admin = await account(client, db, "ADMIN")
    ids = [(await new_vendor(client, db, displayName=f"V{i}"))[1]["id"] for i in range(4)]
    await db.execute("UPDATE vendors SET created_at = now() - interval '1 hour' WHERE id = $1", uuid.UUID(ids[2]))
    await client.call("POST", f"/admin/vendors/{ids[1]}/verify", token=admin)
    status, body = await client.call("GET", "/admin/vendors/pending", token=admin)
    assert status == 200
    assert [v["id"] for v in body["vendors"]] == [ids[2], ids[0], ids[3]]
    assert all(v["verified"] is False for v in body["vendors"])
    status, body = await client.call("GET", "/admin/vendors/pending?limit=2", headers=client.admin_headers())
    assert status == 200 and [v["id"] for v in body["vendors"]] == [ids[2], ids[0]]
    for bad in ("0", "201", "abc", "-1"):
        status, body = await client.call("GET", f"/admin/vendors/pending?limit={bad}", token=admin)
        assert status == 400 and "limit" in err(body, "invalid")["details"]
    status, body = await client.call("GET", "/admin/vendors/pending?limit=200", token=admin)
    assert status == 200 and len(body["vendors"]) == 3


async def test_admin_access(client: Client, db: asyncpg.Connection) -> None:
    _, vendor = await new_vendor(client, db)
    verify = f"/admin/vendors/{vendor['id']}/verify"
    for method, path in (("GET", "/admin/vendors/pending"), ("POST", verify)):
        status, body = await client.call(method, path)
        assert status == 401 and err(body, "unauthorized")
        status, body = await client.call(method, path, headers={"X-Admin-Key": "wrong"})
        assert status == 401 and err(body, "unauthorized")
        status, body = await client.call(method, path, token="not-a-jwt")
        assert status == 401
        for role in ("CUSTOMER", "VENDOR", "RIDER"):
            _, token = await account(client, db, role)
            status, body = await client.call(method, path, token=token)
            assert status == 403 and err(body, "forbidden")
    assert await db.fetchval("SELECT verified FROM vendors") is False
    assert await db.fetchval("SELECT count(*) FROM audit_log") == 0


async def test_verify_with_admin_token(client: Client, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    async def hook(vendor_id: str) -> None:
        calls.append(vendor_id)

    monkeypatch.setattr(client.server.svc.negotiation, "vendor_changed", hook)
    admin_id, admin = await account(client, db, "ADMIN")
    _, vendor = await new_vendor(client, db)
    status, body = await client.call("POST", f"/admin/vendors/{vendor['id']}/verify", token=admin)
    assert status == 200, body
    assert body["verified"] is True and body["id"] == vendor["id"] and body["displayName"] == vendor["displayName"]
    assert calls == [vendor["id"]]
    row = await db.fetchrow("SELECT verified_by, verified_at FROM vendors")
    assert str(row["verified_by"]) == admin_id and row["verified_at"] is not None
    audit = await db.fetch("SELECT * FROM audit_log")
    assert len(audit) == 1
    assert str(audit[0]["actor_id"]) == admin_id and audit[0]["actor_kind"] == "admin"
    assert (audit[0]["action"], audit[0]["target_kind"], audit[0]["target_id"]) == (
        "vendor.verify",
        "vendor",
        vendor["id"],
    )
    assert audit[0]["request_id"]
    outbox = await db.fetch(
        "SELECT entity, op FROM search_outbox WHERE entity_id = $1 ORDER BY id", uuid.UUID(vendor["id"])
    )
    assert [(r["entity"], r["op"]) for r in outbox] == [("vendor", "upsert"), ("vendor", "upsert")]

    # idempotent: same answer, nothing recorded twice
    status, again = await client.call("POST", f"/admin/vendors/{vendor['id']}/verify", token=admin)
    assert status == 200 and again == body
    assert await db.fetchval("SELECT count(*) FROM audit_log") == 1
    assert await db.fetchval("SELECT count(*) FROM search_outbox") == 2
    assert calls == [vendor["id"]]
    status, pending = await client.call("GET", "/admin/vendors/pending", token=admin)
    assert pending == {"vendors": []}


async def test_verify_with_admin_key(client: Client, db: asyncpg.Connection) -> None:
    _, vendor = await new_vendor(client, db)
    status, body = await client.call("POST", f"/admin/vendors/{vendor['id']}/verify", headers=client.admin_headers())
    assert status == 200 and body["verified"] is True
    audit = await db.fetchrow("SELECT actor_id, actor_kind, action FROM audit_log")
    assert audit is not None and audit["actor_id"] is None and audit["actor_kind"] == "admin_key"
    assert await db.fetchval("SELECT verified_by FROM vendors") is None


async def test_verify_unknown_vendor(client: Client, db: asyncpg.Connection) -> None:
    for path in (f"/admin/vendors/{uuid.uuid4()}/verify", "/admin/vendors/nope/verify"):
        status, body = await client.call("POST", path, headers=client.admin_headers())
        assert status == 404 and err(body, "not_found")
    assert await db.fetchval("SELECT count(*) FROM audit_log") == 0
