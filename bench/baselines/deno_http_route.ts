// Baseline: bare Deno.serve that looks at the request path, as any real
// server must (404 for other paths). Reading `request.url` makes Deno build
// the Request object and the URL string, which a handler that ignores its
// request (deno_http.ts) never pays for; this shows how much that costs.
// Run: deno run --allow-net bench/baselines/deno_http_route.ts --port 0
const port = Number(Deno.args[Deno.args.indexOf("--port") + 1] ?? 0);
const headers = { "content-type": "text/html; charset=utf-8" };
Deno.serve({
  hostname: "127.0.0.1",
  port,
  onListen: ({ port }) => console.log(`Listening on http://127.0.0.1:${port}`),
}, (request) => {
  const url = request.url;
  const path = url.slice(url.indexOf("/", url.indexOf("://") + 3));
  return path === "/"
    ? new Response("<h1>Hello world!</h1>\n", { headers })
    : new Response("Not found\n", { status: 404 });
});
