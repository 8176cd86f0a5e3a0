// Baseline: a bare Deno echo server with a plain read/write loop into one
// reused buffer per client — the ceiling our echo_server.ts must meet.
// Run: deno run --allow-net bench/baselines/deno_echo_loop.ts --port 0
const port = Number(Deno.args[Deno.args.indexOf("--port") + 1] ?? 0);
const listener = Deno.listen({ hostname: "127.0.0.1", port });
console.log(`Listening on tcp://127.0.0.1:${listener.addr.port}`);

async function echo(conn: Deno.TcpConn) {
  const buffer = new Uint8Array(64 * 1024);
  try {
    let count;
    while ((count = await conn.read(buffer)) !== null) {
      let written = 0;
      while (written < count) {
        written += await conn.write(buffer.subarray(written, count));
      }
    }
  } catch {
    // The client went away.
  } finally {
    conn.close();
  }
}

for await (const conn of listener) echo(conn);
