/**
 * QUIC echo server: every bidirectional stream a client opens is echoed back
 * byte for byte, and finished when the client finishes its side. With
 * --webtransport, browsers can be clients too (WebTransport, same UDP port).
 *
 * Run:    deno task cert   (once: makes certs/, a local CA and its localhost leaf)
 *         deno run --unstable-net --allow-net --allow-read=certs scripts/quic_server.ts --cert certs/localhost.pem --key certs/localhost.key
 * Try it: deno run --unstable-net --allow-net --allow-read=certs scripts/quic_client.ts --cacert certs/ca.pem hello
 *
 * Beyond the tutorials: 001 §5 names QUIC as still being standardised; it is
 * RFC 9000 (2021) and carries HTTP/3. The tutorials' TCP sockets send every
 * byte in the clear, for anyone on the path to read and change (000 §1 only
 * names SSL/TLS). QUIC always runs TLS 1.3 inside UDP datagrams: an observer
 * sees addresses, ports and sizes, not the bytes nor stream boundaries. One
 * connection carries many independent streams, each with its own half-close;
 * opening one costs no round trip, and a lost packet stalls only its own.
 *
 * Read first: echoStream
 */
import {
  Failure,
  parseCommandLine,
  parsePort,
  runCommand,
  UsageError,
} from "../lib/cli.ts";
import { describeError } from "../lib/errors.ts";
import { closeQuietly, formatAddress } from "../lib/net.ts";
import { runUntilSignal, type ServerHandle } from "../lib/server.ts";

export const DEFAULT_PORT = 4433;
export const ALPN = "echo"; // the protocol name a client asks for (ALPN)

const USAGE = `Usage: quic_server.ts --cert FILE --key FILE [options]

Echoes every QUIC stream back to its sender (ALPN "${ALPN}").

Options:
  --cert FILE             certificate chain, PEM ('deno task cert' makes one)
  --key FILE              its private key, PEM
  --hostname HOST         address to listen on (default 127.0.0.1; :: to expose)
  --port PORT             UDP port (default ${DEFAULT_PORT}; 0 picks a free port)
  --webtransport          also accept WebTransport sessions (HTTP/3, ALPN h3)
  -h, --help              show this help

Limits: 1000 connections (more are refused), 100 open streams each, and a
connection silent for 30 s is closed.`;

export interface QuicServerOptions {
  cert: string; // certificate chain, PEM text
  key: string; // its private key, PEM text
  hostname?: string;
  port?: number;
  webtransport?: boolean;
  idleTimeoutSeconds?: number;
  maxConnections?: number;
  maxStreams?: number; // per connection, open at once
}

export function startQuicServer(options: QuicServerOptions): ServerHandle {
  const idleMs = (options.idleTimeoutSeconds ?? 30) * 1000;
  const endpoint = new Deno.QuicEndpoint({
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port ?? DEFAULT_PORT,
  });
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
  let closing: Promise<void> | undefined;

  async function acceptLoop() {
    for await (const incoming of listener) { // ends when the endpoint closes
      if (connections.size >= (options.maxConnections ?? 1000)) {
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
      console.error(`handshake failed: ${describeError(error)}`);
    });
    if (!conn) return;
    const peer = formatAddress({ ...conn.remoteAddr, transport: "udp" });
    try {
      if (conn.protocol === "h3") await serveWebTransport(conn, idleMs);
      else await echoStreams(conn, false);
    } catch (error) {
      // Idle timeout, or the connection died; expected while closing.
      if (!closing) console.error(`${peer}: ${describeError(error)}`);
    } finally {
      closeQuietly(conn);
    }
  }

  function close(): Promise<void> {
    closing ??= (async () => {
      // Tells every client why (a CONNECTION_CLOSE frame), then stops.
      endpoint.close({ closeCode: 0, reason: "server shutting down" });
      await accepting.catch(() => {}); // then no connection can be added
      await Promise.allSettled([...connections]);
    })();
    return closing;
  }

  const accepting = acceptLoop();
  return {
    addr: { ...endpoint.addr, transport: "udp" },
    finished: accepting.then(close, close),
    close,
    [Symbol.asyncDispose]: close,
  };
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
    // The client reset the stream, stopped reading it, or left. Release both
    // directions so its writes fail now rather than stall.
    await Promise.allSettled([reader.cancel(), writer.abort()]);
  }
}

// A WebTransport session: Deno answers the browser's HTTP/3 SETTINGS and
// CONNECT request (status 200, any path), within `deadlineMs` or never.
async function serveWebTransport(conn: Deno.QuicConn, deadlineMs: number) {
  const timer = setTimeout(() => closeQuietly(conn), deadlineMs);
  const upgrading = Deno.upgradeWebTransport(conn);
  const session = await upgrading.finally(() => clearTimeout(timer));
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
async function skipWebTransportHeader(
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
    ({ value } = await reader.read(value.subarray(0, rest), { min: rest }));
  }
  if (!value) throw new Error("stream cancelled");
  return value.buffer;
}

if (import.meta.main) {
  await runCommand("quic_server.ts", async () => {
    const { values } = parseCommandLine(Deno.args, {
      usage: USAGE,
      options: {
        cert: { type: "string" },
        key: { type: "string" },
        hostname: { type: "string", default: "127.0.0.1" },
        port: { type: "string", default: String(DEFAULT_PORT) },
        webtransport: { type: "boolean", default: false },
      },
    });
    if (values.cert === undefined || values.key === undefined) {
      throw new UsageError(
        "--cert and --key are required: QUIC always encrypts (TLS 1.3). " +
          "Make a pair with 'deno task cert'",
      );
    }
    const server = startQuicServer({
      hostname: values.hostname,
      port: parsePort(values.port),
      webtransport: values.webtransport,
      cert: await Deno.readTextFile(values.cert),
      key: await Deno.readTextFile(values.key),
    });
    // runUntilSignal's type lists tcp, udp and http; QUIC is the same life
    // cycle on UDP with its own scheme.
    return runUntilSignal(server, "quic" as "udp");
  });
}
