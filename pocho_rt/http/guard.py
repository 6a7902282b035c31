"""The HTTP connection guard: bounds aiohttp leaves open (issue 14).

aiohttp has no deadline for a request's headers or body and no cap per client address, so
a slowloris client (one header line every few seconds, an upgrade request never finished, a
body trickled a byte at a time) holds a connection and a file descriptor for as long as it
likes. `GuardedRunner` is `web.AppRunner` with a request handler that adds:

- a header deadline (`http_header_timeout`): from the connection's start, or from the first
  byte of the next request on a keep-alive connection, until the request's headers are
  complete; past it the connection is closed (no answer: the request never arrived);
- a body deadline (`http_body_timeout`): from the end of the headers until the body is
  complete; past it the handler's read fails with `BodyTimeoutError`, answered 408 (JSON) by
  the middleware, and the connection is closed;
- a cap on concurrent connections per peer IP (`http_max_connections_per_ip`, 0 = none):
  one more is answered 503 `unavailable` with Retry-After and closed at once;
- aiohttp's own protocol errors (a request line over 8190 bytes, a malformed header...)
  answered in the PROTOCOL JSON error shape instead of plain text.

The peer IP is the TCP peer, as for rate limits (pocho_rt/ratelimit.py): behind a reverse
proxy every client shares the proxy's address, so such deployments set the cap to 0.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, cast

import orjson
from aiohttp import web, web_protocol, web_server
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader

from pocho_rt.config import Settings
from pocho_rt.metrics import HTTP_GUARD

log = logging.getLogger("pocho.http")

# PROTOCOL codes for the statuses aiohttp's parser produces by itself.
_PARSER_CODES = {400: "invalid", 413: "payload_too_large", 431: "invalid"}


class BodyTimeoutError(Exception):
    """The request body did not arrive within the body deadline."""


def _json_bytes(status: int, code: str, message: str, extra_headers: str = "") -> bytes:
    body = orjson.dumps({"error": {"code": code, "message": message}})
    reason = HTTPStatus(status).phrase
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"Connection: close\r\n{extra_headers}\r\n"
    )
    return head.encode() + body


_REFUSED_LINGER = 1.0  # seconds a refused connection is kept to read the request it sent
_TOO_MANY = _json_bytes(503, "unavailable", "too many connections from this address", "Retry-After: 2\r\n")


class _Limits:
    """Shared by every connection of one server: the deadlines and the per-IP counts."""

    def __init__(self, header_timeout: float, body_timeout: float, per_ip: int) -> None:
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.per_ip = per_ip
        self.open: defaultdict[str, int] = defaultdict(int)


class _GuardedHandler(web_protocol.RequestHandler):
    """aiohttp's request handler plus the deadlines and the cap (see the module docstring)."""

    _limits: _Limits  # set on the class made per server

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard_ip: str | None = None
        self._header_timer: asyncio.TimerHandle | None = None
        self._awaiting_headers = True
        self._refused = False

    # ------------------------------------------------------------------ connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        limits = self._limits
        peer = transport.get_extra_info("peername")
        ip = peer[0] if isinstance(peer, tuple) and peer else None
        if ip is not None and limits.per_ip > 0:
            if limits.open[ip] >= limits.per_ip:
                HTTP_GUARD.labels("per_ip_cap").inc()
                self._refuse(cast(asyncio.Transport, transport))  # uvloop's is no asyncio.Transport subclass
                return
            limits.open[ip] += 1
            self._guard_ip = ip
        self._arm_header_timer()

    def _refuse(self, transport: asyncio.Transport) -> None:
        """503 and goodbye. What the client already sent is read and dropped until the close a
        moment later: closing with unread bytes would reset the connection and lose the 503."""
        self._refused = True
        transport.write(_TOO_MANY)
        if transport.can_write_eof():
            transport.write_eof()
        asyncio.get_running_loop().call_later(_REFUSED_LINGER, transport.close)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_header_timer()
        ip, self._guard_ip = self._guard_ip, None
        if ip is not None:
            left = self._limits.open[ip] - 1
            if left > 0:
                self._limits.open[ip] = left
            else:
                del self._limits.open[ip]
        super().connection_lost(exc)

    # ------------------------------------------------------------------ header deadline

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            loop = asyncio.get_running_loop()
            self._header_timer = loop.call_later(self._limits.header_timeout, self._headers_overdue)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_overdue(self) -> None:
        self._header_timer = None
        HTTP_GUARD.labels("header_timeout").inc()
        log.info("http headers not complete in time, closing", extra={"peer": self._guard_ip})
        self.force_close()
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # over the per-IP cap: answered already
        if self._awaiting_headers and self._header_timer is None and not self._upgraded:
            self._arm_header_timer()  # the first bytes of the next request on a kept-alive connection
        before = len(self._messages)
        super().data_received(data)
        if len(self._messages) > before:  # a request's headers are complete
            self._cancel_header_timer()
            self._awaiting_headers = False
            for _msg, payload in list(self._messages)[before:]:
                self._watch_body(payload)

    # ------------------------------------------------------------------ body deadline

    def _watch_body(self, payload: Any) -> None:
        if payload is EMPTY_PAYLOAD or not isinstance(payload, StreamReader) or payload.is_eof():
            return
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self._limits.body_timeout, self._body_overdue, payload)
        payload.on_eof(timer.cancel)

    def _body_overdue(self, payload: StreamReader) -> None:
        if payload.is_eof():
            return
        HTTP_GUARD.labels("body_timeout").inc()
        payload.set_exception(BodyTimeoutError(f"request body not received within {self._limits.body_timeout:g} s"))
        self.close()  # no keep-alive after the 408 the handler answers

    async def _handle_request(self, request: Any, start_time: Any, request_handler: Any) -> Any:
        try:
            return await super()._handle_request(request, start_time, request_handler)
        finally:
            self._awaiting_headers = True  # the next bytes start the next request

    # ------------------------------------------------------------------ aiohttp's own errors

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's parser and last-resort errors, in the PROTOCOL JSON shape."""
        if status >= 500:
            self.log_exception("Error handling request", exc_info=exc)
        else:  # the client's mistake (a URL over 8190 bytes, a malformed header): no traceback
            log.info("malformed http request", extra={"status": status, "error": type(exc).__name__})
        if request.writer.output_size > 0:  # a response began: the connection is beyond saving
            raise ConnectionError("response already started, cannot send the error")
        code = _PARSER_CODES.get(status, "invalid" if 400 <= status < 500 else "internal")
        text = (message or HTTPStatus(status).phrase) if status < 500 else "internal error"
        resp = web.Response(
            body=orjson.dumps({"error": {"code": code, "message": text[:200]}}),
            status=status,
            content_type="application/json",
        )
        resp.force_close()
        return resp


