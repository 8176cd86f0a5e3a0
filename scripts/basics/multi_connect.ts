// Connects to several TCP servers in turn, says hello to each, prints the first line each answers.
// Retells 000 §4.3; the full job (all at once, timed, a port checker): scripts/multi_connect.ts.
// Run:    deno run --allow-net scripts/basics/multi_connect.ts 127.0.0.1:9999 127.0.0.1:8080
// Try it: start scripts/basics/echo_server.ts first; the second address above then fails.
// Fixed:  a new socket per server (the tutorial reconnects the one it just closed,
//         which fails from the second server on); each connect and reply waits at most 2 s.
// Leaves out: trying the servers concurrently, IPv6 addresses, TLS.

for (const server of Deno.args) {
  const [hostname, port] = server.split(":");
  try {
    // A fresh connection each time round: a closed socket cannot connect again.
    const signal = AbortSignal.timeout(2000); // the connect may take 2 s at most
    using conn = await Deno.connect({ hostname, port: Number(port), signal });
    const hello = new TextEncoder().encode(`Hello, ${hostname}!\n`);
    await conn.writable.getWriter().write(hello); // all of it, like sendall
    const timer = setTimeout(() => conn.close(), 2000); // no answer: stop waiting
    const buffer = new Uint8Array(1024), decoder = new TextDecoder();
    let reply = "";
    while (!reply.includes("\n")) { // recv until the newline or the close
      const n = await conn.read(buffer);
      if (n === null) break;
      reply += decoder.decode(buffer.subarray(0, n), { stream: true });
    }
    clearTimeout(timer);
    console.log(`${server} answered: ${reply.split("\n")[0]}`);
  } catch (error) {
    // Interrupted: our timer closed the socket while read() waited.
    const reason = error instanceof Deno.errors.Interrupted
      ? "no answer within 2 s"
      : (error as Error).message;
    console.log(`${server} failed: ${reason}`);
  }
}
console.log("All connections have been closed.");
