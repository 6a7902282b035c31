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
  (plus bytes), as a JSON client would have sent them; other extensions, non-text map keys,
  NaN and infinities are refused.

The parser's MessagePack library, notepack.io 2.2, writes three JavaScript values as
extension 0, read here as the JSON parser would carry them: `undefined` (1 byte) as null,
a Date (8 bytes: milliseconds) as its `toJSON()` text, an ArrayBuffer or typed array (any
other length) as bytes. The library cannot be told apart by length alone: an ArrayBuffer
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
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _ext(code: int, data: bytes) -> Any:
    """notepack.io 2.2's extension 0 (see the module docstring)."""
    if code != _NOTEPACK:
        raise InvalidPacket(f"unsupported MessagePack extension {code}")
    if len(data) == 1:
        return None  # undefined
    if len(data) == 8:
        ms = int.from_bytes(data, "big", signed=True)
        try:
            return _date_text(_EPOCH + timedelta(milliseconds=ms))
        except OverflowError:
            raise InvalidPacket("a Date out of range") from None
    return data


def _json_value(value: Any) -> Any:
    """`value` with only what a JSON client could send (and bytes); InvalidPacket otherwise."""
    if isinstance(value, (str, int, bytes)) or value is None:  # bool is an int
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidPacket("NaN or infinity")
        return value
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidPacket("a map key that is not text")
            out[k] = _json_value(v)
        return out
    if isinstance(value, msgpack.Timestamp):
        try:
            return _date_text(value.to_datetime())
        except (OverflowError, ValueError):
            raise InvalidPacket("a timestamp out of range") from None
    raise InvalidPacket(f"unsupported value {type(value).__name__}")


def unpack(raw: bytes) -> tuple[int, str, Any, int | None]:
    """(type, namespace, data, ack id) of a client's packet, checked as the JavaScript
    decoder checks it (`Decoder.checkPacket`); InvalidPacket otherwise."""
    try:
        decoded = msgpack.unpackb(raw, ext_hook=_ext, raw=False, strict_map_key=False)
    except InvalidPacket:
        raise
    except Exception as exc:  # msgpack's own errors (ExtraData, FormatError, StackError, ...)
        raise InvalidPacket(f"not MessagePack: {type(exc).__name__}") from exc
    if not isinstance(decoded, dict):
        raise InvalidPacket("a packet is a map")
    kind, namespace, ack_id = decoded.get("type"), decoded.get("nsp"), decoded.get("id")
    valid_id = type(ack_id) is int and ack_id >= 0
    readable_id = ack_id if valid_id and kind == EVENT else None  # an event's, to answer `invalid` on
    readable_ns = namespace if isinstance(namespace, str) else None
    if type(kind) is not int or not CONNECT <= kind <= ACK:  # CONNECT_ERROR is the server's
        raise InvalidPacket("invalid packet type", readable_id, readable_ns)
    if readable_ns is None:
        raise InvalidPacket("invalid namespace")
    namespace = readable_ns
    if ack_id is not None and not valid_id:
        raise InvalidPacket("invalid packet id", None, namespace)
    data = decoded.get("data")
    if kind == CONNECT:
        valid = data is None or isinstance(data, dict)
    elif kind == DISCONNECT:
        valid = data is None
    else:
        valid = isinstance(data, list)
    if not valid:
        raise InvalidPacket("invalid payload", readable_id, namespace)
    try:
        data = _json_value(data)
    except InvalidPacket as exc:
        raise InvalidPacket(str(exc), readable_id, namespace) from None
    except RecursionError:  # MessagePack itself stops at 1,024 levels, Python's stack a little earlier
        raise InvalidPacket("nested too deeply", readable_id, namespace) from None
    return kind, namespace, data, ack_id if valid_id else None


class Repacker:
    """Turns the JSON-encoded MESSAGEs this server sends into one session's MessagePack.

    Most packets reach a MessagePack session already packed (`pack_packet`); what arrives as
    text was encoded once for every member of a room (a `Frame`, packed once too) or by
    python-socketio's manager, which sends a packet with bytes as a text header followed by
    its attachments: those are gathered here and sent as one packet.
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
