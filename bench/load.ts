/**
 * The load generator in TypeScript, for machines without a C compiler: the
 * same modes, options and one-line JSON report as bench/loadgen.c (read that
 * file's header for what each mode does). It is slower than the C one, so
 * watch its CPU figure: near 100% means it, not the server, set the pace.
 *
 * Run: deno run --allow-net --allow-read bench/load.ts rr --port 9999 --conns 50
 *
 * It does not read the server's CPU time (--pids is accepted and ignored:
 * Deno wants --allow-all for /proc); bench.ts samples it instead.
 */
import { parseArgs } from "node:util";
import process from "node:process";
import { raceTimeout, TIMED_OUT } from "../lib/deadline.ts";
import { writeAll } from "../lib/io.ts";

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
    pids: { type: "string" },
    port2: { type: "string" },
    tls: { type: "boolean", default: false },
    cacert: { type: "string" },
    servername: { type: "string", default: "localhost" },
    ws: { type: "string" },
    lines: { type: "string", default: "20000" },
    rate: { type: "string", default: "2000" },
    timeout: { type: "string", default: "60" },
    queries: { type: "string", default: "www.bench.test/A" },
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
const port2 = Number(values.port2 ?? 0);
const tls = values.tls || values.cacert !== undefined;
const lines = Number(values.lines);
const rate = Number(values.rate);
const timeoutMs = Number(values.timeout) * 1000;

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

/** Opens the measured window: the warm-up's counts are dropped. */
function startMeasuring() {
  ops =
    bytes =
    errors =
    samples =
      0;
  histogram.fill(0);
  cpuStart = process.cpuUsage();
  measureStart = performance.now();
  console.log("measuring"); // bench.ts starts its clock on this line
}

/** Starts the clock: the window opens when the warm-up ends. */
function begin(): Promise<void> {
  const start = performance.now();
  end = start + warmupMs + durationMs;
  setTimeout(startMeasuring, warmupMs);
  return new Promise((resolve) =>
    setTimeout(resolve, warmupMs + durationMs + 5)
  );
}

const running = () => performance.now() < end;

