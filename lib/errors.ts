// The one error table: what went wrong as one line for a person and a kind
// for code ("refused", "timeout", "dns"…), for lib/cli.ts's exit lines,
// lib/dial.ts, multi_connect's RESULT column and every server's log, so
// that "is this a DNS failure?" has one answer everywhere.

export class UsageError extends Error {} // how the script was called: exit 2

/** An expected runtime failure (refused, timed out…): one line, exit 1. */
export class Failure extends Error {
  constructor(message: string, readonly kind: ErrorKind = "other") {
    super(message);
  }
}

export type ErrorKind =
  | "refused"
  | "timeout"
  | "dns"
  | "tls"
  | "disconnect"
  | "unreachable"
  | "address"
  | "permission"
  | "not found"
  | "other";

const e = Deno.errors;
// Deno's error classes, in order; a text that is empty or ends in ": " is
// followed by the error's own first line.
const ROWS: [new (message: string) => Error, ErrorKind, string][] = [
  [e.TimedOut, "timeout", "timed out"],
  [e.ConnectionRefused, "refused", "connection refused"],
  [e.ConnectionReset, "disconnect", "connection reset"],
  [e.BrokenPipe, "disconnect", "connection closed by peer"],
  [e.ConnectionAborted, "disconnect", "connection closed by peer"],
  [e.UnexpectedEof, "disconnect", "connection closed unexpectedly"],
  [e.NotConnected, "disconnect", "connection closed"],
  [e.BadResource, "disconnect", "connection closed"],
  [e.Interrupted, "disconnect", "connection closed"], // pending when we closed
  [e.AddrInUse, "address", "address already in use"],
  [e.AddrNotAvailable, "address", "address not available on this machine"],
  [e.NetworkUnreachable, "unreachable", "network unreachable"],
  [e.NotCapable, "permission", "missing permission: "],
  [e.PermissionDenied, "permission", "permission denied: "],
  [e.NotFound, "not found", ""],
];

// getaddrinfo failures come as a plain Error naming the lookup, in the
// words of Linux, macOS or Windows.
const DNS_FAILURE =
  /failed to lookup address|name or service not known|nodename nor servname|no such host|temporary failure in name resolution|no address associated|ENOTFOUND|EAI_AGAIN/i;

// rustls's words for certificate problems, and what a person should read.
const CERTIFICATE_PROBLEMS: [RegExp, string][] = [
  [/UnknownIssuer|UnknownCA/i, "certificate not trusted (unknown issuer)"],
  [/NotValidForName/i, "certificate is for another name"],
  [/Expired/i, "certificate expired"],
  [/NotValidYet/i, "certificate not valid yet"],
  [
    /UnsupportedCertVersion|CaUsedAsEndEntity/i,
    "certificate is a CA, not a server certificate",
  ],
  [/BadSignature|BadEncoding/i, "certificate is malformed or badly signed"],
  [/InvalidContentType|corrupt message/i, "the peer does not speak TLS"],
  [
    /NoApplicationProtocol|support any known protocol/i,
    "no protocol in common (ALPN): the peer speaks none of those offered",
  ],
];

// QUIC fails with a plain Error; its TLS failures read like rustls's.
const QUIC_HANDSHAKE = /cryptographic handshake failed/;
const QUIC_REFUSED = /refused to accept a new connection/;

const firstLine = (error: Error) => error.message.split("\n")[0];

export function classifyError(
  error: unknown,
): { kind: ErrorKind; text: string } {
  if (error instanceof DOMException && error.name === "TimeoutError") {
    return { kind: "timeout", text: "timed out" };
  }
  const row = ROWS.find(([type]) => error instanceof type);
  if (row) {
    const [, kind, text] = row;
    const more = text === "" || text.endsWith(": ");
    return { kind, text: more ? text + firstLine(error as Error) : text };
  }
  if (!(error instanceof Error)) return { kind: "other", text: String(error) };
  if (error instanceof Failure) {
    return { kind: error.kind, text: error.message };
  }
  // npm clients under Deno (node-redis) fail the Node way: a plain Error
  // whose code names the socket error.
  const code = (error as { code?: unknown }).code;
  if (code === "ECONNREFUSED") {
    return { kind: "refused", text: "connection refused" };
  }
  if (code === "ECONNRESET" || code === "EPIPE") {
    return { kind: "disconnect", text: "connection reset" };
  }
  if (DNS_FAILURE.test(error.message)) {
    // What the resolver said, without Deno's and Node's wrapping.
    const wrapping =
      /^(failed to lookup address information: )?(getaddrinfo )?/i;
    const said = firstLine(error).replace(wrapping, "");
    return { kind: "dns", text: `name not resolved: ${said}` };
  }
  if (QUIC_REFUSED.test(error.message)) {
    return { kind: "refused", text: "connection refused by the server" };
  }
  if (error instanceof e.InvalidData || QUIC_HANDSHAKE.test(error.message)) {
    const tls = (text: string) => ({ kind: "tls" as const, text });
    // A fatal alert is the peer's verdict, not ours: "UnknownCA" from a
    // server means it does not trust the certificate *we* presented.
    const alert = /received fatal alert: (\w+)/.exec(error.message)?.[1];
    if (alert === "CertificateRequired") {
      return tls("the server requires a client certificate");
    }
    const what = /Certificate|CA/.test(alert ?? "") ? "our certificate" : "TLS";
    if (alert) return tls(`the peer refused ${what} (alert ${alert})`);
    // rustls names the name it checked: `… not valid for name "x"; …`
    const name = /not valid for name "([^"]*)"/.exec(error.message)?.[1];
    if (name) return tls(`certificate is not valid for ${name}`);
    for (const [pattern, text] of CERTIFICATE_PROBLEMS) {
      if (pattern.test(error.message)) return tls(text);
    }
    return tls(`TLS failed: ${firstLine(error)}`);
  }
  return { kind: "other", text: firstLine(error) };
}

export function describeError(error: unknown): string {
  return classifyError(error).text;
}

/** Errors that only mean "the peer went away" or "we closed it ourselves". */
export function isDisconnect(error: unknown): boolean {
  return error instanceof e.TimedOut ||
    ROWS.some(([type, kind]) => kind === "disconnect" && error instanceof type);
}

/** Errors that come from the outside world rather than from a bug: a script
 * reports these in one line; anything else keeps its stack trace. */
export function isExpectedError(error: unknown): boolean {
  return error instanceof Failure || classifyError(error).kind !== "other";
}
