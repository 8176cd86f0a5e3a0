/**
 * A "Hello world!" web server spoken by hand over a bare TCP socket: HTTP/1.1
 * parsing with limits, keep-alive, pipelining, HEAD, 404/405, idle timeout.
 *
 * Run:    deno run --allow-net scripts/http_raw_server.ts [--port 8001]
 * Try it: curl -i http://127.0.0.1:8001/
 *
 * The tutorial's server reads one `recv(1024)`, ignores what it got, sends a
 * status line without `Content-Length` or `Date` and closes. That breaks as
 * soon as a request spans two reads or two requests share one, never tells a
 * HEAD from a GET, and pays a new connection for every request. Here the
 * request line and headers are parsed from a buffer (bounded: too large →
 * 431, garbage → 400, HTTP/2 or later on this port → 505), connections stay
 * open (HTTP/1.1 by default, HTTP/1.0 only when asked), pipelined requests
 * are answered in order with one write per batch, request bodies are read
 * and thrown away so the next request is found where it starts, and a
 * connection that sends no complete request within --idle-timeout seconds
 * is closed. The hot path allocates almost nothing: one reused read buffer
 * per connection, response bytes prepared in advance and rebuilt only when
 * the Date header's second changes.
 */
import {
  parseCommandLine,
  parsePort,
  parseSeconds,
  runCommand,
} from "../lib/cli.ts";
import { closeQuietly, writeAll } from "../lib/net.ts";
import { runUntilSignal, type ServerHandle, serveTcp } from "../lib/server.ts";

export const DEFAULT_PORT = 8001;
export const DEFAULT_IDLE_TIMEOUT_SECONDS = 5;
/** Largest request head (request line + headers) accepted; Node allows 16 KiB. */
export const DEFAULT_MAX_HEAD_BYTES = 8 * 1024;
/** Most header fields in one request. */
const MAX_HEADER_COUNT = 100;
/** Largest request body we read and throw away; above it: 413 and close. */
const MAX_DISCARDED_BODY_BYTES = 1024 * 1024;
/** How long a closing connection may keep sending before we cut it off. */
const LINGER_MS = 2000;

const USAGE =
  `Usage: http_raw_server.ts [--hostname HOST] [--port PORT] [--idle-timeout SECONDS]

Serves a "Hello world!" page over HTTP/1.1, parsed by hand from a TCP socket.

Options:
  --hostname HOST           address to listen on (default 127.0.0.1; 0.0.0.0 or :: to expose)
  --port PORT               port to listen on (default ${DEFAULT_PORT}; 0 picks a free port)
  --idle-timeout SECONDS    close a connection that has not sent a complete
                            request within this time (default ${DEFAULT_IDLE_TIMEOUT_SECONDS})
  -h, --help                show this help`;

export interface HttpRawServerOptions {
  hostname?: string;
  port?: number;
  /** Seconds a connection may take to send its next complete request. */
  idleTimeout?: number;
  /** Largest request line + headers, in bytes (default 8 KiB). */
  maxHeadBytes?: number;
}

// ---------------------------------------------------------------------------
// Responses. Each is a status, a body and maybe an extra header; the bytes on
// the wire also depend on the Date (changes every second), on whether the
// request was HEAD (no body, same Content-Length) and on what we say about
// the connection. We build each combination once per second, on first use.

