/**
 * TCP proxy: accepts clients and forwards each one's bytes to a fixed target
 * and the target's bytes back, both ways at once, until both sides are done.
 *
 * Run:    deno run --allow-net scripts/tcp_proxy.ts --target 127.0.0.1:9999 [--port 9000]
 * Try it: nc 127.0.0.1 9000        (with scripts/echo_server.ts as the target)
 *
 * The tutorials "configure a proxy" by pointing a client at one; this is the
 * other end. A naive forwarder reads from the client, writes to the target,
 * reads the reply: one direction at a time, so any protocol where the server
 * speaks first or both sides talk at once hangs. Here each direction is its
 * own copy loop; a half-close (shutdown of one side's sending) is passed on
 * instead of tearing the whole connection down; an unreachable target closes
 * the client's connection after --connect-timeout instead of leaving it
 * hanging; and every connection ends with one log line of byte counts.
 *
 * One limit to know: when one side resets (RST), the proxy can only close
 * the other side, which sends an ordinary FIN. Deno cannot send a reset on
 * purpose (no SO_LINGER), so a protocol that marks the end of its data by
 * closing cannot tell a cut-off transfer from a complete one through this
 * proxy. The log line says "connection reset" when that happened.
 */
import {
  parseCommandLine,
  parseHostAndPort,
  parsePort,
  parseSeconds,
  runCommand,
  UsageError,
} from "../lib/cli.ts";
import { describeError } from "../lib/errors.ts";
import { closeQuietly, formatAddress, writeAll } from "../lib/net.ts";
import { runUntilSignal, type ServerHandle, serveTcp } from "../lib/server.ts";

export const DEFAULT_PORT = 9000;

const USAGE = `Usage: tcp_proxy.ts --target HOST:PORT [options]

Forwards every client connection to HOST:PORT ([v6]:port for IPv6) and the
replies back. Logs one line per connection to stderr when it closes:
client address, bytes up (client to target) and down, duration.

Options:
  --target HOST:PORT         where to forward to (required)
  --hostname HOST            address to listen on (default 127.0.0.1; 0.0.0.0 or :: to expose)
  --port PORT                port to listen on (default ${DEFAULT_PORT}; 0 picks a free port)
  --connect-timeout SECONDS  give up on reaching the target after this long (default 5)
  --idle-timeout SECONDS     close a connection after this long with no bytes either
                             way (default: never)
  -h, --help                 show this help`;

export interface TcpProxyOptions {
  target: { hostname: string; port: number };
  hostname?: string;
  port?: number;
  /** Default 5000. */
  connectTimeoutMs?: number;
  /** Close after this long without traffic; default: no limit. */
  idleTimeoutMs?: number;
  /** Where the per-connection lines go (default: stderr). */
  log?: (line: string) => void;
}

/** Traffic per connection, updated by the copy loops. */
interface Traffic {
  up: number; // bytes client → target
  down: number; // bytes target → client
  lastMoved: number; // performance.now() of the latest chunk either way
}

