// A UDP server that answers each datagram with a line you type, after "[<ctime>]:".
// Retells 003 §UDP编程 (its second server, which asks input() for each answer); the full job: scripts/udp_server.ts.
// Run:    deno run --unstable-net --allow-net scripts/basics/udp_typed_server.ts [port]   (default 8082; 0 = a free port)
// Try it: deno run --unstable-net --allow-net=127.0.0.1 scripts/basics/udp_client.ts 8082   (type there, answer here)
// Fixed:  the tutorial stops for good when anyone sends an empty datagram and dies on bytes that are not UTF-8.
// Leaves out: datagrams that come while you type wait in the kernel's buffer, which may drop them.

const port = Number(Deno.args[0] ?? 8082);
const where = { transport: "udp", hostname: "127.0.0.1", port } as const;
const socket = Deno.listenDatagram(where);
const { port: bound } = socket.addr as Deno.NetAddr;
console.log(`Listening on udp://127.0.0.1:${bound}`);

function ctime(date = new Date()) { // Python's time.ctime(), in local time
  const [weekday, month, day, year, time] = date.toString().split(" ");
  const dd = String(Number(day)).padStart(2);
  return `${weekday} ${month} ${dd} ${time} ${year}`;
}
async function* typedLines(text = "") { // your answers: stdin, a line each
  const input = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
  for await (const piece of input) {
    text += piece;
    for (let end; (end = text.indexOf("\n")) >= 0; text = text.slice(end + 1)) {
      yield text.slice(0, end);
    }
  }
}
const typed = typedLines(), decoder = new TextDecoder(); // bad bytes: U+FFFD

// No connection: each datagram comes with its sender's address; answer there.
for await (const [data, sender] of socket) {
  const { hostname, port } = sender as Deno.NetAddr;
  const shown = decoder.decode(data).replace(/\p{Cc}/gu, "?"); // no escapes
  console.log(`${hostname}:${port}: ${shown}`);
  const answer = await typed.next();
  if (answer.done) break; // stdin closed: nobody is left to answer
  const reply = new TextEncoder().encode(`[${ctime()}]:${answer.value}`);
  await socket.send(reply, sender).catch(console.error); // one sender's trouble
}
socket.close();
