// Writes tests/fixtures/msgpack-vectors.json: packets as socket.io-msgpack-parser 3.0.2
// (notepack.io 2.2) encodes them, for tests/unit/test_msgpack_parser.py.
//   node tests/js/vectors.mjs > tests/fixtures/msgpack-vectors.json
import { Encoder, Decoder } from "socket.io-msgpack-parser";

const encoder = new Encoder();
const hex = (packet) => Buffer.from(encoder.encode(packet)[0]).toString("hex");
const refuses = (bytes) => {
  const decoder = new Decoder();
  try {
    decoder.add(Buffer.from(bytes, "hex"));
    return null;
  } catch (err) {
    return err.message;
  }
};

// What socket.io-client 4.8.1 hands its encoder (socket.js: EVENT packets carry `options`).
const client = {
  connect: { type: 0, nsp: "/customer", data: { token: "t0k" } },
  connect_without_auth: { type: 0, nsp: "/", data: undefined }, // what the client really hands over
  event: { type: 2, data: ["offer:revise", { offerId: "o-1", priceKobo: 310000 }], options: { compress: true }, nsp: "/vendor", id: 7 },
  event_without_ack: { type: 2, data: ["location", { lat: 6.5244, lng: 3.3792 }], options: { compress: true }, nsp: "/rider" },
  event_with_values: {
    type: 2,
    data: ["x", "héllo ✓ 🍲", -2, 2 ** 40, 3.5, null, true, { nested: [1, {}] }, Buffer.from([1, 2, 255]),
      new Uint8Array([9, 8, 7]).buffer, new Date(Date.UTC(2026, 10, 29, 13, 46, 24, 123)), [undefined, 1],
      { kept: 1, gone: undefined, nan: NaN, inf: -Infinity }],
    nsp: "/",
  },
  ack: { type: 3, data: [{ ok: true }], nsp: "/customer", id: 3 },
  disconnect: { type: 1, nsp: "/vendor" },
};

// What a JavaScript Socket.IO server hands its encoder (type, data, nsp, then id).
const server = {
  connect: { type: 0, data: { sid: "abc" }, nsp: "/customer" },
  connect_error: { type: 4, data: { message: "Invalid namespace" }, nsp: "/nope" },
  event: { type: 2, data: ["offer:new", { offer: { id: "o-1", priceKobo: 300000, note: null, ratio: 0.5 } }], nsp: "/customer" },
  ack: { type: 3, data: [{ ok: false, error: { code: "invalid", message: "é" } }], nsp: "/vendor", id: 300 },
  event_with_bytes: { type: 2, data: ["b", Buffer.from([0, 1, 2])], nsp: "/" },
  disconnect: { type: 1, nsp: "/vendor" },
};

// Packets the JavaScript decoder refuses (Decoder.checkPacket), as hex.
const invalid = {
  not_a_map: hex([1, 2]),
  bad_type: hex({ type: 9, nsp: "/", data: [] }),
  type_as_text: hex({ type: "2", nsp: "/", data: ["x"] }),
  no_namespace: hex({ type: 2, data: ["x"] }),
  event_data_not_a_list: hex({ type: 2, nsp: "/", data: { a: 1 }, id: 1 }),
  connect_data_not_an_object: hex({ type: 0, nsp: "/", data: "token" }),
  disconnect_with_data: hex({ type: 1, nsp: "/", data: null }),
  fractional_id: hex({ type: 2, nsp: "/", data: ["x"], id: 1.5 }),
};

const out = {
  client: Object.fromEntries(Object.entries(client).map(([k, p]) => [k, hex(p)])),
  server: Object.fromEntries(Object.entries(server).map(([k, p]) => [k, hex(p)])),
  invalid: Object.fromEntries(Object.entries(invalid).map(([k, h]) => [k, { hex: h, refused: refuses(h) }])),
};
console.log(JSON.stringify(out, null, 2));
