// Baseline: a chat room over WebSocket in Node with the `ws` package (what
// a Node user would pick), with chat_server.ts's browser protocol: GET /ws
// upgrades, each text message is one line, each member gets a welcome
// message, and every line goes to every other member as "guestN: text".
// Lines over 4 KiB are refused (`ws` closes with 1009); a member with more
// than 1 MiB unsent is dropped; no compression. `ws` is not part of this
// repository: bench.ts installs it with npm into the run's scratch
// directory and passes that directory as --modules.
// Run: node bench/baselines/node_ws_room.mjs --port 0 --modules DIR
import http from "node:http";
import { createRequire } from "node:module";
import path from "node:path";
import process from "node:process";

const option = (name) => process.argv[process.argv.indexOf(name) + 1];
const port = Number(option("--port") ?? 0);
const require = createRequire(
  path.join(path.resolve(option("--modules")), "x.js"),
);
const { WebSocketServer } = require("ws");
const MAX_LINE = 4096;
const MAX_QUEUE = 1024 * 1024;

const server = http.createServer((_request, response) => {
  response.writeHead(404).end();
});
const room = new WebSocketServer({
  server,
  path: "/ws",
  maxPayload: MAX_LINE,
  perMessageDeflate: false,
});
const members = new Set();
let guests = 0;

function broadcast(text, except) {
  for (const member of members) {
    if (member === except) continue;
    if (member.bufferedAmount > MAX_QUEUE) {
      members.delete(member);
      member.terminate();
      continue;
    }
    member.send(text);
  }
}

// (`ws` turns Nagle off on every socket itself.)
room.on("connection", (socket) => {
  const name = `guest${++guests}`;
  broadcast(`* ${name} joined`);
  members.add(socket);
  socket.send(`* welcome ${name}; /help lists commands`);
  socket.on("message", (data, isBinary) => {
    if (isBinary) return socket.send("* binary messages are not accepted");
    const text = data.toString();
    if (text.trim() !== "") broadcast(`${name}: ${text}`, socket);
  });
  socket.on("close", () => {
    if (members.delete(socket)) broadcast(`* ${name} left`);
  });
  socket.on("error", () => socket.terminate());
});
server.listen(port, "127.0.0.1", () => {
  console.log(`Listening on http://127.0.0.1:${server.address().port}`);
});