const HELLO_PAGE = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Hello</title>
<style>body{font:1.05rem/1.5 system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;color:#222}</style>
</head>
<body>
<h1>Hello world!</h1>
<p>Served by http_raw_server.ts: HTTP/1.1 parsed by hand from a TCP socket.</p>
</body>
</html>
`;
const HTML = "text/html; charset=utf-8";
const TEXT = "text/plain; charset=utf-8";

interface ResponseKind {
  status: string;
  contentType: string;
  body: Uint8Array;
  extraHeaders: string;
}

const encoder = new TextEncoder();
function kind(
  status: string,
  contentType: string,
  body: string,
  extraHeaders = "",
): ResponseKind {
  return { status, contentType, body: encoder.encode(body), extraHeaders };
}

const HELLO = 0,
  NOT_FOUND = 1,
  METHOD_NOT_ALLOWED = 2,
  BAD_REQUEST = 3,
  LENGTH_REQUIRED = 4,
  CONTENT_TOO_LARGE = 5,
  HEADERS_TOO_LARGE = 6,
  VERSION_NOT_SUPPORTED = 7;

const KINDS: ResponseKind[] = [
  kind("200 OK", HTML, HELLO_PAGE),
  kind("404 Not Found", TEXT, "Not Found\n"),
  kind(
    "405 Method Not Allowed",
    TEXT,
    "Method Not Allowed\n",
    "Allow: GET, HEAD\r\n",
  ),
  kind("400 Bad Request", TEXT, "Bad Request\n"),
  // We do not decode chunked request bodies (nothing here takes a body), so
  // we cannot tell where the next request starts: ask for Content-Length.
  kind("411 Length Required", TEXT, "Length Required\n"),
  kind("413 Content Too Large", TEXT, "Content Too Large\n"),
  kind(
    "431 Request Header Fields Too Large",
    TEXT,
    "Request Header Fields Too Large\n",
  ),
  kind("505 HTTP Version Not Supported", TEXT, "HTTP Version Not Supported\n"),
];

// What the response says about the connection. HTTP/1.1 keeps it open by
// default, so that needs no header; HTTP/1.0 closes by default, so a kept
// HTTP/1.0 connection says keep-alive, and any closing one says close.
const SAY_NOTHING = 0, SAY_CLOSE = 1, SAY_KEEP_ALIVE = 2;
const CONNECTION_HEADERS = [
  "",
  "Connection: close\r\n",
  "Connection: keep-alive\r\n",
];

let cachedSecond = -1;
let cachedDate = "";
const cachedResponses: (Uint8Array | undefined)[] = [];

/** The bytes of one complete response, from the per-second cache. */
function responseBytes(
  kindIndex: number,
  connection: number,
  isHead: boolean,
): Uint8Array {
  const second = Math.floor(Date.now() / 1000);
  if (second !== cachedSecond) {
    cachedSecond = second;
    // toUTCString() is exactly the IMF-fixdate HTTP wants:
    // "Sun, 22 Nov 2026 02:18:18 GMT".
    cachedDate = new Date(second * 1000).toUTCString();
    cachedResponses.length = 0;
  }
  const slot = (kindIndex * 3 + connection) * 2 + (isHead ? 1 : 0);
  let bytes = cachedResponses[slot];
  if (bytes === undefined) {
    const { status, contentType, body, extraHeaders } = KINDS[kindIndex];
    const head = encoder.encode(
      `HTTP/1.1 ${status}\r\n` +
        `Server: http_raw_server.ts\r\n` +
        `Date: ${cachedDate}\r\n` +
        `Content-Type: ${contentType}\r\n` +
        `Content-Length: ${body.length}\r\n` +
        extraHeaders +
        CONNECTION_HEADERS[connection] +
        `\r\n`,
    );
    bytes = new Uint8Array(head.length + (isHead ? 0 : body.length));
    bytes.set(head);
    if (!isHead) bytes.set(body, head.length);
    cachedResponses[slot] = bytes;
  }
  return bytes;
}

// ---------------------------------------------------------------------------
// Parsing one request head from bytes. RFC 9112 grammar, strictly where being
// lenient would let two parties disagree on where a request ends.

const LF = 0x0a, CR = 0x0d, SP = 0x20, HTAB = 0x09, COLON = 0x3a;

/** tchar from RFC 9110: the characters allowed in methods and header names. */
const IS_TOKEN = new Uint8Array(256);
for (const char of "!#$%&'*+-.^_`|~0123456789") {
  IS_TOKEN[char.charCodeAt(0)] = 1;
}
for (let c = 0x41; c <= 0x5a; c++) IS_TOKEN[c] = IS_TOKEN[c + 0x20] = 1;

