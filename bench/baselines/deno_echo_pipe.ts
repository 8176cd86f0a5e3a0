// Baseline: the shortest Deno echo server, one web-stream pipe per client.
// `pipeTo` allocates a chunk per read and goes through the streams machinery,
// so this is the "idiomatic but slow" reference for bench.ts's echo mode.
// Run: deno run --allow-net bench/baselines/deno_echo_pipe.ts --port 0
const port = Number(Deno.args[Deno.args.indexOf("--port") + 1] ?? 0);
const listener = Deno.listen({ hostname: "127.0.0.1", port });
console.log(`Listening on tcp://127.0.0.1:${listener.addr.port}`);
for await (const conn of listener) {
  conn.readable.pipeTo(conn.writable).catch(() => {});
}
