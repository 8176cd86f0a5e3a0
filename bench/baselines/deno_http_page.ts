// Baseline: bare Deno.serve answering every request with exactly the page
// http_server.ts serves at "/" (bench.ts fetches it from the script first
// and passes the file): the same response, none of the routing. Response
// size alone moves Deno.serve's figure a lot, so this is the like-for-like
// reference for http_server.ts.
// Run: deno run --allow-net --allow-read=PAGE bench/baselines/deno_http_page.ts --port 0 --page PAGE --type TYPE
const option = (name: string) => Deno.args[Deno.args.indexOf(name) + 1];
const port = Number(option("--port") ?? 0);
const page = Deno.readTextFileSync(option("--page"));
const headers = { "content-type": option("--type") ?? "text/html" };
Deno.serve({
  hostname: "127.0.0.1",
  port,
  onListen: ({ port }) => console.log(`Listening on http://127.0.0.1:${port}`),
}, () => new Response(page, { headers }));
