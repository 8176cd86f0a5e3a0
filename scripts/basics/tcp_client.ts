// A TCP client: connects, sends one line, prints the line that comes back.
// Retells 000 §4.2 (and 002's client); the full job: scripts/echo_client.ts.
// Run:    deno run --allow-net=127.0.0.1 scripts/basics/tcp_client.ts [port] [message]   (default 8080)
// Try it: start scripts/basics/tcp_server.ts first, or a listener: nc -l 127.0.0.1 8080
// Fixed:  the message ends in a newline so the server knows where it stops, and the
//         reply is read up to its newline (one recv(1024) may hold only part of it).
// Leaves out: time limits (see timeout_client.ts), other hosts, TLS.

const port = Number(Deno.args[0] ?? 8080);
const message = Deno.args[1] ?? "Hello, world!";

const conn = await Deno.connect({ hostname: "127.0.0.1", port }).catch((e) => {
  console.error(`cannot connect to port ${port}: ${e.message}`);
  Deno.exit(1);
});
try {
  // A writer's write() sends every byte (Python's sendall), not just the first few.
  await conn.writable.getWriter().write(
    new TextEncoder().encode(message + "\n"),
  );
  const buffer = new Uint8Array(1024), decoder = new TextDecoder();
  let reply = "";
  // recv until the newline, or until the server closes (read() gives null).
  while (!reply.includes("\n")) {
    const n = await conn.read(buffer);
    if (n === null) break;
    // stream: true keeps a UTF-8 character cut in two by the read for the next one.
    reply += decoder.decode(buffer.subarray(0, n), { stream: true });
  }
  console.log(reply.split("\n")[0]);
} finally {
  conn.close();
}
