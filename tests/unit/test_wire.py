"""Actor messages across nodes (adapters/wire.py): every kind of message and reply comes back
equal, errors come back as the same error, and bytes cannot name a class outside the engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgpack
import pytest

from adapters import wire
from engine import negotiation as n
from engine import orders as o
from engine.assignment import Carrying, LastLocation, Reserve
from engine.errors import DomainError, EngineError
from engine.meal_request_actor import Envelope, Watch
from engine.order_actor import Envelope as OrderEnvelope
from engine.rider_actor import Ping
from engine.tracking import Fix

NOW = datetime(2026, 11, 29, 9, 0, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    "msg",
    [
        Envelope(n.ReviseOffer(offer_id="o1", vendor_id="v1", price_kobo=250_000, now=NOW), "u1", "m-1"),
        Watch("u1", "v1", 6.5, 3.4, 10.0, True),
        OrderEnvelope(o.CustomerCancel(customer_id="c1", reason="late", now=NOW), "c1", None),
        Ping(Fix(6.5, 3.4, NOW, 90.0, 30.0, None), NOW + timedelta(seconds=1)),
        Carrying("order-1", 6.6, 3.5),
        LastLocation("order-1"),
        Reserve("order-1"),
        {"order": {"id": "x", "seq": 3, "etaMinutes": None}, "events": [(1, "a"), [2, "b"]]},
        None,
        [1, 2.5, "three", b"four", True],
        datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=1))),
    ],
)
def test_round_trip(msg: object) -> None:
    back = wire.loads(wire.dumps(msg))
    assert back == msg and type(back) is type(msg)


def test_a_naive_datetime_stays_naive() -> None:
    naive = datetime(2026, 1, 1, 12, 0)
    assert wire.loads(wire.dumps(naive)).tzinfo is None


def test_errors_keep_their_class_code_message_and_details() -> None:
    err = wire.loads(wire.dumps(DomainError("conflict", "offer is not open", {"status": "WITHDRAWN"})))
    assert isinstance(err, DomainError)
    assert (err.code, err.message, err.details) == ("conflict", "offer is not open", {"status": "WITHDRAWN"})
    plain = wire.loads(wire.dumps(EngineError("unavailable")))
    assert type(plain) is EngineError and plain.code == "unavailable"


def _forged(name: str, values: list[object]) -> Any:
    inner = msgpack.packb([name, values], use_bin_type=True)
    return msgpack.packb(msgpack.ExtType(1, inner), use_bin_type=True)


@pytest.mark.parametrize(
    "name",
    ["os:system", "builtins:eval", "subprocess:Popen", "engine.errors:EngineError", "engine.clock:iso"],
)
def test_bytes_cannot_name_anything_but_an_engine_dataclass(name: str) -> None:
    with pytest.raises(ValueError):
        wire.loads(_forged(name, ["x"]))


def test_other_objects_are_refused_at_the_sender() -> None:
    with pytest.raises(TypeError):
        wire.dumps(object())
