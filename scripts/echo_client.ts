/**
 * TCP echo client: sends its arguments (or stdin) to an echo server and
 * prints what comes back. With --count N it is a TCP ping: N round trips,
 * then the min/avg/max round-trip time.
 *
 * Run:    deno run --allow-net scripts/echo_client.ts hello world
 *         deno run --allow-net scripts/echo_client.ts < in.bin > out.bin
 *         deno run --allow-net scripts/echo_client.ts --count 5
 *         deno run --allow-net --allow-read=certs scripts/echo_client.ts --cacert certs/ca.pem hello
 * Try it: start scripts/echo_server.ts first (or any echo server: ncat -l 9999 -k -c cat)
 *
 * The tutorials' clients (000 §4.2, 002) send once and call recv(1024) once,
 * as if the reply had to arrive in one piece. TCP promises no such thing: a
 * reply can come in several reads. So this client half-closes ("nothing
 * more from me") and reads until the server closes, or, when pinging, until
 * exactly as many bytes came back as were sent; it sends and receives at
 * the same time, so a large input cannot deadlock; and every wait has a
 * limit (--timeout), so a silent server is one line on stderr, not a hang.
 *
 * Read first: echoOnce()
 */
import {
  Failure,
  parseCommandLine,
  parseInteger,
  parsePort,
  parseSeconds,
  runCommand,
} from "../lib/cli.ts";
import { seconds, withDeadline } from "../lib/deadline.ts";
import { dial } from "../lib/dial.ts";
import { isDisconnect } from "../lib/errors.ts";
import {
  closeQuietly,
  concat,
  copy,
  formatHostPort,
  type Traffic,
  writeAll,
} from "../lib/io.ts";
import {
  CLIENT_TLS_HELP,
  CLIENT_TLS_OPTIONS,
  loadClientTls,
} from "../lib/tls.ts";

const USAGE = `Usage: echo_client.ts [options] [WORD...]

Sends WORDs (joined by spaces, plus a newline) to an echo server and prints
the reply. With no WORDs, streams stdin to the server and the echo to stdout.

Options:
  --hostname HOST    server address (default 127.0.0.1)
  --port PORT        server port (default 9999)
  --count N          ping: N round trips of the message, then min/avg/max time
  --timeout SECONDS  limit for the connect, and for each reply to WORDs or a
                     ping (default 5; streaming stdin has no reply limit)
${CLIENT_TLS_HELP}
  -h, --help         show this help`;

export interface PingResult {
  times: number[]; // milliseconds per round trip
  min: number;
  avg: number;
  max: number;
}

/**
 * Sends `message` once and returns everything the server sent back: we
 * half-close after the message, the server echoes the rest and closes, and
 * that close is how we know the reply is complete.
 */
export async function echoOnce(
  conn: Deno.Conn,
  message: Uint8Array,
): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const collect = {
    write(bytes: Uint8Array) {
      chunks.push(bytes.slice());
      return Promise.resolve(bytes.length);
    },
  };
  const sending = (async () => {
    await writeAll(conn, message);
    await conn.closeWrite();
  })();
  const [, received] = await Promise.all([sending, copy(conn, collect)]);
  const reply = concat(chunks);
  if (received < message.length) {
    throw new Failure(
      `server closed after echoing ${received} of ${message.length} bytes`,
    );
  }
  if (received !== message.length || !reply.every((b, i) => b === message[i])) {
    // A TLS server answering plain text with an alert, say.
    throw new Failure(
      "the reply differs from what was sent: is it an echo server (TLS needs --tls)?",
    );
  }
  return reply;
}

/**
 * Streams stdin to the server and the echo to stdout, both at once: with a
 * large input, sending everything before reading would fill both sides'
 * buffers and deadlock.
 */
async function echoStdin(conn: Deno.Conn) {
  const sent: Traffic = { bytes: 0 }, received: Traffic = { bytes: 0 };
  const sending = copy(Deno.stdin, conn, sent)
    .then(() => conn.closeWrite())
    .catch((error) => {
      if (!isDisconnect(error)) throw error; // the count below says it
    });
  await Promise.all([sending, copy(conn, Deno.stdout, received)]);
  if (received.bytes < sent.bytes) {
    throw new Failure(
      `server closed after echoing ${received.bytes} of ${sent.bytes} bytes`,
    );
  }
}

/**
 * TCP ping: `count` round trips of `message`, timing each one; each must
 * complete within `timeoutSeconds`.
 */
export async function ping(
  conn: Deno.Conn,
  message: Uint8Array,
  count: number,
  onReply: (sequence: number, milliseconds: number) => void = () => {},
  timeoutSeconds = 5,
): Promise<PingResult> {
  const reply = new Uint8Array(message.length);
  const times: number[] = [];
  for (let sequence = 1; sequence <= count; sequence++) {
    const started = performance.now();
    await withDeadline(conn, timeoutSeconds * 1000, async () => {
      await writeAll(conn, message);
      let received = 0;
      while (received < reply.length) {
        const read = await conn.read(reply.subarray(received));
        if (read === null) throw new Failure("server closed the connection");
        received += read;
      }
    }, `no reply: timed out after ${seconds(timeoutSeconds * 1000)}`);
    const milliseconds = performance.now() - started;
    if (!reply.every((byte, index) => byte === message[index])) {
      throw new Failure(`reply ${sequence} differs from what was sent`);
    }
    times.push(milliseconds);
    onReply(sequence, milliseconds);
  }
  const total = times.reduce((sum, time) => sum + time, 0);
  return {
    times,
    min: Math.min(...times),
    avg: total / times.length,
    max: Math.max(...times),
  };
}

if (import.meta.main) {
  await runCommand("echo_client.ts", async () => {
    const { values, positionals } = parseCommandLine(Deno.args, {
      usage: USAGE,
      positionals: true,
      options: {
        hostname: { type: "string", default: "127.0.0.1" },
        port: { type: "string", default: "9999" },
        count: { type: "string" },
        timeout: { type: "string", default: "5" },
        ...CLIENT_TLS_OPTIONS,
      },
    });
    const port = parsePort(values.port);
    const count = values.count === undefined
      ? undefined
      : parseInteger(values.count, "--count", 1, 1_000_000);
    const timeoutMs = parseSeconds(values.timeout, "--timeout") * 1000;
    const tls = await loadClientTls(values);
    const target = formatHostPort(values.hostname, port);
    const conn = await dial({
      hostname: values.hostname,
      port,
      timeoutMs,
      tls,
    });
    try {
      if (count !== undefined) {
        const text = positionals.length > 0 ? positionals.join(" ") : "ping";
        const message = new TextEncoder().encode(text + "\n");
        const result = await ping(conn, message, count, (sequence, ms) => {
          console.log(
            `${message.length} bytes from ${target}: seq=${sequence} time=${
              ms.toFixed(3)
            } ms`,
          );
        }, timeoutMs / 1000);
        const { min, avg, max } = result;
        console.log(
          `${count} round trips, min/avg/max = ${min.toFixed(3)}/${
            avg.toFixed(3)
          }/${max.toFixed(3)} ms`,
        );
      } else if (positionals.length > 0) {
        const message = new TextEncoder().encode(positionals.join(" ") + "\n");
        const reply = await withDeadline(
          conn,
          timeoutMs,
          () => echoOnce(conn, message),
          `no reply: timed out after ${seconds(timeoutMs)}`,
        );
        await writeAll(Deno.stdout, reply);
      } else {
        await echoStdin(conn);
      }
    } finally {
      closeQuietly(conn);
    }
  });
}
