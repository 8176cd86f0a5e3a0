// The connection a request travels on, for http_client.ts: the URL and
// --proxy checked, straight to the server or through an HTTP proxy (a
// CONNECT tunnel for https, TLS end to end), every read and write bounded
// and its failures naming the peer. Apart from the script so that its
// lesson, the request and the framing of the answer, stays in view.
// Part of the HTTP chapter: run scripts/http_client.ts.
import { TimedConn } from "../../lib/deadline.ts";
import { dial, startTlsWithin } from "../../lib/dial.ts";
import { classifyError, Failure, isExpectedError } from "../../lib/errors.ts";
import { UsageError } from "../../lib/errors.ts";
import { encodeLatin1, HttpError, latin1 } from "../../lib/http1.ts";
import { formatHostPort, writeAll } from "../../lib/io.ts";
import { BufferedReader } from "../../lib/reader.ts";
import { printable } from "../../lib/terminal.ts";
import type { ClientTls } from "../../lib/tls.ts";
import { readResponseHead } from "./response.ts";

/** Host (IPv6 without brackets), port and host:port for display, of a URL. */
function endpointOf(url: URL) {
  const hostname = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = Number(url.port) || (url.protocol === "https:" ? 443 : 80);
  return { hostname, port, display: formatHostPort(hostname, port) };
}

/** `Basic …` for a proxy URL with user:pass in it (as requests takes them). */
export function proxyAuthorization(proxy: URL): string | undefined {
  if (!proxy.username) return undefined;
  const pair = [proxy.username, proxy.password].map(decodeURIComponent);
  return `Basic ${btoa(latin1(new TextEncoder().encode(pair.join(":"))))}`;
}

/** A URL to fetch: http:// or https://; or UsageError. */
export function parseHttpUrl(url: string | URL): URL {
  const parsed = URL.parse(url);
  if (!parsed) throw new UsageError(`not a valid URL: '${url}'`);
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new UsageError(
      `unsupported scheme '${parsed.protocol}' (use http:// or https://)`,
    );
  }
  return parsed;
}

/** A proxy as --proxy takes it, http://[user:pass@]host:port; or UsageError. */
export function parseProxy(value: string | URL): URL {
  const proxy = URL.parse(value);
  if (proxy?.protocol !== "http:" || proxy.pathname !== "/" || proxy.search) {
    throw new UsageError(
      `--proxy must look like http://host:port, got '${value}'`,
    );
  }
  return proxy;
}

/** A TimedConn whose other failures name the peer too ("…: connection reset"). */
class PeerConn extends TimedConn {
  override read(into: Uint8Array) {
    return naming(super.read(into), this.peer);
  }
  override write(bytes: Uint8Array) {
    return naming(super.write(bytes), this.peer);
  }
}

async function naming<T>(operation: Promise<T>, peer: string): Promise<T> {
  try {
    return await operation;
  } catch (error) {
    if (error instanceof Failure || !isExpectedError(error)) throw error;
    const { kind, text } = classifyError(error);
    throw new Failure(`${peer}: ${text}`, kind);
  }
}

/**
 * The connection a request to `url` travels on, every read and write on it
 * bounded by `timeoutMs`: straight to the server, or to `proxy`; for https
 * through a proxy, a CONNECT tunnel (RFC 9110 §9.3.6), so that the proxy
 * sees host and port only and TLS runs end to end.
 */
export async function connectFor(
  url: URL,
  options: { proxy?: URL; tls: ClientTls; timeoutMs: number; agent: string },
): Promise<TimedConn> {
  const { proxy, timeoutMs: ms } = options;
  const target = endpointOf(url);
  const tls = url.protocol === "https:" ? options.tls : undefined;
  if (proxy && tls?.cert !== undefined) {
    // A tunnel needs Deno.startTls, which cannot present a certificate.
    throw new UsageError("--client-cert cannot be used through --proxy");
  }
  if (!proxy) {
    const conn = await dial({ ...target, timeoutMs: ms, tls });
    return new PeerConn(conn, ms, target.display);
  }
  const via = endpointOf(proxy);
  const tcp = await dial({ ...via, timeoutMs: ms }) as Deno.TcpConn;
  if (!tls) return new PeerConn(tcp, ms, via.display);
  const tunnel = new PeerConn(tcp, ms, `proxy ${via.display}`);
  try {
    const auth = proxyAuthorization(proxy);
    const connect = `CONNECT ${target.display} HTTP/1.1\r\n` +
      `Host: ${target.display}\r\n` +
      (auth ? `Proxy-Authorization: ${auth}\r\n` : "") +
      `User-Agent: ${options.agent}\r\n\r\n`;
    await writeAll(tunnel, encodeLatin1(connect));
    const reader = new BufferedReader(tunnel);
    const head = await readResponseHead(reader);
    if (head.status < 200 || head.status > 299) {
      const answer = printable(head.statusLine);
      throw new HttpError(
        `proxy ${via.display} refused the tunnel: '${answer}'`,
      );
    }
    // Our TLS hello goes first: a proxy that says more is not a tunnel.
    if (reader.buffered > 0) {
      throw new HttpError(`proxy ${via.display} sent data after CONNECT`);
    }
  } catch (error) {
    tunnel.close();
    throw error;
  }
  const named = { ...tls, serverName: tls.serverName ?? target.hostname };
  const conn = await startTlsWithin(tcp, named, ms, target.display);
  return new PeerConn(conn, ms, target.display);
}
