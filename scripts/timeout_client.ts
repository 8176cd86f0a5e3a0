/**
 * TCP client with two time limits: connects, sends one line, prints the
 * first line of the reply, and gives up in one line naming what was late.
 *
 * Run:    deno run --allow-net scripts/timeout_client.ts [--timeout 1] hello
 *         deno run --allow-net --allow-read=certs scripts/timeout_client.ts --cacert certs/ca.pem hi
 * Try it: start scripts/echo_server.ts first (port 9999), or see a timeout
 *         with a server that never answers: nc -l 127.0.0.1 9999
 *
 * The tutorial (000 §4.5) calls settimeout(1) once, so each call (connect,
 * sendall, recv) gets 1 s, and its one `except socket.timeout` prints the
 * same "Connection timed out." whichever call it was; a refused connect is
 * not caught (a traceback), and its single recv(1024) may hold part of the
 * reply, or end inside a UTF-8 character so that decode() raises. Here the
 * connect (name lookup and TLS handshake included) and the reply are two
 * limits of --timeout each; on expiry one line says which one
 * (`connect timed out after 1 s`, `no reply: timed out after 1 s`), exit 1.
 * "The reply" is everything up to the first newline, or, if the server
 * closes first, whatever it sent; at most 64 KiB. It is printed as bytes,
 * escaped when stdout is a terminal (lib/terminal.ts's writeReply).
 *
 * Read first: request()
 */
import {
  Failure,
  parseCommandLine,
  parsePort,
  parseSeconds,
  runCommand,
} from "../lib/cli.ts";
import { seconds, withDeadline } from "../lib/deadline.ts";
import { dial, type DialOptions } from "../lib/dial.ts";
import { classifyError, describeError } from "../lib/errors.ts";
import { closeQuietly, writeAll } from "../lib/io.ts";
import { writeReply } from "../lib/terminal.ts";
import {
  CLIENT_TLS_HELP,
  CLIENT_TLS_OPTIONS,
  type ClientTls,
  loadClientTls,
} from "../lib/tls.ts";

export const DEFAULT_PORT = 9999; // the echo server's
export const MAX_REPLY = 64 * 1024;

const USAGE = `Usage: timeout_client.ts [options] [WORD...]

Connects, sends WORDs (joined by spaces, plus a newline; default "hello")
and prints the reply: the first line the server sends back.

Options:
  --hostname HOST    server address (default 127.0.0.1)
  --port PORT        server port (default ${DEFAULT_PORT}, the echo server)
  --timeout SECONDS  limit for the connect, and again for the reply (default 1)
${CLIENT_TLS_HELP}
  -h, --help         show this help`;

/** How to connect: lib/dial.ts's dial(), or a stand-in (tests). */
export type Connect = (
  options: DialOptions & { signal: AbortSignal },
) => Promise<Deno.Conn>;

export interface TimeoutClientOptions {
  hostname?: string;
  port?: number;
  /** Seconds allowed for the connect, and separately for the reply. */
  timeout?: number;
  /** Speak TLS (lib/tls.ts's loadClientTls makes this from --tls, --cacert). */
  tls?: ClientTls;
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
  const limitMs = (options.timeout ?? 1) * 1000;
  const connect = options.connect ?? dial;

  // Limit 1: the connect. dial() gives up after limitMs and words every
  // failure "cannot connect to HOST:PORT: why"; a timeout we say our way.
  // (The signal lets a stand-in connect stop on time too.)
  let conn: Deno.Conn;
  try {
    conn = await connect({
      hostname,
      port,
      timeoutMs: limitMs,
      tls: options.tls,
      signal: AbortSignal.timeout(limitMs),
    });
  } catch (error) {
    if (classifyError(error).kind !== "timeout") throw error;
    throw new Failure(`connect timed out after ${seconds(limitMs)}`, "timeout");
  }

  // Limit 2: a fresh limitMs for sending and for the reply. A read has no
  // timeout of its own: withDeadline closes the connection when time is up,
  // which ends the pending read (or write) at once.
  try {
    return await withDeadline(conn, limitMs, async () => {
      await writeAll(conn, message);
      return await readReply(conn);
    }, `no reply: timed out after ${seconds(limitMs)}`);
  } catch (error) {
    if (error instanceof Failure) throw error;
    throw new Failure(`no reply: ${describeError(error)}`);
  } finally {
    closeQuietly(conn);
  }
}

/** Reads up to the first newline (kept), or until the server closes. */
async function readReply(conn: Deno.Conn): Promise<Uint8Array> {
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
        ...CLIENT_TLS_OPTIONS,
      },
    });
    const text = positionals.length > 0 ? positionals.join(" ") : "hello";
    const reply = await request(new TextEncoder().encode(text + "\n"), {
      hostname: values.hostname,
      port: parsePort(values.port),
      timeout: parseSeconds(values.timeout, "--timeout"),
      tls: await loadClientTls(values),
    });
    await writeReply(reply);
  });
}
