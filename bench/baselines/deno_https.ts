// Baseline: bare Deno.serve with TLS (cert and key from bench.ts's openssl
// run) and the same hello page as the HTTP servers: the ceiling for
// http_server.ts --cert/--key, as deno_http.ts is without TLS.
// Run: deno run --allow-net --allow-read bench/baselines/deno_https.ts --port 0 --cert CERT --key KEY
const option = (name: string) => Deno.args[Deno.args.indexOf(name) + 1];
const port = Number(option("--port") ?? 0);
Deno.serve({
  hostname: "127.0.0.1",
  port,
  cert: Deno.readTextFileSync(option("--cert")),
  key: Deno.readTextFileSync(option("--key")),
  onListen: ({ port }) => console.log(`Listening on https://127.0.0.1:${port}`),
}, () =>
  new Response("<h1>Hello world!</h1>\n", {
    headers: { "content-type": "text/html; charset=utf-8" },
  }));
