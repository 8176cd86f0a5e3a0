// A TCP client that gives up after 1 s: on the connect, and again on the reply.
// Retells 000 §4.5 (settimeout(1)); the full job: scripts/timeout_client.ts.
// Run:    deno run --allow-net=127.0.0.1 scripts/basics/timeout_client.ts [port] [message]   (default 9999)
// Try it: against scripts/basics/echo_server.ts, then against a silent nc -l 127.0.0.1 9999
// Fixed:  says which step timed out, in one line, and exits 1; reads the reply up to its newline.
// Leaves out: a --timeout option, retries, TLS.

const port = Number(Deno.args[0] ?? 9999);
const message = Deno.args[1] ?? "Hello, world!";
function giveUp(why: string): never {
  console.error(why);
  Deno.exit(1);
}

// connect() takes an AbortSignal: its own 1 s limit.
const signal = AbortSignal.timeout(1000);
const conn = await Deno.connect({ hostname: "127.0.0.1", port, signal }).catch(
  (error) =>
    giveUp(signal.aborted ? "connect timed out after 1 s" : error.message),
);
await conn.writable.getWriter().write(new TextEncoder().encode(message + "\n"));
// read() takes no signal: a timer ends the wait instead, 1 s from now.
const timer = setTimeout(() => giveUp("no reply: timed out after 1 s"), 1000);
const buffer = new Uint8Array(1024), decoder = new TextDecoder();
let reply = "";
while (!reply.includes("\n")) { // recv until the newline, or until the server closes
  const n = await conn.read(buffer);
  if (n === null) break;
  reply += decoder.decode(buffer.subarray(0, n), { stream: true }); // no cut characters
}
clearTimeout(timer);
console.log(reply.split("\n")[0]);
conn.close();
