/**
 * QUIC echo client: sends its arguments (or stdin) on one QUIC stream and
 * prints the echo. With --count N it is a QUIC ping: N round trips, each on
 * a fresh stream of the same connection, then min/avg/max.
 *
 * Run:    deno run --unstable-net --allow-net --allow-read=certs scripts/quic_client.ts --cacert certs/ca.pem hello
 *         deno run --unstable-net --allow-net --allow-read=certs scripts/quic_client.ts --cacert certs/ca.pem --count 5
 * Try it: start scripts/quic_server.ts first (`deno task cert` makes certs/)
 *
 * The tutorials' client (000 §4.2) talks to whatever answers at the address,
 * in the clear. Here the handshake checks the server's certificate against
 * --cacert (or the public CAs) and against the name we dialled, before any
 * byte of ours is sent: a wrong CA or a name the certificate does not list is
 * one line and exit 1. UDP has no "connection refused": a port with nothing
 * on it looks exactly like a silent server, so every wait has a limit
 * (--timeout), the connect included.
 *
 * Read first: echoOnce
 */
import { Failure, parseCommandLine, parseInteger } from "../lib/cli.ts";
import { parsePort, parseSeconds, requireUnstableNet } from "../lib/cli.ts";
import { runCommand } from "../lib/cli.ts";
import { raceTimeout, seconds, TIMED_OUT } from "../lib/deadline.ts";
import { withDeadline } from "../lib/deadline.ts";
import { DialError } from "../lib/dial.ts";
import { classifyError, describeError } from "../lib/errors.ts";
import { closeQuietly, formatHostPort, writeAll } from "../lib/io.ts";
import { loadClientTls } from "../lib/tls.ts";

const ALPN = "echo";

const USAGE = `Usage: quic_client.ts [options] [WORD...]

Sends WORDs (joined by spaces, plus a newline) on one QUIC stream to an echo
server and prints the reply. With no WORDs, streams stdin and prints the echo.

Options:
  --hostname HOST    server name or address (default 127.0.0.1); the server's
                     certificate must list it
  --port PORT        server UDP port (default 4433)
  --cacert FILE      trust the CA in FILE (PEM), e.g. certs/ca.pem
  --count N          ping: N round trips, each on a new stream, then min/avg/max
  --timeout SECONDS  limit for the connect, and for each reply to WORDs or a
                     ping (default 5; streaming stdin has no reply limit)
  -h, --help         show this help`;

export interface QuicTarget {
  hostname: string;
  port: number;
  caCerts?: string[]; // CAs (PEM) to trust besides the public ones
  timeoutSeconds?: number;
}

/**
 * Connects within the time limit, or throws DialError worded as every
 * client's "cannot connect" (lib/dial.ts). connectQuic takes no AbortSignal,
 * so it runs on an endpoint of our own, and closing that endpoint abandons
 * it. (UDP has no "refused": nothing listening looks like a silent server.)
 */
export async function connect(target: QuicTarget): Promise<Deno.QuicConn> {
  requireUnstableNet();
  const { hostname, port } = target;
  const ms = (target.timeoutSeconds ?? 5) * 1000;
  const ipv4 = /^[\d.]+$/.test(hostname);
  const endpoint = new Deno.QuicEndpoint({ hostname: ipv4 ? "0.0.0.0" : "::" });
  const connecting = async () =>
    await Deno.connectQuic<false>({
      endpoint,
      hostname,
      port,
      alpnProtocols: [ALPN],
      caCerts: target.caCerts,
      maxIdleTimeout: 30_000,
      keepAliveInterval: 10_000, // keeps a quiet stdin session alive
    });
  try {
    const late = `timed out after ${seconds(ms)} (nothing listening?)`;
    return await withDeadline(endpoint, ms, connecting, late);
  } catch (error) {
    closeQuietly(endpoint);
    const { kind, text } = classifyError(error); // the one error table
    throw new DialError(formatHostPort(hostname, port), text, kind);
  }
}

/**
 * The lesson: one exchange on one new stream. We send the message, then
 * finish our side (FIN) to say "that is all"; the server echoes and finishes
 * its side, and only then is the reply known to be whole. Other streams of
 * the connection are not held up meanwhile.
 */
export async function echoOnce(
  conn: Deno.QuicConn,
  message: Uint8Array,
): Promise<Uint8Array> {
  const stream = await conn.createBidirectionalStream();
  const writer = stream.writable.getWriter();
  // Read while still writing: a large message would otherwise fill both
  // directions' flow-control windows and stall.
  const [reply] = await Promise.all([
    readReply(stream.readable, message.length),
    writer.write(message).then(() => writer.close()),
  ]);
  return reply;
}

