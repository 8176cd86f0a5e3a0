// Baseline: a Node `net` chat written the way an experienced Node developer
// would, with chat_server.ts's wire format: "* welcome guestN; /help lists
// commands", "* guestN joined" / "* guestN left" to the others, and every
// line sent on as "guestN: text". It works on bytes, never on strings: the
// complete lines of one read are joined into one buffer, written once to
// each other client; Nagle is off. It keeps the limits a production room
// needs (4 KiB lines, refused with a notice; a client with more than 1 MiB
// unsent is dropped) but does less than chat_server.ts per line: no
// commands, no UTF-8 repair, no control-character filter.
// Run: node bench/baselines/node_chat_expert.mjs --port 0
import net from "node:net";
import process from "node:process";
import { Buffer } from "node:buffer";

const argv = process.argv;
const port = Number(argv[argv.indexOf("--port") + 1] ?? 0);
const MAX_LINE = 4096;
const MAX_QUEUE = 1024 * 1024;
const NEWLINE = Buffer.from("\n");
const clients = new Set();
let guests = 0;

/** Writes `bytes` to everyone but `except`; drops clients that stopped reading. */
function broadcast(bytes, except) {
  for (const other of clients) {
    if (other === except) continue;
    if (other.writableLength > MAX_QUEUE) {
      clients.delete(other);
      other.destroy();
      continue;
    }
    other.write(bytes);
  }
}

const server = net.createServer({ noDelay: true }, (socket) => {
  const name = `guest${++guests}`;
  const prefix = Buffer.from(`${name}: `);
  const tooLong = Buffer.from(`* line too long (over ${MAX_LINE} bytes)\n`);
  let partial = null; // the start of a line not yet complete
  let skipping = false; // inside a line already refused as too long

  broadcast(Buffer.from(`* ${name} joined\n`));
  clients.add(socket);
  socket.write(`* welcome ${name}; /help lists commands\n`);

  socket.on("data", (chunk) => {
    const data = partial ? Buffer.concat([partial, chunk]) : chunk;
    const out = [];
    let start = 0;
    let newline;
    while ((newline = data.indexOf(0x0a, start)) !== -1) {
      let end = newline;
      if (end > start && data[end - 1] === 0x0d) end--;
      if (skipping) skipping = false;
      else if (end - start > MAX_LINE) socket.write(tooLong);
      else if (end > start) {
        out.push(prefix, data.subarray(start, end), NEWLINE);
      }
      start = newline + 1;
    }
    partial = start < data.length ? data.subarray(start) : null;
    if (partial && partial.length > MAX_LINE) {
      if (!skipping) socket.write(tooLong);
      skipping = true;
      partial = null;
    }
    if (out.length > 0) broadcast(Buffer.concat(out), socket);
  });
  socket.on("close", () => {
    if (clients.delete(socket)) broadcast(Buffer.from(`* ${name} left\n`));
  });
  socket.on("error", () => socket.destroy());
});
server.listen(port, "127.0.0.1", () => {
  console.log(`Listening on tcp://127.0.0.1:${server.address().port}`);
});
