// Baseline: a Node `http` hello world with the same page as the HTTP servers.
// Run: node bench/baselines/node_http.mjs --port 0
import http from "node:http";
import process from "node:process";

const argv = process.argv;
const port = Number(argv[argv.indexOf("--port") + 1] ?? 0);
const server = http.createServer((_request, response) => {
  response.writeHead(200, { "content-type": "text/html; charset=utf-8" });
  response.end("<h1>Hello world!</h1>\n");
});
server.listen(port, "127.0.0.1", () => {
  console.log(`Listening on http://127.0.0.1:${server.address().port}`);
});
