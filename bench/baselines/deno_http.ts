// Baseline: bare Deno.serve with the same hello page as the HTTP servers.
// Run: deno run --allow-net bench/baselines/deno_http.ts --port 0
const port = Number(Deno.args[Deno.args.indexOf("--port") + 1] ?? 0);
Deno.serve({
  hostname: "127.0.0.1",
  port,
  onListen: ({ port }) => console.log(`Listening on http://127.0.0.1:${port}`),
}, () =>
  new Response("<h1>Hello world!</h1>\n", {
    headers: { "content-type": "text/html; charset=utf-8" },
  }));
