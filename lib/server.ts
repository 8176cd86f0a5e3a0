// The life cycle every server shares. serveTcp (the TCP ones): each client
// in its own task, so a slow one blocks nobody; caps in all and per address,
// so one host cannot take every descriptor; close() closes what is open.
// serverHandle gives the others (UDP, Deno.serve, QUIC) the same handle,
// listenOptions the same command line; runUntilSignal makes it a command.
import { parseInteger, parsePort, withDefault } from "./cli.ts";
import { sleep, withDeadline } from "./deadline.ts";
import { describeError, isDisconnect } from "./errors.ts";
import { closeQuietly, formatAddress, replyAndClose } from "./io.ts";
import { loadServerTls } from "./tls.ts";

/** What the start functions of the servers return. */
export interface ServerHandle {
  addr: Deno.NetAddr;
  finished: Promise<void>; // stopped, and every connection closed
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** A ServerHandle for any server: `running` settles when it stops by
 * itself, `stop` makes it stop; close() runs `stop` once. */
export function serverHandle(
  addr: Deno.NetAddr,
  running: Promise<unknown>,
  stop: () => Promise<void> | void,
): ServerHandle {
  let closing: Promise<void> | undefined;
  const close = () => closing ??= Promise.resolve().then(stop);
  const finished = running.then(close, close);
  return { addr, finished, close, [Symbol.asyncDispose]: close };
}

/** At most one line per `periodMs`, saying how many it held back: a flood
 * of bad clients must not become a flood of log lines. */
export function rateLimitedLog(
  log: (line: string) => void = (line) => console.error(line),
  periodMs = 1000,
): (line: string) => void {
  let last = -Infinity, heldBack = 0;
  return (line) => {
    const now = performance.now();
    if (now - last < periodMs) return void heldBack++;
    log(heldBack > 0 ? `${line} (and ${heldBack} more not shown)` : line);
    [last, heldBack] = [now, 0];
  };
}

export const DEFAULT_MAX_CONNECTIONS = 10_000, DEFAULT_MAX_PER_ADDRESS = 2_000;

/** --hostname, --port and the caps, with their help, for every server's
 * command line; lower caps where a connection holds more (rpc, dns, quic). */
export function listenOptions(
  port: number,
  {
    maxConnections = DEFAULT_MAX_CONNECTIONS,
    maxPerAddress = DEFAULT_MAX_PER_ADDRESS,
    portHelp = `port to listen on (default ${port}; 0 picks a free port)`,
  } = {},
) {
  return {
    options: {
      hostname: withDefault("127.0.0.1"),
      port: withDefault(port),
      "max-connections": withDefault(maxConnections),
      "max-per-address": withDefault(maxPerAddress),
    },
    help:
      `  --hostname HOST      address to listen on (default 127.0.0.1; 0.0.0.0 or :: to expose)
  --port PORT          ${portHelp}
  --max-connections N  open connections at most; more are closed at once
                       (default ${maxConnections})
  --max-per-address N  open connections from one client address at most, so
                       one host cannot lock everyone out (default ${maxPerAddress})`,
  };
}

type Cap = "max-connections" | "max-per-address";

/** listenOptions' values checked into serveTcp's options, with --cert and
 * --key loaded where the script takes lib/tls.ts's SERVER_TLS_OPTIONS. */
export async function parseListen(
  values: Record<"hostname" | "port" | Cap, string> & Partial<ServerTls>,
) {
  const cap = (name: Cap) => parseInteger(values[name], `--${name}`, 1);
  return {
    hostname: values.hostname,
    port: parsePort(values.port),
    maxConnections: cap("max-connections"),
    maxPerAddress: cap("max-per-address"),
    tls: await loadServerTls(values),
  };
}

export type ServerTls = { cert: string; key: string }; // PEM chain and key

export interface TcpServerOptions {
  hostname: string;
  port: number;
  tls?: ServerTls;
  handshakeTimeoutMs?: number; // for each TLS handshake (10 s)
  maxConnections?: number; // open at most; more are closed at once
  maxPerAddress?: number; // open from one address at most
  busyMessage?: Uint8Array; // to a refused client, if the protocol has one
  onShutdown?: () => Promise<void> | void; // when close() begins
  log?: (line: string) => void; // refusals and failures (default: stderr)
}

/** Runs `handle` for each client, concurrently, on TCP or TLS. Errors from
 * a vanished peer are ignored, others logged; the server goes on. */
export function serveTcp(
  options: TcpServerOptions,
  handle: (conn: Deno.Conn, shutdown: AbortSignal) => Promise<void>,
): ServerHandle {
  const { hostname, port, tls, busyMessage } = options;
  const listener: Deno.Listener = tls
    ? Deno.listenTls({ hostname, port, ...tls })
    : Deno.listen({ hostname, port });
  const maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  const maxPerAddress = options.maxPerAddress ?? DEFAULT_MAX_PER_ADDRESS;
  const refusalLog = rateLimitedLog(options.log);
  const failureLog = rateLimitedLog(options.log);
  const shutdown = new AbortController();
  const connections = new Set<Deno.Conn>(), turnedAway = new Set<Deno.Conn>();
  const perAddress = new Map<string, number>();
  const handlers = new Set<Promise<void>>();
  const track = (task: Promise<void>) => {
    handlers.add(task);
    task.finally(() => handlers.delete(task));
  };

  async function acceptLoop() {
    while (true) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (shutdown.signal.aborted) return;
        if (error instanceof Deno.errors.BadResource) return;
        if (isDisconnect(error)) continue; // it left before we got to it
        // Out of descriptors (EMFILE) and the like: say so, back off
        // briefly, keep serving: connections that close free descriptors.
        failureLog(`accept failed: ${describeError(error)}`);
        await sleep(50, shutdown.signal);
        continue;
      }
      const address = (conn.remoteAddr as Deno.NetAddr).hostname;
      const fromAddress = perAddress.get(address) ?? 0;
      if (connections.size >= maxConnections || fromAddress >= maxPerAddress) {
        refusalLog(
          connections.size >= maxConnections
            ? `refused ${address}: ${maxConnections} connections open (--max-connections)`
            : `refused ${address}: ${maxPerAddress} connections from it (--max-per-address)`,
        );
        if (busyMessage) track(turnAway(conn, busyMessage));
        else closeQuietly(conn);
        continue;
      }
      // Our servers write whole messages, which Nagle's algorithm would
      // hold back for an ACK the peer delays up to 40 ms. (Deno has no
      // switch on a TLS connection.)
      if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
      connections.add(conn);
      perAddress.set(address, fromAddress + 1);
      track(runHandler(conn, address));
    }
  }

  // Says "busy" within a second (a TLS client may stall its handshake), then
  // closes the lingering way. Not counted against the caps.
  async function turnAway(conn: Deno.Conn, message: Uint8Array) {
    turnedAway.add(conn);
    await replyAndClose(conn, message, 1000);
    turnedAway.delete(conn);
  }

  // A plain-text client, an untrusted certificate, a stall: it costs that
  // connection, and at most one log line a second.
  async function handshake(conn: Deno.TlsConn, peer: string) {
    const ms = options.handshakeTimeoutMs ?? 10_000;
    const late = "handshake timed out";
    try {
      await withDeadline(conn, ms, () => conn.handshake(), late);
      return true;
    } catch (error) {
      if (shutdown.signal.aborted) return false;
      failureLog(`TLS handshake with ${peer} failed: ${describeError(error)}`);
      return false;
    }
  }

  async function runHandler(conn: Deno.Conn, address: string) {
    const peer = formatAddress(conn.remoteAddr);
    try {
      if (tls && !await handshake(conn as Deno.TlsConn, peer)) return;
      await handle(conn, shutdown.signal);
    } catch (error) {
      if (!isDisconnect(error)) {
        failureLog(`connection ${peer}: ${(error as Error)?.stack ?? error}`);
      }
    } finally {
      connections.delete(conn);
      const left = perAddress.get(address)! - 1;
      if (left === 0) perAddress.delete(address);
      else perAddress.set(address, left);
      closeQuietly(conn);
    }
  }

  const accepting = acceptLoop();
  return serverHandle(listener.addr as Deno.NetAddr, accepting, async () => {
    shutdown.abort();
    closeQuietly(listener);
    await options.onShutdown?.();
    for (const conn of [...connections, ...turnedAway]) closeQuietly(conn);
    await accepting;
    await Promise.allSettled([...handlers]);
  });
}

