"""socket.io-msgpack-parser's wire format, chosen per connection by its first packet.

A client built with `parser: require("socket.io-msgpack-parser")` (v3, Socket.IO protocol 5)
sends and expects every Socket.IO packet as ONE binary Engine.IO message: a MessagePack map
`{type, data, nsp, id?}` (https://github.com/socketio/socket.io-msgpack-parser). Node's
server takes one parser for all its clients; here a session whose first Socket.IO packet
(its CONNECT) is binary speaks MessagePack, one whose first packet is text speaks JSON, so
app versions on either parser share one server, one room and one emit.

What upstream python-socketio 5.18's `MsgPackPacket` does differently:

- it always sends `data`, so a DISCONNECT or a data-less CONNECT carries `nil`; the
  JavaScript decoder refuses both ("invalid payload": it wants `data` absent);
- it accepts any decoded value, where the JSON parser can only produce JSON values: here a
  decoded packet is checked as the JavaScript decoder checks it, and its values are JSON's
  (plus bytes), as a JSON client would have sent them (NaN and infinities as null, as
  `JSON.stringify` writes them); other extensions and non-text map keys are refused.

The parser's MessagePack library, notepack.io 2.2, writes three JavaScript values as
extension 0, read here as the JSON parser would carry them: `undefined` (1 byte) left out
of a map and null in an array, a Date (8 bytes: milliseconds) as its `toJSON()` text, an
ArrayBuffer or typed array (any other length) as bytes. The library cannot be told apart by length alone: an ArrayBuffer
of exactly 1 or 8 bytes is read as undefined or a Date (the protocol has no binary client
payloads; a Node Buffer is MessagePack bin and always bytes). A standard timestamp
(extension -1, notepack.io 3) is read as a Date too.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import msgpack
import orjson
from engineio import packet as eio_packet
from socketio import packet as sio_packet

CONNECT, DISCONNECT, EVENT, ACK, CONNECT_ERROR = 0, 1, 2, 3, 4
_NOTEPACK = 0  # notepack.io 2.2's extension type for undefined, Date and ArrayBuffer
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class InvalidPacket(ValueError):
    """A binary message that is not a valid packet; the `ack_id` and `namespace` of an event
    when readable, so that the event can be answered `invalid`."""

    def __init__(self, reason: str, ack_id: int | None = None, namespace: str | None = None) -> None:
        super().__init__(reason)
        self.ack_id = ack_id
        self.namespace = namespace


class Frame(eio_packet.Packet):  # type: ignore[misc]
    """A text MESSAGE sent to many sessions: its MessagePack form is made once, on demand."""

    packed: eio_packet.Packet | None = None


def _default(obj: Any) -> Any:
    """What the JSON parser would send for a value MessagePack cannot encode (dataclasses,
    datetimes, UUIDs, enums: orjson's types)."""
    return orjson.loads(orjson.dumps(obj))


_packer = msgpack.Packer(default=_default)


def pack(packet_type: int, namespace: str | None, data: Any, ack_id: int | None = None) -> bytes:
    """One packet, as the JavaScript encoder writes it (`data` absent when there is none)."""
    out: dict[str, Any] = {"type": packet_type}
    if data is not None:
        out["data"] = data
    out["nsp"] = namespace or "/"
    if ack_id is not None:
        out["id"] = ack_id
    return _packer.pack(out)  # type: ignore[no-any-return]


def pack_packet(pkt: Any) -> eio_packet.Packet:
    """A python-socketio packet as a binary Engine.IO MESSAGE."""
    return eio_packet.Packet(eio_packet.MESSAGE, pack(pkt.packet_type, pkt.namespace, pkt.data, pkt.id))


def _date_text(moment: datetime) -> str:
    """JavaScript's `Date.prototype.toJSON()`: UTC, milliseconds, `Z`."""
    m = moment.astimezone(UTC)
    return (
        f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}."
        f"{m.microsecond // 1000:03d}Z"
    )


class _Undefined:
    """notepack.io's `undefined`: left out of a map, null in an array (as JSON.stringify does)."""


class _Refused:
    """A value no JSON client could send, refused once the packet's ack id is known."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


_UNDEFINED = _Undefined()


def _ext(code: int, data: bytes) -> Any:
    """notepack.io 2.2's extension 0 (see the module docstring); never raises, so that a
    refused value can still be answered on the packet's ack id."""
    if code != _NOTEPACK:
        return _Refused(f"unsupported MessagePack extension {code}")
    if len(data) == 1:
        return _UNDEFINED
    if len(data) == 8:
        try:
            return _date_text(_EPOCH + timedelta(milliseconds=int.from_bytes(data, "big", signed=True)))
        except OverflowError:
            return _Refused("a Date out of range")
    return data


def _leaf(value: Any) -> Any:
    """A scalar as the JSON parser would have carried it, or `_UNDEFINED`; InvalidPacket."""
    kind = type(value)
    if kind is float:
        return value if math.isfinite(value) else None  # JSON.stringify writes NaN and Infinity as null
    if kind is _Refused:
        raise InvalidPacket(value.reason)
    if kind is msgpack.Timestamp:
        try:
            return _date_text(value.to_datetime())
        except (OverflowError, ValueError):
            raise InvalidPacket("a timestamp out of range") from None
    return value  # str, int, bool, bytes, None, _UNDEFINED


