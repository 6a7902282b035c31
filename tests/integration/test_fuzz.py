"""Hostile input for every socket command and HTTP route, generated from their schemas
(issue 14, point 7).

Each socket command's schema and each HTTP route's body schema are found from the handlers
themselves (`convert(data, s.X)`, `body(request, X)`) and read with `msgspec.inspect`, so a
command or route added later is fuzzed too. Values are near-valid (inside or just outside
each field's bounds), of the wrong type, extreme, unicode edge cases (NUL, lone surrogates,
bidi marks, non-BMP), deeply nested, or huge (inside the frame limit); bodies are sometimes
not JSON, not UTF-8 or sent with the wrong Content-Type.

The answer must always be a PROTOCOL success or error shape: every socket frame gets its
ack (none dropped, the socket stays up, never the "internal error" `unavailable` of a
handler bug), every HTTP answer is below 500 and JSON, and nothing is logged at ERROR (a
bug or a traceback). Example counts are bounded so the module runs in well under a minute.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import asyncpg
import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pocho_rt.sockets import schemas
from pocho_rt.sockets.base import BaseNamespace
from pocho_rt.validation import Schema
from tests.conftest import Server, StartServer
from tests.e2e.util import customer, request_payload, rider, vendor
from tests.helpers import Client
from tests.raw import RawSocket

CODES = {
    "invalid",
    "unauthorized",
    "forbidden",
    "not_found",
    "conflict",
    "expired",
    "limit_reached",
    "rate_limited",
    "unavailable",
    "timeout",
    "totp_required",
    "payload_too_large",
    "method_not_allowed",
}
FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
MAX_TEXT = 20_000  # a huge string: two still fit the 64 KB frame limit once JSON-escaped
FRAME_LIMIT = 64 * 1024  # a larger frame closes the connection by design (README): not fuzzed here

# ---------------------------------------------------------------- hostile values

EDGE_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "a\x00b",
        "\ud800",  # a lone surrogate: JSON-escaped as \ud800
        "\udc00x",
        "\u202eevil",
        "\ufeff",
        "\U0001f600" * 5,
        "\u0085\u2028\u2029",
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
        "null",
        "' OR 1=1 --",
        "%00",
        "\\u0000",
        "../../etc/passwd",
        "+" + "9" * 30,
        "2026-02-30T25:61:00Z",
        "nan",
    ]
)
HUGE = st.text(alphabet="ab \u00e9\u4e2d", min_size=1, max_size=5).map(lambda t: t * (MAX_TEXT // 5))
TEXT = st.one_of(st.text(max_size=60), EDGE_TEXT, HUGE)
NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 1, 2**31, 2**53 + 1, 2**63 - 1, -(2**63), 2**64]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e308, -1e308, 5e-324, -0.0, 0.5]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)


def nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


DEEP = st.integers(60, 600).map(nested)  # deeper (past orjson's 1024) is tested in test_abuse with raw text
HOSTILE = st.one_of(JSON_VALUES, DEEP, TEXT)


def _near(t: Any, ids: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    """Values for one msgspec type: valid ones, the bounds, and just past them."""
    mi = msgspec.inspect
    if isinstance(t, mi.StrType):
        lo, hi = t.min_length or 0, t.max_length or 200
        return st.one_of(ids, st.text(min_size=lo, max_size=min(hi, 80)), st.just("x" * (hi + 1)), st.just(""))
    if isinstance(t, mi.IntType):
        lo = t.ge if t.ge is not None else -(2**40)
        hi = t.le if t.le is not None else 2**40
        return st.one_of(st.integers(lo, hi), st.sampled_from([lo, hi, lo - 1, hi + 1]))
    if isinstance(t, mi.FloatType):
        lo = float(t.ge) if t.ge is not None else -1e9
        hi = float(t.le) if t.le is not None else 1e9
        return st.one_of(st.floats(lo, hi), st.sampled_from([lo, hi, lo - 1e-9, hi + 1e-9]))
    if isinstance(t, mi.DateTimeType):
        return st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()) | st.just(
            datetime.now(UTC).isoformat()
        )
    if isinstance(t, mi.LiteralType):
        return st.sampled_from(list(t.values))
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.NoneType):
        return st.none()
    if isinstance(t, mi.UnionType):
        return st.one_of([_near(x, ids) for x in t.types])
    if isinstance(t, mi.ListType):
        return st.lists(_near(t.item_type, ids), max_size=5)
    return JSON_VALUES


def payloads(schema: type[Schema] | None, ids: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    """Objects shaped by `schema` with each field near-valid or hostile, plus stray payloads."""
    stray = st.one_of(JSON_VALUES, DEEP, st.dictionaries(st.text(max_size=12), HOSTILE, max_size=5))
    if schema is None:
        return st.one_of(st.just({}), stray)
    fields = msgspec.inspect.type_info(schema).fields  # type: ignore[attr-defined]
    shaped = st.fixed_dictionaries(
        {},
        optional={f.encode_name: st.one_of(_near(f.type, ids), HOSTILE) for f in fields},
    )
    return st.one_of(shaped, shaped, shaped, stray)


def dumps(value: Any) -> str:
    """JSON text as a hostile client would send it: lone surrogates as \\ud800 escapes."""
    return json.dumps(value, ensure_ascii=True)


# ---------------------------------------------------------------- what exists to fuzz

_CONVERT = re.compile(r"convert\([^,]+,\s*s\.(\w+)\)")
_BODY = re.compile(r"body\(request,\s*(\w+)\)")
_QUERY = re.compile(r"request\.query\.get\(\"(\w+)\"")


def socket_commands(ns: BaseNamespace) -> dict[str, type[Schema] | None]:
    """Every event the namespace handles, with the schema its handler converts the payload to."""
    out: dict[str, type[Schema] | None] = {}
    for event, handler in ns._handlers.items():
        m = _CONVERT.search(inspect.getsource(handler))
        out[event] = getattr(schemas, m.group(1)) if m else None
    return out


def http_routes(server: Server) -> list[tuple[str, str, type[Schema] | None, list[str]]]:
    """(method, path template, body schema, query names) of every JSON route."""
    out = []
    for route in server.runner.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("formatter") or info.get("path")
        if not path or route.method == "HEAD" or path.startswith("/socket.io") or path in ("/metrics", "/healthz"):
            continue
        handler = route.handler
        try:
            source = inspect.getsource(handler)
        except (OSError, TypeError):
            source = ""
        m = _BODY.search(source)
        schema = getattr(inspect.getmodule(handler), m.group(1), None) if m else None
        out.append((route.method, path, schema, sorted(set(_QUERY.findall(source)) | {"limit", "cursor"})))
    return out


# ---------------------------------------------------------------- no errors logged


@pytest.fixture
def no_error_logs(caplog: pytest.LogCaptureFixture) -> Any:
    caplog.set_level(logging.WARNING)

    def check() -> None:
        bad = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert not bad, [(r.name, r.getMessage(), r.exc_text) for r in bad[:3]]

    return check


# ---------------------------------------------------------------- sockets


@pytest.fixture
async def fuzz_server(start_server: StartServer) -> Server:
    return await start_server(socket_command_rate=1e6, socket_command_burst=1_000_000, rate_limit_enabled=False)


@dataclass
class SocketRig:
    raws: dict[str, RawSocket]
    commands: list[tuple[str, str, type[Schema] | None]]
    ids: st.SearchStrategy[str]


@pytest.fixture
async def socket_rig(fuzz_server: Server, db: asyncpg.Connection) -> AsyncIterator[SocketRig]:
    async with aiohttp.ClientSession(base_url=fuzz_server.url) as session:
        c = Client(session, fuzz_server)
        cust, seller, courier = await customer(c), await vendor(c, db), await rider(c)
        req = (await cust.ok("request:create", request_payload()))["request"]
        offer = (await seller.ok("offer:place", {"requestId": req["id"], "priceKobo": 300_000}))["offer"]
        namespaces = {ns.namespace: ns for ns in fuzz_server.svc.sio.namespace_handlers.values()}
        raws: dict[str, RawSocket] = {}
        commands: list[tuple[str, str, type[Schema] | None]] = []
        for party in (cust, seller, courier):
            raw = RawSocket(session, fuzz_server.url, party.namespace)
            await raw.connect(party.token)
            raws[party.namespace] = raw
            commands += [(party.namespace, e, sch) for e, sch in socket_commands(namespaces[party.namespace]).items()]
        assert len(commands) >= 20, commands  # every namespace's commands are found
        ids = st.sampled_from([req["id"], offer["id"], str(uuid.uuid4()), "not-a-uuid"])
        try:
            yield SocketRig(raws, commands, ids)
        finally:
            for raw in raws.values():
                await raw.close()
            await c.close()


@FUZZ
@given(data=st.data())
async def test_hostile_socket_commands(socket_rig: SocketRig, no_error_logs: Any, data: st.DataObject) -> None:
    ns, event, schema = data.draw(st.sampled_from(socket_rig.commands), label="command")
    payload = data.draw(payloads(schema, socket_rig.ids), label="payload")
    raw = socket_rig.raws[ns]
    frame = dumps([event, payload])
    assume(len(frame) < FRAME_LIMIT - 100)
    reply = await raw.call_raw(frame)  # no ack within GUARD: fails
    assert isinstance(reply, dict) and isinstance(reply.get("ok"), bool), reply
    if not reply["ok"]:
        err = reply["error"]
        assert err["code"] in CODES and isinstance(err["message"], str), reply
        assert "internal" not in err["message"], (event, reply)  # a handler bug
    assert not raw.closed.is_set(), "the server dropped the socket"
    no_error_logs()


# ---------------------------------------------------------------- HTTP


def _fill(path: str, draw: Any, ids: st.SearchStrategy[str]) -> str:
    def one(m: re.Match[str]) -> str:
        value = draw(st.one_of(ids, ids, TEXT.filter(lambda t: 0 < len(t) < 200)), label=m.group(1))
        return quote(value.encode("utf-8", "surrogatepass"), safe="")

    return re.sub(r"\{(\w+)\}", one, path)


@dataclass
class HttpRig:
    session: aiohttp.ClientSession
    admin_key: str
    tokens: list[str | None]
    routes: list[tuple[str, str, type[Schema] | None, list[str]]]
    ids: st.SearchStrategy[str]


@pytest.fixture
async def http_rig(fuzz_server: Server, db: asyncpg.Connection) -> AsyncIterator[HttpRig]:
    async with aiohttp.ClientSession(base_url=fuzz_server.url) as session:
        c = Client(session, fuzz_server)
        cust = await c.register("CUSTOMER")
        seller = await vendor(c, db)
        routes = http_routes(fuzz_server)
        assert len(routes) >= 20, routes
        ids = st.sampled_from([seller.vendor_id or "", cust["user"]["id"], str(uuid.uuid4()), "meal_request", "x"])
        tokens = [None, cust["tokens"]["accessToken"], seller.token, "garbage"]
        try:
            yield HttpRig(session, fuzz_server.svc.settings.admin_key, tokens, routes, ids)
        finally:
            await c.close()


@FUZZ
@given(data=st.data())
async def test_hostile_http_requests(http_rig: HttpRig, no_error_logs: Any, data: st.DataObject) -> None:
    method, path, schema, query_names = data.draw(st.sampled_from(http_rig.routes), label="route")
    url = _fill(path, data.draw, http_rig.ids)
    query = data.draw(st.dictionaries(st.sampled_from(query_names), TEXT, max_size=3), label="query")
    if query:
        url += "?" + "&".join(f"{k}={quote(v.encode('utf-8', 'surrogatepass'), safe='')}" for k, v in query.items())
    headers = {}
    token = data.draw(st.sampled_from(http_rig.tokens), label="token")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if data.draw(st.booleans(), label="admin key"):
        headers["X-Admin-Key"] = http_rig.admin_key
    body: bytes | None = None
    if method in ("POST", "PATCH", "PUT"):
        kind = data.draw(st.sampled_from(["schema", "schema", "deep", "bytes", "text/plain"]), label="body")
        if kind == "bytes":
            body = data.draw(st.binary(max_size=200), label="bytes")
        elif kind == "deep":
            depth = data.draw(st.integers(65, 5000), label="depth")
            body = b'{"x": ' + b"[" * depth + b"]" * depth + b"}"
        else:
            body = dumps(data.draw(payloads(schema, http_rig.ids), label="payload")).encode()
        headers["Content-Type"] = "text/plain" if kind == "text/plain" else "application/json"
    async with http_rig.session.request(method, url, data=body, headers=headers) as resp:
        status, raw = resp.status, await resp.read()
    assert status < 500, (method, url, status, raw[:300])
    if status != 204:
        answer = json.loads(raw)
        if status >= 400:
            err = answer["error"]
            assert err["code"] in CODES and isinstance(err["message"], str), answer
    no_error_logs()
