// The official Socket.IO JavaScript client (4.8.1), with the JSON parser or
// socket.io-msgpack-parser (3.0.2), against a Pocho server; driven and checked by
// tests/e2e/test_js_clients.py. Prints one JSON object: what the client received.
//
//   node client.mjs echo URL PARSER TRANSPORT            (pocho-rt conformance's server)
//   node client.mjs negotiate URL JSON_ARGS              (the real server; tokens in JSON_ARGS)
import { io } from "socket.io-client";
import * as msgpackParser from "socket.io-msgpack-parser";

const GUARD_MS = 10000;

function options(parser, transport, auth) {
  const o = { auth, reconnection: false, forceNew: true };
  if (transport !== "default") o.transports = [transport]; // default: polling, then the upgrade
  if (parser === "msgpack") o.parser = msgpackParser;
  return o;
}

function connected(socket) {
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", (err) => reject(new Error(`connect: ${err.message}`)));
  });
}

// Every `event` the socket receives from now on; `.next(accept)` resolves with the first
// (already received or still to come) whose arguments `accept` takes.
function record(socket, event) {
  const seen = [];
  const waiting = [];
  socket.on(event, (...args) => {
    seen.push(args);
    for (const w of waiting.splice(0)) if (!w(args)) waiting.push(w);
  });
  return {
    next: (accept = () => true) =>
      new Promise((resolve) => {
        const w = (args) => (accept(...args) ? (resolve(args), true) : false);
        if (!seen.some(w)) waiting.push(w);
      }),
  };
}

// JSON has no bytes or undefined: say what they were
function plain(value) {
  if (Buffer.isBuffer(value) || value instanceof ArrayBuffer) return { $bytes: Buffer.from(value).toString("hex") };
  if (value === undefined) return { $undefined: true };
  if (Array.isArray(value)) return value.map(plain);
  if (value && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  return value;
}

const VALUES = [
  1, -2, 3.5, 2 ** 40, "héllo ✓ 🍲", "", null, true, false,
  { a: [1, { b: "c" }], empty: {}, list: [] },
  Buffer.from([1, 2, 3, 255]),
  new Uint8Array([9, 8, 7]),
  new Date(Date.UTC(2026, 10, 29, 13, 46, 24, 123)),
  [undefined, 1],
  { kept: 1, gone: undefined, nan: NaN, inf: Infinity },
];

async function echo(url, parser, transport) {
  const socket = io(`${url}/custom`, options(parser, transport, { token: "abc", n: 1 }));
  const auth = record(socket, "auth"); // the server emits it right after the CONNECT answer
  const back = record(socket, "message-back");
  await connected(socket);
  const [authData] = await auth.next();
  socket.emit("message", ...VALUES);
  const echoed = await back.next();
  const acked = await new Promise((resolve, reject) => {
    socket.timeout(GUARD_MS).emit("message-with-ack", ...VALUES, (err, ...args) => (err ? reject(err) : resolve(args)));
  });
  socket.disconnect();
  return { auth: plain(authData), back: plain(echoed), ack: plain(acked) };
}

async function negotiate(url, args) {
  const customer = io(`${url}/customer`, options(args.customerParser, args.transport, { token: args.customerToken }));
  const vendor = io(`${url}/vendor`, options(args.vendorParser, args.transport, { token: args.vendorToken }));
  const requestNew = record(vendor, "request:new");
  const offerNew = record(customer, "offer:new");
  const offerAccepted = record(vendor, "offer:accepted");
  await Promise.all([connected(customer), connected(vendor)]);
  const call = (socket, event, payload) => {
    console.error(`-> ${event}`); // a failure's output says how far it got
    return socket.timeout(GUARD_MS).emitWithAck(event, payload);
  };
  const created = await call(customer, "request:create", args.request);
  const requestId = created.data.request.id;
  const [seen] = await requestNew.next((e) => e.request.id === requestId);
  const placed = await call(vendor, "offer:place", { requestId, priceKobo: 300000 });
  const [offered] = await offerNew.next((e) => e.offer.id === placed.data.offer.id);
  const accept = await call(customer, "offer:accept", { offerId: placed.data.offer.id });
  const [acceptedEvent] = await offerAccepted.next();
  const refused = await call(customer, "request:create", { ...args.request, budgetMaxKobo: NaN });
  customer.disconnect();
  vendor.disconnect();
  return { created, seen, placed, offered, accept, acceptedEvent, refused };
}

const [scenario, url, ...rest] = process.argv.slice(2);
const guard = setTimeout(() => {
  console.error("timed out");
  process.exit(2);
}, 3 * GUARD_MS);
try {
  const result = scenario === "echo" ? await echo(url, rest[0], rest[1]) : await negotiate(url, JSON.parse(rest[0]));
  console.log(JSON.stringify(result));
  clearTimeout(guard);
  process.exit(0);
} catch (err) {
  console.error(err.stack || String(err));
  process.exit(1);
}
