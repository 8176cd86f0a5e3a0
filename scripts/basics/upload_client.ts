// Uploads one file: sends `UPLOAD <size> <name>`, a newline and the bytes, then checks the reply.
// Retells 000 §4.4; the full job (streaming, progress, time limits): scripts/upload_client.ts.
// Run:    deno run --allow-net=127.0.0.1 --allow-read=photo.jpg scripts/basics/upload_client.ts photo.jpg [port]
// Try it: start scripts/basics/upload_server.ts (or scripts/upload_server.ts --dir uploads) first
// Fixed:  the header gives the size, so the server knows where the file ends, and the
//         reply must be `200 OK <size> <sha256>` with our own size and hash, or it failed.
// Leaves out: streaming (the whole file is read into memory first), a time limit, TLS.
import { createHash } from "node:crypto";

function fail(why: string): never {
  console.error(`upload failed: ${why}`);
  Deno.exit(1);
}

const [path, port = "8080"] = Deno.args;
const data = await Deno.readFile(path).catch((error) => fail(error.message));
const name = path.split(/[/\\]/).pop(); // the server gets the bare name, no folders
const hostname = "127.0.0.1";
const conn = await Deno.connect({ hostname, port: Number(port) })
  .catch((error) => fail(error.message));

// A writer's write() sends every byte (sendall); the header then the file.
const writer = conn.writable.getWriter();
await writer.write(new TextEncoder().encode(`UPLOAD ${data.length} ${name}\n`));
await writer.write(data);

// One reply line, then the server closes: read until that close.
const buffer = new Uint8Array(1024), decoder = new TextDecoder();
let reply = "";
for (let n; (n = await conn.read(buffer)) !== null;) {
  reply += decoder.decode(buffer.subarray(0, n), { stream: true });
}
conn.close();
reply = reply.trimEnd();
const sha256 = createHash("sha256").update(data).digest("hex");
if (reply !== `200 OK ${data.length} ${sha256}`) fail(reply || "no reply");
console.log(reply);
