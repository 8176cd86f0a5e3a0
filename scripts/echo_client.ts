/**
 * TCP echo client: sends its arguments (or stdin) to an echo server and
 * prints what comes back. With --count N it is a TCP ping: N round trips,
 * then the min/avg/max round-trip time.
 *
 * Run:    deno run --allow-net scripts/echo_client.ts hello world
 *         deno run --allow-net scripts/echo_client.ts < in.bin > out.bin
 *         deno run --allow-net scripts/echo_client.ts --count 5
 * Try it: start scripts/echo_server.ts first (or any echo server: ncat -l 9999 -k -c cat)
 *
 * The tutorial sends one message and calls recv(1024) once, hoping the whole
 * reply arrives in one piece. TCP promises no such thing, so this client
 * reads until the server closes (after our half-close), or, when pinging,
 * until exactly as many bytes came back as were sent. And it waits with a
 * limit (--timeout): for the connect, and for each reply to WORDs or a ping,
 * so a silent server is one line on stderr and exit 1, not a hang.
 */
import {
  Failure,
  parseCommandLine,
  parseInteger,
  parsePort,
  parseSeconds,
  runCommand,
} from "../lib/cli.ts";
import { describeError } from "../lib/errors.ts";
import { closeQuietly, writeAll } from "../lib/net.ts";
import type { Reader } from "../lib/lines.ts";

const USAGE = `Usage: echo_client.ts [options] [WORD...]

Sends WORDs (joined by spaces, plus a newline) to an echo server and prints
the reply. With no WORDs, streams stdin to the server and the echo to stdout.

Options:
  --hostname HOST    server address (default 127.0.0.1)
  --port PORT        server port (default 9999)
  --count N          ping: N round trips of the message, then min/avg/max time
  --timeout SECONDS  limit for the connect, and for each reply to WORDs or a
                     ping (default 5; streaming stdin has no reply limit)
  -h, --help         show this help`;

export interface PingResult {
  times: number[]; // milliseconds per round trip
  min: number;
  avg: number;
  max: number;
}

/** Sends `message` once and returns everything the server sent back. */
export async function echoOnce(
  conn: Deno.TcpConn,
  message: Uint8Array,
): Promise<Uint8Array> {
  await writeAll(conn, message);
  // Half-close: "that is all I will send". The server echoes the rest and
  // closes, which is how we know the reply is complete.
  await conn.closeWrite();
  const chunks: Uint8Array[] = [];
  await copy(conn, {
    write(bytes) {
      chunks.push(bytes.slice());
      return Promise.resolve(bytes.length);
    },
  });
  return concat(chunks);
}

/** Copies a stream of bytes through one reused buffer until end of input. */
async function copy(
  from: Reader,
  to: { write(bytes: Uint8Array): Promise<number> },
) {
  const buffer = new Uint8Array(64 * 1024);
  while (true) {
    const count = await from.read(buffer);
    if (count === null) return;
    await writeAll(to, buffer.subarray(0, count));
  }
}

/** Streams stdin to the server and the echo to stdout, both at once. */
async function echoStdin(conn: Deno.TcpConn) {
  const sending = (async () => {
    await copy(Deno.stdin, conn);
    await conn.closeWrite();
  })();
  // Receive while still sending: with a large input, waiting until all is
  // sent would fill both sides' buffers and deadlock.
  await Promise.all([sending, copy(conn, Deno.stdout)]);
}

/**
 * TCP ping: `count` round trips of `message`, timing each one; each must
 * complete within `timeoutSeconds`.
 */
export async function ping(
  conn: Deno.TcpConn,
  message: Uint8Array,
  count: number,
  onReply: (sequence: number, milliseconds: number) => void = () => {},
  timeoutSeconds = 5,
): Promise<PingResult> {
  const reply = new Uint8Array(message.length);
  const times: number[] = [];
  for (let sequence = 1; sequence <= count; sequence++) {
    const started = performance.now();
    await withinTimeout(conn, timeoutSeconds, async () => {
      await writeAll(conn, message);
      let received = 0;
      while (received < reply.length) {
        const read = await conn.read(reply.subarray(received));
        if (read === null) throw new Failure("server closed the connection");
        received += read;
      }
    });
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

function concat(chunks: Uint8Array[]): Uint8Array {
  const result = new Uint8Array(chunks.reduce((sum, c) => sum + c.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    result.set(chunk, offset);
    offset += chunk.length;
  }
  return result;
}

/**
 * Runs `exchange` on `conn` within `seconds`. When time runs out the
 * connection is closed, which makes the pending read or write fail at once;
 * that failure is reported as the timeout it really is.
 */
async function withinTimeout<T>(
  conn: Deno.TcpConn,
  seconds: number,
  exchange: () => Promise<T>,
): Promise<T> {
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    closeQuietly(conn);
  }, seconds * 1000);
  try {
    return await exchange();
  } catch (error) {
    if (timedOut) throw new Failure(`no reply: timed out after ${seconds} s`);
    throw error;
  } finally {
    clearTimeout(timer);
  }
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
      },
    });
    const port = parsePort(values.port);
    const count = values.count === undefined
      ? undefined
      : parseInteger(values.count, "--count", 1, 1_000_000);
    const seconds = parseSeconds(values.timeout, "--timeout");
    // An IPv6 address in brackets, as in URLs: "[::1]:9999", not "::1:9999".
    const target = values.hostname.includes(":")
      ? `[${values.hostname}]:${port}`
      : `${values.hostname}:${port}`;
    let conn: Deno.TcpConn;
    try {
      conn = await Deno.connect({
        hostname: values.hostname,
        port,
        signal: AbortSignal.timeout(seconds * 1000),
      });
    } catch (error) {
      const reason = error instanceof DOMException &&
          error.name === "TimeoutError"
        ? `timed out after ${seconds} s`
        : describeError(error);
      throw new Failure(`cannot connect to ${target}: ${reason}`);
    }
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
        }, seconds);
        console.log(
          `${count} round trips, min/avg/max = ${result.min.toFixed(3)}/${
            result.avg.toFixed(3)
          }/${result.max.toFixed(3)} ms`,
        );
      } else if (positionals.length > 0) {
        const message = new TextEncoder().encode(positionals.join(" ") + "\n");
        const reply = await withinTimeout(
          conn,
          seconds,
          () => echoOnce(conn, message),
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