export function startTcpProxy(options: TcpProxyOptions): ServerHandle {
  const { target } = options;
  const targetName = formatAddress({ transport: "tcp", ...target });
  const connectTimeoutMs = options.connectTimeoutMs ?? 5000;
  const log = options.log ?? ((line: string) => console.error(line));

  return serveTcp({
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port ?? DEFAULT_PORT,
  }, async (client, shutdown) => {
    const started = performance.now();
    const clientName = formatAddress(client.remoteAddr);
    const seconds = () => ((performance.now() - started) / 1000).toFixed(3);

    let upstream: Deno.TcpConn;
    try {
      upstream = await Deno.connect({
        ...target,
        // Either limit ends the attempt: the connect timeout, or the proxy
        // shutting down while the target is slow to answer.
        signal: AbortSignal.any([
          AbortSignal.timeout(connectTimeoutMs),
          shutdown,
        ]),
      });
    } catch (error) {
      const reason = error instanceof DOMException &&
          error.name === "TimeoutError"
        ? `timed out after ${connectTimeoutMs / 1000} s`
        : shutdown.aborted
        ? "proxy shutting down"
        : describeError(error);
      // Returning closes the client's connection (serveTcp does it), so the
      // client learns at once instead of waiting on a silent socket.
      log(`${clientName}: cannot reach ${targetName}: ${reason}`);
      return;
    }
    // Forward small writes at once, as serveTcp does for the client side:
    // Nagle's algorithm on this leg would add up to 40 ms per exchange.
    upstream.setNoDelay(true);

    // serveTcp closes the client connections on shutdown; the upstream side
    // is ours to close. Closing either socket ends the copy loops reading it.
    const closeBoth = () => {
      closeQuietly(client);
      closeQuietly(upstream);
    };
    shutdown.addEventListener("abort", closeBoth);

    const traffic: Traffic = { up: 0, down: 0, lastMoved: performance.now() };
    let ending = "closed";
    const stopIdleTimer = options.idleTimeoutMs
      ? watchIdle(traffic, options.idleTimeoutMs, () => {
        ending = "idle timeout";
        closeBoth();
      })
      : () => {};
    // A reset (or any failure) in one direction ends both: the other side
    // would otherwise wait forever for bytes that can no longer be relayed.
    // (It sees a plain close, not a reset: see the note at the top.)
    const fail = (error: unknown) => {
      if (ending === "closed") {
        ending = shutdown.aborted
          ? "proxy shutting down"
          : describeError(error);
      }
      closeBoth();
    };
    await Promise.all([
      copyThenHalfClose(client, upstream, (bytes) => {
        traffic.up += bytes;
        traffic.lastMoved = performance.now();
      }).catch(fail),
      copyThenHalfClose(upstream, client, (bytes) => {
        traffic.down += bytes;
        traffic.lastMoved = performance.now();
      }).catch(fail),
    ]);

    stopIdleTimer();
    shutdown.removeEventListener("abort", closeBoth);
    closeBoth();
    log(
      `${clientName} <-> ${targetName}: ${ending} after ${seconds()} s, ` +
        `${traffic.up} bytes up, ${traffic.down} bytes down`,
    );
  });
}

/**
 * Copies `from` to `to` through one reused buffer until `from` reaches end
 * of input, then half-closes `to`: "no more bytes from this side", while
 * the other direction may still be sending. The await on each write is the
 * back-pressure: a slow reader slows its sender, and memory stays at one
 * buffer per direction.
 */
async function copyThenHalfClose(
  from: Deno.Conn,
  to: Deno.Conn,
  counted: (bytes: number) => void,
) {
  const buffer = new Uint8Array(64 * 1024);
  while (true) {
    const count = await from.read(buffer);
    if (count === null) break;
    await writeAll(to, buffer.subarray(0, count));
    counted(count);
  }
  await to.closeWrite();
}

/**
 * Calls `onIdle` once no byte has moved for `idleMs`. The timer wakes at
 * the earliest moment the connection could be idle and looks at when bytes
 * last moved, instead of being reset on every chunk, which would cost more
 * than the copy itself on a busy connection.
 */
function watchIdle(traffic: Traffic, idleMs: number, onIdle: () => void) {
  let timer: ReturnType<typeof setTimeout>;
  const check = () => {
    const left = traffic.lastMoved + idleMs - performance.now();
    if (left <= 0) return onIdle();
    timer = setTimeout(check, left);
  };
  timer = setTimeout(check, idleMs);
  return () => clearTimeout(timer);
}

if (import.meta.main) {
  await runCommand("tcp_proxy.ts", () => {
    const { values } = parseCommandLine(Deno.args, {
      usage: USAGE,
      options: {
        target: { type: "string" },
        hostname: { type: "string", default: "127.0.0.1" },
        port: { type: "string", default: String(DEFAULT_PORT) },
        "connect-timeout": { type: "string", default: "5" },
        "idle-timeout": { type: "string" },
      },
    });
    if (values.target === undefined) {
      throw new UsageError("--target HOST:PORT is required");
    }
    const idle = values["idle-timeout"];
    const server = startTcpProxy({
      target: parseHostAndPort(values.target, "--target"),
      hostname: values.hostname,
      port: parsePort(values.port),
      connectTimeoutMs: parseSeconds(
        values["connect-timeout"],
        "--connect-timeout",
      ) * 1000,
      idleTimeoutMs: idle === undefined
        ? undefined
        : parseSeconds(idle, "--idle-timeout") * 1000,
    });
    return runUntilSignal(server, "tcp");
  });
}
