// Connects to a Socket.IO server with the npm socket.io-client v4, unchanged, and prints one
// JSON line per thing that happens, for ../realtime_socketio.rs to read.
//
// usage: node client.js URL NAME=MODE:TOKEN...
//   MODE is `auth` (handshake `auth: { token }`), `bearer` (`Authorization: Bearer` header)
//   or `apikey` (`X-Api-Key` header).
// Lines: {"client":NAME,"event":"connect"}
//        {"client":NAME,"event":"connect_error","message":...}
//        {"client":NAME,"event":<qr|authenticated|ready|status|disconnected|message|message.ack>,"data":...}
// Exits when its stdin closes (the test dropped it), closing every socket.
"use strict";
const { io } = require("socket.io-client");

const [url, ...specs] = process.argv.slice(2);
if (!url || specs.length === 0) {
  console.error("usage: node client.js URL NAME=MODE:TOKEN...");
  process.exit(2);
}

const print = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const sockets = [];

for (const spec of specs) {
  const eq = spec.indexOf("=");
  const name = spec.slice(0, eq);
  const rest = spec.slice(eq + 1);
  const colon = rest.indexOf(":");
  const mode = rest.slice(0, colon);
  const token = rest.slice(colon + 1);
  const opts = { reconnection: false, forceNew: true };
  if (mode === "auth") opts.auth = { token };
  else if (mode === "bearer") opts.extraHeaders = { Authorization: `Bearer ${token}` };
  else if (mode === "apikey") opts.extraHeaders = { "X-Api-Key": token };
  else {
    console.error(`unknown mode ${mode}`);
    process.exit(2);
  }
  const socket = io(url, opts);
  sockets.push(socket);
  socket.on("connect", () => print({ client: name, event: "connect" }));
  socket.on("connect_error", (err) =>
    print({ client: name, event: "connect_error", message: err.message }),
  );
  for (const event of [
    "qr",
    "authenticated",
    "ready",
    "status",
    "disconnected",
    "message",
    "message.ack",
  ]) {
    socket.on(event, (data) => print({ client: name, event, data }));
  }
}

process.stdin.on("data", () => {});
process.stdin.on("end", () => {
  for (const s of sockets) s.close();
  process.exit(0);
});