function report(extra: Record<string, string | number> = {}): never {
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

/** With --tls (or --cacert, to verify against a private CA) over TLS. */
async function connect(): Promise<Deno.Conn> {
  const conn = await Deno.connect({ hostname, port });
  conn.setNoDelay(true);
  if (!tls) return conn;
  const caCerts = values.cacert
    ? [await Deno.readTextFile(values.cacert)]
    : undefined;
  const secure = await Deno.startTls(conn, {
    hostname: values.servername,
    caCerts,
  });
  await secure.handshake();
  return secure;
}

function connectAll(): Promise<Deno.Conn[]> {
  return Promise.all(Array.from({ length: conns }, connect));
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
        const reply = await raceTimeout(socket.receive(), 200);
        if (reply === TIMED_OUT) {
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

/**
 * A room of --conns members (every odd one on --port2 when given), each
 * joined in turn once its first line (or message) arrives, as loadgen.c
 * does: all at once would overflow a small listen backlog. `onLine` sees
 * every line with the member's index; `send` sends one line from a member.
 */
async function joinRoom(onLine: (member: number, line: string) => void) {
  const senders: ((line: string) => void)[] = [];
  const encoder = new TextEncoder();
  for (let index = 0; index < conns; index++) {
    const memberPort = port2 && index % 2 === 1 ? port2 : port;
    let greeted!: () => void;
    const welcome = new Promise<void>((resolve) => greeted = resolve);
    if (values.ws) {
      const socket = new WebSocket(
        `ws://${hostname}:${memberPort}${values.ws}`,
      );
      socket.onmessage = (event) => {
        greeted();
        if (typeof event.data === "string") {
          bytes += event.data.length;
          onLine(index, event.data);
        }
      };
      socket.onclose = serverClosed;
      senders.push((line) => socket.send(line));
    } else {
      const conn = await Deno.connect({ hostname, port: memberPort });
      conn.setNoDelay(true);
      readLines(conn, (line) => {
        greeted();
        onLine(index, line);
      });
      // One write at a time per connection, in order.
      let writing = Promise.resolve();
      senders.push((line) => {
        const data = encoder.encode(line + "\n");
        writing = writing.then(() => writeAll(conn, data)).catch(serverClosed);
      });
    }
    await raceTimeout(welcome, 1000);
  }
  return senders;
}

/** Reads lines from `conn` for ever and hands each to `onLine`. */
function readLines(conn: Deno.Conn, onLine: (line: string) => void) {
  const decoder = new TextDecoder();
  const buffer = new Uint8Array(65536);
  let length = 0;
  (async () => {
    while (true) {
      if (length === buffer.length) length = 0; // absurd line: drop
      const count = await conn.read(buffer.subarray(length));
      if (count === null) serverClosed();
      bytes += count;
      length += count;
      let start = 0;
      let newline;
      while ((newline = buffer.subarray(start, length).indexOf(10)) >= 0) {
        onLine(decoder.decode(buffer.subarray(start, start + newline)));
        start += newline + 1;
      }
      buffer.copyWithin(0, start, length);
      length -= start;
    }
  })().catch(serverClosed);
}

/** "m ~SENDER SEQ STAMP xxx…" (see loadgen.c); STAMP in ms. */
function chatLine(sender: number, sequence: number): string {
  const stamp = `${performance.timeOrigin + performance.now()}`;
  return `m ~${sender} ${sequence} ${stamp} `.padEnd(size - 1, "x");
}

/** The sender, sequence and latency (ms) of a room line, if it is one. */
function parseChatLine(line: string) {
  const mark = line.indexOf("~");
  if (mark < 0) return undefined;
  const [sender, sequence, stamp] = line.slice(mark + 1).split(" ").map(
    Number,
  );
  return {
    sender,
    sequence,
    latency: performance.timeOrigin + performance.now() - stamp,
  };
}

async function chat() {
  const pending = new Uint16Array(conns * depth);
  const sequences = new Uint32Array(conns);
  let started = false;
  const send = (sender: number) =>
    senders[sender](chatLine(sender, sequences[sender]++));
  const senders = await joinRoom((_member, line) => {
    const parsed = parseChatLine(line);
    if (!parsed || !started) return;
    const { sender, sequence, latency } = parsed;
    if (!(sender >= 0 && sender < conns)) {
      errors++;
      return;
    }
    ops++;
    recordLatency(latency);
    const slot = sender * depth + (sequence % depth);
    if (++pending[slot] === conns - 1) {
      pending[slot] = 0;
      send(sender);
    }
  });
  started = true;
  bytes = 0;
  const done = begin();
  for (let sender = 0; sender < conns; sender++) {
    for (let i = 0; i < depth; i++) send(sender);
  }
  await done;
  report();
}

/** Client 0 sends --lines lines at once; counted at the others. */
async function burst() {
  let sequence = 0;
  let first = 0; // the phase's first sequence number
  let delivered = 0;
  let wanted = 0;
  let finished: (() => void) | undefined;
  const senders = await joinRoom((_member, line) => {
    const parsed = parseChatLine(line);
    if (!parsed || parsed.sender !== 0 || parsed.sequence < first) return;
    ops++;
    recordLatency(parsed.latency);
    if (++delivered === wanted) finished?.();
  });
  const phase = async (count: number) => {
    first = sequence;
    delivered = 0;
    wanted = count * (conns - 1);
    const done = new Promise<void>((resolve) => finished = resolve);
    for (let i = 0; i < count; i++) senders[0](chatLine(0, sequence++));
    await raceTimeout(done, timeoutMs);
    return delivered >= wanted;
  };
  if (warmupMs > 0) await phase(Math.max(1, Math.floor(lines / 10)));
  startMeasuring();
  const complete = await phase(lines);
  if (!complete) errors = wanted - delivered;
  report();
}

/** Client 0 sends --rate lines per second; latency at the others. */
async function paced() {
  let sequence = 0;
  let windowStart = 0; // the sequence number when the window opened
  const senders = await joinRoom((_member, line) => {
    const parsed = parseChatLine(line);
    if (!parsed) return;
    ops++;
    recordLatency(parsed.latency);
  });
  const done = begin();
  const start = performance.now();
  setTimeout(() => windowStart = sequence, warmupMs);
  // Timers fire at best every millisecond: send what is due each time.
  const timer = setInterval(() => {
    const due = Math.floor((performance.now() - start) * rate / 1000);
    while (sequence < due) senders[0](chatLine(0, sequence++));
  }, 1);
  await done;
  clearInterval(timer);
  report({ sent: sequence - windowStart });
}

/** JSON-RPC add(id, 1) calls, --depth in flight per connection. */
async function rpc() {
  const all = await connectAll();
  const encoder = new TextEncoder();
  const done = begin();
  for (const conn of all) {
    let id = 0;
    const sentAt = new Map<number, number>();
    const call = () => {
      sentAt.set(id, performance.now());
      const text =
        `{"jsonrpc":"2.0","id":${id},"method":"add","params":[${id},1]}\n`;
      id++;
      return writeAll(conn, encoder.encode(text));
    };
    (async () => {
      for (let i = 0; i < depth; i++) await call();
    })().catch(serverClosed);
    readLines(conn, (line) => {
      const response = JSON.parse(line);
      if (response.result === response.id + 1) ops++;
      else errors++;
      recordLatency(performance.now() - (sentAt.get(response.id) ?? 0));
      sentAt.delete(response.id);
      if (running()) call().catch(serverClosed);
    });
  }
  await done;
  report();
}

/** A DNS query for "name/TYPE" with the given ID. */
function dnsQuery(spec: string, id: number): Uint8Array {
  const [name, type = "A"] = spec.split("/");
  const codes: Record<string, number> = {
    A: 1,
    NS: 2,
    CNAME: 5,
    MX: 15,
    TXT: 16,
    AAAA: 28,
  };
  const code = codes[type.toUpperCase()] ?? Number(type);
  const labels = name.split(".").filter(Boolean);
  const packet = new Uint8Array(
    12 + labels.reduce((sum, label) => sum + label.length + 1, 0) + 5,
  );
  packet.set([id >> 8, id & 0xff, 0, 0, 0, 1]);
  let offset = 12;
  for (const label of labels) {
    packet[offset++] = label.length;
    packet.set(new TextEncoder().encode(label), offset);
    offset += label.length;
  }
  packet.set([0, code >> 8, code & 0xff, 0, 1], offset);
  return packet;
}

async function dns() {
  const specs = values.queries.split(",");
  const target = { transport: "udp" as const, hostname, port };
  const done = begin();
  for (let i = 0; i < conns; i++) {
    const socket = Deno.listenDatagram({
      transport: "udp",
      hostname: "127.0.0.1",
      port: 0,
    });
    (async () => {
      let id = i * 997;
      let turn = i % specs.length;
      while (running()) {
        id = (id + 1) & 0xffff;
        const sent = performance.now();
        await socket.send(dnsQuery(specs[turn], id), target);
        const reply = await raceTimeout(socket.receive(), 200);
        if (reply === TIMED_OUT) {
          errors++;
          continue;
        }
        const [answer] = reply;
        const answers = (answer[6] << 8) | answer[7];
        const ok = ((answer[0] << 8) | answer[1]) === id &&
          (answer[2] & 0x80) !== 0 && (answer[3] & 0x0f) === 0 && answers > 0;
        if (ok) ops++;
        else errors++;
        bytes += answer.length;
        recordLatency(performance.now() - sent);
        turn = (turn + 1) % specs.length;
      }
    })().catch(() => {});
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
  case "burst":
    await burst();
    break;
  case "paced":
    await paced();
    break;
  case "rpc":
    await rpc();
    break;
  case "dns":
    await dns();
    break;
  case "upload":
    await upload();
    break;
  default:
    console.error(`load.ts: unknown mode ${mode}`);
    Deno.exit(2);
}
