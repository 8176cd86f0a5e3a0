// A TCP server that answers each line a client sends with a line you type on stdin.
// Retells 000 §4.1 (also 004's typed-input server); the full job, many people typing: scripts/chat_server.ts.
// Run:    deno run --allow-net scripts/basics/tcp_server.ts [port]   (default 8080; 0 = a free port)
// Try it: nc 127.0.0.1 8080   (type a line there, then answer it here)
// Fixed:  one answer per line, not per recv(1024), which may hold half a line, or two.
// Leaves out: more than one client at a time (the next one waits until this one leaves).

const port = Number(Deno.args[0] ?? 8080);
const listener = Deno.listen({ hostname: "127.0.0.1", port });
console.log(`Listening on tcp://127.0.0.1:${listener.addr.port}`);

// The lines arriving on a byte stream (a socket or stdin), 64 KiB at most each.
async function* lines(from: { read(p: Uint8Array): Promise<number | null> }) {
  const buffer = new Uint8Array(1024), decoder = new TextDecoder();
  for (let n, text = ""; (n = await from.read(buffer)) !== null;) {
    text += decoder.decode(buffer.subarray(0, n), { stream: true }); // keeps a cut character whole
    for (let end; (end = text.indexOf("\n")) >= 0; text = text.slice(end + 1)) {
      yield text.slice(0, end).replace(/\r$/, "");
    }
    if (text.length > 65536) throw new Error("line too long");
  }
}

const typed = lines(Deno.stdin); // the operator's answers, shared by every client
while (true) { // one client at a time, as in the tutorial
  const conn = await listener.accept().catch(() => null); // null: it reset while queued
  if (!conn) continue;
  const out = conn.writable.getWriter(); // write() on a writer sends it all
  try {
    for await (const line of lines(conn)) {
      console.log(`client: ${line}`);
      const answer = await typed.next();
      if (answer.done) Deno.exit(0); // stdin closed: nobody is left to answer
      await out.write(new TextEncoder().encode(answer.value + "\n"));
    }
  } catch (error) {
    console.error(`client dropped: ${(error as Error).message}`);
  }
  conn.close();
}
