/**
 * TCP proxy (a port forwarder): accepts clients and relays each one's bytes
 * to one fixed target and the target's bytes back, both ways at once. It can
 * add or remove TLS on either side: stunnel's job.
 *
 * Run:    deno run --allow-net scripts/tcp_proxy.ts --target 127.0.0.1:9999 [--port 9000]
 *         deno run --allow-net --allow-read=certs scripts/tcp_proxy.ts --target 127.0.0.1:8000 --cert certs/localhost.pem --key certs/localhost.key
 *         deno run --allow-net --allow-read=certs scripts/tcp_proxy.ts --target localhost:9999 --target-cacert certs/ca.pem
 * Try it: nc 127.0.0.1 9000        (with scripts/echo_server.ts as the target)
 *
 * Not the HTTP proxy that 001 §3 (item 5) hands to `requests`: that one
 * reads each request to learn where it goes. This one never looks at the
 * bytes, so it carries any protocol, always to its one --target. A naive
 * relay reads from the client, writes to the target, then reads the reply:
 * one direction at a time, so a protocol where the server speaks first, or
 * both sides at once, hangs. Here each direction is its own copy loop, and
 * a half-close is passed on instead of tearing the connection down. With
 * --cert/--key clients speak TLS to it (TLS in front of a plain server);
 * with --target-tls it speaks TLS to the target (a plain client reaches a
 * TLS server). A reset can only be passed on as a plain close.
 *
 * Read first: relay()
 */
import {
  parseCommandLine,
  parseHostAndPort,
  parseSeconds,
  runCommand,
  UsageError,
} from "../lib/cli.ts";
import { sleep, Sweeper } from "../lib/deadline.ts";
import { dial, DialError } from "../lib/dial.ts";
import { describeError } from "../lib/errors.ts";
import { closeQuietly, copy, formatHostPort, type Traffic } from "../lib/io.ts";
import { type ClientTls, loadClientTls } from "../lib/tls.ts";
import { SERVER_TLS_HELP, SERVER_TLS_OPTIONS } from "../lib/tls.ts";
import { listenOptions, parseListen, runUntilSignal } from "../lib/server.ts";
import { type ServerHandle, serveTcp } from "../lib/server.ts";
import type { TcpServerOptions } from "../lib/server.ts";

export const DEFAULT_PORT = 9000;
/** Five minutes, as the echo server: long enough for a quiet interactive
 * session, short enough that forgotten connections (two descriptors each)
 * do not pile up. */
export const DEFAULT_IDLE_TIMEOUT_SECONDS = 300;
const LISTEN = listenOptions(DEFAULT_PORT);

const USAGE = `Usage: tcp_proxy.ts --target HOST:PORT [options]

Forwards every client connection to HOST:PORT ([v6]:port for IPv6) and the
replies back. Logs one line per connection to stderr when it closes:
client address, bytes up (client to target) and down, duration.

Options:
  --target HOST:PORT         where to forward to (required)
  --connect-timeout SECONDS  give up on reaching the target after this long (default 5)
  --idle-timeout SECONDS     close a connection after this long with no bytes either
                             way (default ${DEFAULT_IDLE_TIMEOUT_SECONDS}; 0 = never)
${LISTEN.help}
${SERVER_TLS_HELP}
                     (clients cannot be asked for a certificate: deno#26825)
  --target-tls               speak TLS to the target (the system's trusted CAs)
  --target-cacert FILE       also trust this CA for the target (implies --target-tls)
  -h, --help                 show this help`;

export interface TcpProxyOptions extends Partial<TcpServerOptions> {
  target: { hostname: string; port: number };
  /** Default 5000. */
  connectTimeoutMs?: number;
  /** Close after this long without traffic (default 300 s; 0: never). */
  idleTimeoutMs?: number;
  /** Speak TLS to the target (its certificate must name target.hostname). */
  targetTls?: ClientTls;
}

