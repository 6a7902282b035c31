"""Refunds: asked by an admin, or made automatically for a payment that arrived after its order
was cancelled. A refund is recorded PENDING with the payment's REFUND_PENDING in one
transaction, then asked of the provider; the provider's refund webhook completes it
(PROCESSED) or gives the amount back (FAILED), as does a provider refusing the request. Rules:
engine.payments (`request_refund`, `refund_settled`); flows: docs/PAYMENTS.md."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from adapters import webhooks as wh
from engine import payments as pay
from engine.errors import EngineError
from engine.ports import PaymentProvider, ProviderError
from persistence import payments as db
from pocho_rt.errors import ApiError
from pocho_rt.metrics import PAYMENT_TRANSITIONS
from pocho_rt.payment_common import STORAGE_ERRORS, SYSTEM, audit_status, provider_failure, provider_of, unavailable
from pocho_rt.views import payment_view, refund_view

log = logging.getLogger("pocho.payments")

# Tells the order what became of its money (PaymentService._note_order): the payment after, its status before.
NoteOrder = Callable[[pay.Payment, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Refunds:
    """Owned by PaymentService: admins call `refund` (HTTP), its webhook worker hands refund
    deliveries to `apply_event`, its decisions and reconcile rounds call `auto_refund`."""

    pool: asyncpg.Pool
    providers: dict[str, PaymentProvider]
    note_order: NoteOrder

    async def refund(
        self, payment_id: str, amount_kobo: int | None, reason: str, *, admin_id: str | None, automatic: bool = False
    ) -> dict[str, Any]:
        """Start a refund (full when `amount_kobo` is None): recorded PENDING with the payment's
        REFUND_PENDING in one transaction, then asked of the provider; the refund webhook
        completes it. A provider failure gives the amount back (refund FAILED) and is raised."""
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                locked = await db.by_id(conn, payment_id, lock=True)
                if locked is None:
                    raise ApiError("not_found", "no such payment")
                before = db.payment_from_row(locked)
                provider = provider_of(self.providers, before.provider)
                after, amount = pay.request_refund(before, amount_kobo)
                refund = await db.insert_refund(conn, payment_id, amount, reason, admin_id, automatic)
                row = await db.update_payment(conn, after)
                kind = "admin" if admin_id else ("admin_key" if not automatic else SYSTEM)
                await audit_status(
                    conn,
                    locked,
                    before.status,
                    after.status,
                    reason=reason,
                    source="refund",
                    actor_id=admin_id,
                    actor_kind=kind,
                    extra={"refundId": str(refund["id"]), "amountKobo": amount},
                )
        except STORAGE_ERRORS as exc:
            raise unavailable("refund") from exc
        PAYMENT_TRANSITIONS.labels(after.status).inc()
        try:
            answer = await provider.refund(before.reference, before.provider_tx_id, amount, reason)
        except ProviderError as exc:
            log.warning("refund refused by the provider", extra={"paymentId": payment_id, "kind": exc.kind})
            await self._settle(str(refund["id"]), payment_id, amount, processed=False, source="provider")
            raise provider_failure(exc) from None
        with contextlib.suppress(*STORAGE_ERRORS):
            await db.set_provider_refund_id(self.pool, str(refund["id"]), answer.provider_refund_id)
        await self.note_order(after, before.status)
        return {"refund": refund_view(refund), "payment": payment_view(row)}

    async def auto_refund(self, p: pay.Payment) -> None:
        try:
            await self.refund(p.id, None, "order cancelled before the payment arrived", admin_id=None, automatic=True)
        except EngineError as exc:  # the reconcile job tries again
            log.warning("automatic refund deferred", extra={"paymentId": p.id, "code": exc.code})

    async def _settle(self, refund_id: str, payment_id: str, amount: int, *, processed: bool, source: str) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            locked = await db.by_id(conn, payment_id, lock=True)
            assert locked is not None
            before = db.payment_from_row(locked)
            after = pay.refund_settled(before, amount, processed)
            await db.settle_refund(conn, refund_id, "PROCESSED" if processed else "FAILED")
            await db.update_payment(conn, after)
            if after.status != before.status or processed:
                await audit_status(
                    conn,
                    locked,
                    before.status,
                    after.status,
                    source=source,
                    extra={
                        "refundId": refund_id,
                        "amountKobo": amount,
                        "refund": "processed" if processed else "failed",
                    },
                )
        PAYMENT_TRANSITIONS.labels(after.status).inc()
        await self.note_order(after, before.status)

    async def apply_event(self, event_id: int, p: pay.Payment, d: wh.Delivery) -> str:
        """A refund webhook completes (processed) or gives back (failed) our pending refund of
        that amount; other refund states (pending, processing) change nothing."""
        status = (d.refund_status or "").lower()
        if status not in ("processed", "failed"):
            await db.event_processed(self.pool, event_id, f"refund_{status or 'unknown'}")
            return "refund_noted"
        amount = d.refund_kobo or 0
        async with self.pool.acquire() as conn, conn.transaction():
            ev = await db.event(conn, event_id, lock=True)
            if ev is None or ev["processed_at"] is not None:
                return "done"
            locked = await db.by_id(conn, p.id, lock=True)
            assert locked is not None
            refund = await db.pending_refund(conn, p.id, amount)
            if refund is None:
                await db.event_processed(conn, event_id, "refund_unmatched")
                return "refund_unmatched"
            before = db.payment_from_row(locked)
            processed = status == "processed"
            after = pay.refund_settled(before, refund["amount_kobo"], processed)
            await db.settle_refund(conn, str(refund["id"]), "PROCESSED" if processed else "FAILED")
            await db.update_payment(conn, after)
            await audit_status(
                conn,
                locked,
                before.status,
                after.status,
                source=f"webhook:{d.event_type}",
                extra={"refundId": str(refund["id"]), "amountKobo": refund["amount_kobo"], "refund": status},
            )
            await db.event_processed(conn, event_id, f"refund_{status}")
        PAYMENT_TRANSITIONS.labels(after.status).inc()
        await self.note_order(after, before.status)
        return f"refund_{status}"
