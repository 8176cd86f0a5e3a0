// The Flask "Hello World!" app on Deno.serve: "/" answers "Hello World!", any other path 404.
// Retells 001 §4 (the Flask web server); the full job: scripts/http_server.ts.
// Run:    deno run --allow-net scripts/basics/flask_hello.ts [port]   (default 5000, Flask's; 0 = a free port)
// Try it: curl -i http://127.0.0.1:5000/
// Same shape: Deno.serve plays app.run(), and the `if` on the path plays @app.route('/').
// Leaves out: more routes, templates, clean exit on Ctrl-C.

const port = Number(Deno.args[0] ?? 5000);
Deno.serve({
  hostname: "127.0.0.1",
  port,
  // Our own ready line (Deno's default one ends in a slash).
  onListen: (addr) => console.log(`Listening on http://127.0.0.1:${addr.port}`),
}, (request) => {
  if (new URL(request.url).pathname === "/") {
    return new Response("Hello World!", {
      headers: { "content-type": "text/html; charset=utf-8" }, // as Flask sends it
    });
  }
  return new Response("Not Found\n", { status: 404 });
});