/** What the connection loop needs to know about a parsed request. */
interface Request {
  /** Response kind (HELLO, NOT_FOUND…, or an error that closes). */
  kind: number;
  isHead: boolean;
  keepAlive: boolean;
  /** HTTP/1.0 peers get "Connection: keep-alive" when we keep them. */
  isHttp10: boolean;
  contentLength: number;
}

/** Reused for every request: parsing is synchronous, so one is enough. */
const request: Request = {
  kind: HELLO,
  isHead: false,
  keepAlive: true,
  isHttp10: false,
  contentLength: 0,
};

function fail(errorKind: number): Request {
  request.kind = errorKind;
  request.isHead = false;
  request.keepAlive = false;
  request.isHttp10 = false;
  request.contentLength = 0;
  return request;
}

/**
 * Where the head that starts at `from` ends (the index after its blank
 * line), or -1 if it is not complete within `end`. Lines may end in "\r\n"
 * or a bare "\n" (RFC 9112 allows accepting both).
 */
function findHeadEnd(buffer: Uint8Array, from: number, end: number): number {
  // A plain loop rather than indexOf(), which would search on past `end`
  // through the rest of the buffer.
  for (let i = from; i < end; i++) {
    if (buffer[i] !== LF) continue;
    if (i + 1 < end && buffer[i + 1] === LF) return i + 2;
    if (i + 2 < end && buffer[i + 1] === CR && buffer[i + 2] === LF) {
      return i + 3;
    }
  }
  return -1;
}

/** End of the line starting at `from` (the index of its "\r" or "\n"). */
function lineEnd(buffer: Uint8Array, from: number): number {
  const newline = buffer.indexOf(LF, from);
  return newline > from && buffer[newline - 1] === CR ? newline - 1 : newline;
}

function skipNewline(buffer: Uint8Array, at: number): number {
  return buffer[at] === CR ? at + 2 : at + 1;
}

/** Whether buffer[from, to) equals `lower`, ignoring ASCII case. */
function equalsIgnoringCase(
  buffer: Uint8Array,
  from: number,
  to: number,
  lower: string,
): boolean {
  if (to - from !== lower.length) return false;
  for (let i = 0; i < lower.length; i++) {
    if ((buffer[from + i] | 0x20) !== lower.charCodeAt(i)) return false;
  }
  return true;
}

