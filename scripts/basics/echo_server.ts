// An echo server: sends every byte it receives straight back, to many clients at once.
// Retells 001 §3, socket steps 1–6 (the echo loop); the full job: scripts/echo_server.ts.
// Run:    deno run --allow-net scripts/basics/echo_server.ts [port]   (default 9999; 0 = a free port)
// Try it: nc 127.0.0.1 9999   (type a line, get it back)
// Fixed:  the tutorial accepts one client and serves it alone; here each client gets its own task.
// Leaves out: an orderly stop on Ctrl-C (exit 0), TLS, any cap on how many clients may connect.

// Steps 1–3: socket(), bind(), listen() are one call in Deno.
const port = Number(Deno.args[0] ?? 9999);
const listener = Deno.listen({ hostname: "127.0.0.1", port });
console.log(`Listening on tcp://127.0.0.1:${listener.addr.port}`);

// Step 5 for one client: recv(1024), then send all of it back, until recv
// reports the end (null: the client closed its sending side).
async function echo(conn: Deno.Conn) {
  const buffer = new Uint8Array(1024);
  for (let n; (n = await conn.read(buffer)) !== null;) {
    // write() may take only part of the bytes: loop until all went (sendall).
    for (let sent = 0; sent < n;) {
      sent += await conn.write(buffer.subarray(sent, n));
    }
  }
}

// Step 4: accept(). Not awaiting echo() lets the next client in at once.
while (true) {
  const conn = await listener.accept().catch(() => null); // null: it reset while queued
  if (!conn) continue;
  echo(conn)
    .catch((error) => console.error(`client dropped: ${error.message}`))
    .finally(() => conn.close()); // step 6: close this client's connection
}
