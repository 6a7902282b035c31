"""Vendors, menus, menu items and riders over real HTTP (PROTOCOL "Profiles and catalogue")."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest

from persistence.users import create_user
from tests.helpers import Client, new_phone

VENDOR = {
    "displayName": "Mama Bisi Kitchen",
    "lat": 6.5244,
    "lng": 3.3792,
    "kmServiceArea": 8,
    "categories": ["nigerian", "rice"],
}


async def account(client: Client, db: asyncpg.Connection, role: str) -> tuple[str, str]:
    """(user id, access token) of a new user, created directly (registration is not ours)."""
    row = await create_user(
        db,
        client.server.svc.pii,
        phone=new_phone(),
        password_hash="x",
        role=role,
        first_name="Test",
        last_name=role.title(),
        email=None,
    )
    assert row is not None
    user_id = str(row["id"])
    return user_id, client.server.svc.tokens.issue(user_id, role, str(uuid.uuid4()))[0]


async def new_vendor(client: Client, db: asyncpg.Connection, **fields: Any) -> tuple[str, dict[str, Any]]:
    """(owner token, vendor) of a new unverified vendor."""
    _, token = await account(client, db, "VENDOR")
    status, body = await client.call("POST", "/api/v1/vendors", {**VENDOR, **fields}, token=token)
    assert status == 201, body
    return token, body


async def new_item(client: Client, token: str, vendor_id: str, **fields: Any) -> dict[str, Any]:
    status, menu = await client.call("POST", f"/api/v1/vendors/{vendor_id}/menus", {"title": "Main"}, token=token)
    assert status == 201, menu
    payload = {"name": "Jollof Rice", "priceKobo": 350000, **fields}
    status, item = await client.call("POST", f"/api/v1/menus/{menu['id']}/items", payload, token=token)
    assert status == 201, item
    return dict(item)


def err(body: Any, code: str) -> dict[str, Any]:
    assert body["error"]["code"] == code, body
    return dict(body["error"])


# ---------------------------------------------------------------- vendors


async def test_create_vendor(client: Client, db: asyncpg.Connection) -> None:
    user_id, token = await account(client, db, "VENDOR")
    status, body = await client.call("POST", "/api/v1/vendors", VENDOR, token=token)
    assert status == 201, body
    assert body["userId"] == user_id and body["verified"] is False
    assert body["displayName"] == "Mama Bisi Kitchen" and body["categories"] == ["nigerian", "rice"]
    assert body["kmServiceArea"] == 8 and body["lat"] == 6.5244 and body["lng"] == 3.3792
    assert body["createdAt"].endswith("Z") and body["updatedAt"].endswith("Z")
    rows = await db.fetch("SELECT entity, entity_id, op, status FROM search_outbox")
    assert [(r["entity"], str(r["entity_id"]), r["op"], r["status"]) for r in rows] == [
        ("vendor", body["id"], "upsert", "pending")
    ]


async def test_create_vendor_refusals(client: Client, db: asyncpg.Connection) -> None:
    assert err((await client.call("POST", "/api/v1/vendors", VENDOR))[1], "unauthorized")
    status, _ = await client.call("POST", "/api/v1/vendors", VENDOR, token="garbage")
    assert status == 401
    for role in ("CUSTOMER", "RIDER", "ADMIN"):
        _, token = await account(client, db, role)
        status, body = await client.call("POST", "/api/v1/vendors", VENDOR, token=token)
        assert status == 403 and err(body, "forbidden")
    _, token = await account(client, db, "VENDOR")
    assert (await client.call("POST", "/api/v1/vendors", VENDOR, token=token))[0] == 201
    status, body = await client.call("POST", "/api/v1/vendors", VENDOR | {"displayName": "Other"}, token=token)
    assert status == 409 and err(body, "conflict")
    assert await db.fetchval("SELECT count(*) FROM vendors") == 1
    assert await db.fetchval("SELECT count(*) FROM search_outbox") == 1


@pytest.mark.parametrize(
    "change,field",
    [
        ({"displayName": ""}, "displayName"),
        ({"displayName": "x" * 81}, "displayName"),
        ({"displayName": "   "}, "displayName"),
        ({"displayName": 5}, "displayName"),
        ({"lat": 90.5}, "lat"),
        ({"lat": "6.5"}, "lat"),
        ({"lng": -180.01}, "lng"),
        ({"kmServiceArea": 0}, "kmServiceArea"),
        ({"kmServiceArea": 50.5}, "kmServiceArea"),
        ({"categories": ["c"] * 11}, "categories"),
        ({"categories": ["x" * 33]}, "categories[0]"),
        ({"categories": [""]}, "categories[0]"),
        ({"categories": "rice"}, "categories"),
    ],
)
async def test_create_vendor_validation(
    client: Client, db: asyncpg.Connection, change: dict[str, Any], field: str
) -> None:
    _, token = await account(client, db, "VENDOR")
    status, body = await client.call("POST", "/api/v1/vendors", VENDOR | change, token=token)
    assert status == 400, body
    assert field in err(body, "invalid")["details"], body
    assert await db.fetchval("SELECT count(*) FROM vendors") == 0


async def test_create_vendor_missing_field_and_bad_json(client: Client, db: asyncpg.Connection) -> None:
    _, token = await account(client, db, "VENDOR")
    payload = {k: v for k, v in VENDOR.items() if k != "lat"}
    status, body = await client.call("POST", "/api/v1/vendors", payload, token=token)
    assert status == 400 and err(body, "invalid")["details"] == {"lat": "required"}
    status, body = await client.call(
        "POST", "/api/v1/vendors", data=b"{nope", token=token, headers={"Content-Type": "application/json"}
    )
    assert status == 400 and err(body, "invalid")


async def test_get_vendor(client: Client, db: asyncpg.Connection) -> None:
    _, vendor = await new_vendor(client, db)
    _, customer = await account(client, db, "CUSTOMER")
    status, body = await client.call("GET", f"/api/v1/vendors/{vendor['id']}", token=customer)
    assert status == 200 and body == vendor
    assert (await client.call("GET", f"/api/v1/vendors/{vendor['id']}"))[0] == 401
    status, body = await client.call("GET", f"/api/v1/vendors/{uuid.uuid4()}", token=customer)
    assert status == 404 and err(body, "not_found")
    for bad in ("not-a-uuid", "1", "%20"):
        status, body = await client.call("GET", f"/api/v1/vendors/{bad}", token=customer)
        assert status == 404 and err(body, "not_found")


async def test_patch_vendor(client: Client, db: asyncpg.Connection) -> None:
    token, vendor = await new_vendor(client, db)
    status, body = await client.call(
        "PATCH", f"/api/v1/vendors/{vendor['id']}", {"displayName": "Mama Bisi 2", "categories": ["soup"]}, token=token
    )
    assert status == 200, body
    assert body["displayName"] == "Mama Bisi 2" and body["categories"] == ["soup"]
    assert body["lat"] == vendor["lat"] and body["kmServiceArea"] == vendor["kmServiceArea"]
    assert body["updatedAt"] >= vendor["updatedAt"]
    assert await db.fetchval("SELECT count(*) FROM search_outbox WHERE entity = 'vendor'") == 2


async def test_patch_vendor_refusals(client: Client, db: asyncpg.Connection) -> None:
    token, vendor = await new_vendor(client, db)
    other, _ = await new_vendor(client, db)
    _, customer = await account(client, db, "CUSTOMER")
    path = f"/api/v1/vendors/{vendor['id']}"
    assert (await client.call("PATCH", path, {"lat": 1}))[0] == 401
    for tok in (other, customer):
        status, body = await client.call("PATCH", path, {"lat": 1}, token=tok)
        assert status == 403 and err(body, "forbidden")
    status, body = await client.call("PATCH", f"/api/v1/vendors/{uuid.uuid4()}", {"lat": 1}, token=token)
    assert status == 404
    assert (await client.call("PATCH", "/api/v1/vendors/zzz", {"lat": 1}, token=token))[0] == 404
    status, body = await client.call("PATCH", path, {"kmServiceArea": 60}, token=token)
    assert status == 400 and "kmServiceArea" in err(body, "invalid")["details"]
    status, body = await client.call("PATCH", path, {"displayName": None}, token=token)
    assert status == 400 and "displayName" in err(body, "invalid")["details"]
    status, body = await client.call("PATCH", path, {}, token=token)
    assert status == 400 and err(body, "invalid")
    status, body = await client.call("GET", path, token=token)
    assert body == vendor  # nothing changed


async def test_patch_verified_vendor_location_keeps_verification_and_runs_hook(
    client: Client, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    async def hook(vendor_id: str) -> None:
        calls.append(vendor_id)

    monkeypatch.setattr(client.server.svc.negotiation, "vendor_changed", hook)
    token, vendor = await new_vendor(client, db)
    path = f"/api/v1/vendors/{vendor['id']}"
    await client.call("PATCH", path, {"lat": 6.6}, token=token)
    assert calls == []  # not verified yet: not in the geo index
    status, _ = await client.call("POST", f"/admin/vendors/{vendor['id']}/verify", headers=client.admin_headers())
    assert status == 200 and calls == [vendor["id"]]
    status, body = await client.call("PATCH", path, {"lat": 6.7, "lng": 3.4, "kmServiceArea": 3}, token=token)
    assert status == 200 and body["verified"] is True and (body["lat"], body["lng"]) == (6.7, 3.4)
    assert calls == [vendor["id"]] * 2
    await client.call("PATCH", path, {"displayName": "Renamed"}, token=token)
    assert len(calls) == 2  # location unchanged: no geo update needed


async def test_failing_hook_does_not_fail_the_change(
    client: Client, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def hook(vendor_id: str) -> None:
        raise RuntimeError("geo down")

    monkeypatch.setattr(client.server.svc.negotiation, "vendor_changed", hook)
    _, vendor = await new_vendor(client, db)
    status, body = await client.call("POST", f"/admin/vendors/{vendor['id']}/verify", headers=client.admin_headers())
    assert status == 200 and body["verified"] is True


# ---------------------------------------------------------------- menus and items


async def test_menus_and_items(client: Client, db: asyncpg.Connection) -> None:
    token, vendor = await new_vendor(client, db)
    status, menu = await client.call("POST", f"/api/v1/vendors/{vendor['id']}/menus", {"title": "Lunch"}, token=token)
    assert status == 201 and menu["title"] == "Lunch" and menu["vendorId"] == vendor["id"]
    status, item = await client.call(
        "POST", f"/api/v1/menus/{menu['id']}/items", {"name": "Jollof Rice", "priceKobo": 350000}, token=token
    )
    assert status == 201, item
    assert item == item | {
        "menuId": menu["id"],
        "vendorId": vendor["id"],
        "name": "Jollof Rice",
        "priceKobo": 350000,
        "description": None,
        "cuisineTag": None,
        "prepMinutes": None,
        "isAvailable": True,
    }
    status, full = await client.call(
        "POST",
        f"/api/v1/menus/{menu['id']}/items",
        {
            "name": "Suya",
            "priceKobo": 1,
            "description": "spicy",
            "cuisineTag": "grill",
            "prepMinutes": 600,
            "isAvailable": False,
        },
        token=token,
    )
    assert status == 201 and full["prepMinutes"] == 600 and full["isAvailable"] is False
    outbox = await db.fetch("SELECT entity_id, op FROM search_outbox WHERE entity = 'menu_item' ORDER BY id")
    assert [(str(r["entity_id"]), r["op"]) for r in outbox] == [(item["id"], "upsert"), (full["id"], "delete")]

    _, customer = await account(client, db, "CUSTOMER")
    status, body = await client.call("GET", f"/api/v1/vendors/{vendor['id']}/menus", token=customer)
    assert status == 200
    assert body == {
        "menus": [
            {
                "id": menu["id"],
                "vendorId": vendor["id"],
                "title": "Lunch",
                "createdAt": menu["createdAt"],
                "updatedAt": menu["updatedAt"],
                "items": [item, full],
            }
        ]
    }
    assert (await client.call("GET", f"/api/v1/vendors/{vendor['id']}/menus"))[0] == 401
    assert (await client.call("GET", f"/api/v1/vendors/{uuid.uuid4()}/menus", token=customer))[0] == 404
    assert (await client.call("GET", "/api/v1/vendors/x/menus", token=customer))[0] == 404


async def test_menu_refusals(client: Client, db: asyncpg.Connection) -> None:
    token, vendor = await new_vendor(client, db)
    other, _ = await new_vendor(client, db)
    path = f"/api/v1/vendors/{vendor['id']}/menus"
    assert (await client.call("POST", path, {"title": "x"}))[0] == 401
    status, body = await client.call("POST", path, {"title": "x"}, token=other)
    assert status == 403 and err(body, "forbidden")
    assert (await client.call("POST", f"/api/v1/vendors/{uuid.uuid4()}/menus", {"title": "x"}, token=token))[0] == 404
    assert (await client.call("POST", "/api/v1/vendors/abc/menus", {"title": "x"}, token=token))[0] == 404
    for bad in ({}, {"title": ""}, {"title": "t" * 81}, {"title": 3}):
        status, body = await client.call("POST", path, bad, token=token)
        assert status == 400 and "title" in err(body, "invalid")["details"]
    assert await db.fetchval("SELECT count(*) FROM menus") == 0


@pytest.mark.parametrize(
    "change,field",
    [
        ({"priceKobo": 0}, "priceKobo"),
        ({"priceKobo": 50_000_001}, "priceKobo"),
        ({"priceKobo": 1.5}, "priceKobo"),
        ({"priceKobo": "100"}, "priceKobo"),
        ({"name": ""}, "name"),
        ({"name": "n" * 121}, "name"),
        ({"description": "d" * 1001}, "description"),
        ({"cuisineTag": "c" * 33}, "cuisineTag"),
        ({"prepMinutes": 0}, "prepMinutes"),
        ({"prepMinutes": 601}, "prepMinutes"),
        ({"isAvailable": "yes"}, "isAvailable"),
    ],
)
async def test_item_validation(client: Client, db: asyncpg.Connection, change: dict[str, Any], field: str) -> None:
    token, vendor = await new_vendor(client, db)
    _, menu = await client.call("POST", f"/api/v1/vendors/{vendor['id']}/menus", {"title": "M"}, token=token)
    status, body = await client.call(
        "POST", f"/api/v1/menus/{menu['id']}/items", {"name": "Rice", "priceKobo": 100} | change, token=token
    )
    assert status == 400 and field in err(body, "invalid")["details"], body
    status, body = await client.call("POST", f"/api/v1/menus/{menu['id']}/items", {"name": "Rice"}, token=token)
    assert status == 400 and err(body, "invalid")["details"] == {"priceKobo": "required"}
    assert await db.fetchval("SELECT count(*) FROM menu_items") == 0


async def test_item_refusals(client: Client, db: asyncpg.Connection) -> None:
    token, vendor = await new_vendor(client, db)
    other, _ = await new_vendor(client, db)
    _, menu = await client.call("POST", f"/api/v1/vendors/{vendor['id']}/menus", {"title": "M"}, token=token)
    item = {"name": "Rice", "priceKobo": 100}
    assert (await client.call("POST", f"/api/v1/menus/{menu['id']}/items", item))[0] == 401
    status, body = await client.call("POST", f"/api/v1/menus/{menu['id']}/items", item, token=other)
    assert status == 403 and err(body, "forbidden")
    assert (await client.call("POST", f"/api/v1/menus/{uuid.uuid4()}/items", item, token=token))[0] == 404
    assert (await client.call("POST", "/api/v1/menus/123/items", item, token=token))[0] == 404


async def test_patch_item(client: Client, db: asyncpg.Connection) -> None:
    token, vendor = await new_vendor(client, db)
    item = await new_item(client, token, vendor["id"], description="Smoky", cuisineTag="nigerian")
    path = f"/api/v1/menu-items/{item['id']}"
    status, body = await client.call(
        "PATCH", path, {"priceKobo": 400000, "isAvailable": False, "description": None}, token=token
    )
    assert status == 200, body
    assert body["priceKobo"] == 400000 and body["isAvailable"] is False and body["description"] is None
    assert body["cuisineTag"] == "nigerian" and body["name"] == "Jollof Rice"
    ops = await db.fetch("SELECT op FROM search_outbox WHERE entity = 'menu_item' ORDER BY id")
    assert [r["op"] for r in ops] == ["upsert", "delete"]
    status, body = await client.call("PATCH", path, {"isAvailable": True, "prepMinutes": 15}, token=token)
    assert status == 200 and body["isAvailable"] is True and body["prepMinutes"] == 15


async def test_patch_item_refusals(client: Client, db: asyncpg.Connection) -> None:
    token, vendor = await new_vendor(client, db)
    other, _ = await new_vendor(client, db)
    _, customer = await account(client, db, "CUSTOMER")
    item = await new_item(client, token, vendor["id"])
    path = f"/api/v1/menu-items/{item['id']}"
    assert (await client.call("PATCH", path, {"priceKobo": 5}))[0] == 401
    for tok in (other, customer):
        status, body = await client.call("PATCH", path, {"priceKobo": 5}, token=tok)
        assert status == 403 and err(body, "forbidden")
    assert (await client.call("PATCH", f"/api/v1/menu-items/{uuid.uuid4()}", {"priceKobo": 5}, token=token))[0] == 404
    assert (await client.call("PATCH", "/api/v1/menu-items/nope", {"priceKobo": 5}, token=token))[0] == 404
    for bad, field in (
        ({"priceKobo": 0}, "priceKobo"),
        ({"name": None}, "name"),
        ({"name": " "}, "name"),
        ({"prepMinutes": 601}, "prepMinutes"),
        ({}, "body"),
    ):
        status, body = await client.call("PATCH", path, bad, token=token)
        assert status == 400 and field in err(body, "invalid")["details"], (bad, body)
    status, body = await client.call("GET", f"/api/v1/vendors/{vendor['id']}/menus", token=token)
    assert body["menus"][0]["items"] == [item]


# ---------------------------------------------------------------- riders


async def test_riders(client: Client, db: asyncpg.Connection) -> None:
    user_id, token = await account(client, db, "RIDER")
    status, body = await client.call("POST", "/api/v1/riders", {"vehicleType": "motorcycle"}, token=token)
    assert status == 201, body
    assert body["userId"] == user_id and body["vehicleType"] == "motorcycle" and body["createdAt"].endswith("Z")
    assert set(body) == {"id", "userId", "vehicleType", "createdAt"}
    status, body = await client.call("POST", "/api/v1/riders", {"vehicleType": "car"}, token=token)
    assert status == 409 and err(body, "conflict")


async def test_rider_refusals(client: Client, db: asyncpg.Connection) -> None:
    assert (await client.call("POST", "/api/v1/riders", {"vehicleType": "car"}))[0] == 401
    for role in ("VENDOR", "CUSTOMER"):
        _, token = await account(client, db, role)
        status, body = await client.call("POST", "/api/v1/riders", {"vehicleType": "car"}, token=token)
        assert status == 403 and err(body, "forbidden")
    _, token = await account(client, db, "RIDER")
    for bad in ({"vehicleType": "truck"}, {}, {"vehicleType": 1}):
        status, body = await client.call("POST", "/api/v1/riders", bad, token=token)
        assert status == 400 and "vehicleType" in err(body, "invalid")["details"], body
    for vehicle in ("bicycle", "car", "on_foot"):
        _, tok = await account(client, db, "RIDER")
        assert (await client.call("POST", "/api/v1/riders", {"vehicleType": vehicle}, token=tok))[0] == 201
