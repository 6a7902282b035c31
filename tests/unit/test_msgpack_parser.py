"""socket.io-msgpack-parser's wire format (pocho_rt.transport.msgpack_parser) against bytes the
JavaScript parser itself wrote: tests/fixtures/msgpack-vectors.json, made by
`node tests/js/vectors.mjs` (socket.io-msgpack-parser 3.0.2, notepack.io 2.2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgpack
import pytest
from engineio import packet as eio_packet
from hypothesis import given
from hypothesis import strategies as st

from pocho_rt.sockets.server import event_frame
from pocho_rt.transport.msgpack_parser import InvalidPacket, Repacker, pack, unpack
from pocho_rt.transport.sio import Packet

VECTORS = json.loads((Path(__file__).parents[1] / "fixtures" / "msgpack-vectors.json").read_text())
CLIENT = {name: bytes.fromhex(h) for name, h in VECTORS["client"].items()}
SERVER = {name: bytes.fromhex(h) for name, h in VECTORS["server"].items()}


def test_what_the_javascript_client_sends_is_read_as_a_json_client_would_send_it() -> None:
    assert unpack(CLIENT["connect"]) == (0, "/customer", {"token": "t0k"}, None)
    assert unpack(CLIENT["connect_without_auth"]) == (0, "/", None, None)  # its data is `undefined`
    assert unpack(CLIENT["event"]) == (2, "/vendor", ["offer:revise", {"offerId": "o-1", "priceKobo": 310000}], 7)
    assert unpack(CLIENT["event_without_ack"]) == (2, "/rider", ["location", {"lat": 6.5244, "lng": 3.3792}], None)
    assert unpack(CLIENT["ack"]) == (3, "/customer", [{"ok": True}], 3)
    assert unpack(CLIENT["disconnect"]) == (1, "/vendor", None, None)
    kind, namespace, data, ack_id = unpack(CLIENT["event_with_values"])
    assert (kind, namespace, ack_id) == (2, "/", None)
    assert data == [
        "x",
        "héllo ✓ 🍲",
        -2,
        2**40,
        3.5,
        None,
        True,
        {"nested": [1, {}]},
        b"\x01\x02\xff",  # a Buffer (MessagePack bin)
        b"\x09\x08\x07",  # an ArrayBuffer (notepack's extension 0)
        "2026-11-29T13:46:24.123Z",  # a Date, as its toJSON() (what the JSON parser sends)
        [None, 1],  # undefined in an array, as JSON's null
        {"kept": 1, "nan": None, "inf": None},  # as JSON.stringify: undefined left out, NaN/Infinity null
    ]


def test_what_this_server_sends_is_byte_for_byte_what_the_javascript_encoder_writes() -> None:
    assert pack(0, "/customer", {"sid": "abc"}) == SERVER["connect"]
    assert pack(4, "/nope", {"message": "Invalid namespace"}) == SERVER["connect_error"]
    offer = {"offer": {"id": "o-1", "priceKobo": 300000, "note": None, "ratio": 0.5}}
    assert pack(2, "/customer", ["offer:new", offer]) == SERVER["event"]
    error = {"ok": False, "error": {"code": "invalid", "message": "é"}}
    assert pack(3, "/vendor", [error], 300) == SERVER["ack"]
    assert pack(2, "/", ["b", b"\x00\x01\x02"]) == SERVER["event_with_bytes"]
    # no `data` at all: the JavaScript decoder refuses a DISCONNECT whose data is nil
    assert pack(1, "/vendor", None) == SERVER["disconnect"]


@pytest.mark.parametrize("name", sorted(VECTORS["invalid"]))
def test_packets_the_javascript_decoder_refuses_are_refused(name: str) -> None:
    vector = VECTORS["invalid"][name]
    assert vector["refused"]  # the JavaScript decoder did refuse it
    if name == "disconnect_with_data":  # nil data: python-socketio's client sends it; read as none
        assert unpack(bytes.fromhex(vector["hex"])) == (1, "/", None, None)
        return
    with pytest.raises(InvalidPacket):
        unpack(bytes.fromhex(vector["hex"]))


def refusal(packet: dict[str, Any] | bytes) -> InvalidPacket:
    with pytest.raises(InvalidPacket) as err:
        unpack(packet if isinstance(packet, bytes) else msgpack.packb(packet))
    return err.value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ({1: "a"}, "a map key that is not text"),
        (msgpack.ExtType(5, b"x"), "unsupported MessagePack extension 5"),
        (msgpack.ExtType(0, bytes(range(1, 9))), "a Date out of range"),  # an 8-byte ArrayBuffer: see the docs
    ],
)
def test_values_no_json_client_could_send_are_refused_on_the_events_ack_id(value: Any, reason: str) -> None:
    err = refusal({"type": 2, "nsp": "/vendor", "data": ["offer:place", {"v": value}], "id": 9})
    assert (str(err), err.ack_id, err.namespace) == (reason, 9, "/vendor")


def test_text_that_is_not_utf8_is_refused_on_the_events_ack_id() -> None:
    good = msgpack.packb({"type": 2, "data": ["x", "ab"], "nsp": "/", "id": 5})
    err = refusal(good.replace(b"\xa2ab", b"\xa2\xff\xfe"))
    assert (err.ack_id, err.namespace) == (5, "/")


def test_an_ack_id_of_anything_but_an_event_is_not_answered() -> None:
    assert refusal({"type": 3, "nsp": "/", "data": {"a": 1}, "id": 9}).ack_id is None  # the server's id


def test_garbage_and_nesting_past_msgpacks_limit_are_refused_not_raised() -> None:
    for raw in (b"", b"\xc1", b"\x81\xa4type", msgpack.packb({"type": 2, "nsp": "/", "data": ["x"]}) + b"\x00"):
        refusal(raw)
    deep = b"\x84\xa4type\x02\xa4data" + b"\x91" * 1100 + b"\xc0" + b"\xa3nsp\xa1/\xa2id\x05"
    assert refusal(deep).ack_id is None  # nothing after `data` can be read: the connection closes
    nested: Any = "leaf"
    for _ in range(1000):  # as deep as MessagePack goes: no recursion limit of ours below it
        nested = [nested]
    read = unpack(msgpack.packb({"type": 2, "nsp": "/", "data": ["x", nested]}))[2][1]
    for _ in range(1000):  # compared level by level: == itself would recurse
        assert isinstance(read, list) and len(read) == 1
        read = read[0]
    assert read == "leaf"


def test_a_standard_timestamp_is_read_as_a_date() -> None:
    stamp = msgpack.Timestamp.from_unix_nano(0x1A2278E8FFB * 1_000_000)  # the Date in the vectors
    assert unpack(msgpack.packb({"type": 2, "nsp": "/", "data": ["x", stamp]}, datetime=False))[2] == [
        "x",
        "2026-11-29T13:46:24.123Z",
    ]


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@given(data=st.lists(_json, max_size=5), ack_id=st.none() | st.integers(0, 2**31))
def test_what_is_packed_is_read_back_unchanged(data: list[Any], ack_id: int | None) -> None:
    assert unpack(pack(2, "/customer", ["e", *data], ack_id)) == (2, "/customer", ["e", *data], ack_id)


def test_a_frame_for_a_room_is_packed_once_and_text_packets_with_bytes_are_gathered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Packet, "json", json)  # what a server sets on its packet class
    frame = event_frame("offer:new", '{"offer":{"id":"o-1"}}', "/customer")
    first, second = Repacker(Packet), Repacker(Packet)
    packed = first(frame)
    assert second(frame) is packed  # one MessagePack form for every member
    assert msgpack.unpackb(packed.data) == {
        "type": 2,
        "data": ["offer:new", {"offer": {"id": "o-1"}}],
        "nsp": "/customer",
    }
    # python-socketio's manager sends a packet with bytes as a text header and attachments
    header, attachment = Packet(2, namespace="/", data=["b", b"\x01\x02"]).encode()
    repack = Repacker(Packet)
    assert repack(eio_packet.Packet(eio_packet.MESSAGE, header)) is None
    gathered = repack(eio_packet.Packet(eio_packet.MESSAGE, attachment))
    assert msgpack.unpackb(gathered.data) == {"type": 2, "data": ["b", b"\x01\x02"], "nsp": "/"}
    already = eio_packet.Packet(eio_packet.MESSAGE, pack(3, "/", [1], 4))
    assert repack(already) is already
