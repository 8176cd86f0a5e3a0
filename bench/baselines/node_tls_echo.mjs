// Baseline: a Node `tls` echo server, what a user would pick for an echo
// over TLS: each socket piped into itself, Nagle off. The certificate and
// key are the ones bench.ts makes with openssl for the run.
// Run: node bench/baselines/node_tls_echo.mjs --port 0 --cert CERT --key KEY
import tls from "node:tls";
import fs from "node:fs";
import process from "node:process";

const option = (name) => process.argv[process.argv.indexOf(name) + 1];
const port = Number(option("--port") ?? 0);
const server = tls.createServer({
  cert: fs.readFileSync(option("--cert")),
  key: fs.readFileSync(option("--key")),
}, (socket) => {
  socket.setNoDelay(true);
  socket.on("error", () => socket.destroy());
  socket.pipe(socket);
});
// A failed handshake costs that one connection only.
server.on("tlsClientError", () => {});
server.listen(port, "127.0.0.1", () => {
  console.log(`Listening on tls://127.0.0.1:${server.address().port}`);
});
