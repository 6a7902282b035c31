"""What the three namespaces share: JWT auth on connect, event routing, the ack format.

Event names contain ':' ("offer:place"), so a handler is the method `on_offer_place`;
an event without one is answered `not_found`. Handlers return the ack payload; an
EngineError (ApiError included) raised anywhere below becomes `{ok: false, error}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import socketio

from engine.clock import iso
from engine.errors import EngineError
from pocho_rt.auth.principal import authenticate
from pocho_rt.auth.tokens import Principal, TokenError
from pocho_rt.context import Services
from pocho_rt.errors import ApiError, error_ack, ok, storage_failure, storage_unavailable
from pocho_rt.metrics import SOCKET_COMMANDS, SOCKET_CONNECTIONS, SOCKET_CONNECTS, STORAGE_UNAVAILABLE
from pocho_rt.negotiation_service import NegotiationService

log = logging.getLogger("pocho.sockets")
Handler = Callable[[str, Any], Awaitable[dict[str, Any]]]
_LIFECYCLE = {"connect", "disconnect"}


class BaseNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    role: str = ""

    def __init__(self, namespace: str, svc: Services) -> None:
        super().__init__(namespace)
        self.svc = svc
        self._handlers: dict[str, Handler] = {}
        self._ending: dict[str, asyncio.Task[None]] = {}  # sockets told session:expired
        for attr in dir(type(self)):
            if attr.startswith("on_") and attr[3:] not in _LIFECYCLE:
                self._handlers[attr[3:].replace("_", ":")] = getattr(self, attr)

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        try:
            await self._connect(sid, auth)
        except socketio.exceptions.ConnectionRefusedError:
            raise
        except Exception as exc:  # Redis or PostgreSQL trouble: refuse clearly instead of hanging the client
            if storage_failure(exc):
                log.warning("socket connect: storage unavailable", extra={"error": type(exc).__name__})
                STORAGE_UNAVAILABLE.labels("socket").inc()
            else:
                log.exception("socket connect failed", extra={"namespace": self.namespace})
            SOCKET_CONNECTS.labels(self.namespace, "unavailable").inc()
            raise socketio.exceptions.ConnectionRefusedError("unavailable", {"code": "unavailable"}) from None

    async def _connect(self, sid: str, auth: Any) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        try:
            principal = await authenticate(self.svc.tokens, self.svc.redis, token)
        except TokenError:
            SOCKET_CONNECTS.labels(self.namespace, "unauthorized").inc()
            raise socketio.exceptions.ConnectionRefusedError("unauthorized", {"code": "unauthorized"}) from None
        if principal.role != self.role:
            SOCKET_CONNECTS.labels(self.namespace, "forbidden").inc()
            raise socketio.exceptions.ConnectionRefusedError("forbidden", {"code": "forbidden"})
        await self.save_session(sid, {"principal": principal})
        await self.enter_room(sid, f"user:{principal.user_id}")
        await self.enter_room(sid, f"sid:{principal.sid}")
        await self.joined(sid, principal)
        (await self.get_session(sid))["expiry"] = self._expiry_timer(sid, principal)  # last: nothing can leak it
        SOCKET_CONNECTS.labels(self.namespace, "ok").inc()
        SOCKET_CONNECTIONS.labels(self.namespace).inc()

    # ---------------------------------------------------------------- token lifetime

    def _expiry_timer(self, sid: str, principal: Principal) -> asyncio.TimerHandle:
        delay = principal.exp - time.time()
        return asyncio.get_running_loop().call_later(max(delay, 0.0), self._expire_session, sid)

    def _expire_session(self, sid: str) -> None:
        self._ending[sid] = self.svc.supervisor.spawn(self._end_expired(sid), name="session-expired")

    async def _end_expired(self, sid: str) -> None:
        """The token ran out without `auth:renew`: say so, then hang up a little later."""
        try:
            await self.emit("session:expired", {}, to=sid)
            await asyncio.sleep(self.svc.settings.session_expiry_grace)
            await self.disconnect(sid)
        finally:
            self._ending.pop(sid, None)

    async def on_auth_renew(self, sid: str, data: Any) -> dict[str, Any]:
        """A fresh access token of the same user keeps the connection alive past the old one."""
        token = data.get("token") if isinstance(data, dict) else None
        try:
            fresh = await authenticate(self.svc.tokens, self.svc.redis, token)
        except TokenError:
            raise ApiError("unauthorized", "a valid access token is required") from None
        session = await self.get_session(sid)
        current: Principal = session["principal"]
        if fresh.user_id != current.user_id or fresh.role != self.role:
            raise ApiError("forbidden", "the token belongs to another account")
        if fresh.sid != current.sid:
            await self.leave_room(sid, f"sid:{current.sid}")
            await self.enter_room(sid, f"sid:{fresh.sid}")
        session["expiry"].cancel()
        if (ending := self._ending.pop(sid, None)) is not None:
            ending.cancel()  # renewed during the grace period after session:expired
        session["principal"] = fresh
        session["expiry"] = self._expiry_timer(sid, fresh)
        return ok({"expiresAt": iso(datetime.fromtimestamp(fresh.exp, UTC))})

    async def joined(self, sid: str, principal: Principal) -> None:
        """Hook for namespaces that put a new socket in more rooms."""

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        SOCKET_CONNECTIONS.labels(self.namespace).dec()
        with contextlib.suppress(KeyError):
            (await self.get_session(sid))["expiry"].cancel()
        if (ending := self._ending.pop(sid, None)) is not None:
            ending.cancel()

    @property
    def negotiation(self) -> NegotiationService:
        return self.svc.negotiation

    async def principal(self, sid: str) -> Principal:
        session = await self.get_session(sid)
        p: Principal = session["principal"]
        return p

    async def trigger_event(self, event: str, *args: Any) -> Any:
        if event in _LIFECYCLE:
            return await super().trigger_event(event, *args)
        handler = self._handlers.get(event)
        sid = args[0]
        data = args[1] if len(args) > 1 else None
        if handler is None:
            SOCKET_COMMANDS.labels(self.namespace, "unknown", "not_found").inc()
            return error_ack(EngineError("not_found", f"unknown event {event[:64]!r}"))
        try:
            reply = await handler(sid, data)
        except EngineError as exc:  # ApiError included
            SOCKET_COMMANDS.labels(self.namespace, event, exc.code).inc()
            return error_ack(exc)
        except Exception as exc:
            if storage_failure(exc):  # PostgreSQL or Redis away or past its deadline: not applied
                log.warning("socket command: storage unavailable", extra={"event": event, "error": type(exc).__name__})
                STORAGE_UNAVAILABLE.labels("socket").inc()
                SOCKET_COMMANDS.labels(self.namespace, event, "unavailable").inc()
                return error_ack(storage_unavailable())
            log.exception("socket handler failed", extra={"event": event, "namespace": self.namespace})
            SOCKET_COMMANDS.labels(self.namespace, event, "internal").inc()
            return error_ack(EngineError("unavailable", "internal error, retry"))
        self._ok_counter(event).inc()
        return reply

    @functools.lru_cache(maxsize=128)  # noqa: B019 - namespaces live as long as the server
    def _ok_counter(self, event: str) -> Any:
        return SOCKET_COMMANDS.labels(self.namespace, event, "ok")
