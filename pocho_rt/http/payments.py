"""HTTP routes of payments (PROTOCOL "Profiles and catalogue", "Webhooks", "Ops"; docs/PAYMENTS.md).

POST /api/v1/payments/init {orderId, provider: PAYSTACK|FLUTTERWAVE}
     CUSTOMER, the order's own (else 404), order PENDING_PAYMENT (else 409)
     -> {reference, authorizationUrl, amountKobo}; again for the same order and provider:
     the same live payment
POST /webhooks/paystack, POST /webhooks/flutterwave
     raw body verified first (401, nothing stored, on a bad or missing signature; 413 past
     64 KB), then recorded: 200 {received: true, duplicate} (also for a duplicate), 400 for
     a body we cannot read, 503 + Retry-After when storage is down (the provider retries)
POST /admin/payments/{id}/refund {amountKobo?, reason}   admin -> {refund, payment}
GET  /admin/payments/{id}                                admin -> payment with its refunds
PUT  /api/v1/vendors/{id}/settlement {bankCode, accountNumber}
     VENDOR owner -> {vendorId, bankCode, accountNumber, accountName, paystackSubaccount,
     flutterwaveSubaccount, commissionBps, updatedAt}
"""

from __future__ import annotations

from typing import Annotated, Literal

from aiohttp import web
from msgspec import Meta

from engine.limits import REFUND_REASON_MAX_LENGTH, WEBHOOK_BODY_MAX_BYTES
from pocho_rt.auth.principal import require_admin, require_user
from pocho_rt.context import services
from pocho_rt.errors import ApiError
from pocho_rt.http.middleware import body, json_response
from pocho_rt.metrics import PAYMENT_WEBHOOKS
from pocho_rt.payment_service import parse_payment_id
from pocho_rt.validation import Schema

routes = web.RouteTableDef()

OrderId = Annotated[str, Meta(min_length=1, max_length=64)]
Reason = Annotated[str, Meta(min_length=1, max_length=REFUND_REASON_MAX_LENGTH, pattern=r"^[^\x00]*\S[^\x00]*$")]
BankCode = Annotated[str, Meta(pattern=r"^[0-9]{3,6}$")]
AccountNumber = Annotated[str, Meta(pattern=r"^[0-9]{10}$")]


class PaymentInit(Schema, frozen=True):
    order_id: OrderId
    provider: Literal["PAYSTACK", "FLUTTERWAVE"]


class RefundRequest(Schema, frozen=True):
    reason: Reason
    amount_kobo: Annotated[int, Meta(ge=1, le=10_000_000_000)] | None = None


class Settlement(Schema, frozen=True):
    bank_code: BankCode
    account_number: AccountNumber


@routes.post("/api/v1/payments/init")
async def init_payment(request: web.Request) -> web.Response:
    p = await require_user(request, "CUSTOMER")
    req = await body(request, PaymentInit)
    return json_response(await services(request).payments.init(p.user_id, req.order_id, req.provider))


async def _webhook(request: web.Request, provider: str) -> web.Response:
    svc = services(request).payments
    if (request.content_length or 0) > WEBHOOK_BODY_MAX_BYTES:
        PAYMENT_WEBHOOKS.labels(provider, "too_large").inc()
        raise ApiError("payload_too_large", f"webhook bodies are at most {WEBHOOK_BODY_MAX_BYTES} bytes")
    raw = await request.read()  # the exact bytes the provider signed, never re-serialised
    if len(raw) > WEBHOOK_BODY_MAX_BYTES:
        PAYMENT_WEBHOOKS.labels(provider, "too_large").inc()
        raise ApiError("payload_too_large", f"webhook bodies are at most {WEBHOOK_BODY_MAX_BYTES} bytes")
    if not svc.verify_signature(provider, raw, request.headers):
        PAYMENT_WEBHOOKS.labels(provider, "bad_signature").inc()
        raise ApiError("unauthorized", "bad or missing webhook signature")
    new = await svc.record_webhook(provider, raw)
    return json_response({"received": True, "duplicate": not new})


@routes.post("/webhooks/paystack")
async def paystack_webhook(request: web.Request) -> web.Response:
    return await _webhook(request, "PAYSTACK")


@routes.post("/webhooks/flutterwave")
async def flutterwave_webhook(request: web.Request) -> web.Response:
    return await _webhook(request, "FLUTTERWAVE")


@routes.post("/admin/payments/{id}/refund")
async def refund_payment(request: web.Request) -> web.Response:
    principal = await require_admin(request)
    payment_id = parse_payment_id(request.match_info["id"])
    req = await body(request, RefundRequest)
    admin_id = principal.user_id if principal is not None else None
    result = await services(request).payments.refunds.refund(payment_id, req.amount_kobo, req.reason, admin_id=admin_id)
    return json_response(result)


@routes.get("/admin/payments/{id}")
async def get_payment(request: web.Request) -> web.Response:
    await require_admin(request)
    payment_id = parse_payment_id(request.match_info["id"])
    return json_response({"payment": await services(request).payments.payment(payment_id)})


@routes.put("/api/v1/vendors/{id}/settlement")
async def put_settlement(request: web.Request) -> web.Response:
    p = await require_user(request, "VENDOR")
    req = await body(request, Settlement)
    result = await services(request).payments.settlement.set_settlement(
        request.match_info["id"], p.user_id, req.bank_code, req.account_number
    )
    return json_response(result)


def setup(app: web.Application) -> None:
    app.add_routes(routes)
