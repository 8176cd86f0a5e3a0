// Baseline: a Node `https` hello world with the same page as the HTTP
// servers, on the certificate bench.ts makes with openssl for the run.
// Run: node bench/baselines/node_https.mjs --port 0 --cert CERT --key KEY
import https from "node:https";
import fs from "node:fs";
import process from "node:process";

const option = (name) => process.argv[process.argv.indexOf(name) + 1];
const port = Number(option("--port") ?? 0);
const server = https.createServer({
  cert: fs.readFileSync(option("--cert")),
  key: fs.readFileSync(option("--key")),
}, (_request, response) => {
  response.writeHead(200, { "content-type": "text/html; charset=utf-8" });
  response.end("<h1>Hello world!</h1>\n");
});
server.listen(port, "127.0.0.1", () => {
  console.log(`Listening on https://127.0.0.1:${server.address().port}`);
});
