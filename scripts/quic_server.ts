/**
 * QUIC echo server: every bidirectional stream a client opens is echoed back
 * byte for byte, and finished when the client finishes its side. With
 * --webtransport, browsers can be clients too (WebTransport, same UDP port).
 *
 * Run:    deno task cert   (once: makes certs/, a local CA and its localhost leaf)
 *         deno run --unstable-net --allow-net --allow-read=certs scripts/quic_server.ts --cert certs/localhost.pem --key certs/localhost.key
 * Try it: deno run --unstable-net --allow-net --allow-read=certs scripts/quic_client.ts --cacert certs/ca.pem hello
 *
 * Beyond the tutorials: 001 §5 names QUIC, Google's transport over UDP, as
 * still being standardised; it is RFC 9000 (2021) and carries HTTP/3. Unlike
 * their TCP it always encrypts (TLS 1.3; 000 §1 only names SSL/TLS), and one
 * connection carries many streams, each with its own half-close: a lost
 * packet stalls only its own stream.
 *
 * Read first: echoStream
 */
import { parseCommandLine, parseInteger } from "../lib/cli.ts";
import { parseSeconds, requireUnstableNet } from "../lib/cli.ts";
import { Failure, runCommand, UsageError } from "../lib/cli.ts";
import { withDeadline } from "../lib/deadline.ts";
import { describeError } from "../lib/errors.ts";
import { closeQuietly, formatHostPort } from "../lib/io.ts";
import { listenOptions, parseListen, serverHandle } from "../lib/server.ts";
import { rateLimitedLog, runUntilSignal } from "../lib/server.ts";
import { type ServerHandle, type ServerTls } from "../lib/server.ts";
import { SERVER_TLS_HELP, SERVER_TLS_OPTIONS } from "../lib/tls.ts";

export const DEFAULT_PORT = 4433, ALPN = "echo"; // the protocol clients ask
const NO_CERT =
  "--cert and --key are required: QUIC always encrypts (TLS 1.3). Make a pair with 'deno task cert'";
// Each connection holds far more than a TCP one: lower caps.
const LISTEN = listenOptions(DEFAULT_PORT, {
  maxConnections: 1000,
  maxPerAddress: 200,
  portHelp: `UDP port (default ${DEFAULT_PORT}; 0 picks a free port)`,
});

const USAGE = `Usage: quic_server.ts --cert FILE --key FILE [options]

Echoes every QUIC stream back to its sender (ALPN "${ALPN}"). A connection
with no packet either way (keep-alives count) for --idle-timeout is closed.
Deno cannot yet ask a client for a certificate (deno#26825), nor tell when a
browser ends a WebTransport session: it is held until the idle timeout.

Options:
${SERVER_TLS_HELP}
${LISTEN.help}
  --webtransport       also accept WebTransport sessions (HTTP/3, ALPN h3)
  --idle-timeout S     close a connection silent S seconds (default 30)
  --max-streams N      streams open at once per connection (default 100)
  -h, --help           show this help`;

export interface QuicServerOptions extends ServerTls { // PEM cert and key
  hostname?: string;
  port?: number;
  webtransport?: boolean;
  idleTimeoutSeconds?: number; // no packet either way this long: closed (30)
  maxConnections?: number; // more are refused at once (1000)
  maxPerAddress?: number; // from one address; more are closed (200)
  maxStreams?: number; // per connection, open at once (100)
}

export function startQuicServer(options: QuicServerOptions): ServerHandle {
  requireUnstableNet();
  const { hostname = "127.0.0.1", port = DEFAULT_PORT } = options;
  const { maxConnections = 1000, maxPerAddress = 200 } = options;
  const idleMs = (options.idleTimeoutSeconds ?? 30) * 1000;
  const log = rateLimitedLog(); // a flood of failures: a line a second
  const endpoint = new Deno.QuicEndpoint({ hostname, port });
  // Both protocols share one endpoint: the client's ALPN picks one per
  // connection. HTTP/3 needs a few one-way streams (control, QPACK).
  let listener: Deno.QuicListener;
  try {
    listener = endpoint.listen({
      cert: options.cert,
      key: options.key,
      alpnProtocols: options.webtransport ? [ALPN, "h3"] : [ALPN],
      maxIdleTimeout: idleMs,
      maxConcurrentBidirectionalStreams: options.maxStreams ?? 100,
      maxConcurrentUnidirectionalStreams: options.webtransport ? 8 : 0,
    });
  } catch (error) { // not PEM, or a key that does not match the certificate
    endpoint.close();
    throw new Failure(`--cert/--key: ${describeError(error)}`);
  }
  const connections = new Set<Promise<void>>();
  const perAddress = new Map<string, number>();
  let closing = false;

  async function acceptLoop() {
    for await (const incoming of listener) { // ends when the endpoint closes
      if (connections.size >= maxConnections) {
        incoming.refuse(); // the client hears "refused" at once
        continue;
      }
      const task = serveConnection(incoming);
      connections.add(task);
      task.finally(() => connections.delete(task));
    }
  }

  async function serveConnection(incoming: Deno.QuicIncoming) {
    // (Not incoming.remoteAddr: in Deno 2.9.6 reading it drops the client.)
    const conn = await incoming.accept<false>().catch((error) => {
      // Our certificate distrusted, another ALPN wanted: this client only.
      log(`handshake failed: ${describeError(error)}`);
    });
    if (!conn) return;
    const { hostname: address, port: peerPort } = conn.remoteAddr;
    const peer = formatHostPort(address, peerPort);
    perAddress.set(address, (perAddress.get(address) ?? 0) + 1);
    try {
      if (perAddress.get(address)! > maxPerAddress) { // not every place to one
        const why = `${maxPerAddress} connections from it (--max-per-address)`;
        log(`refused ${address}: ${why}`);
        conn.close({ closeCode: 0, reason: "too many from your address" });
      } else if (conn.protocol === "h3") await serveWebTransport(conn, idleMs);
      else await echoStreams(conn, false);
    } catch (error) { // idle timeout, a vanished client: expected when closing
      if (!closing) log(`${peer}: ${describeError(error)}`);
    } finally {
      closeQuietly(conn);
      if (perAddress.get(address) === 1) perAddress.delete(address);
      else perAddress.set(address, perAddress.get(address)! - 1);
    }
  }

  const accepting = acceptLoop();
  const addr = { ...endpoint.addr, transport: "udp" } as const;
  return serverHandle(addr, accepting, async () => {
    closing = true;
    // Tells every client why (a CONNECTION_CLOSE frame), then stops.
    endpoint.close({ closeCode: 0, reason: "server shutting down" });
    await accepting.catch(() => {}); // then no connection can be added
    await Promise.allSettled([...connections]);
  });
}

