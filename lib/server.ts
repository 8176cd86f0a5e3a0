// The life cycle every TCP server here shares: listen, accept many clients at
// once (one task each, so a slow client never blocks the others), remember
// open connections, and on close or SIGINT/SIGTERM stop accepting, close what
// is open and exit 0.
import { closeQuietly, formatAddress, isDisconnect } from "./net.ts";

export interface ListenOptions {
  hostname: string;
  port: number;
}

/** What the start functions of the servers return. */
export interface ServerHandle {
  addr: Deno.NetAddr;
  /** Resolves when the server has stopped and every connection is closed. */
  finished: Promise<void>;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export type ConnectionHandler = (
  conn: Deno.TcpConn,
  shutdown: AbortSignal,
) => Promise<void>;

export interface TcpServerOptions extends ListenOptions {
  /** Called once when close() begins, before connections are closed. */
  onShutdown?: () => Promise<void> | void;
}

/**
 * Listens on TCP and runs `handle` for each client, concurrently. The handler
 * owns its connection; errors from a vanished peer are expected and ignored,
 * anything else is logged to stderr without stopping the server.
 */
export function serveTcp(
  options: TcpServerOptions,
  handle: ConnectionHandler,
): ServerHandle {
  const listener = Deno.listen({
    hostname: options.hostname,
    port: options.port,
  });
  const shutdown = new AbortController();
  const connections = new Set<Deno.TcpConn>();
  const handlers = new Set<Promise<void>>();

  async function acceptLoop() {
    while (true) {
      let conn: Deno.TcpConn;
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
        // EMFILE and friends: say so, back off briefly, keep serving.
        console.error(`accept failed: ${(error as Error).message}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
        continue;
      }
      // Our servers write whole messages (a line, a batch, a response), so
      // Nagle's algorithm only holds small writes back waiting for an ACK
      // that the peer delays by up to 40 ms: switch it off.
      conn.setNoDelay(true);
      connections.add(conn);
      const task = runHandler(conn);
      handlers.add(task);
      task.finally(() => handlers.delete(task));
    }
  }

  async function runHandler(conn: Deno.TcpConn) {
    try {
      await handle(conn, shutdown.signal);
    } catch (error) {
      if (!isDisconnect(error)) {
        console.error(
          `connection ${formatAddress(conn.remoteAddr)}: ${
            (error as Error)?.stack ?? error
          }`,
        );
      }
    } finally {
      connections.delete(conn);
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
      await accepting;
      await Promise.allSettled([...handlers]);
    })();
    return closing;
  }

  let resolveFinished!: () => void;
  const finished = new Promise<void>((resolve) => resolveFinished = resolve);
  accepting.then(() => close()).then(resolveFinished);

  return {
    addr: listener.addr,
    finished,
    close,
    [Symbol.asyncDispose]: close,
  };
}

/**
 * Runs a started server as a command: prints the `Listening on` line that
 * tools and tests wait for, then stops on SIGINT/SIGTERM and exits 0. A
 * registered signal listener keeps the process alive, so both are removed
 * once shutdown starts; a 2 s deadline guards against a stuck close.
 */
export async function runUntilSignal(
  server: { addr: Deno.Addr; close(): Promise<void>; finished: Promise<void> },
  scheme: "tcp" | "udp" | "http",
): Promise<number> {
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  const stop = () => {
    for (const signal of signals) Deno.removeSignalListener(signal, stop);
    const deadline = setTimeout(() => Deno.exit(0), 2000);
    server.close().finally(() => clearTimeout(deadline));
  };
  // Listen for signals before announcing: a tool may send SIGTERM the moment
  // it reads the Listening line.
  for (const signal of signals) Deno.addSignalListener(signal, stop);
  console.log(`Listening on ${scheme}://${formatAddress(server.addr)}`);
  await server.finished;
  for (const signal of signals) {
    try {
      Deno.removeSignalListener(signal, stop);
    } catch {
      // Already removed by stop().
    }
  }
  return 0;
}
