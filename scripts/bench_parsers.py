"""What a MessagePack session costs the server against a JSON one (issue 13, target 3): the
CPU time of reading a command, writing its ack and packing a room's event, per packet, best of
7 rounds, in process (no sockets). The packets are the `offer:revise` hot path's.

    python -m scripts.bench_parsers
"""

from __future__ import annotations

import timeit
from typing import Any

import orjson
from engineio import packet as eio_packet

from pocho_rt.sockets.server import _OrjsonModule, event_frame
from pocho_rt.transport import msgpack_parser as mp
from pocho_rt.transport.sio import _PLAIN, Packet

ROUNDS, NUMBER = 7, 20_000
COMMAND = ["offer:revise", {"offerId": "5b0c7f1e-1d7c-4c1e-9a51-3f6f0e2b7a10", "priceKobo": 310_000}]
OFFER = {
    "offer": {
        "id": "5b0c7f1e-1d7c-4c1e-9a51-3f6f0e2b7a10",
        "requestId": "0e3f3a55-9b9e-4a57-8a2e-6d7b1c9d2f44",
        "vendorId": "9a6b2c1d-3e4f-5a6b-7c8d-9e0f1a2b3c4d",
        "vendorName": "Mama Put Ikoyi",
        "priceKobo": 310_000,
        "prepMinutes": 25,
        "status": "PENDING",
        "round": 0,
        "isCompetitive": True,
        "createdAt": "2026-11-29T13:46:24.123Z",
        "updatedAt": "2026-11-29T13:47:02.456Z",
    },
    "seq": 12,
}


def best(fn: Any) -> float:
    """Microseconds per call, best of ROUNDS."""
    return min(timeit.repeat(fn, number=NUMBER, repeat=ROUNDS)) / NUMBER * 1e6


def main() -> None:
    Packet.json = _OrjsonModule
    json_command = '2/vendor,17["offer:revise",' + orjson.dumps(COMMAND[1]).decode() + "]"
    packed_command = mp.pack(2, "/vendor", COMMAND, 17)
    ack = Packet(3, namespace="/vendor", id=17, data=[{"ok": True, "data": OFFER}])
    payload = orjson.dumps(OFFER).decode()

    def json_read() -> Any:  # ConformantServer._assemble's fast path for text events
        m = _PLAIN.match(json_command)
        assert m is not None
        return orjson.loads(json_command[m.end() - 1 :])

    def packed_read() -> Any:
        return mp.unpack(packed_command)

    def packed_event() -> Any:  # what the first MessagePack member of a room pays, once per frame
        return mp.Repacker(Packet)(event_frame("offer:updated", payload, "/customer"))

    rows = {
        "read a command": (best(json_read), best(packed_read)),
        "write its ack": (best(ack.encode), best(lambda: mp.pack_packet(ack))),
        "a room's event (once per emit)": (
            best(lambda: event_frame("offer:updated", payload, "/customer")),
            best(packed_event),
        ),
    }
    print(f"{'per packet':32} {'JSON us':>8} {'MessagePack us':>15}")
    for name, (j, m) in rows.items():
        print(f"{name:32} {j:8.2f} {m:15.2f}")
    print(
        f"frame bytes: command {len(json_command)} / {len(packed_command)}, "
        f"event {len(eio_packet.Packet(4, event_frame('offer:updated', payload, '/customer').data).encode())} / "
        f"{len(packed_event().data)}"
    )


if __name__ == "__main__":
    main()
