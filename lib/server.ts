// The life cycle every server here shares. serveTcp (echo, chat, upload,
// http_raw_server, tcp_proxy, rpc, dns over TCP): listen, plain or TLS;
// accept many clients at once, one task each, so a slow client never blocks
// the others; refuse clients beyond a cap, in all and per address, so one
// host cannot take every descriptor; remember open connections; on close()
// stop accepting and close what is open. serverHandle gives the servers that
// are not serveTcp (UDP, Deno.serve, QUIC) the same handle, and
// runUntilSignal turns any handle into a command: the `Listening on` line,
// then exit 0 on SIGINT/SIGTERM.
import { parseInteger, parsePort } from "./cli.ts";
import { withDeadline } from "./deadline.ts";
import { describeError, isDisconnect } from "./errors.ts";
import { closeQuietly, formatAddress, lingeringClose, writeAll } from "./io.ts";
import { loadServerTls, SERVER_TLS_HELP, SERVER_TLS_OPTIONS } from "./tls.ts";

/** What the start functions of the servers return. */
export interface ServerHandle {
  addr: Deno.NetAddr;
  /** Resolves when the server has stopped and every connection is closed. */
  finished: Promise<void>;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * A ServerHandle for a server that is not serveTcp: `running` settles when
 * it stops by itself, `stop` makes it stop. close() runs `stop` once.
 */
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

/**
 * A log that writes at most one line per `periodMs` and says how many it
 * held back: a flood of bad clients must not become a flood of log lines.
 */
export function rateLimitedLog(
  log: (line: string) => void = (line) => console.error(line),
  periodMs = 1000,
): (line: string) => void {
  let last = -Infinity;
  let heldBack = 0;
  return (line) => {
    const now = performance.now();
    if (now - last < periodMs) {
      heldBack++;
      return;
    }
    last = now;
    log(heldBack > 0 ? `${line} (and ${heldBack} more not shown)` : line);
    heldBack = 0;
  };
}

export const DEFAULT_MAX_CONNECTIONS = 10_000;
export const DEFAULT_MAX_PER_ADDRESS = 2_000;
const HANDSHAKE_TIMEOUT_MS = 10_000;

/** The caps as options: the same names and help in every TCP server. */
export const LIMIT_OPTIONS = {
  "max-connections": {
    type: "string",
    default: String(DEFAULT_MAX_CONNECTIONS),
  },
  "max-per-address": {
    type: "string",
    default: String(DEFAULT_MAX_PER_ADDRESS),
  },
} as const;

export const LIMIT_HELP =
  `  --max-connections N  open connections at most; more are closed at once
                       (default ${DEFAULT_MAX_CONNECTIONS})
  --max-per-address N  open connections from one client address at most, so
                       one host cannot lock everyone out (default ${DEFAULT_MAX_PER_ADDRESS})`;

/**
 * LIMIT_OPTIONS and LIMIT_HELP with lower defaults, for servers whose
 * connections may each hold far more than an echo's (rpc: MiB-long lines;
 * dns: 64 KiB messages; quic: many streams).
 */
export function limitOptionsWith(connections: number, perAddress: number) {
  const [first, second] = LIMIT_HELP.split("  --max-per-address");
  const setDefault = (help: string, value: number) =>
    help.replace(/default \d+/, `default ${value}`);
  return {
    options: {
      "max-connections": { type: "string", default: `${connections}` },
      "max-per-address": { type: "string", default: `${perAddress}` },
    } as const,
    help: `${setDefault(first, connections)}  --max-per-address${
      setDefault(second, perAddress)
    }`,
  };
}

/**
 * The options every TCP server's command line shares: where to listen
 * (--hostname, --port), the caps (LIMIT_OPTIONS) and TLS (--cert/--key).
 * listenHelp() is their help; parseListen() checks their values, to be
 * spread into serveTcp's options. (upload_server, tcp_proxy.)
 */
export function listenOptions(defaultPort: number) {
  return {
    hostname: { type: "string", default: "127.0.0.1" },
    port: { type: "string", default: String(defaultPort) },
    ...LIMIT_OPTIONS,
    ...SERVER_TLS_OPTIONS,
  } as const;
}

export function listenHelp(defaultPort: number): string {
  return `  --hostname HOST      address to listen on (default 127.0.0.1; 0.0.0.0 or :: to expose)
  --port PORT          port to listen on (default ${defaultPort}; 0 picks a free port)
${LIMIT_HELP}
${SERVER_TLS_HELP}
                     (clients cannot be asked for a certificate: deno#26825)`;
}

/** listenOptions' values, checked: hostname, port, caps and TLS. */
export async function parseListen(
  values: Parameters<typeof parseLimits>[0] & {
    hostname: string;
    port: string;
    cert?: string;
    key?: string;
  },
) {
  return {
    hostname: values.hostname,
    port: parsePort(values.port),
    ...parseLimits(values),
    tls: await loadServerTls(values),
  };
}

/** The values of LIMIT_OPTIONS, checked, as serveTcp options. */
export function parseLimits(
  values: { "max-connections": string; "max-per-address": string },
) {
  return {
    maxConnections: parseInteger(
      values["max-connections"],
      "--max-connections",
      1,
    ),
    maxPerAddress: parseInteger(
      values["max-per-address"],
      "--max-per-address",
      1,
    ),
  };
}

/** PEM certificate chain and key: with them serveTcp speaks TLS. */
export interface ServerTls {
  cert: string;
  key: string;
  alpnProtocols?: string[];
}

export interface TcpServerOptions {
  hostname: string;
  port: number;
  tls?: ServerTls;
  /** A TLS handshake must be done within this (10 s). */
  handshakeTimeoutMs?: number;
  /** Open connections at most; more are closed at once (10,000). */
  maxConnections?: number;
  /** Open connections from one address at most (2,000). */
  maxPerAddress?: number;
  /**
   * Sent to a client refused over a cap before it is closed, where the
   * protocol has a word for "busy" (JSON-RPC -32000); else it is closed
   * at once.
   */
  busyMessage?: Uint8Array;
  /** Called once when close() begins, before connections are closed. */
  onShutdown?: () => Promise<void> | void;
  /** Where refusals and failures are logged (default: stderr). */
  log?: (line: string) => void;
}

export type ConnectionHandler = (
  conn: Deno.Conn,
  shutdown: AbortSignal,
) => Promise<void>;

/**
 * Listens on TCP (TLS with `options.tls`) and runs `handle` for each client,
 * concurrently. The handler owns its connection; errors from a vanished peer
 * are expected and ignored, anything else is logged without stopping the
 * server. A TLS handshake happens before `handle` is called, bounded in time.
 */
export function serveTcp(
  options: TcpServerOptions,
  handle: ConnectionHandler,
): ServerHandle {
  const { hostname, port, tls } = options;
  const listener: Deno.Listener = tls
    ? Deno.listenTls({ hostname, port, ...tls })
    : Deno.listen({ hostname, port });
  const maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  const maxPerAddress = options.maxPerAddress ?? DEFAULT_MAX_PER_ADDRESS;
  const log = options.log ?? ((line: string) => console.error(line));
  const refusalLog = rateLimitedLog(log);
  const failureLog = rateLimitedLog(log);
  const shutdown = new AbortController();
  const connections = new Set<Deno.Conn>();
  const turnedAway = new Set<Deno.Conn>();
  const perAddress = new Map<string, number>();
  const handlers = new Set<Promise<void>>();

  async function acceptLoop() {
    while (true) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (
          shutdown.signal.aborted || error instanceof Deno.errors.BadResource
        ) {
          return;
        }
        // A client that connected and reset before we got to it: not our
        // problem, and no reason to pause (100 such clients must not stall
        // the real ones).
        if (isDisconnect(error)) continue;
        // Out of descriptors (EMFILE) and the like: say so, back off
        // briefly, keep serving: connections that close free descriptors.
        failureLog(`accept failed: ${describeError(error)}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
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
        if (options.busyMessage) track(turnAway(conn, options.busyMessage));
        else closeQuietly(conn);
        continue;
      }
      // Our servers write whole messages (a line, a batch, a response), so
      // Nagle's algorithm only holds small writes back waiting for an ACK
      // that the peer delays by up to 40 ms: switch it off. (Deno offers
      // no switch on a TLS connection.)
      if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
      connections.add(conn);
      perAddress.set(address, fromAddress + 1);
      track(runHandler(conn, address));
    }
  }

  function track(task: Promise<void>) {
    handlers.add(task);
    task.finally(() => handlers.delete(task));
  }

  // Says "busy" within a second (a TLS client may stall its handshake), then
  // closes without a reset that could destroy the message. It does not
  // count against the caps; close() closes it too.
  async function turnAway(conn: Deno.Conn, message: Uint8Array) {
    turnedAway.add(conn);
    try {
      await withDeadline(conn, 1000, () => writeAll(conn, message), "busy");
      await lingeringClose(conn, 1000);
    } catch {
      // It left, or stalled: closed either way.
    } finally {
      turnedAway.delete(conn);
      closeQuietly(conn);
    }
  }

  async function runHandler(conn: Deno.Conn, address: string) {
    const peer = formatAddress(conn.remoteAddr);
    try {
      if (tls) {
        try {
          await withDeadline(
            conn,
            options.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS,
            () => (conn as Deno.TlsConn).handshake(),
            "handshake timed out",
          );
        } catch (error) {
          // A plain-text client, an untrusted certificate, a stall: it costs
          // this connection, and at most one log line a second.
          if (!shutdown.signal.aborted) {
            failureLog(
              `TLS handshake with ${peer} failed: ${describeError(error)}`,
            );
          }
          return;
        }
      }
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
  let closing: Promise<void> | undefined;

  function close(): Promise<void> {
    closing ??= (async () => {
      shutdown.abort();
      closeQuietly(listener);
      await options.onShutdown?.();
      for (const conn of connections) closeQuietly(conn);
      for (const conn of turnedAway) closeQuietly(conn);
      await accepting;
      await Promise.allSettled([...handlers]);
    })();
    return closing;
  }

  const finished = accepting.then(close);
  return {
    addr: listener.addr as Deno.NetAddr,
    finished,
    close,
    [Symbol.asyncDispose]: close,
  };
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
