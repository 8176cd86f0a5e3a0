// The one error table. Every script turns what went wrong into one line for
// a person and, where code must decide, a kind: "refused", "timeout", "dns"…
// Used by lib/cli.ts (exit codes and the message printed), lib/dial.ts
// ("cannot connect to X: reason"), multi_connect.ts (its RESULT column) and
// every server's log. Keeping it in one place is what keeps "is this a DNS
// failure?" answered the same way everywhere.

/** A mistake in how the script was called: reported in one line, exit 2. */
export class UsageError extends Error {}

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

/** The kind and the human text of one row of the table. */
export interface ErrorInfo {
  kind: ErrorKind;
  text: string;
}

// Deno reports getaddrinfo failures as a plain Error whose message names the
// lookup; these are the phrasings Linux, macOS and Windows produce.
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

// QUIC (Deno.connectQuic, QuicIncoming.accept) fails with a plain Error;
// its TLS handshake failures read like rustls's, prefixed by these words.
const QUIC_HANDSHAKE = /cryptographic handshake failed/;
const QUIC_REFUSED = /refused to accept a new connection/;

function firstLine(error: Error): string {
  return error.message.split("\n")[0];
}

/** What went wrong, as a kind and one line of text. */
export function classifyError(error: unknown): ErrorInfo {
  const e = Deno.errors;
  if (error instanceof DOMException && error.name === "TimeoutError") {
    return { kind: "timeout", text: "timed out" };
  }
  if (error instanceof e.TimedOut) {
    return { kind: "timeout", text: "timed out" };
  }
  if (error instanceof e.ConnectionRefused) {
    return { kind: "refused", text: "connection refused" };
  }
  if (error instanceof e.ConnectionReset) {
    return { kind: "disconnect", text: "connection reset" };
  }
  if (error instanceof e.BrokenPipe || error instanceof e.ConnectionAborted) {
    return { kind: "disconnect", text: "connection closed by peer" };
  }
  if (error instanceof e.UnexpectedEof) {
    return { kind: "disconnect", text: "connection closed unexpectedly" };
  }
  if (
    error instanceof e.NotConnected || error instanceof e.BadResource ||
    error instanceof e.Interrupted // a read pending when we closed it
  ) {
    return { kind: "disconnect", text: "connection closed" };
  }
  if (error instanceof e.AddrInUse) {
    return { kind: "address", text: "address already in use" };
  }
  if (error instanceof e.AddrNotAvailable) {
    return { kind: "address", text: "address not available on this machine" };
  }
  if (error instanceof e.NetworkUnreachable) {
    return { kind: "unreachable", text: "network unreachable" };
  }
  if (error instanceof e.NotCapable) {
    return {
      kind: "permission",
      text: `missing permission: ${firstLine(error)}`,
    };
  }
  if (error instanceof e.PermissionDenied) {
    return {
      kind: "permission",
      text: `permission denied: ${firstLine(error)}`,
    };
  }
  if (error instanceof e.NotFound) {
    return { kind: "not found", text: firstLine(error) };
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
    // Keep what the resolver said, without Deno's and Node's wrapping.
    const said = firstLine(error)
      .replace(/^failed to lookup address information: /i, "")
      .replace(/^getaddrinfo /i, "");
    return { kind: "dns", text: `name not resolved: ${said}` };
  }
  if (QUIC_REFUSED.test(error.message)) {
    return { kind: "refused", text: "connection refused by the server" };
  }
  if (error instanceof e.InvalidData || QUIC_HANDSHAKE.test(error.message)) {
    // A fatal alert is the peer's verdict, not ours: "UnknownCA" from a
    // server means it does not trust the certificate *we* presented.
    const alert = /received fatal alert: (\w+)/.exec(error.message)?.[1];
    if (alert === "CertificateRequired") {
      return { kind: "tls", text: "the server requires a client certificate" };
    }
    if (alert) {
      const what = /Certificate|CA/.test(alert) ? "our certificate" : "TLS";
      return { kind: "tls", text: `the peer refused ${what} (alert ${alert})` };
    }
    // rustls names the name it checked: `… not valid for name "x"; …`
    const name = /not valid for name "([^"]*)"/.exec(error.message)?.[1];
    if (name) {
      return { kind: "tls", text: `certificate is not valid for ${name}` };
    }
    for (const [pattern, text] of CERTIFICATE_PROBLEMS) {
      if (pattern.test(error.message)) return { kind: "tls", text };
    }
    return { kind: "tls", text: `TLS failed: ${firstLine(error)}` };
  }
  return { kind: "other", text: firstLine(error) };
}

/** Turns an error from Deno's network or file APIs into one human line. */
export function describeError(error: unknown): string {
  return classifyError(error).text;
}

/** Errors that only mean "the peer went away" or "we closed it ourselves". */
export function isDisconnect(error: unknown): boolean {
  return error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.ConnectionAborted ||
    error instanceof Deno.errors.NotConnected ||
    error instanceof Deno.errors.UnexpectedEof ||
    error instanceof Deno.errors.BadResource ||
    error instanceof Deno.errors.Interrupted ||
    error instanceof Deno.errors.TimedOut;
}

/**
 * Errors that come from the outside world rather than from a bug: a script
 * reports these in one line; anything else keeps its stack trace.
 */
export function isExpectedError(error: unknown): boolean {
  if (error instanceof Failure || error instanceof Deno.errors.NotCapable) {
    return true;
  }
  const { kind } = classifyError(error);
  return kind !== "other" || error instanceof Deno.errors.InvalidData;
}
