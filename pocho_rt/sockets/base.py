"""What the three namespaces share: JWT auth on connect, event routing, the ack format.

Event names contain ':' ("offer:place"), so a handler is the method `on_offer_place`;
an event without one is answered `not_found`. Handlers return the ack payload; an
ApiError raised anywhere below becomes `{ok: false, error}`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import socketio

from engine.errors import EngineError
from pocho_rt.auth.principal import authenticate
from pocho_rt.auth.tokens import Principal, TokenError
from pocho_rt.context import Services
from pocho_rt.errors import ApiError
from pocho_rt.metrics import SOCKET_COMMANDS, SOCKET_CONNECTIONS, SOCKET_CONNECTS
from pocho_rt.runtime import Engine

log = logging.getLogger("pocho.sockets")
Handler = Callable[[str, Any], Awaitable[dict[str, Any]]]
_LIFECYCLE = {"connect", "disconnect"}


class BaseNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    role: str = ""

    def __init__(self, namespace: str, svc: Services) -> None:
        super().__init__(namespace)
        self.svc = svc
        self._handlers: dict[str, Handler] = {}
        for attr in dir(type(self)):
            if attr.startswith("on_") and attr[3:] not in _LIFECYCLE:
                self._handlers[attr[3:].replace("_", ":")] = getattr(self, attr)

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
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
        SOCKET_CONNECTS.labels(self.namespace, "ok").inc()
        SOCKET_CONNECTIONS.labels(self.namespace).inc()

    async def joined(self, sid: str, principal: Principal) -> None:
        """Hook for namespaces that put a new socket in more rooms."""

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        SOCKET_CONNECTIONS.labels(self.namespace).dec()

    @property
    def engine(self) -> Engine:
        assert self.svc.engine is not None
        return self.svc.engine

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
            return ApiError("not_found", f"unknown event {event[:64]!r}").ack()
        try:
            reply = await handler(sid, data)
        except (ApiError, EngineError) as exc:
            SOCKET_COMMANDS.labels(self.namespace, event, exc.code).inc()
            if isinstance(exc, EngineError):
                return ApiError(exc.code, exc.message, exc.details).ack()
            return exc.ack()
        except Exception:
            log.exception("socket handler failed", extra={"event": event, "namespace": self.namespace})
            SOCKET_COMMANDS.labels(self.namespace, event, "internal").inc()
            return ApiError("unavailable", "internal error, retry").ack()
        self._ok_counter(event).inc()
        return reply

    @functools.lru_cache(maxsize=128)  # noqa: B019 - namespaces live as long as the server
    def _ok_counter(self, event: str) -> Any:
        return SOCKET_COMMANDS.labels(self.namespace, event, "ok")
