// Baseline: a bare Deno.listenDatagram loop answering each datagram with
// "[<time>]" + the payload, like udp_server.ts but with no options, checks or
// ctime formatting (the ISO stamp is the cheapest the platform offers).
// Run: deno run --allow-net --unstable-net bench/baselines/deno_udp.ts --port 0
const port = Number(Deno.args[Deno.args.indexOf("--port") + 1] ?? 0);
const socket = Deno.listenDatagram({
  transport: "udp",
  hostname: "127.0.0.1",
  port,
});
console.log(
  `Listening on udp://127.0.0.1:${(socket.addr as Deno.NetAddr).port}`,
);
const encoder = new TextEncoder();
for await (const [payload, from] of socket) {
  const stamp = encoder.encode(`[${new Date().toISOString()}]`);
  const reply = new Uint8Array(stamp.length + payload.length);
  reply.set(stamp);
  reply.set(payload, stamp.length);
  await socket.send(reply, from);
}