export function startTcpProxy(options: TcpProxyOptions): ServerHandle {
  const { target } = options;
  const targetName = formatHostPort(target.hostname, target.port);
  const log = options.log ?? ((line: string) => console.error(line));
  const idleMs = options.idleTimeoutMs ??
    DEFAULT_IDLE_TIMEOUT_SECONDS * 1000;
  // One timer watches every connection's byte counts (see lib/deadline.ts).
  const sweeper = Sweeper.forTimeout(idleMs);
  const upstreams = new Set<Deno.Conn>(); // closed when we shut down
  // A --target that is this proxy under any name (localhost, 0.0.0.0, a
  // LAN address) would have it connect to itself for ever. We know both
  // ends of each of our connections to the target: a client arriving over
  // one of them is ourselves.
  const ours = new Set<string>();
  let nextTurn: Promise<unknown> | undefined; // one timer for all who wait

  return serveTcp({
    ...options,
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port ?? DEFAULT_PORT,
    log,
    onShutdown: () => upstreams.forEach(closeQuietly),
  }, async (client, shutdown) => {
    const started = performance.now();
    const from = endpoint(client.remoteAddr);
    // A client from this machine (both ends on one address) may be our own
    // connect, completing this very moment: let it note its end first.
    const { hostname } = client.remoteAddr as Deno.NetAddr;
    if (hostname === (client.localAddr as Deno.NetAddr).hostname) {
      await (nextTurn ??= sleep(0).then(() => nextTurn = undefined));
    }
    if (ours.delete(link(client.remoteAddr, client.localAddr))) {
      return log(`${from}: refused: --target leads back to this proxy`);
    }
    let upstream: Deno.Conn;
    try {
      upstream = await dial({
        ...target,
        timeoutMs: options.connectTimeoutMs ?? 5000,
        tls: options.targetTls,
        signal: shutdown, // a slow target must not hold up our shutdown
      });
    } catch (error) {
      const reason = shutdown.aborted
        ? "proxy shutting down"
        : error instanceof DialError
        ? error.reason
        : describeError(error);
      // Returning closes the client's connection (serveTcp does it), so the
      // client learns at once instead of waiting on a silent socket.
      return log(`${from}: cannot reach ${targetName}: ${reason}`);
    }
    const mine = link(upstream.localAddr, upstream.remoteAddr);
    ours.add(mine);
    upstreams.add(upstream);
    const up: Traffic = { bytes: 0 }, down: Traffic = { bytes: 0 };
    let ending = "closed";
    // Idle means no byte either way: the Sweeper watches the sum.
    const both = {
      get bytes() {
        return up.bytes + down.bytes;
      },
    };
    const idle = idleMs > 0
      ? sweeper.idle(both, idleMs, () => {
        ending = "idle timeout";
        closeQuietly(client);
        closeQuietly(upstream);
      })
      : undefined;

    const failure = await relay(client, upstream, up, down);

    if (idle) sweeper.remove(idle);
    closeQuietly(upstream);
    upstreams.delete(upstream);
    ours.delete(mine);
    if (ending === "closed" && failure !== null) {
      ending = shutdown.aborted
        ? "proxy shutting down"
        : describeError(failure);
    }
    const elapsed = ((performance.now() - started) / 1000).toFixed(3);
    log(
      `${from} <-> ${targetName}: ${ending} after ${elapsed} s, ` +
        `${up.bytes} bytes up, ${down.bytes} bytes down`,
    );
  });
}

/**
 * The proxy itself: two copy loops at once, client to target and target to
 * client. When one side has sent everything (end of input), that is passed
 * on as a half-close while the other direction keeps going. An error on
 * either side ends both: the other would wait for bytes that can no longer
 * come. Returns the first error, or null when both sides finished.
 */
async function relay(
  client: Deno.Conn,
  upstream: Deno.Conn,
  up: Traffic,
  down: Traffic,
): Promise<unknown> {
  let failure: unknown = null;
  const fail = (error: unknown) => {
    failure ??= error;
    closeQuietly(client);
    closeQuietly(upstream);
  };
  await Promise.all([
    copy(client, upstream, up).then(() => upstream.closeWrite()).catch(fail),
    copy(upstream, client, down).then(() => client.closeWrite()).catch(fail),
  ]);
  return failure;
}

/** `host:port`, an IPv4-mapped IPv6 host (::ffff:127.0.0.1) as IPv4. */
function endpoint(addr: Deno.Addr): string {
  const { hostname, port } = addr as Deno.NetAddr;
  return formatHostPort(hostname.replace(/^::ffff:(?=\d)/i, ""), port);
}

/** A connection as a key: from one end to the other. */
function link(from: Deno.Addr, to: Deno.Addr): string {
  return `${endpoint(from)} > ${endpoint(to)}`;
}

if (import.meta.main) {
  await runCommand("tcp_proxy.ts", async () => {
    const { values } = parseCommandLine(Deno.args, {
      usage: USAGE,
      options: {
        target: { type: "string" },
        "connect-timeout": { type: "string", default: "5" },
        "idle-timeout": {
          type: "string",
          default: String(DEFAULT_IDLE_TIMEOUT_SECONDS),
        },
        ...LISTEN.options,
        ...SERVER_TLS_OPTIONS,
        "target-tls": { type: "boolean", default: false },
        "target-cacert": { type: "string" },
      },
    });
    if (values.target === undefined) {
      throw new UsageError("--target HOST:PORT is required");
    }
    const idle = parseSeconds(values["idle-timeout"], "--idle-timeout", true);
    const listen = await parseListen(values);
    const server = startTcpProxy({
      ...listen,
      target: parseHostAndPort(values.target, "--target"),
      connectTimeoutMs: parseSeconds(
        values["connect-timeout"],
        "--connect-timeout",
      ) * 1000,
      idleTimeoutMs: idle * 1000,
      targetTls: await loadClientTls({
        tls: values["target-tls"],
        cacert: values["target-cacert"],
      }),
    });
    return runUntilSignal(server, listen.tls ? "tls" : "tcp");
  });
}
