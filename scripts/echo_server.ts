/**
 * TCP echo server (RFC 862): sends back every byte it receives, unchanged,
 * to many clients at once; with --cert/--key, over TLS.
 *
 * Run:    deno run --allow-net scripts/echo_server.ts [--port 9999]
 *         deno run --allow-net --allow-read=certs scripts/echo_server.ts --cert certs/localhost.pem --key certs/localhost.key
 * Try it: nc 127.0.0.1 9999        (type a line, see it come back)
 *    or:  deno run --allow-net scripts/echo_client.ts hello
 *    or:  openssl s_client -quiet -connect 127.0.0.1:9999   (with TLS)
 *
 * The tutorial's loop (001, socket steps 5–6) calls recv(1024), sends the
 * bytes back with sendall() and serves one client until it leaves. Here each
 * client is its own task, so one idle client blocks nobody; bytes go back as
 * they come, any size, binary-safe; when the client half-closes we finish
 * echoing, then close. A silent client is dropped after --idle-timeout.
 * Plain sockets show everything to anyone on the path; with TLS only the
 * two ends read it.
 *
 * Read first: echo()
 */
import { parseCommandLine, parseSeconds, runCommand } from "../lib/cli.ts";
import { Sweeper } from "../lib/deadline.ts";
import { closeQuietly, copy, type Traffic } from "../lib/io.ts";
import { listenOptions, parseListen, runUntilSignal } from "../lib/server.ts";
import { type ServerHandle, type ServerTls, serveTcp } from "../lib/server.ts";
import { SERVER_TLS_HELP, SERVER_TLS_OPTIONS } from "../lib/tls.ts";

export const DEFAULT_PORT = 9999;
/** Five minutes: long enough for a person typing into nc, short enough
 * that forgotten connections do not pile up. */
export const DEFAULT_IDLE_TIMEOUT_SECONDS = 300;
const LISTEN = listenOptions(DEFAULT_PORT);

const USAGE = `Usage: echo_server.ts [options]

Echoes every byte back to its sender (RFC 862 over TCP, or TLS).

Options:
${LISTEN.help}
  --idle-timeout SECONDS  close a connection with no bytes either way for this
                          long (default ${DEFAULT_IDLE_TIMEOUT_SECONDS}; 0 = never)
${SERVER_TLS_HELP}
  -h, --help              show this help`;

export interface EchoServerOptions {
  hostname?: string;
  port?: number;
  /** Seconds without traffic before a connection is closed (0: never). */
  idleTimeout?: number;
  maxConnections?: number;
  maxPerAddress?: number;
  tls?: ServerTls;
  handshakeTimeoutMs?: number;
  /** Where refusals and failed handshakes are logged (default: stderr). */
  log?: (line: string) => void;
}

export function startEchoServer(options: EchoServerOptions = {}): ServerHandle {
  const idleMs = (options.idleTimeout ?? DEFAULT_IDLE_TIMEOUT_SECONDS) * 1000;
  // One timer watches every connection's byte count (see lib/deadline.ts).
  const sweeper = Sweeper.forTimeout(idleMs);
  return serveTcp({
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port ?? DEFAULT_PORT,
    tls: options.tls,
    handshakeTimeoutMs: options.handshakeTimeoutMs,
    log: options.log,
    maxConnections: options.maxConnections,
    maxPerAddress: options.maxPerAddress,
  }, async (conn) => {
    const traffic: Traffic = { bytes: 0 };
    const idle = idleMs > 0
      ? sweeper.idle(traffic, idleMs, () => closeQuietly(conn))
      : undefined;
    try {
      await echo(conn, traffic);
    } finally {
      if (idle) sweeper.remove(idle);
    }
  });
}

/**
 * The whole service: copy the connection to itself. copy() reads whatever
 * has arrived (a byte, or 64 KiB) and writes all of it back before reading
 * again, so a client that stops reading stops us reading from it too: it
 * fills its own buffers, nobody else's. `traffic` counts the bytes for the
 * idle timeout.
 */
async function echo(conn: Deno.Conn, traffic: Traffic) {
  await copy(conn, conn, traffic);
  // The client half-closed and everything it sent is back: we are done too.
  await conn.closeWrite();
}

if (import.meta.main) {
  await runCommand("echo_server.ts", async () => {
    const { values } = parseCommandLine(Deno.args, {
      usage: USAGE,
      options: {
        ...LISTEN.options,
        "idle-timeout": {
          type: "string",
          default: String(DEFAULT_IDLE_TIMEOUT_SECONDS),
        },
        ...SERVER_TLS_OPTIONS,
      },
    });
    const listen = await parseListen(values);
    const server = startEchoServer({
      ...listen,
      idleTimeout: parseSeconds(values["idle-timeout"], "--idle-timeout", true),
    });
    return runUntilSignal(server, listen.tls ? "tls" : "tcp");
  });
}
