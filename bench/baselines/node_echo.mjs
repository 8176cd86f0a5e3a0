// Baseline: a Node `net` echo server (pipe each socket into itself).
// Run: node bench/baselines/node_echo.mjs --port 0
import net from "node:net";
import process from "node:process";

const argv = process.argv;
const port = Number(argv[argv.indexOf("--port") + 1] ?? 0);
const server = net.createServer({ noDelay: true }, (socket) => {
  socket.on("error", () => socket.destroy());
  socket.pipe(socket);
});
server.listen(port, "127.0.0.1", () => {
  console.log(`Listening on tcp://127.0.0.1:${server.address().port}`);
});
