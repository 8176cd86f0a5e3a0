/**
 * TCP client with time limits: connects, sends one line, prints the reply,
 * and gives up with a clear message if the connect or the reply takes too
 * long.
 *
 * Run:    deno run --allow-net scripts/timeout_client.ts [--timeout 1] hello
 * Try it: start scripts/echo_server.ts first (port 9999), or see a timeout
 *         with a server that never answers: nc -l 127.0.0.1 9999
 *
 * The tutorial's settimeout(1) covers every socket call with one number and
 * ends in an uncaught `socket.timeout` traceback that does not say what
 * timed out; and its single recv(1024) may return half a reply. Here the
 * connect and the reply each get their own --timeout, expiry is one line
 * naming which one (`connect timed out after 1 s`, `no reply: timed out
 * after 1 s`), exit 1.
 *
 * "The reply" is everything up to and including the first newline, or, if
 * the server closes first, whatever it sent. It is bounded at 64 KiB: a
 * longer reply without a newline is an error. The reply is printed as is,
 * followed by a newline if it lacks one.
 */
import {
  Failure,
  parseCommandLine,
  parsePort,
  parseSeconds,
  runCommand,
} from "../lib/cli.ts";
import { describeError } from "../lib/errors.ts";
import { closeQuietly, writeAll } from "../lib/net.ts";

export const DEFAULT_PORT = 9999; // the echo server's
export const MAX_REPLY = 64 * 1024;

const USAGE = `Usage: timeout_client.ts [options] [WORD...]

Connects, sends WORDs (joined by spaces, plus a newline; default "hello")
and prints the reply: the first line the server sends back.

Options:
  --hostname HOST    server address (default 127.0.0.1)
  --port PORT        server port (default ${DEFAULT_PORT}, the echo server)
  --timeout SECONDS  limit for the connect, and again for the reply (default 1)
  -h, --help         show this help`;

export type Connect = (
  options: Deno.ConnectOptions & { signal: AbortSignal },
) => Promise<Deno.TcpConn>;

export interface TimeoutClientOptions {
  hostname?: string;
  port?: number;
  /** Seconds allowed for the connect, and separately for the reply. */
  timeout?: number;
  /** How to connect (tests pass one that never completes). */
  connect?: Connect;
}

const NEWLINE = 0x0a;

/**
 * Connects, sends `message` and returns the reply. Throws Failure with a
 * one-line message on a timeout, refusal or a reply that is too long.
 */
export async function request(
  message: Uint8Array,
  options: TimeoutClientOptions = {},
): Promise<Uint8Array> {
  const hostname = options.hostname ?? "127.0.0.1";
  const port = options.port ?? DEFAULT_PORT;
  const seconds = options.timeout ?? 1;
  const connect: Connect = options.connect ?? Deno.connect;

  // Phase 1: the connect. AbortSignal.timeout cancels it for us.
  const connectLimit = AbortSignal.timeout(seconds * 1000);
  let conn: Deno.TcpConn;
  try {
    conn = await connect({ hostname, port, signal: connectLimit });
  } catch (error) {
    if (connectLimit.aborted) {
      throw new Failure(`connect timed out after ${seconds} s`);
    }
    const target = hostname.includes(":") ? `[${hostname}]` : hostname;
    throw new Failure(
      `cannot connect to ${target}:${port}: ${describeError(error)}`,
    );
  }

  // Phase 2: send and wait for the reply, with a fresh limit. When it
  // expires we close the connection, which makes the pending read or
  // write fail at once.
  let timedOut = false;
  const replyLimit = setTimeout(() => {
    timedOut = true;
    closeQuietly(conn);
  }, seconds * 1000);
  try {
    await writeAll(conn, message);
    return await readReply(conn);
  } catch (error) {
    if (timedOut) throw new Failure(`no reply: timed out after ${seconds} s`);
    if (error instanceof Failure) throw error;
    throw new Failure(`no reply: ${describeError(error)}`);
  } finally {
    clearTimeout(replyLimit);
    closeQuietly(conn);
  }
}

/** Reads up to the first newline (kept), or until the server closes. */
async function readReply(conn: Deno.TcpConn): Promise<Uint8Array> {
  const buffer = new Uint8Array(MAX_REPLY);
  let received = 0;
  while (received < buffer.length) {
    const count = await conn.read(buffer.subarray(received));
    if (count === null) break; // the server closed: that is the reply
    const newline = buffer.subarray(received, received + count).indexOf(
      NEWLINE,
    );
    if (newline >= 0) return buffer.slice(0, received + newline + 1);
    received += count;
  }
  if (received === buffer.length) {
    throw new Failure(`reply longer than ${MAX_REPLY} bytes without a newline`);
  }
  if (received === 0) {
    throw new Failure("no reply: the server closed the connection");
  }
  return buffer.slice(0, received);
}

if (import.meta.main) {
  await runCommand("timeout_client.ts", async () => {
    const { values, positionals } = parseCommandLine(Deno.args, {
      usage: USAGE,
      positionals: true,
      options: {
        hostname: { type: "string", default: "127.0.0.1" },
        port: { type: "string", default: String(DEFAULT_PORT) },
        timeout: { type: "string", default: "1" },
      },
    });
    const text = positionals.length > 0 ? positionals.join(" ") : "hello";
    const reply = await request(new TextEncoder().encode(text + "\n"), {
      hostname: values.hostname,
      port: parsePort(values.port),
      timeout: parseSeconds(values.timeout, "--timeout"),
    });
    await writeAll(Deno.stdout, reply);
    if (reply.at(-1) !== NEWLINE) {
      await writeAll(Deno.stdout, new Uint8Array([NEWLINE]));
    }
  });
}
