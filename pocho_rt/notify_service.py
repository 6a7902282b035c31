"""The notification dispatcher (issue 10, docs/NOTIFICATIONS.md): one loop per node drains
`notifications_outbox` through persistence.outbox (claim with FOR UPDATE SKIP LOCKED and a
lease, so two nodes never take the same row) and delivers each row on its channel.

Per batch: rows past their `expires_at` and rows naming no user are skipped; a user with a live
socket already got the event, so their push (and the SMS of an order event) is skipped
(`online`); pushes for one user and event type collapse into the newest (`coalesced`); a push
that can wait is deferred to the end of the user's quiet hours, or past the per-user cap
window; what is left goes to every device token of the user (FCM) or to the phone (Termii, or
the development recorder). Provider errors: `retryable` rows go back to the outbox worker
(exponential backoff with jitter, dead after `notify_max_attempts`), `permanent` ones are dead
at once, `token_gone` deletes that device token. Metrics by channel and outcome.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
from prometheus_client import Counter

from adapters.delivery import PERMANENT, RETRYABLE, TOKEN_GONE, DeliveryError
from adapters.fcm import FcmPush, ServiceAccount
from adapters.sms import NAME as DEV_SMS
from adapters.sms import DevSmsSender
from adapters.termii import TermiiSms
from engine import notify_policy as policy
from engine import notify_templates as templates
from engine.ports import PushSender, SmsSender, UserPresence
from engine.runtime.metrics import REGISTRY
from persistence import notifications as store
from persistence import outbox
from persistence.pii import RECIPIENT, PiiCodec
from pocho_rt.config import Settings
from pocho_rt.sockets.rooms import DirectoryManager
from pocho_rt.sockets.server import GuardedServer

log = logging.getLogger("pocho.notify")

DELIVERIES = Counter(
    "pocho_notifications_total",
    "Notification outbox rows by channel and outcome (sent, skipped, failed, dead)",
    ["channel", "outcome"],
    registry=REGISTRY,
)
SKIPPED = Counter(
    "pocho_notifications_skipped_total",
    "Notifications skipped on purpose, by channel and reason (online, coalesced, no_device, ...)",
    ["channel", "reason"],
    registry=REGISTRY,
)
_ROOM_NAMESPACES = ("/customer", "/vendor", "/rider")
_PUSH_TITLE = "Pocho"  # rows stored with their final text (SLA and ops notices) have no title


class SocketPresence:
    """engine.ports.UserPresence from the Socket.IO rooms of every node: each socket of a user
    joins `user:<id>` in its namespace (pocho_rt.sockets.base); this node's rooms are in its
    manager, the other nodes' in the cluster's room directory (pocho_rt.sockets.rooms)."""

    def __init__(self, sio: GuardedServer) -> None:
        self._sio = sio

    async def online(self, user_ids: Collection[str]) -> set[str]:
        manager = self._sio.manager
        rooms = manager.rooms  # namespace -> room -> {sid: eio_sid}
        directory = manager.directory if isinstance(manager, DirectoryManager) else None
        found: set[str] = set()
        for ns in _ROOM_NAMESPACES:
            members = rooms.get(ns, {})
            for u in user_ids:
                room = f"user:{u}"
                if members.get(room) or (directory is not None and directory.nodes_for(ns, room)):
                    found.add(u)
        return found


@dataclass(slots=True)
class _Batch:
    """Outcomes of one claimed batch: settled by the dispatcher, or failed (retryable)."""

    settle: list[store.Settle] = field(default_factory=list)
    retry: dict[int, str] = field(default_factory=dict)

    def skip(self, row: asyncpg.Record, reason: str) -> None:
        self.settle.append(store.Settle(row["id"], "skipped", reason))
        DELIVERIES.labels(row["channel"], "skipped").inc()
        SKIPPED.labels(row["channel"], reason).inc()

    def sent(self, row: asyncpg.Record, via: str, error: str | None = None) -> None:
        self.settle.append(store.Settle(row["id"], "sent", via, error))
        DELIVERIES.labels(row["channel"], "sent").inc()

    def defer(self, row: asyncpg.Record, until: datetime, reason: str) -> None:
        self.settle.append(store.Settle(row["id"], "pending", reason, None, until))

    def fail(self, row: asyncpg.Record, error: DeliveryError | Exception, max_attempts: int) -> None:
        text = str(error)[:500]
        if isinstance(error, DeliveryError) and error.kind == PERMANENT:
            self.settle.append(store.Settle(row["id"], "dead", "refused", text))
            DELIVERIES.labels(row["channel"], "dead").inc()
            return
        self.retry[row["id"]] = text
        last = row["attempts"] + 1 >= max_attempts
        DELIVERIES.labels(row["channel"], "dead" if last else "failed").inc()


class NotifyService:
    """Owns the dispatcher loop (`run`, registered in pocho_rt.app) and its channels."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        pii: PiiCodec,
        texts: templates.Templates,
        sms: SmsSender,
        push: PushSender | None,
        presence: UserPresence,
        *,
        sms_via: str,
    ) -> None:
        self.settings, self.pool, self.pii, self.texts = settings, pool, pii, texts
        self.sms, self.push, self.presence, self.sms_via = sms, push, presence, sms_via
        self.worker = outbox.OutboxWorker(
            pool,
            outbox.NOTIFICATIONS_OUTBOX,
            self.handle,
            batch_size=settings.notify_batch_size,
            poll_interval=settings.notify_poll_seconds,
            lease_seconds=settings.notify_lease_seconds,
            max_attempts=settings.notify_max_attempts,
            backoff_base=settings.notify_backoff_base,
            backoff_cap=settings.notify_backoff_cap,
        )
        self._send_slots = asyncio.Semaphore(settings.notify_concurrency)

    async def queue_sms(self, conn: asyncpg.Connection, user_id: str, kind: str, phone: str, body: str) -> None:
        """An SMS with its final text (a verification code) in the caller's transaction; call
        `wakeup()` after the commit."""
        await store.enqueue_text(conn, user_id, kind, self.pii.seal(RECIPIENT, phone) or "", body)

    def wakeup(self) -> None:
        """Rows were just committed on this node: look now instead of at the next poll."""
        self.worker.wakeup()

    async def run(self) -> None:
        await self.worker.run()

    async def stop(self) -> None:
        await self.worker.stop()

    async def close(self) -> None:
        for client in (self.sms, self.push):
            close = getattr(client, "close", None)
            if close is not None:
                await close()

    # ---------------------------------------------------------------- one batch

    async def handle(self, rows: list[asyncpg.Record]) -> dict[int, str]:
        """outbox.Handler: settle every row here but the retryable failures."""
        s = self.settings
        now = datetime.now(UTC)
        out = _Batch()
        live: list[asyncpg.Record] = []
        for row in rows:
            if row["expires_at"] is not None and row["expires_at"] <= now:
                out.skip(row, "expired")
            elif row["user_id"] is None and row["channel"] == "push":
                out.skip(row, "no_recipient")  # ops notices: read with GET /admin/orders/sla
            else:
                live.append(row)
        users = [str(r["user_id"]) for r in live if r["user_id"] is not None]
        people = await store.recipients(self.pool, users, s.notify_push_window_seconds, s.notify_max_devices)
        online = await self.presence.online(set(users))
        pushes = [r for r in live if r["channel"] == "push"]
        _, dropped = policy.coalesce([(r["id"], str(r["user_id"]), r["kind"]) for r in pushes])
        jobs = []
        sent_now: dict[str, int] = {}
        for row in live:
            uid = str(row["user_id"]) if row["user_id"] is not None else None
            who = people.get(uid) if uid else None
            if uid is not None and who is None:
                out.skip(row, "no_recipient")  # the account is gone
            elif row["channel"] == "sms":
                if row["data"] is not None and uid in online:
                    out.skip(row, "online")  # an order notice the open app already showed
                else:
                    jobs.append(self._send_sms(row, who, out))
            elif uid in online:
                out.skip(row, "online")
            elif row["id"] in dropped:
                out.skip(row, "coalesced")
            elif who is not None:
                wait = self._wait(row, who, now, sent_now.get(who.user_id, 0))
                if wait is not None:
                    out.defer(row, *wait)
                elif not who.tokens:
                    out.skip(row, "no_device")
                else:
                    sent_now[who.user_id] = sent_now.get(who.user_id, 0) + 1
                    jobs.append(self._send_push(row, who, out))
        await asyncio.gather(*jobs)
        await store.settle(self.pool, out.settle)
        result = {**dict.fromkeys((x.id for x in out.settle), outbox.SETTLED), **out.retry}
        for row in rows:  # never let the worker mark a row sent that no channel took
            result.setdefault(row["id"], "not handled")
        return result

    def _wait(
        self, row: asyncpg.Record, who: store.Recipient, now: datetime, sent_now: int
    ) -> tuple[datetime, str] | None:
        """Until when a push must wait (quiet hours, per-user cap), or None to send now."""
        if policy.urgent(row["kind"]):
            return None
        if who.quiet is not None:
            until = policy.quiet_until(now, *who.quiet)
            if until is not None:
                return until, "quiet_hours"
        if who.pushes_recent + sent_now >= self.settings.notify_push_cap:
            return now + timedelta(seconds=self.settings.notify_push_window_seconds), "capped"
        return None

    def _texts(self, row: asyncpg.Record, locale: str | None) -> templates.Rendered:
        if row["data"] is None:
            return templates.Rendered(_PUSH_TITLE, row["body"], row["body"])
        return templates.render(self.texts, row["kind"], locale, row["data"])

    async def _send_push(self, row: asyncpg.Record, who: store.Recipient, out: _Batch) -> None:
        if self.push is None:
            out.skip(row, "push_disabled")  # no FCM_SERVICE_ACCOUNT_JSON on this deployment
            return
        push = self.push
        try:
            text = self._texts(row, who.locale)
        except (KeyError, templates.TemplateError) as exc:
            out.fail(row, DeliveryError(PERMANENT, f"render: {exc}"), self.settings.notify_max_attempts)
            return
        # FCM data values must be strings; the id lets the app drop a duplicate (at-least-once).
        data = {k: str(v) for k, v in (row["data"] or {}).items()}
        data |= {"event": row["kind"], "notificationId": str(row["id"])}

        async def one(token: str) -> DeliveryError | None:
            async with self._send_slots:
                try:
                    await push.send(token, text.push_title, text.push_body, data)
                except DeliveryError as exc:
                    return exc
            return None

        results = await asyncio.gather(*(one(tok) for tok in who.tokens))
        gone = [tok for tok, err in zip(who.tokens, results, strict=True) if err and err.kind == TOKEN_GONE]
        await store.drop_tokens(self.pool, gone)
        errors = [e for e in results if e is not None and e.kind != TOKEN_GONE]
        if any(e is None for e in results):
            # Delivered to at least one device: done (a device that failed now is not retried,
            # or the others would get it twice).
            out.sent(row, "fcm", "; ".join(str(e) for e in errors) or None)
        elif not errors:
            out.skip(row, "no_device")  # every token was gone, and is deleted now
        elif any(e.kind == RETRYABLE for e in errors):
            out.fail(row, next(e for e in errors if e.kind == RETRYABLE), self.settings.notify_max_attempts)
        else:
            out.fail(row, errors[0], self.settings.notify_max_attempts)

    async def _send_sms(self, row: asyncpg.Record, who: store.Recipient | None, out: _Batch) -> None:
        recipient = str(row["recipient"])
        sealed = who.phone if recipient.startswith("user:") and who is not None else recipient
        phone = self.pii.open(RECIPIENT if sealed == recipient else "phone", sealed)
        if not phone:
            out.skip(row, "no_phone")
            return
        try:
            body = self._texts(row, who.locale if who else None).sms
        except (KeyError, templates.TemplateError) as exc:
            out.fail(row, DeliveryError(PERMANENT, f"render: {exc}"), self.settings.notify_max_attempts)
            return
        if body is None:
            out.skip(row, "no_sms_text")
            return
        try:
            async with self._send_slots:
                await self.sms.send(
                    phone, body, user_id=str(row["user_id"]) if row["user_id"] else None, kind=row["kind"]
                )
        except DeliveryError as exc:
            out.fail(row, exc, self.settings.notify_max_attempts)
            return
        except Exception as exc:  # a provider bug must not lose the row: retry with backoff
            log.warning("sms send failed", extra={"id": row["id"], "error": type(exc).__name__})
            out.fail(row, DeliveryError(RETRYABLE, type(exc).__name__), self.settings.notify_max_attempts)
            return
        out.sent(row, self.sms_via)


def build(settings: Settings, pool: asyncpg.Pool, pii: PiiCodec, sio: GuardedServer) -> NotifyService:
    """The node's dispatcher and its channels from the settings. Templates are loaded (and
    checked: engine.notify_templates.TemplateError) here, when the process starts."""
    sms: SmsSender
    if settings.termii_api_key:
        sms, via = (
            TermiiSms(
                settings.termii_base_url,
                settings.termii_api_key,
                settings.termii_sender_id,
                channel=settings.termii_channel,
                timeout=settings.notify_provider_timeout,
            ),
            "termii",
        )
    else:
        sms, via = DevSmsSender(), DEV_SMS
    push = None
    if settings.fcm_service_account_json:
        account = ServiceAccount.from_json(settings.fcm_service_account_json)
        push = FcmPush(account, base_url=settings.fcm_base_url, timeout=settings.notify_provider_timeout)
    texts = templates.load_dir()
    return NotifyService(settings, pool, pii, texts, sms, push, SocketPresence(sio), sms_via=via)
