/**
 * The load generator in TypeScript, for machines without a C compiler: the
 * same modes, options and one-line JSON report as bench/loadgen.c (read that
 * file's header for what each mode does). It is slower than the C one, so
 * watch its CPU figure: near 100% means it, not the server, set the pace.
 *
 * Run: deno run --allow-net --allow-read bench/load.ts rr --port 9999 --conns 50
 */
import { parseArgs } from "node:util";
import process from "node:process";

const { positionals, values } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string" },
    conns: { type: "string", default: "1" },
    size: { type: "string", default: "64" },
    depth: { type: "string", default: "1" },
    warmup: { type: "string", default: "0.5" },
    duration: { type: "string", default: "2" },
    file: { type: "string" },
    name: { type: "string", default: "bench.bin" },
    raw: { type: "boolean", default: false },
  },
});
const mode = positionals[0];
const hostname = values.host;
const port = Number(values.port);
const conns = Number(values.conns);
const size = Number(values.size);
const depth = Number(values.depth);
const warmupMs = Number(values.warmup) * 1000;
const durationMs = Number(values.duration) * 1000;

// ---- the measured window and what is counted in it ----
let ops = 0;
let bytes = 0;
let errors = 0;
let measureStart = 0;
let end = Infinity;
let cpuStart = process.cpuUsage();
const histogram = new Uint32Array(1_000_000); // 10 µs buckets up to 10 s
let samples = 0;

function recordLatency(ms: number) {
  histogram[
    Math.min(histogram.length - 1, Math.max(0, Math.floor(ms * 100)))
  ]++;
  samples++;
}

function percentileMicros(p: number): number {
  if (samples === 0) return 0;
  const rank = Math.floor(samples * p);
  let seen = 0;
  for (let bucket = 0; bucket < histogram.length; bucket++) {
    seen += histogram[bucket];
    if (seen > rank) return bucket * 10 + 5;
  }
  return histogram.length * 10;
}

/** Starts the clock: counters reset when the warm-up ends. */
function begin(): Promise<void> {
  const start = performance.now();
  end = start + warmupMs + durationMs;
  setTimeout(() => {
    ops =
      bytes =
      errors =
      samples =
        0;
    histogram.fill(0);
    cpuStart = process.cpuUsage();
    measureStart = performance.now();
    console.log("measuring"); // bench.ts starts its clock on this line
  }, warmupMs);
  return new Promise((resolve) =>
    setTimeout(resolve, warmupMs + durationMs + 5)
  );
}

const running = () => performance.now() < end;

function report(extra: Record<string, string> = {}): never {
  const cpu = process.cpuUsage(cpuStart);
  console.log(JSON.stringify({
    ops,
    bytes,
    seconds: (performance.now() - measureStart) / 1000,
    cpu: (cpu.user + cpu.system) / 1e6,
    p50_us: percentileMicros(0.5),
    p99_us: percentileMicros(0.99),
    errors,
    ...extra,
  }));
  Deno.exit(0);
}

async function writeAll(conn: Deno.Conn, data: Uint8Array) {
  for (let written = 0; written < data.length;) {
    written += await conn.write(data.subarray(written));
  }
}

function connectAll(): Promise<Deno.TcpConn[]> {
  return Promise.all(
    Array.from({ length: conns }, async () => {
      const conn = await Deno.connect({ hostname, port });
      conn.setNoDelay(true);
      return conn;
    }),
  );
}

function serverClosed(): never {
  console.error("load.ts: server closed a connection");
  Deno.exit(1);
}

async function roundTrips() {
  const all = await connectAll();
  const message = new Uint8Array(size).fill(0x78);
  const done = begin();
  for (const conn of all) {
    (async () => {
      const buffer = new Uint8Array(65536);
      for (let i = 0; i < depth; i++) await writeAll(conn, message);
      let received = 0;
      while (running()) {
        const count = await conn.read(buffer);
        if (count === null) serverClosed();
        bytes += count;
        received += count;
        while (received >= size) {
          received -= size;
          ops++;
          await writeAll(conn, message);
        }
      }
    })().catch(serverClosed);
  }
  await done;
  report();
}

async function stream() {
  const all = await connectAll();
  const chunk = new Uint8Array(size).fill(0x78);
  const done = begin();
  for (const conn of all) {
    (async () => {
      while (running()) await writeAll(conn, chunk);
    })().catch(serverClosed);
    (async () => {
      const buffer = new Uint8Array(1 << 20);
      while (running()) {
        const count = await conn.read(buffer);
        if (count === null) serverClosed();
        bytes += count;
        ops++;
      }
    })().catch(serverClosed);
  }
  await done;
  report();
}

