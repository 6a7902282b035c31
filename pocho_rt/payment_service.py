"""Payments: initialise a checkout, record and apply provider webhooks, reconcile what webhooks
missed. Refunds (pocho_rt.refunds) and vendor settlement accounts (pocho_rt.settlement) are
parts the service owns; what they all share is pocho_rt.payment_common. Rules: engine.payments;
storage: persistence.payments; providers: adapters.paystack / adapters.flutterwave. Flows and
states: docs/PAYMENTS.md.

A webhook is only a trigger. The route verifies its signature over the raw bytes and records it
in the inbox (`webhook_events`, unique per provider + transaction + event type) before answering
200; the worker then asks the provider's verify API and applies the verified outcome: in one
transaction it locks the inbox row and the payment, lets the pure rule decide, writes the
payment, its audit row (and an ops record for a review), and marks the delivery processed. The
effects run after commit: the order actor is asked to confirm (it broadcasts and starts
dispatch), a paid-after-cancel payment is refunded. Whatever fails on the way (provider away,
unknown reference, order actor busy, crash) is picked up by the reconcile loop, which also
re-verifies INITIATED payments no webhook has settled, so a lost webhook still confirms the order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import asyncpg

from adapters import webhooks as wh
from engine import payments as pay
from engine.clock import utcnow
from engine.errors import EngineError
from engine.limits import PAYMENT_INBOX_BATCH
from engine.ports import CheckoutRequest, PaymentProvider, ProviderError, Split
from engine.state import evolve
from persistence import payments as db
from persistence.pii import PiiCodec
from pocho_rt.config import Settings
from pocho_rt.errors import ApiError
from pocho_rt.metrics import PAYMENT_INBOX, PAYMENT_RECONCILED, PAYMENT_REVIEWS, PAYMENT_TRANSITIONS, PAYMENT_WEBHOOKS
from pocho_rt.order_service import OrderService
from pocho_rt.payment_common import STORAGE_ERRORS, audit_status, provider_failure, provider_of, unavailable
from pocho_rt.refunds import Refunds
from pocho_rt.settlement import VendorSettlement
from pocho_rt.tasks import Supervisor
from pocho_rt.validation import decode_json
from pocho_rt.views import payment_view

log = logging.getLogger("pocho.payments")

_QUEUE_MAX = 10_000  # webhook ids waiting for the worker; past it the reconcile loop finds them
# The order's paymentStatus for a payment status reached after the fact (engine.orders.PAYMENT_NOTES).
_ORDER_NOTE = {
    pay.SUCCESS: "PAID",
    pay.PAID_AFTER_CANCEL: "PAID_AFTER_CANCEL",
    pay.REFUND_PENDING: "REFUND_PENDING",
    pay.PARTIALLY_REFUNDED: "PARTIALLY_REFUNDED",
    pay.REFUNDED: "REFUNDED",
}


def new_reference() -> str:
    """Our own reference: letters, digits and `-` only (both providers accept it)."""
    return f"pocho-{secrets.token_hex(10)}"


class PaymentService:
    def __init__(
        self, settings: Settings, pool: asyncpg.Pool, providers: dict[str, PaymentProvider], pii: PiiCodec
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.providers = providers
        self.pii = pii  # users' names, email and phone are sealed at rest: opened to send them
        self._orders: OrderService | None = None
        self._queue: asyncio.Queue[int] = asyncio.Queue(_QUEUE_MAX)
        self.refunds = Refunds(pool, providers, self._note_order)
        self.settlement = VendorSettlement(settings, pool, providers, pii)

    @property
    def orders(self) -> OrderService:
        """The order service, given at start (both are built side by side in `open_services`)."""
        if self._orders is None:
            raise EngineError("unavailable", "payments are not started")
        return self._orders

    async def start(self, supervisor: Supervisor, orders: OrderService) -> None:
        self._orders = orders
        supervisor.loop("payment-webhooks", self._work)
        supervisor.loop("payment-reconcile", self._reconcile_loop)

    async def close(self) -> None:
        for p in self.providers.values():
            await p.close()

    # ------------------------------------------------------------------ initialise

    async def init(self, customer_id: str, order_id: str, provider_name: str) -> dict[str, Any]:
        """{reference, authorizationUrl, amountKobo}: the live payment of this order at this
        provider, or a new one (stored INITIATED before the provider is called)."""
        provider = provider_of(self.providers, provider_name)
        try:
            order = await db.order_for_payment(self.pool, order_id)
            if order is None or str(order["customer_id"]) != customer_id:
                raise ApiError("not_found", "no such order")
            if order["status"] != "PENDING_PAYMENT":
                raise ApiError("conflict", f"order is {order['status']}: only an unpaid order can be paid")
            live = await db.live_payment(self.pool, order_id, provider_name)
            if live is not None and live["authorization_url"]:
                return self._init_answer(live)
            if live is not None and utcnow() - live["created_at"] > self._stale_after:
                await self._retire(live)
            split = await self.settlement.split(str(order["vendor_id"]), provider_name, order["amount_kobo"])
            row = await self._insert(order, provider_name, split)
        except STORAGE_ERRORS as exc:
            raise unavailable("payment init") from exc
        if row["authorization_url"]:
            return self._init_answer(row)
        pii = self.pii
        names = (pii.open("first_name", order["first_name"]), pii.open("last_name", order["last_name"]))
        name = " ".join(x for x in names if x)
        email = pii.open("email", order["email"]) or f"customer-{customer_id}@{self.settings.payment_email_domain}"
        request = CheckoutRequest(row["reference"], row["amount_kobo"], email, name, order_id, split)
        try:
            url = await provider.initialize(request)
        except ProviderError as exc:
            await self._init_failed(row, exc)
            raise provider_failure(exc) from None
        try:
            await db.set_authorization_url(self.pool, str(row["id"]), url)
        except STORAGE_ERRORS as exc:
            raise unavailable("payment init") from exc
        return {"reference": row["reference"], "authorizationUrl": url, "amountKobo": row["amount_kobo"]}

    @property
    def _stale_after(self) -> timedelta:
        """A live payment still without a checkout URL this long after it was stored never got
        one (the provider call or the write after it failed): it is retired, not waited for."""
        return timedelta(seconds=2 * self.settings.payment_provider_timeout + 5)

    async def _retire(self, live: asyncpg.Record) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            locked = await db.by_id(conn, str(live["id"]), lock=True)
            if locked is None or locked["status"] != pay.INITIATED or locked["authorization_url"]:
                return
            await db.update_payment(conn, evolve(db.payment_from_row(locked), status=pay.FAILED))
            await audit_status(conn, locked, pay.INITIATED, pay.FAILED, reason="initialise: no checkout URL")
        PAYMENT_TRANSITIONS.labels(pay.FAILED).inc()

    @staticmethod
    def _init_answer(row: asyncpg.Record) -> dict[str, Any]:
        return {
            "reference": row["reference"],
            "authorizationUrl": row["authorization_url"],
            "amountKobo": row["amount_kobo"],
        }

    async def _insert(self, order: asyncpg.Record, provider: str, split: Split | None) -> asyncpg.Record:
        order_id = str(order["id"])
        async with self.pool.acquire() as conn, conn.transaction():
            row = await db.insert_payment(
                conn,
                order_id=order_id,
                customer_id=str(order["customer_id"]),
                provider=provider,
                reference=new_reference(),
                amount_kobo=order["amount_kobo"],
                subaccount=split.subaccount if split else None,
                commission_kobo=split.commission_kobo if split else None,
                commission_bps=self.settings.platform_commission_bps if split else None,
            )
            if row is None:  # a concurrent init made the live one first
                live = await db.live_payment(conn, order_id, provider)
                if live is None or not live["authorization_url"]:
                    raise ApiError("conflict", "a payment for this order is being initialised, retry")
                return live
            await audit_status(conn, row, None, pay.INITIATED, actor_id=str(order["customer_id"]), actor_kind="user")
        PAYMENT_TRANSITIONS.labels(pay.INITIATED).inc()
        return row

    async def _init_failed(self, row: asyncpg.Record, exc: ProviderError) -> None:
        """The provider refused or did not answer: the payment is FAILED (a webhook for it, should
        the provider have made it after all, still applies: FAILED moves to SUCCESS)."""
        log.warning("payment initialise failed", extra={"provider": row["provider"], "kind": exc.kind})
        with contextlib.suppress(*STORAGE_ERRORS):
            async with self.pool.acquire() as conn, conn.transaction():
                locked = await db.by_id(conn, str(row["id"]), lock=True)
                if locked is None or locked["status"] != pay.INITIATED:
                    return
                await db.update_payment(conn, evolve(db.payment_from_row(locked), status=pay.FAILED))
                await audit_status(conn, locked, pay.INITIATED, pay.FAILED, reason=f"initialise: {exc.kind}")
            PAYMENT_TRANSITIONS.labels(pay.FAILED).inc()

    # ------------------------------------------------------------------ webhooks

    def verify_signature(self, provider: str, raw: bytes, headers: Mapping[str, str]) -> bool:
        s = self.settings
        if provider == "PAYSTACK":
            return wh.paystack_signed(raw, headers, s.paystack_secret_key)
        return wh.flutterwave_signed(raw, headers, s.flutterwave_secret_hash, s.flutterwave_signature_v4)

    async def record_webhook(self, provider: str, raw: bytes) -> bool:
        """Record a verified delivery in the inbox; True when new (False: a duplicate, nothing
        changes). Raises ApiError `invalid` for a body we cannot read, `unavailable` when storage
        is down (the provider retries)."""
        try:
            parsed = decode_json(raw, dict[str, Any])  # the one parser for untrusted JSON (NUL, depth)
            delivery = wh.paystack_delivery(parsed) if provider == "PAYSTACK" else wh.flutterwave_delivery(parsed)
        except ApiError:
            PAYMENT_WEBHOOKS.labels(provider, "invalid").inc()
            raise
        except wh.BadDelivery as exc:
            PAYMENT_WEBHOOKS.labels(provider, "invalid").inc()
            raise ApiError("invalid", f"invalid webhook body: {exc}", {"body": str(exc)}) from None
        try:
            new_id = await db.insert_event(
                self.pool,
                provider,
                delivery.event_id,
                delivery.tx_id,
                delivery.event_type,
                delivery.reference,
                wh.redact(parsed),
            )
        except STORAGE_ERRORS as exc:
            PAYMENT_WEBHOOKS.labels(provider, "unavailable").inc()
            log.warning("webhook not recorded: storage down", extra={"provider": provider, "error": type(exc).__name__})
            raise unavailable("webhook") from exc
        if new_id is None:
            PAYMENT_WEBHOOKS.labels(provider, "duplicate").inc()
            return False
        PAYMENT_WEBHOOKS.labels(provider, "recorded").inc()
        with contextlib.suppress(asyncio.QueueFull):  # the reconcile loop finds it in the inbox
            self._queue.put_nowait(new_id)
        return True

    async def _work(self) -> None:
        """The webhook worker: apply recorded deliveries one at a time, in arrival order."""
        while True:
            event_id = await self._queue.get()
            try:
                await self.process_event(event_id)
            except Exception:  # kept in the inbox: the reconcile loop retries it
                log.exception("webhook processing failed", extra={"eventId": event_id})

    async def process_event(self, event_id: int) -> str:
        """Apply one recorded delivery; returns its outcome. Kept in the inbox (retried by the
        reconcile job) when its reference is not known yet or the provider is away."""
        row = await db.event(self.pool, event_id)
        if row is None or row["processed_at"] is not None:
            return "done"
        provider = row["provider"]
        payload = row["payload"]
        delivery = wh.paystack_delivery(payload) if provider == "PAYSTACK" else wh.flutterwave_delivery(payload)
        if delivery.kind == wh.OTHER:
            await db.event_processed(self.pool, event_id, "ignored")
            return "ignored"
        payment = await self._payment_of(provider, delivery)
        if payment is None:
            await db.event_attempted(self.pool, event_id, "unknown reference", "unknown_reference")
            return "unknown_reference"
        if payment.provider != provider:  # our reference, another provider's delivery: not ours to apply
            await db.event_processed(self.pool, event_id, "provider_mismatch")
            return "provider_mismatch"
        if delivery.kind == wh.REFUND:
            return await self.refunds.apply_event(event_id, payment, delivery)
        try:
            tx_id = None if delivery.tx_id.startswith("ref:") else delivery.tx_id
            verified = await self.providers[provider].verify(payment.reference, tx_id)
        except (ProviderError, KeyError) as exc:
            await db.event_attempted(self.pool, event_id, str(exc), "verify_failed")
            return "verify_failed"
        return await self.apply(payment.id, verified, event_id=event_id, source=f"webhook:{delivery.event_type}")

    async def _payment_of(self, provider: str, delivery: wh.Delivery) -> pay.Payment | None:
        row = None
        if delivery.reference is not None:
            row = await db.by_reference(self.pool, delivery.reference)
        if row is None and delivery.payment_tx_id is not None:
            row = await db.by_provider_tx(self.pool, provider, delivery.payment_tx_id)
        return None if row is None else db.payment_from_row(row)

    async def apply(self, payment_id: str, verified: pay.Verified, *, event_id: int | None, source: str) -> str:
        """Apply a verified outcome under locks (inbox row, then payment); effects after commit."""
        async with self.pool.acquire() as conn, conn.transaction():
            if event_id is not None:
                ev = await db.event(conn, event_id, lock=True)
                if ev is None or ev["processed_at"] is not None:
                    return "done"
            locked = await db.by_id(conn, payment_id, lock=True)
            assert locked is not None
            before = db.payment_from_row(locked)
            status = await db.order_status(conn, before.order_id) or ""
            decision = pay.apply_verified(before, verified, status)
            after = decision.payment
            if after != before:
                await db.update_payment(conn, after)
                reason = after.review_reason if after.status == pay.REVIEW else None
                await audit_status(conn, locked, before.status, after.status, reason=reason, source=source)
                if pay.OPS_REVIEW in decision.effects:
                    await self._review_record(conn, after, source)
            if event_id is not None:
                await db.event_processed(conn, event_id, after.status.lower() if after != before else "no_change")
        if after != before:
            PAYMENT_TRANSITIONS.labels(after.status).inc()
            await self._note_order(after, before.status)
        await self._effects(after, decision.effects)
        return after.status.lower() if after != before else "no_change"

    async def _effects(self, p: pay.Payment, effects: tuple[str, ...]) -> None:
        if pay.OPS_REVIEW in effects:
            PAYMENT_REVIEWS.labels(p.review_reason or "unknown").inc()
            log.warning("payment sent for review", extra={"paymentId": p.id, "reason": p.review_reason})
        if pay.CONFIRM_ORDER in effects:
            await self._confirm(p)
        if pay.AUTO_REFUND in effects:
            await self.refunds.auto_refund(p)

    async def _confirm(self, p: pay.Payment) -> None:
        """Ask the order actor to confirm. Refused: the order moved on (cancelled: the payment is
        PAID_AFTER_CANCEL; confirmed by this very payment before: nothing; else: review).
        Unavailable or timeout: the reconcile job asks again."""
        try:
            await self.orders.confirm_payment(p.order_id, reference=p.reference)
        except EngineError as exc:
            if exc.code != "conflict":
                log.warning("order confirmation deferred", extra={"orderId": p.order_id, "code": exc.code})
                return
            if await db.order_confirmed_by(self.pool, p.order_id, p.reference):
                return
            await self._confirm_refused(p)

    async def _confirm_refused(self, p: pay.Payment) -> None:
        status = await self._live_order_status(p)
        async with self.pool.acquire() as conn, conn.transaction():
            locked = await db.by_id(conn, p.id, lock=True)
            assert locked is not None
            before = db.payment_from_row(locked)
            decision = pay.confirm_refused(before, status)
            after = decision.payment
            if after == before:
                return
            await db.update_payment(conn, after)
            await audit_status(conn, locked, before.status, after.status, reason=f"order is {status}")
            if pay.OPS_REVIEW in decision.effects:
                await self._review_record(conn, after, "confirm_refused")
        PAYMENT_TRANSITIONS.labels(after.status).inc()
        await self._note_order(after, before.status)
        await self._effects(after, tuple(e for e in decision.effects if e != pay.CONFIRM_ORDER))

    async def _live_order_status(self, p: pay.Payment) -> str:
        """The order's status as its actor holds it once committed (the stored one if the actor
        cannot answer)."""
        row = await db.order_for_payment(self.pool, p.order_id)
        assert row is not None
        try:
            snap = await self.orders.watch(p.order_id, "customer", str(row["customer_id"]), None)
            return str(snap["order"]["status"])
        except EngineError:
            return str(row["status"])

    async def _note_order(self, p: pay.Payment, before: str) -> None:
        """Tell the order what became of its money after the fact (paid after cancel, refunds),
        for the payment that paid it (a REVIEW payment never speaks for the order). Best effort:
        the payment row is the record; a refusal or a busy actor is logged."""
        if p.status == before or p.paid_status not in (pay.SUCCESS, pay.PAID_AFTER_CANCEL):
            return
        if p.status == pay.SUCCESS and before in pay.UNPAID:
            return  # the confirmation itself makes the order PAID
        note = _ORDER_NOTE.get(p.status)
        if note is None:
            return
        try:
            await self.orders.note_payment(p.order_id, note, p.reference)
        except EngineError as exc:
            log.warning("order payment note failed", extra={"orderId": p.order_id, "code": exc.code})

    async def _review_record(self, conn: asyncpg.Connection, p: pay.Payment, source: str) -> None:
        details: dict[str, Any] = {"paymentId": p.id, "reference": p.reference, "reason": p.review_reason}
        details |= {"source": source, "expectedKobo": p.amount_kobo, "paidKobo": p.paid_kobo}
        body = f"Payment {p.reference} for order {p.order_id[:8]} needs review: {p.review_reason}"
        await db.ops_record(conn, p.order_id, "payment_review", details, body)

    # ------------------------------------------------------------------ admin

    async def payment(self, payment_id: str) -> dict[str, Any]:
        row = await db.by_id(self.pool, payment_id)
        if row is None:
            raise ApiError("not_found", "no such payment")
        return payment_view(row, await db.refunds_of(self.pool, payment_id))

    # ------------------------------------------------------------------ reconcile

    async def _reconcile_loop(self) -> None:
        while True:
            try:
                await self.reconcile()
            except Exception as exc:  # storage away: next round; the loop must not die
                log.warning("payment reconcile failed", extra={"error": type(exc).__name__})
            await asyncio.sleep(self.settings.payment_reconcile_seconds)

    async def reconcile(self) -> None:
        """One round: retry inbox deliveries not yet applied, re-verify INITIATED payments older
        than `payment_reverify_after_seconds`, confirm orders of SUCCESS payments whose
        confirmation did not land, and refund PAID_AFTER_CANCEL payments not yet refunded."""
        s = self.settings
        for event_id in await db.pending_events(self.pool, PAYMENT_INBOX_BATCH, s.payment_inbox_max_age_seconds):
            PAYMENT_RECONCILED.labels("inbox_retried").inc()
            try:
                await self.process_event(event_id)
            except Exception:
                log.exception("inbox retry failed", extra={"eventId": event_id})
        for p in await db.initiated_older_than(self.pool, s.payment_reverify_after_seconds, PAYMENT_INBOX_BATCH):
            provider = self.providers.get(p.provider)
            if provider is None:
                continue
            try:
                verified = await provider.verify(p.reference, p.provider_tx_id)
            except ProviderError:
                continue
            PAYMENT_RECONCILED.labels("reverified").inc()
            if await self.apply(p.id, verified, event_id=None, source="reconcile") == "no_change":
                await db.touch(self.pool, p.id)
        for p in await db.paid_unconfirmed(self.pool, PAYMENT_INBOX_BATCH):
            PAYMENT_RECONCILED.labels("reconfirmed").inc()
            await self._confirm(p)
        for p in await db.refund_due(self.pool, PAYMENT_INBOX_BATCH):
            PAYMENT_RECONCILED.labels("refund_retried").inc()
            await self.refunds.auto_refund(p)
        PAYMENT_INBOX.set(await db.inbox_size(self.pool))


def parse_payment_id(raw: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise ApiError("not_found", "no such payment") from None