/** Parses the complete head buffer[start, headEnd). */
function parseHead(
  buffer: Uint8Array,
  start: number,
  headEnd: number,
): Request {
  // Request line: method SP request-target SP HTTP-version.
  const requestLineEnd = lineEnd(buffer, start);
  let at = start;
  while (at < requestLineEnd && IS_TOKEN[buffer[at]]) at++;
  const methodEnd = at;
  if (methodEnd === start || buffer[at] !== SP) return fail(BAD_REQUEST);
  const targetStart = ++at;
  // The target is visible ASCII only: no spaces, controls or raw UTF-8.
  while (at < requestLineEnd && buffer[at] > SP && buffer[at] < 0x7f) at++;
  const targetEnd = at;
  if (targetEnd === targetStart || buffer[at] !== SP) return fail(BAD_REQUEST);
  at++;
  // "HTTP/" DIGIT "." DIGIT, and nothing after it.
  if (
    requestLineEnd - at !== 8 ||
    buffer[at] !== 0x48 || buffer[at + 1] !== 0x54 || buffer[at + 2] !== 0x54 ||
    buffer[at + 3] !== 0x50 || buffer[at + 4] !== 0x2f ||
    !isDigit(buffer[at + 5]) || buffer[at + 6] !== 0x2e ||
    !isDigit(buffer[at + 7])
  ) {
    return fail(BAD_REQUEST);
  }
  if (buffer[at + 5] !== 0x31) return fail(VERSION_NOT_SUPPORTED);
  const isHttp10 = buffer[at + 7] === 0x30; // 1.1, 1.2… all speak 1.1

  // Header fields: name ":" OWS value OWS. We act on four of them.
  let hostCount = 0;
  let contentLength = -1;
  let hasTransferEncoding = false;
  let wantsClose = false;
  let wantsKeepAlive = false;
  let headerCount = 0;
  at = skipNewline(buffer, requestLineEnd);
  while (at < headEnd) {
    const end = lineEnd(buffer, at);
    if (end === at) break; // the blank line that ends the head
    if (++headerCount > MAX_HEADER_COUNT) return fail(HEADERS_TOO_LARGE);
    // A line starting with whitespace is obsolete line folding: refuse it,
    // as RFC 9112 allows, rather than guess how a proxy in front read it.
    let nameEnd = at;
    while (nameEnd < end && IS_TOKEN[buffer[nameEnd]]) nameEnd++;
    if (nameEnd === at || buffer[nameEnd] !== COLON) return fail(BAD_REQUEST);
    let valueStart = nameEnd + 1;
    let valueEnd = end;
    while (valueStart < valueEnd && isBlank(buffer[valueStart])) valueStart++;
    while (valueEnd > valueStart && isBlank(buffer[valueEnd - 1])) valueEnd--;
    for (let i = valueStart; i < valueEnd; i++) {
      // No NUL, bare CR or other control characters inside a value.
      const byte = buffer[i];
      if ((byte < SP && byte !== HTAB) || byte === 0x7f) {
        return fail(BAD_REQUEST);
      }
    }
    switch (nameEnd - at) {
      case 4:
        if (equalsIgnoringCase(buffer, at, nameEnd, "host")) hostCount++;
        break;
      case 10:
        if (equalsIgnoringCase(buffer, at, nameEnd, "connection")) {
          // A comma-separated list of tokens, e.g. "keep-alive, Upgrade".
          for (
            const option of latin1(buffer, valueStart, valueEnd).split(",")
          ) {
            const token = option.trim().toLowerCase();
            if (token === "close") wantsClose = true;
            if (token === "keep-alive") wantsKeepAlive = true;
          }
        }
        break;
      case 14:
        if (equalsIgnoringCase(buffer, at, nameEnd, "content-length")) {
          const length = parseDecimal(buffer, valueStart, valueEnd);
          // Two different lengths: which one a proxy used is anyone's guess.
          if (length < 0 || (contentLength >= 0 && length !== contentLength)) {
            return fail(BAD_REQUEST);
          }
          contentLength = length;
        }
        break;
      case 17:
        if (equalsIgnoringCase(buffer, at, nameEnd, "transfer-encoding")) {
          hasTransferEncoding = true;
        }
        break;
    }
    at = skipNewline(buffer, end);
  }

  // HTTP/1.1 requires exactly one Host; HTTP/1.0 allows none.
  if (hostCount > 1 || (hostCount === 0 && !isHttp10)) {
    return fail(BAD_REQUEST);
  }
  if (hasTransferEncoding) {
    // With Content-Length too it is a request-smuggling attempt (RFC 9112
    // 6.1); alone, a chunked body we do not decode. Either way we cannot
    // find the next request, so the connection closes.
    return fail(contentLength >= 0 ? BAD_REQUEST : LENGTH_REQUIRED);
  }
  if (contentLength > MAX_DISCARDED_BODY_BYTES) return fail(CONTENT_TOO_LARGE);

  const isHead = equalsAscii(buffer, start, methodEnd, "HEAD");
  request.isHead = isHead;
  request.isHttp10 = isHttp10;
  request.keepAlive = isHttp10 ? wantsKeepAlive && !wantsClose : !wantsClose;
  request.contentLength = Math.max(contentLength, 0);
  if (!isRootPath(buffer, targetStart, targetEnd)) {
    request.kind = NOT_FOUND; // whatever the method: nothing lives there
  } else if (isHead || equalsAscii(buffer, start, methodEnd, "GET")) {
    request.kind = HELLO;
  } else {
    request.kind = METHOD_NOT_ALLOWED;
  }
  return request;
}