// An echo's reply is exactly as long as the message: read that much into
// one buffer (a spare byte catches a longer reply), then expect the FIN.
async function readReply(readable: ReadableStream<Uint8Array>, size: number) {
  const reader = readable.getReader({ mode: "byob" });
  let buffer = new ArrayBuffer(size + 1);
  let received = 0;
  while (true) {
    const { value, done } = await reader.read(new Uint8Array(buffer, received));
    buffer = value!.buffer; // ours again, even at the end
    if (done) break;
    received += value.length;
    if (received > size) throw new Failure("reply longer than the message");
  }
  if (received < size) {
    throw new Failure(`the reply ended after ${received} of ${size} bytes`);
  }
  return new Uint8Array(buffer, 0, size);
}

/** QUIC ping: `count` exchanges of `message`, each within `seconds`. */
export async function ping(
  conn: Deno.QuicConn,
  message: Uint8Array,
  count: number,
  onReply: (sequence: number, milliseconds: number) => void = () => {},
  seconds = 5,
) {
  const times: number[] = [];
  for (let sequence = 1; sequence <= count; sequence++) {
    const started = performance.now();
    const reply = await within(conn, seconds, () => echoOnce(conn, message));
    const milliseconds = performance.now() - started;
    if (!reply.every((byte, index) => byte === message[index])) {
      throw new Failure(`reply ${sequence} differs from what was sent`);
    }
    times.push(milliseconds);
    onReply(sequence, milliseconds);
  }
  const avg = times.reduce((sum, time) => sum + time, 0) / times.length;
  return { times, min: Math.min(...times), avg, max: Math.max(...times) };
}

// Runs `exchange` within `limit` seconds (if given): then the connection is closed,
// failing whatever waits on it. A failed read says only "connection lost":
// the server's close frame says why, so that is what we report.
async function within<T>(
  conn: Deno.QuicConn,
  limit: number | undefined,
  exchange: () => Promise<T>,
): Promise<T> {
  const closer = {
    close: () => conn.close({ closeCode: 0, reason: "timeout" }),
  };
  try {
    if (limit === undefined) return await exchange();
    const late = `no reply: timed out after ${seconds(limit * 1000)}`;
    return await withDeadline(closer, limit * 1000, exchange, late);
  } catch (error) {
    if (error instanceof Failure) throw error;
    const closed = await raceTimeout(conn.closed.catch(() => undefined), 100);
    if (closed === TIMED_OUT || !closed) {
      throw new Failure(describeError(error));
    }
    throw new Failure(`the server closed the connection: ${closed.reason}`);
  }
}

/** Streams stdin on one stream and the echo to stdout, both at once. */
async function echoStdin(conn: Deno.QuicConn) {
  const stream = await conn.createBidirectionalStream();
  await Promise.all([
    Deno.stdin.readable.pipeTo(stream.writable), // ends with our FIN
    stream.readable.pipeTo(Deno.stdout.writable, { preventClose: true }),
  ]);
}

if (import.meta.main) {
  await runCommand("quic_client.ts", async () => {
    const { values, positionals } = parseCommandLine(Deno.args, {
      usage: USAGE,
      positionals: true,
      options: {
        hostname: { type: "string", default: "127.0.0.1" },
        port: { type: "string", default: "4433" },
        cacert: { type: "string" },
        count: { type: "string" },
        timeout: { type: "string", default: "5" },
      },
    });
    const { hostname, cacert } = values;
    const port = parsePort(values.port);
    const count = values.count === undefined
      ? undefined
      : parseInteger(values.count, "--count", 1, 1_000_000);
    const timeoutSeconds = parseSeconds(values.timeout, "--timeout");
    const caCerts = (await loadClientTls({ cacert }))?.caCerts;
    const conn = await connect({ hostname, port, caCerts, timeoutSeconds });
    try {
      const text = positionals.length > 0 ? positionals.join(" ") : "ping";
      const message = new TextEncoder().encode(text + "\n");
      const once = () => echoOnce(conn, message);
      if (count !== undefined) {
        const target = formatHostPort(hostname, port);
        const ms = (milliseconds: number) => milliseconds.toFixed(3);
        const result = await ping(conn, message, count, (sequence, time) => {
          const size = message.length;
          console.log(
            `${size} bytes from ${target}: seq=${sequence} time=${ms(time)} ms`,
          );
        }, timeoutSeconds);
        const stats = [result.min, result.avg, result.max].map(ms).join("/");
        console.log(`${count} round trips, min/avg/max = ${stats} ms`);
      } else if (positionals.length > 0) {
        await writeAll(Deno.stdout, await within(conn, timeoutSeconds, once));
      } else {
        await within(conn, undefined, () => echoStdin(conn));
      }
    } finally {
      // Without an explicit close the server notices only at its idle timeout.
      conn.close({ closeCode: 0, reason: "done" });
      closeQuietly(conn.endpoint);
    }
  });
}
