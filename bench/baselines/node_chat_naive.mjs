// Baseline, naive: the ~30-line Node `net` chat everyone writes first: a
// welcome line, and every line goes to every other client as "guestN: text",
// one write per line per client, strings throughout, Nagle left on. No line
// limit, no slow-client handling. Kept for comparison; the target is
// node_chat_expert.mjs, which does the same job the way an expert would.
// Run: node bench/baselines/node_chat_naive.mjs --port 0
import net from "node:net";
import process from "node:process";

const argv = process.argv;
const port = Number(argv[argv.indexOf("--port") + 1] ?? 0);
const clients = new Set();
let guests = 0;

const server = net.createServer((socket) => {
  const name = `guest${++guests}`;
  let pending = "";
  clients.add(socket);
  socket.setEncoding("utf8");
  socket.write(`* welcome ${name}\n`);
  socket.on("data", (text) => {
    const lines = (pending + text).split("\n");
    pending = lines.pop();
    for (const line of lines) {
      for (const other of clients) {
        if (other !== socket) other.write(`${name}: ${line}\n`);
      }
    }
  });
  socket.on("close", () => clients.delete(socket));
  socket.on("error", () => socket.destroy());
});
server.listen(port, "127.0.0.1", () => {
  console.log(`Listening on tcp://127.0.0.1:${server.address().port}`);
});
