// Connecting, as every TCP client (and tcp_proxy, to its target) does it:
// one deadline over the name lookup, the TCP and the TLS handshakes (else a
// host that drops our packets holds us for the kernel's minutes), and one
// wording for every failure: "cannot connect to [::1]:8443: certificate not
// trusted (unknown issuer)", "… 127.0.0.1:9999: connection refused".
import { seconds, withDeadline } from "./deadline.ts";
import { classifyError, type ErrorKind, Failure } from "./errors.ts";
import { UsageError } from "./errors.ts";
import { closeQuietly, formatHostPort } from "./io.ts";
import type { ClientTls } from "./tls.ts";

export interface DialOptions {
  hostname: string;
  port: number;
  timeoutMs: number; // for all of it, the TLS handshake included
  tls?: ClientTls; // the certificate must name `serverName ?? hostname`
  // (with a client certificate, serverName can only be the host itself)
  signal?: AbortSignal; // gives up early (a server shutting down, say)
}

/** A failed connect, `kind` saying why; `stage` "tls" when TCP connected
 * but TLS did not (a port checker tells "closed" from "open, no TLS"). */
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

export async function dial(options: DialOptions): Promise<Connection> {
  const { hostname, port, timeoutMs, tls } = options;
  const target = formatHostPort(hostname, port);
  if (tls?.cert !== undefined) {
    return await dialWithClientCertificate(options, target);
  }
  const started = performance.now();
  // One controller for both limits, let go of when the connect ends:
  // AbortSignal.timeout and AbortSignal.any would hold their timer and link
  // for the whole timeout (memory tcp_proxy would pay per client).
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
    if (!timedOut && options.signal?.aborted) {
      throw abortError(options.signal, target, timeoutMs, "connect");
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
  const { kind, text } = timedOut
    ? {
      kind: "timeout" as const,
      text: `timed out after ${seconds(timeoutMs)}`,
    }
    : classifyError(error);
  return new DialError(target, text, kind, stage);
}

/** Deno.startTls cannot present a client certificate; connectTls can, but
 * checks the certificate against the host it dials (no other serverName),
 * and takes no signal: it races a timer and the caller's signal, and a
 * connection that arrives late is closed. */
async function dialWithClientCertificate(
  options: DialOptions,
  target: string,
): Promise<Deno.TlsConn> {
  const { hostname, port, timeoutMs, tls, signal } = options;
  const { caCerts, cert, key, serverName = hostname } = tls!;
  if (serverName.toLowerCase() !== hostname.toLowerCase()) {
    // Connecting to serverName would reach another host, perhaps none.
    throw new UsageError(
      `a client certificate cannot be presented with a serverName ` +
        `('${serverName}') other than the host ('${hostname}'): ` +
        `Deno.connectTls has no separate server name`,
    );
  }
  if (signal?.aborted) throw abortError(signal, target, timeoutMs, "connect");
  const pending = Deno.connectTls({ hostname, port, caCerts, cert, key });
  let stage: "connect" | "tls" = "connect"; // connectTls resolves on TCP
  const connected = pending.then(async (conn) => {
    stage = "tls";
    await conn.handshake().catch((error) => {
      closeQuietly(conn);
      throw error;
    });
    return conn;
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stop = () => {};
  const ended = new Promise<"timeout" | "abort">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), timeoutMs);
    stop = () => resolve("abort");
    signal?.addEventListener("abort", stop);
  });
  let outcome: Deno.TlsConn | "timeout" | "abort";
  try {
    outcome = await Promise.race([connected, ended]);
  } catch (error) {
    throw dialError(error, target, false, timeoutMs, stage);
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", stop);
  }
  if (typeof outcome !== "string") return outcome;
  // Closing cancels a handshake under way (Deno 2.9.6 still holds the
  // socket until the peer answers or closes).
  pending.then(closeQuietly, () => {});
  throw outcome === "abort"
    ? abortError(signal!, target, timeoutMs, stage)
    : dialError(undefined, target, true, timeoutMs, stage);
}

/** The caller's signal ended the dial: a timeout of theirs is still a
 * timeout; any other abort, a cancelled connect. */
function abortError(
  signal: AbortSignal,
  target: string,
  timeoutMs: number,
  stage: "connect" | "tls",
) {
  return classifyError(signal.reason).kind === "timeout"
    ? dialError(undefined, target, true, timeoutMs, stage)
    : new DialError(target, "cancelled", "other", stage);
}

/** TLS over an open connection (from dial(), or after a proxy's CONNECT),
 * the handshake within `timeoutMs`, its failure named as a DialError. */
export async function startTlsWithin(
  tcp: Deno.TcpConn,
  tls: ClientTls,
  timeoutMs: number,
  target: string,
): Promise<Deno.TlsConn> {
  let conn: Deno.TlsConn | undefined;
  try {
    const { serverName: hostname, caCerts } = tls;
    conn = await Deno.startTls(tcp, { hostname, caCerts });
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
