// Receives files: a line `UPLOAD <size> <name>`, then exactly <size> bytes; answers one line.
// Retells the server half of 000 §4.4 (the tutorial shows only its client); the full job: scripts/upload_server.ts.
// Run:    deno run --allow-net --allow-write=uploads scripts/basics/upload_server.ts [port] [dir]   (8080 uploads)
// Try it: printf 'UPLOAD 5 hi.txt\nhello' | nc -N 127.0.0.1 8080
// Fixed:  the size tells where the file ends (with the close as the only end, a dead client looks done).
// Leaves out: streaming to disk (a file is held in memory: 64 MiB at most), time limits, --overwrite.
import { createHash } from "node:crypto";

const [port = "8080", dir = "uploads"] = Deno.args;
await Deno.mkdir(dir, { recursive: true });
const listener = Deno.listen({ hostname: "127.0.0.1", port: Number(port) });
console.log(`Listening on tcp://127.0.0.1:${listener.addr.port}`);
async function receive(conn: Deno.Conn): Promise<string> {
  let end = 0; // the header, one byte per read(): no byte of the file is read with it
  const line = new Uint8Array(4096);
  for (; end < 4096 && await conn.read(line.subarray(end, end + 1)); end++) {
    if (line[end] === 10) break;
  }
  const header = new TextDecoder().decode(line.subarray(0, end));
  const [, size, name] = /^UPLOAD (\d{1,15}) (.+?)\r?$/.exec(header) ?? [];
  // A bare name only: with a "/", a "\" or as "..", it could point outside `dir`.
  if (!name || /[/\\]|^\.\.?$/.test(name)) return "400 bad header or name";
  if (Number(size) > 64 * 2 ** 20) return "413 too large: 64 MiB at most";
  const data = new Uint8Array(Number(size)); // exactly <size> bytes, no more
  for (let got = 0, n; got < data.length; got += n) {
    n = await conn.read(data.subarray(got));
    if (n === null) throw new Error("the client left mid-upload");
  }
  const saving = Deno.writeFile(`${dir}/${name}`, data, { createNew: true }); // never overwrite
  if (await saving.catch(() => true)) return "409 cannot store that name"; // true: it failed
  return `200 OK ${size} ${createHash("sha256").update(data).digest("hex")}`;
}
while (true) { // every client in its own task
  const conn = await listener.accept().catch(() => null); // null: it reset while queued
  if (!conn) continue;
  receive(conn)
    .then((reply) => conn.write(new TextEncoder().encode(reply + "\n")))
    .catch((error) => console.error(`upload failed: ${error.message}`))
    .finally(() => conn.close());
}