async function udp() {
  const message = new Uint8Array(size).fill(0x78);
  const target = { transport: "udp" as const, hostname, port };
  const done = begin();
  for (let i = 0; i < conns; i++) {
    const socket = Deno.listenDatagram({
      transport: "udp",
      hostname: "127.0.0.1",
      port: 0,
    });
    (async () => {
      while (running()) {
        const sent = performance.now();
        await socket.send(message, target);
        // A datagram may be dropped under load: resend after 200 ms.
        let timer: ReturnType<typeof setTimeout> | undefined;
        const lost = new Promise<null>((resolve) =>
          timer = setTimeout(() => resolve(null), 200)
        );
        const reply = await Promise.race([socket.receive(), lost]);
        clearTimeout(timer);
        if (reply === null) {
          errors++;
          continue;
        }
        ops++;
        bytes += reply[0].length;
        recordLatency(performance.now() - sent);
      }
    })().catch(() => {});
  }
  await done;
  report();
}

async function chat() {
  const all: Deno.TcpConn[] = [];
  const pending = new Uint16Array(conns * depth);
  const sequences = new Uint32Array(conns);
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  let started = false;
  const send = (sender: number) => {
    const stamp = `${performance.timeOrigin + performance.now()}`;
    let line = `m ~${sender} ${sequences[sender]++} ${stamp} `;
    line = line.padEnd(size - 1, "x") + "\n";
    writeAll(all[sender], encoder.encode(line)).catch(serverClosed);
  };
  const onLine = (line: string) => {
    const mark = line.indexOf("~");
    if (mark < 0) return;
    const [sender, sequence, stamp] = line.slice(mark + 1).split(" ").map(
      Number,
    );
    if (!(sender >= 0 && sender < conns)) {
      errors++;
      return;
    }
    ops++;
    recordLatency(performance.timeOrigin + performance.now() - stamp);
    const slot = sender * depth + (sequence % depth);
    if (++pending[slot] === conns - 1) {
      pending[slot] = 0;
      send(sender);
    }
  };
  /** Reads lines for ever; `greeted` resolves at the first one. */
  const readLines = (conn: Deno.TcpConn, greeted: () => void) => {
    const buffer = new Uint8Array(65536);
    let length = 0;
    (async () => {
      while (true) {
        if (length === buffer.length) length = 0; // absurd line: drop
        const count = await conn.read(buffer.subarray(length));
        if (count === null) serverClosed();
        if (started) bytes += count;
        length += count;
        let start = 0;
        let newline;
        while ((newline = buffer.subarray(start, length).indexOf(10)) >= 0) {
          greeted();
          onLine(decoder.decode(buffer.subarray(start, start + newline)));
          start += newline + 1;
        }
        buffer.copyWithin(0, start, length);
        length -= start;
      }
    })().catch(serverClosed);
  };
  // Join one client at a time and wait (at most 1 s) for its first line, as
  // loadgen.c does: all at once would overflow a small listen backlog.
  for (let index = 0; index < conns; index++) {
    const conn = await Deno.connect({ hostname, port });
    conn.setNoDelay(true);
    all.push(conn);
    let timer: ReturnType<typeof setTimeout> | undefined;
    await new Promise<void>((resolve) => {
      timer = setTimeout(resolve, 1000);
      readLines(conn, resolve);
    });
    clearTimeout(timer);
  }
  started = true;
  const done = begin();
  for (let sender = 0; sender < conns; sender++) {
    for (let i = 0; i < depth; i++) send(sender);
  }
  await done;
  report();
}

async function upload() {
  if (!values.file) throw new Error("upload needs --file");
  const file = await Deno.open(values.file);
  const { size: fileSize } = await file.stat();
  const cpu0 = process.cpuUsage();
  const started = performance.now();
  const conn = await Deno.connect({ hostname, port });
  if (!values.raw) {
    await writeAll(
      conn,
      new TextEncoder().encode(`UPLOAD ${fileSize} ${values.name}\n`),
    );
  }
  const buffer = new Uint8Array(256 * 1024);
  let count;
  while ((count = await file.read(buffer)) !== null) {
    await writeAll(conn, buffer.subarray(0, count));
  }
  file.close();
  // nc only finishes at the end of the stream; our server answers once it
  // has <size> bytes.
  if (values.raw) await conn.closeWrite();
  let reply = "";
  const decoder = new TextDecoder();
  while (!reply.includes("\n")) {
    const got = await conn.read(buffer);
    if (got === null) break;
    reply += decoder.decode(buffer.subarray(0, got), { stream: true });
  }
  const seconds = (performance.now() - started) / 1000;
  conn.close();
  const cpu = process.cpuUsage(cpu0);
  console.log(JSON.stringify({
    ops: 1,
    bytes: fileSize,
    seconds,
    cpu: (cpu.user + cpu.system) / 1e6,
    p50_us: 0,
    p99_us: 0,
    errors: 0,
    reply: reply.split("\n")[0],
  }));
}

if (!(port > 0 && conns > 0 && size > 0 && depth > 0)) {
  console.error("load.ts: --port, --conns, --size, --depth must be > 0");
  Deno.exit(2);
}
switch (mode) {
  case "rr":
    await roundTrips();
    break;
  case "stream":
    await stream();
    break;
  case "udp":
    await udp();
    break;
  case "chat":
    await chat();
    break;
  case "upload":
    await upload();
    break;
  default:
    console.error(`load.ts: unknown mode ${mode}`);
    Deno.exit(2);
}
