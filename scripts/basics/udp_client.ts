// A UDP client: sends each line you type as one datagram and prints the server's reply.
// Retells 003 §UDP编程 (the client loop); the full job: scripts/udp_client.ts.
// Run:    deno run --unstable-net --allow-net=127.0.0.1 scripts/basics/udp_client.ts [port]   (default 8081)
// Try it: start scripts/basics/udp_server.ts first, then type lines; Ctrl-D ends.
// Fixed:  the tutorial waits for ever on a lost datagram and takes a reply from anyone;
//         this one gives up after 2 s and ignores datagrams not from the server.
// Leaves out: sending again when no reply came (--retries in the full client).

const port = Number(Deno.args[0] ?? 8081);
const server = { transport: "udp", hostname: "127.0.0.1", port } as const;
const socket = Deno.listenDatagram({ ...server, port: 0 }); // our end: any free port
const out = Deno.stdout.writable.getWriter();

async function ask(line: string) {
  await socket.send(new TextEncoder().encode(line), server); // one line, one datagram
  const timer = setTimeout(() => {
    console.error("no reply within 2 s");
    Deno.exit(1);
  }, 2000);
  // Anyone may send us a datagram: only one from the server's address counts.
  let reply: Uint8Array, from: Deno.NetAddr;
  do {
    [reply, from] = (await socket.receive()) as [Uint8Array, Deno.NetAddr];
  } while (from.hostname !== server.hostname || from.port !== port);
  clearTimeout(timer);
  await out.write(reply); // the bytes as they came, then a newline
  await out.write(new TextEncoder().encode("\n"));
}

// Lines from stdin: TextDecoderStream keeps UTF-8 characters whole across reads.
let rest = "";
for await (
  const text of Deno.stdin.readable.pipeThrough(new TextDecoderStream())
) {
  const lines = (rest + text).split("\n");
  rest = lines.pop()!;
  for (const line of lines) await ask(line);
}
if (rest) await ask(rest);
socket.close();
