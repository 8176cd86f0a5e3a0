// A TCP server that greets each line a client sends: Hello client! You sent me "<the line>".
// Retells 002 §4 (its server, which catches ConnectionResetError); the full job: scripts/echo_server.ts.
// Run:    deno run --allow-net scripts/basics/hello_server.ts [port]   (default 8887; 0 = a free port)
// Try it: nc 127.0.0.1 8887   (type a line, get it back greeted)
// Fixed:  the tutorial greets each recv(1024) (half a line, or two), serves one client at a time, and dies when decode() meets a character cut between reads.
// Leaves out: idle timeouts, a cap on clients, an orderly stop on Ctrl-C (exit 0).

const port = Number(Deno.args[0] ?? 8887);
const listener = Deno.listen({ hostname: "127.0.0.1", port });
console.log(`Listening on tcp://127.0.0.1:${listener.addr.port}`);

// One client: every complete line (and a last one without "\n") is greeted.
async function greet(conn: Deno.Conn, text = "") {
  const buffer = new Uint8Array(1024), decoder = new TextDecoder(); // bad bytes: U+FFFD
  for (let n; (n = await conn.read(buffer)) !== null;) {
    text += decoder.decode(buffer.subarray(0, n), { stream: true }); // a cut character waits
    for (let end; (end = text.indexOf("\n")) >= 0; text = text.slice(end + 1)) {
      await reply(conn, text.slice(0, end).replace(/\r$/, ""));
    }
    if (text.length > 65536) throw new Error("line too long");
  }
  if ((text += decoder.decode())) await reply(conn, text);
}

const encoder = new TextEncoder();
async function reply(conn: Deno.Conn, line: string) {
  const bytes = encoder.encode(`Hello client! You sent me "${line}".\n`);
  for (let sent = 0; sent < bytes.length;) { // write() may take part: sendall
    sent += await conn.write(bytes.subarray(sent));
  }
}

// A task per client; a reset (the tutorial's ConnectionResetError) ends that client only.
while (true) {
  const conn = await listener.accept().catch(() => null); // null: it reset while queued
  if (!conn) continue;
  greet(conn)
    .catch((error) => console.error(`client dropped: ${error.message}`))
    .finally(() => conn.close());
}