/**
 * Whether the target names "/": origin-form "/" or "/?query", or the
 * absolute form a proxy sends ("http://host/", "http://host").
 */
function isRootPath(buffer: Uint8Array, from: number, to: number): boolean {
  let pathStart = from;
  if (buffer[from] !== 0x2f) {
    // absolute-form: skip "scheme://authority".
    const text = latin1(buffer, from, to);
    const match = /^https?:\/\/[^/?#]*/i.exec(text);
    if (!match) return false;
    pathStart = from + match[0].length;
    if (pathStart === to || buffer[pathStart] === 0x3f) return true;
  }
  return buffer[pathStart] === 0x2f &&
    (pathStart + 1 === to || buffer[pathStart + 1] === 0x3f);
}

/** Methods are case-sensitive ("get" is not GET). */
function equalsAscii(
  buffer: Uint8Array,
  from: number,
  to: number,
  text: string,
): boolean {
  if (to - from !== text.length) return false;
  for (let i = 0; i < text.length; i++) {
    if (buffer[from + i] !== text.charCodeAt(i)) return false;
  }
  return true;
}

function isDigit(byte: number): boolean {
  return byte >= 0x30 && byte <= 0x39;
}

function isBlank(byte: number): boolean {
  return byte === SP || byte === HTAB;
}

/** A non-negative decimal number, or -1 if it is not one (or absurdly big). */
function parseDecimal(buffer: Uint8Array, from: number, to: number): number {
  if (from === to || to - from > 15) return -1;
  let value = 0;
  for (let i = from; i < to; i++) {
    if (!isDigit(buffer[i])) return -1;
    value = value * 10 + buffer[i] - 0x30;
  }
  return value;
}

function latin1(buffer: Uint8Array, from: number, to: number): string {
  return String.fromCharCode(...buffer.subarray(from, to));
}

// ---------------------------------------------------------------------------
// The server: one task per connection (serveTcp), each a plain read loop.

/** A connection's deadline: the moment it is closed unless it progresses. */
interface Deadline {
  conn: Deno.Conn;
  at: number;
}

export function startHttpRawServer(
  options: HttpRawServerOptions = {},
): ServerHandle {
  const idleMs = (options.idleTimeout ?? DEFAULT_IDLE_TIMEOUT_SECONDS) * 1000;
  const maxHeadBytes = options.maxHeadBytes ?? DEFAULT_MAX_HEAD_BYTES;

  // One timer for the whole server instead of one per read: every so often,
  // close the connections whose deadline has passed. Their pending read then
  // fails and their task ends. (A timer per read costs more than the read.)
  const deadlines = new Set<Deadline>();
  const sweep = setInterval(() => {
    const now = Date.now();
    for (const deadline of deadlines) {
      if (now >= deadline.at) closeQuietly(deadline.conn);
    }
  }, Math.min(1000, Math.max(20, idleMs / 5)));

  async function serveConnection(conn: Deno.Conn) {
    const deadline: Deadline = { conn, at: Date.now() + idleMs };
    deadlines.add(deadline);
    try {
      // When the sweep or a shutdown closes the connection, the pending read
      // fails; serveTcp takes that as the ordinary disconnect it is.
      await exchange(conn, deadline);
    } finally {
      deadlines.delete(deadline);
    }
  }

  async function exchange(conn: Deno.Conn, deadline: Deadline) {
    const input = new Uint8Array(Math.max(16 * 1024, maxHeadBytes * 2));
    const output = new Uint8Array(16 * 1024);
    let start = 0; // first unparsed byte in input
    let end = 0; // one past the last byte read
    let scanned = 0; // bytes before this hold no end of the current head
    let discard = 0; // body bytes of the last request still to skip
    let outputLength = 0;

    const flushing: Uint8Array[] = []; // full output buffers waiting to go
    const queue = (bytes: Uint8Array) => {
      if (outputLength + bytes.length > output.length) {
        // Many pipelined responses: send what we have first.
        flushing.push(output.slice(0, outputLength));
        outputLength = 0;
      }
      output.set(bytes, outputLength);
      outputLength += bytes.length;
    };
    const flush = async () => {
      deadline.at = Date.now() + idleMs; // a client that never reads is cut off
      for (const bytes of flushing) await writeAll(conn, bytes);
      flushing.length = 0;
      if (outputLength > 0) {
        await writeAll(conn, output.subarray(0, outputLength));
      }
      outputLength = 0;
      deadline.at = Date.now() + idleMs; // the next request's turn
    };

    while (true) {
      // Answer every complete request already in the buffer.
      let closing = false;
      while (true) {
        if (discard > 0) {
          const skipped = Math.min(discard, end - start);
          start += skipped;
          discard -= skipped;
          if (discard > 0) break;
        }
        // Empty lines before a request line are allowed (RFC 9112 2.2).
        while (start < end && (input[start] === CR || input[start] === LF)) {
          start++;
        }
        scanned = Math.max(scanned, start);
        const headEnd = findHeadEnd(input, scanned, end);
        if (headEnd < 0) {
          // Incomplete; next time search only the new bytes (and the last
          // three, which may be the start of "\r\n\r\n").
          scanned = Math.max(start, end - 3);
          if (end - start > maxHeadBytes) {
            queue(responseBytes(HEADERS_TOO_LARGE, SAY_CLOSE, false));
            closing = true;
          }
          break;
        }
        const parsed = headEnd - start > maxHeadBytes
          ? fail(HEADERS_TOO_LARGE)
          : parseHead(input, start, headEnd);
        const say = !parsed.keepAlive
          ? SAY_CLOSE
          : parsed.isHttp10
          ? SAY_KEEP_ALIVE
          : SAY_NOTHING;
        queue(responseBytes(parsed.kind, say, parsed.isHead));
        start = scanned = headEnd;
        if (!parsed.keepAlive) {
          closing = true;
          break;
        }
        discard = parsed.contentLength;
      }

      if (outputLength > 0 || flushing.length > 0) await flush();
      if (closing) {
        await lingeringClose(conn, input, deadline);
        return;
      }

      // Keep the unparsed tail at the front so the buffer never grows.
      if (start === end) {
        start = end = scanned = 0;
      } else if (start > 0) {
        input.copyWithin(0, start, end);
        end -= start;
        scanned -= start;
        start = 0;
      }
      const count = await conn.read(input.subarray(end));
      if (count === null) return; // the client is done (mid-request or not)
      end += count;
    }
  }

  /**
   * Closing right after the last response can lose it: if the client's next
   * bytes are still unread, the kernel answers close() with a reset, and the
   * client may drop our response unread. So we shut our sending side, then
   * read and discard until the client closes (bounded in time and bytes).
   */
  async function lingeringClose(
    conn: Deno.Conn,
    buffer: Uint8Array,
    deadline: Deadline,
  ) {
    deadline.at = Date.now() + Math.min(idleMs, LINGER_MS);
    try {
      await conn.closeWrite();
    } catch {
      return; // the client is already gone
    }
    let budget = MAX_DISCARDED_BODY_BYTES;
    while (budget > 0) {
      const count = await conn.read(buffer);
      if (count === null) return;
      budget -= count;
    }
  }

  return serveTcp({
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port ?? DEFAULT_PORT,
    onShutdown: () => clearInterval(sweep),
  }, serveConnection);
}

if (import.meta.main) {
  await runCommand("http_raw_server.ts", () => {
    const { values } = parseCommandLine(Deno.args, {
      usage: USAGE,
      options: {
        hostname: { type: "string", default: "127.0.0.1" },
        port: { type: "string", default: String(DEFAULT_PORT) },
        "idle-timeout": {
          type: "string",
          default: String(DEFAULT_IDLE_TIMEOUT_SECONDS),
        },
      },
    });
    const server = startHttpRawServer({
      hostname: values.hostname,
      port: parsePort(values.port),
      idleTimeout: parseSeconds(values["idle-timeout"], "--idle-timeout"),
    });
    return runUntilSignal(server, "http");
  });
}
