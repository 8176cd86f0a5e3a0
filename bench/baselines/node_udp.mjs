// Baseline: a Node `dgram` server answering each datagram with
// "[<time>]" + the payload.
// Run: node bench/baselines/node_udp.mjs --port 0
import dgram from "node:dgram";
import { Buffer } from "node:buffer";
import process from "node:process";

const argv = process.argv;
const port = Number(argv[argv.indexOf("--port") + 1] ?? 0);
const socket = dgram.createSocket("udp4");
socket.on("message", (payload, from) => {
  const stamp = Buffer.from(`[${new Date().toISOString()}]`);
  socket.send(Buffer.concat([stamp, payload]), from.port, from.address);
});
socket.bind(port, "127.0.0.1", () => {
  console.log(`Listening on udp://127.0.0.1:${socket.address().port}`);
});