def _json_values(data: list[Any]) -> None:
    """Make the decoded values, in place, what a JSON client could send (plus bytes), without
    recursion (MessagePack nests up to 1,024 levels, as orjson reads JSON); InvalidPacket."""
    stack: list[Any] = [data]
    while stack:
        container = stack.pop()
        if type(container) is list:
            for i, value in enumerate(container):
                if type(value) is list or type(value) is dict:
                    stack.append(value)
                else:
                    value = _leaf(value)
                    container[i] = None if value is _UNDEFINED else value
            continue
        for key, value in list(container.items()):
            if type(key) is not str:
                raise InvalidPacket("a map key that is not text")
            if type(value) is list or type(value) is dict:
                stack.append(value)
                continue
            value = _leaf(value)
            if value is _UNDEFINED:
                del container[key]
            else:
                container[key] = value


def _header(raw: bytes) -> tuple[Any, Any, Any]:
    """(type, nsp, id) read from a packet whose values could not be decoded, skipping the rest;
    (None, None, None) if even that fails."""
    try:
        reader = msgpack.Unpacker(raw=False, strict_map_key=False)
        reader.feed(raw)
        found: dict[Any, Any] = {}
        for _ in range(reader.read_map_header()):
            key = reader.unpack()
            if key in ("type", "nsp", "id"):
                found[key] = reader.unpack()
            else:
                reader.skip()
        return found.get("type"), found.get("nsp"), found.get("id")
    except Exception:
        return None, None, None


def unpack(raw: bytes) -> tuple[int, str, Any, int | None]:
    """(type, namespace, data, ack id) of a client's packet, checked as the JavaScript
    decoder checks it (`Decoder.checkPacket`); InvalidPacket otherwise, with the ack id of an
    event when it can be read."""
    try:
        decoded = msgpack.unpackb(raw, ext_hook=_ext, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack's own errors (bad UTF-8, ExtraData, StackError, ...)
        kind, namespace, ack_id = _header(raw)
        event = kind == EVENT and type(ack_id) is int and ack_id >= 0 and isinstance(namespace, str)
        reason = f"not MessagePack: {type(exc).__name__}"
        raise InvalidPacket(reason, ack_id if event else None, namespace if event else None) from None
    if not isinstance(decoded, dict):
        raise InvalidPacket("a packet is a map")
    kind, namespace, ack_id = decoded.get("type"), decoded.get("nsp"), decoded.get("id")
    valid_id = type(ack_id) is int and ack_id >= 0
    readable_id = ack_id if valid_id and kind == EVENT else None  # an event's, to answer `invalid` on
    if type(kind) is not int or not CONNECT <= kind <= ACK:  # CONNECT_ERROR is the server's
        raise InvalidPacket("invalid packet type", readable_id, namespace if isinstance(namespace, str) else None)
    if not isinstance(namespace, str):
        raise InvalidPacket("invalid namespace")
    if ack_id is not None and not valid_id:
        raise InvalidPacket("invalid packet id", None, namespace)
    data = decoded.get("data")
    if data is _UNDEFINED:  # the JavaScript client's CONNECT without auth
        data = None
    if kind == CONNECT:
        valid = data is None or isinstance(data, dict)
    elif kind == DISCONNECT:
        valid = data is None
    else:
        valid = isinstance(data, list)
    if not valid:
        raise InvalidPacket("invalid payload", readable_id, namespace)
    if data is not None:
        try:
            _json_values(data)
        except InvalidPacket as exc:
            raise InvalidPacket(str(exc), readable_id, namespace) from None
    return kind, namespace, data, ack_id if valid_id else None


class Repacker:
    """Turns the JSON-encoded MESSAGEs this server sends into one session's MessagePack.

    Most packets reach a MessagePack session already packed (`pack_packet`); what arrives as
    text was encoded once for every member of a room (a `Frame`, packed once too) or by
    python-socketio's manager (`sio.emit`: unpacked and packed again per member), which sends
    a packet with bytes as a text header followed by its attachments: those are gathered here
    and sent as one packet. That relies on the manager's tasks for one member running back to
    back (it creates them in one loop and each sends without awaiting anything first).
    """

    __slots__ = ("_packet_class", "_pending")

    def __init__(self, packet_class: Any) -> None:
        self._packet_class = packet_class
        self._pending: Any = None  # a BINARY_EVENT/ACK header waiting for its attachments

    def __call__(self, pkt: Any) -> Any:
        """The packet to send instead of `pkt` (a MESSAGE), or None while attachments are due."""
        data = pkt.data
        if isinstance(data, bytes):
            pending = self._pending
            if pending is None:
                return pkt  # already MessagePack
            if not pending.add_attachment(data):
                return None
            self._pending = None
            return pack_packet(pending)
        if isinstance(pkt, Frame):
            if pkt.packed is None:
                pkt.packed = pack_packet(self._packet_class(encoded_packet=data))
            return pkt.packed
        decoded = self._packet_class(encoded_packet=data)
        if decoded.attachment_count:
            decoded.packet_type = EVENT if decoded.packet_type == sio_packet.BINARY_EVENT else ACK
            self._pending = decoded
            return None
        return pack_packet(decoded)