/** Echoes every stream the client opens, concurrently, until it leaves. */
async function echoStreams(conn: Deno.QuicConn, webTransport: boolean) {
  const streams = new Set<Promise<void>>();
  try {
    for await (const stream of conn.incomingBidirectionalStreams) {
      const task = echoStream(stream, webTransport);
      streams.add(task);
      task.finally(() => streams.delete(task));
    }
  } finally {
    await Promise.allSettled([...streams]);
  }
}

/**
 * The lesson: one stream echoed until the client finishes its side (FIN),
 * then ours is finished too. It holds one 64 KiB buffer (plus QUIC's flow
 * control windows): a "bring your own buffer" reader fills it instead of
 * allocating per read, and hands it back as `value.buffer` for the next.
 */
export async function echoStream(
  stream: Deno.QuicBidirectionalStream,
  webTransport = false,
) {
  const reader = stream.readable.getReader({ mode: "byob" });
  const writer = stream.writable.getWriter();
  let buffer = new ArrayBuffer(64 * 1024);
  try {
    if (webTransport) buffer = await skipWebTransportHeader(reader, buffer);
    while (true) {
      const { value, done } = await reader.read(new Uint8Array(buffer));
      if (done) break; // the client's FIN: nothing more will come
      // Awaiting the write is the back-pressure: a client that stops
      // reading this stream stops us reading it, and nothing else.
      await writer.write(value);
      buffer = value.buffer;
    }
    await writer.close(); // our FIN: everything has been echoed
  } catch {
    // Reset, no longer read, or gone: release both ways (fail, not stall).
    await Promise.allSettled([reader.cancel(), writer.abort()]);
  }
}

// A WebTransport session: Deno answers the browser's HTTP/3 SETTINGS and
// CONNECT request (status 200, any path), within `deadlineMs` or never.
async function serveWebTransport(conn: Deno.QuicConn, deadlineMs: number) {
  const upgrade = () => Deno.upgradeWebTransport(conn);
  const late = "no WebTransport session in time";
  const session = await withDeadline(conn, deadlineMs, upgrade, late);
  // It rejects when a browser vanishes; unhandled, that would end the server.
  session.closed.catch(() => {});
  // Its streams arrive as QUIC streams of this connection. We echo them
  // there, not through `session`'s stream objects: in Deno 2.9.6 closing
  // those never sends FIN, so the browser would wait for our end forever.
  try {
    await echoStreams(conn, true);
  } finally {
    closeQuietly(session); // also keeps `session` alive until here
  }
}

/**
 * A WebTransport stream starts with two QUIC variable-length integers: the
 * stream type 0x41 (sent as 0x40 0x41 by every browser) and the session ID,
 * whose first byte's top two bits give its length: 1, 2, 4 or 8 bytes.
 * Deno offers one session per connection, so any ID is ours.
 */
export async function skipWebTransportHeader(
  reader: ReadableStreamBYOBReader,
  buffer: ArrayBuffer,
): Promise<ArrayBuffer> {
  // `min`: wait until the view is full, however the bytes arrive.
  let { value } = await reader.read(new Uint8Array(buffer, 0, 3), { min: 3 });
  if (value?.length !== 3 || value[0] !== 0x40 || value[1] !== 0x41) {
    throw new Error("not a WebTransport stream");
  }
  const rest = (1 << (value[2] >> 6)) - 1;
  if (rest > 0) {
    const view = new Uint8Array(value.buffer, 0, rest); // not a 3-byte view
    ({ value } = await reader.read(view, { min: rest }));
  }
  if (!value) throw new Error("stream cancelled");
  return value.buffer;
}

if (import.meta.main) {
  await runCommand("quic_server.ts", async () => {
    const { values } = parseCommandLine(Deno.args, {
      usage: USAGE,
      options: {
        ...SERVER_TLS_OPTIONS,
        ...LISTEN.options,
        webtransport: { type: "boolean", default: false },
        "idle-timeout": { type: "string", default: `30` },
        "max-streams": { type: "string", default: `100` },
      },
    });
    if (!values.cert || !values.key) throw new UsageError(NO_CERT);
    const { "idle-timeout": idle, "max-streams": streams } = values;
    const { tls, ...listen } = await parseListen(values); // bad file: exit 1
    const options = {
      ...listen,
      ...tls!,
      webtransport: values.webtransport,
      idleTimeoutSeconds: parseSeconds(idle, "--idle-timeout"),
      maxStreams: parseInteger(streams, "--max-streams", 1),
    };
    return runUntilSignal(startQuicServer(options), "quic");
  });
}
