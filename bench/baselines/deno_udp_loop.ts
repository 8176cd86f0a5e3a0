// Baseline: the fastest bare Deno UDP loop we know — receive into one
// reused buffer and send the same bytes straight back (no stamp at all), the
// ceiling udp_server.ts is measured against, as the read/write loop is for
// echo. (deno_udp.ts is the idiomatic `for await` loop, which allocates a
// 64 KiB buffer per datagram.)
// Run: deno run --allow-net --unstable-net bench/baselines/deno_udp_loop.ts --port 0
const port = Number(Deno.args[Deno.args.indexOf("--port") + 1] ?? 0);
const socket = Deno.listenDatagram({
  transport: "udp",
  hostname: "127.0.0.1",
  port,
});
console.log(
  `Listening on udp://127.0.0.1:${(socket.addr as Deno.NetAddr).port}`,
);
const buffer = new Uint8Array(65_536);
while (true) {
  const [payload, from] = await socket.receive(buffer);
  await socket.send(payload, from);
}