export type Scheme = "tcp" | "udp" | "http" | "tls" | "https" | "quic";

/**
 * The signals that mean "stop": Ctrl-C and SIGTERM; on Windows, where
 * Deno refuses a SIGTERM listener, Ctrl-C and Ctrl-Break.
 */
export const STOP_SIGNALS: Deno.Signal[] = Deno.build.os === "windows"
  ? ["SIGINT", "SIGBREAK"]
  : ["SIGINT", "SIGTERM"];

/**
 * Runs a started server as a command: prints the `Listening on` line that
 * tools and tests wait for (then one per port in `more`, for a server with
 * a second port: chat_server's web port), then on SIGINT or SIGTERM closes
 * it and exits 0 within 2 s, however many signals arrive meanwhile.
 */
export async function runUntilSignal(
  server: { addr: Deno.Addr; close(): Promise<void>; finished: Promise<void> },
  scheme: Scheme,
  more: { addr: Deno.Addr; scheme: Scheme }[] = [],
): Promise<number> {
  const signals = STOP_SIGNALS;
  let stopping = false;
  const stop = () => {
    if (stopping) return; // a second Ctrl-C must not kill us mid-close
    stopping = true;
    const deadline = setTimeout(() => Deno.exit(0), 2000);
    server.close().finally(() => clearTimeout(deadline));
  };
  // Listen for signals before announcing: a tool may send SIGTERM the moment
  // it reads the Listening line.
  for (const signal of signals) Deno.addSignalListener(signal, stop);
  for (const port of [{ addr: server.addr, scheme }, ...more]) {
    console.log(`Listening on ${port.scheme}://${formatAddress(port.addr)}`);
  }
  await server.finished;
  // A registered listener keeps the process alive; the server is done.
  for (const signal of signals) Deno.removeSignalListener(signal, stop);
  return 0;
}
