// Connecting, the one way every client here does it: TCP with a deadline
// that covers the name lookup, the handshake and, with TLS, the TLS
// handshake (without one, a host that silently drops our packets keeps us
// waiting for the kernel's own timeout: minutes), and one wording for every
// failure:
//
//   cannot connect to 127.0.0.1:9999: connection refused
//   cannot connect to [::1]:8443: certificate not trusted (unknown issuer)
//   cannot connect to example.test:80: timed out after 5 s
//
// Used by every TCP client, tcp_proxy (towards its target) and rpc_client.
import { raceTimeout, seconds, TIMED_OUT, withDeadline } from "./deadline.ts";
import { classifyError, type ErrorKind, Failure } from "./errors.ts";
import { closeQuietly, formatHostPort } from "./io.ts";
import type { ClientTls } from "./tls.ts";

export interface DialOptions {
  hostname: string;
  port: number;
  timeoutMs: number; // for all of it, the TLS handshake included
  tls?: ClientTls; // the certificate must name `serverName ?? hostname`
  signal?: AbortSignal; // gives up early (a server shutting down, say)
}

/**
 * A failed connect: `kind` says why ("refused", "timeout", "dns", "tls"…);
 * `stage` is "tls" when TCP connected but the TLS handshake did not finish
 * (a port checker tells "closed" from "open, but no TLS").
 */
export class DialError extends Failure {
  constructor(
    readonly target: string,
    readonly reason: string,
    kind: ErrorKind,
    readonly stage: "connect" | "tls" = "connect",
  ) {
    super(`cannot connect to ${target}: ${reason}`, kind);
  }
}

export type Connection = Deno.TcpConn | Deno.TlsConn;

/** Connects within `timeoutMs`, or throws DialError. */
export async function dial(options: DialOptions): Promise<Connection> {
  const { hostname, port, timeoutMs, tls } = options;
  const target = formatHostPort(hostname, port);
  if (tls?.cert !== undefined) {
    return await dialWithClientCertificate(options, target);
  }
  const started = performance.now();
  // One controller for both limits, let go of as soon as the connect ends:
  // AbortSignal.timeout would keep its timer, and AbortSignal.any its link
  // to the caller's signal, for the whole timeout after a quick connect
  // (memory that tcp_proxy, dialling once per client, pays per connection).
  const abort = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    abort.abort();
  }, timeoutMs);
  const stop = () => abort.abort();
  options.signal?.addEventListener("abort", stop);
  if (options.signal?.aborted) stop();
  let tcp: Deno.TcpConn;
  try {
    tcp = await Deno.connect({ hostname, port, signal: abort.signal });
  } catch (error) {
    // The caller's own signal may end it first: a timeout of theirs is
    // still a timeout; any other abort, a cancelled connect.
    const reason = options.signal?.aborted ? options.signal.reason : error;
    if (!timedOut && options.signal?.aborted) {
      const { kind } = classifyError(reason);
      if (kind === "timeout") throw dialError(error, target, true, timeoutMs);
      throw new DialError(target, "cancelled", "other");
    }
    throw dialError(error, target, timedOut, timeoutMs);
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener("abort", stop);
  }
  // Clients send whole messages too: no waiting for delayed ACKs (Nagle).
  tcp.setNoDelay(true);
  if (!tls) return tcp;
  const left = Math.max(1, timeoutMs - (performance.now() - started));
  const named = { ...tls, serverName: tls.serverName ?? hostname };
  return await startTlsWithin(tcp, named, left, target);
}

function dialError(
  error: unknown,
  target: string,
  timedOut: boolean,
  timeoutMs: number,
  stage: "connect" | "tls" = "connect",
) {
  if (error instanceof Deno.errors.NotCapable) return error; // a usage problem
  if (timedOut) {
    const reason = `timed out after ${seconds(timeoutMs)}`;
    return new DialError(target, reason, "timeout", stage);
  }
  const { kind, text } = classifyError(error);
  return new DialError(target, text, kind, stage);
}

/**
 * Deno.startTls cannot present a client certificate; Deno.connectTls can,
 * but takes no AbortSignal: so it races a timer, and a connection that
 * arrives after the deadline is closed on arrival.
 */
async function dialWithClientCertificate(
  options: DialOptions,
  target: string,
): Promise<Deno.TlsConn> {
  const { hostname, port, timeoutMs, tls } = options;
  const { serverName = hostname, caCerts, alpnProtocols, cert, key } = tls!;
  const pending = Deno.connectTls({
    ...{ hostname: serverName, port, caCerts, alpnProtocols },
    ...{ cert: cert!, key: key! },
  });
  let conn: Deno.TlsConn | typeof TIMED_OUT;
  let stage: "connect" | "tls" = "connect"; // connectTls resolves on TCP
  try {
    conn = await raceTimeout(
      pending.then(async (conn) => {
        stage = "tls";
        await conn.handshake().catch((error) => {
          closeQuietly(conn);
          throw error;
        });
        return conn;
      }),
      timeoutMs,
    );
  } catch (error) {
    throw dialError(error, target, false, timeoutMs, stage);
  }
  if (conn === TIMED_OUT) {
    pending.then(closeQuietly, () => {});
    throw dialError(undefined, target, true, timeoutMs, stage);
  }
  return conn;
}

/**
 * Speaks TLS over an open connection (after a proxy's CONNECT, or from
 * dial()), the handshake within `timeoutMs`, so that a certificate problem
 * is reported as such, naming the target. (No client certificate here.)
 */
export async function startTlsWithin(
  tcp: Deno.TcpConn,
  tls: ClientTls,
  timeoutMs: number,
  target: string,
): Promise<Deno.TlsConn> {
  let conn: Deno.TlsConn | undefined;
  try {
    const { serverName: hostname, caCerts, alpnProtocols } = tls;
    conn = await Deno.startTls(tcp, { hostname, caCerts, alpnProtocols });
    await withDeadline(
      conn,
      timeoutMs,
      () => conn!.handshake(),
      `TLS handshake timed out after ${seconds(timeoutMs)}`,
    );
  } catch (error) {
    closeQuietly(conn ?? tcp);
    const { kind, text } = classifyError(error);
    throw new DialError(target, text, kind, "tls");
  }
  return conn;
}
