// A UDP server that answers each datagram, to its sender, with "[<ctime>]" and the datagram's bytes.
// Retells 003 §UDP编程 (the ctime server); the full job: scripts/udp_server.ts.
// Run:    deno run --unstable-net --allow-net scripts/basics/udp_server.ts [port]   (default 8081; 0 = a free port)
// Try it: deno run --unstable-net --allow-net scripts/basics/udp_client.ts   (or: nc -u 127.0.0.1 8081)
// Fixed:  the tutorial closes its socket inside the loop, stops on an empty datagram
//         and decodes the bytes; this one keeps serving and sends the bytes back untouched.
// Leaves out: ISO time stamps, logging, clean exit on Ctrl-C.

const port = Number(Deno.args[0] ?? 8081);
const socket = Deno.listenDatagram({
  transport: "udp",
  hostname: "127.0.0.1",
  port,
});
console.log(
  `Listening on udp://127.0.0.1:${(socket.addr as Deno.NetAddr).port}`,
);

// Python's time.ctime() in local time: "Sun Nov  2 01:24:44 2026".
function ctime(date = new Date()) {
  const [weekday, month, day, year, time] = date.toString().split(" ");
  const dd = String(Number(day)).padStart(2); // ctime pads the day with a space
  return `${weekday} ${month} ${dd} ${time} ${year}`;
}

// No listen() or accept() in UDP: each datagram arrives with its sender's address.
for await (const [data, sender] of socket) {
  const stamp = new TextEncoder().encode(`[${ctime()}]`);
  const reply = new Uint8Array(stamp.length + data.length);
  reply.set(stamp);
  reply.set(data, stamp.length);
  // One datagram carries at most 65,507 bytes: cut the reply to fit.
  await socket.send(reply.subarray(0, 65507), sender).catch((error) =>
    console.error(`cannot answer: ${error.message}`) // that sender's problem only
  );
}