def _handler_class(limits: _Limits) -> type[_GuardedHandler]:
    return type("GuardedHandler", (_GuardedHandler,), {"_limits": limits})


class _GuardedWebServer(web_server.Server):
    handler_factory: Callable[..., web_protocol.RequestHandler]

    def __call__(self) -> web_protocol.RequestHandler:
        return self.handler_factory(self, loop=self._loop, **self._kwargs)


class GuardedRunner(web.AppRunner):
    """`web.AppRunner` whose connections have header and body deadlines and a per-IP cap."""

    def __init__(
        self,
        app: web.Application,
        *,
        header_timeout: float,
        body_timeout: float,
        max_connections_per_ip: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, **kwargs)
        self._limits = _Limits(header_timeout, body_timeout, max_connections_per_ip)

    async def _make_server(self) -> web_server.Server:
        server = await super()._make_server()
        server.__class__ = _GuardedWebServer
        assert isinstance(server, _GuardedWebServer)
        server.handler_factory = _handler_class(self._limits)
        return server


def make_runner(app: web.Application, settings: Settings, **kwargs: Any) -> GuardedRunner:
    """The runner `serve` (and the tests' servers) use, bounded by `settings`."""
    return GuardedRunner(
        app,
        header_timeout=settings.http_header_timeout,
        body_timeout=settings.http_body_timeout,
        max_connections_per_ip=settings.http_max_connections_per_ip,
        keepalive_timeout=settings.http_keepalive_timeout,
        **kwargs,
    )
