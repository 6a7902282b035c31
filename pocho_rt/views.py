"""PROTOCOL objects built from stored rows: the camelCase shapes clients see.

They live at the edge, not in persistence/, so the storage layer returns plain rows and
one module decides what a client may see of them. Live engine objects are rendered by
`engine.negotiation_views` (request_view, offer_view); the stored-row views here reuse those so
a request looks the same whether it comes from an actor or from the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypedDict
from uuid import UUID

from engine.clock import iso
from engine.negotiation_views import OfferView, OrderView, RequestView, offer_view, request_view
from engine.orders import ORDER_STATUS, CustomerOrderView, customer_view, order_view, with_code
from persistence.negotiation import offer_from_row, request_from_row
from persistence.orders import order_from_row


class ReplayItem(TypedDict):
    """One missed event in a watch reply (docs/PROTOCOL-NOTES.md "Replay")."""

    seq: int
    event: str
    data: Any


# ---------------------------------------------------------------- meal requests


def request_row_view(row: Any) -> RequestView:
    """A stored request (persistence.negotiation.REQUEST_COLUMNS) as PROTOCOL's request."""
    view = request_view(request_from_row(row))
    view["offerCount"] = row["offer_count"]  # stored: the offers themselves are not loaded here
    return view


def offer_row_view(row: Any) -> OfferView:
    """A stored offer (persistence.negotiation.OFFER_COLUMNS) as PROTOCOL's offer."""
    return offer_view(offer_from_row(row))


# ---------------------------------------------------------------- catalogue


def _view(row: Any, *columns: str) -> dict[str, Any]:
    """Columns as PROTOCOL's camelCase fields: ids as strings, times in the wire format."""
    out: dict[str, Any] = {}
    for col in columns:
        value = row[col]
        if isinstance(value, UUID):
            value = str(value)
        elif isinstance(value, datetime):
            value = iso(value)
        head, *rest = col.split("_")
        out[head + "".join(w.title() for w in rest)] = value
    return out


def vendor_view(row: Any) -> dict[str, Any]:
    view = _view(
        row,
        "id",
        "user_id",
        "display_name",
        "lat",
        "lng",
        "km_service_area",
        "categories",
        "verified",
        "created_at",
        "updated_at",
    )
    view["categories"] = list(view["categories"])
    view["ratingAvg"] = row["rating_avg"]  # null until the first review
    view["ratingCount"] = row["rating_count"]
    return view


def menu_view(row: Any) -> dict[str, Any]:
    return _view(row, "id", "vendor_id", "title", "created_at", "updated_at")


def item_view(row: Any) -> dict[str, Any]:
    return _view(
        row,
        "id",
        "menu_id",
        "vendor_id",
        "name",
        "price_kobo",
        "description",
        "cuisine_tag",
        "prep_minutes",
        "is_available",
        "created_at",
        "updated_at",
    )


def rider_view(row: Any) -> dict[str, Any]:
    return _view(row, "id", "user_id", "vehicle_type", "created_at")


def menus_view(menus: Sequence[Any], items: Sequence[Any]) -> list[dict[str, Any]]:
    """[{...menu, items: [item...]}] in the given order (persistence.catalogue.menus_and_items)."""
    by_menu: dict[Any, list[dict[str, Any]]] = {m["id"]: [] for m in menus}
    for it in items:
        by_menu.setdefault(it["menu_id"], []).append(item_view(it))
    return [{**menu_view(m), "items": by_menu[m["id"]]} for m in menus]


# ---------------------------------------------------------------- accounts


def user_view(row: Any) -> dict[str, Any]:
    """PROTOCOL `user` object (no secrets)."""
    return {
        "id": str(row["id"]),
        "phone": row["phone"],
        "role": row["role"],
        "firstName": row["first_name"],
        "lastName": row["last_name"],
        "email": row["email"],
        "phoneVerified": row["phone_verified"],
        "totpEnabled": row["totp_enabled"],
        "createdAt": iso(row["created_at"]),
    }


# ---------------------------------------------------------------- orders


def order_row_view(row: Any, *, customer: bool = False) -> OrderView | CustomerOrderView:
    """A stored order (persistence.orders.order_by_id / list_orders) as PROTOCOL's order; only
    the customer's carries `deliveryCode`."""
    order = order_from_row(row)
    return customer_view(order) if customer else order_view(order)


def order_event_view(row: Any, *, code: str | None = None, customer: bool = False) -> ReplayItem:
    """A stored order event as replayed: {seq, event: "order:status", data: {order, event}};
    the customer's order carries the delivery code, as in the live event."""
    data = row["payload"]
    if customer:
        data = {**data, "order": with_code(data["order"], code)}
    return {"seq": row["seq"], "event": ORDER_STATUS, "data": data}


def ops_event_view(row: Any) -> dict[str, Any]:
    """An ops record of an order (SLA breach, locked code) for the admin API."""
    return {
        "id": row["id"],
        "orderId": str(row["order_id"]),
        "kind": row["kind"],
        "details": row["details"],
        "createdAt": iso(row["created_at"]),
    }


# ---------------------------------------------------------------- payments (admin API)


def payment_view(row: Any, refunds: Sequence[Any] | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": str(row["id"]),
        "orderId": str(row["order_id"]),
        "provider": row["provider"],
        "reference": row["reference"],
        "amountKobo": row["amount_kobo"],
        "currency": row["currency"],
        "status": row["status"],
        "paidKobo": row["paid_kobo"],
        "refundedKobo": row["refunded_kobo"],
        "refundPendingKobo": row["refund_pending_kobo"],
        "reviewReason": row["review_reason"],
        "split": None
        if row["subaccount"] is None
        else {
            "subaccount": row["subaccount"],
            "commissionKobo": row["commission_kobo"],
            "commissionBps": row["commission_bps"],
        },
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
    }
    if refunds is not None:
        view["refunds"] = [refund_view(r) for r in refunds]
    return view


def refund_view(row: Any) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "paymentId": str(row["payment_id"]),
        "amountKobo": row["amount_kobo"],
        "reason": row["reason"],
        "status": row["status"],
        "automatic": row["automatic"],
        "createdAt": iso(row["created_at"]),
    }
