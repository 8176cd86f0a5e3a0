/**
 * A "Hello world!" web server spoken by hand over TCP: it finds HTTP/1.1
 * request heads in the bytes a connection delivers and answers each one.
 *
 * Run:    deno run --allow-net scripts/http_raw_server.ts
 *         deno run --allow-net --allow-read=certs scripts/http_raw_server.ts --cert certs/localhost.pem --key certs/localhost.key
 * Try it: curl -i http://127.0.0.1:8001/ http://127.0.0.1:8001/   (one connection, two answers)
 *         printf 'GET / HTTP/1.1\r\nHost: x\r\n\r\nHEAD / HTTP/1.1\r\nHost: x\r\n\r\n' | nc -q 1 127.0.0.1 8001
 *
 * 003 §TCP编程's server serves one client at a time: one recv(8096), ignored,
 * then "HTTP/1.1 200 OK\r\n\r\n" and the page, then close(). Only the close
 * says where the page ends, so each request costs a connection; a request
 * longer than one recv() is left unread (and closing a socket on unread
 * bytes sends a reset, which can destroy the answer); a client that says
 * nothing stalls everyone. Here bytes are buffered until a whole head is in
 * (in pieces, or several at once), checked against limits (431, 400, 505),
 * and answered with a Content-Length, so the connection can stay open.
 *
 * Read first: serveConnection() (keep-alive, pipelining), then parseHead().
 */
import * as cli from "../lib/cli.ts";
import { Sweeper } from "../lib/deadline.ts";
import * as http1 from "../lib/http1.ts";
import { findHeadEnd } from "../lib/http1.ts";
import { closeQuietly, concat, lingeringClose, writeAll } from "../lib/io.ts";
import { BufferedReader } from "../lib/reader.ts";
import * as server from "../lib/server.ts";
import * as tls from "../lib/tls.ts";

export const DEFAULT_PORT = 8001;
export const DEFAULT_IDLE_TIMEOUT_SECONDS = 5;
const IDLE_TIMEOUT = DEFAULT_IDLE_TIMEOUT_SECONDS;
/** Largest request head (request line + headers); Node allows 16 KiB. */
export const DEFAULT_MAX_HEAD_BYTES = 8 * 1024;
const MAX_HEADER_COUNT = 100;
const MAX_BODY = 1024 * 1024; // read and thrown away; above it: 413, close
const LINGER_MS = 2000; // a closing connection may keep sending this long
const BATCH_BYTES = 16 * 1024; // answers to pipelined requests, then a write
const LISTEN = server.listenOptions(DEFAULT_PORT);

const USAGE = `Usage: http_raw_server.ts [options]

Serves a "Hello world!" page over HTTP/1.1, parsed by hand from a TCP socket.

Options:
${LISTEN.help}
  --idle-timeout SECONDS  close a connection that sent no complete request for this long (default ${DEFAULT_IDLE_TIMEOUT_SECONDS})
${tls.SERVER_TLS_HELP}
                     (then HTTPS; asking clients for a certificate: not in
                     Deno yet, deno#26825)
  -h, --help              show this help`;

export interface HttpRawServerOptions {
  hostname?: string;
  port?: number;
  idleTimeout?: number; // seconds to send the next complete request
  maxHeadBytes?: number; // request line + headers (default 8 KiB)
  tls?: server.ServerTls; // certificate and key: HTTPS
  maxConnections?: number;
  maxPerAddress?: number;
}

// --- One request head, parsed in place -------------------------------------
// RFC 9112, strict wherever leniency would let a proxy in front of us and us
// disagree on where a request ends (lib/http1.ts: the rules the client uses).

const LF = 0x0a, CR = 0x0d, SP = 0x20, SLASH = 0x2f, QUESTION = 0x3f;
const HELLO = 0, NOT_FOUND = 1, METHOD_NOT_ALLOWED = 2, BAD_REQUEST = 3;
const LENGTH_REQUIRED = 4, TOO_LARGE = 5, HEAD_TOO_LARGE = 6, BAD_VERSION = 7;

// What an answer says of the connection: HTTP/1.1 stays open unless told,
// HTTP/1.0 closes unless told, so a kept HTTP/1.0 connection says so.
const SAY_NOTHING = 0, SAY_CLOSE = 1, SAY_KEEP_ALIVE = 2;
const CONNECTION = ["", "Connection: close\r\n", "Connection: keep-alive\r\n"];

// What the connection needs to know of a request: one object, reused; after
// an error answer (FAILED), the connection closes.
const request = { kind: HELLO, isHead: false, say: SAY_NOTHING, length: 0 };
const field: http1.FieldLine = { nameEnd: 0, valueStart: 0, valueEnd: 0 };
const FAILED = { isHead: false, say: SAY_CLOSE, length: 0 };
const fail = (kind: number) => Object.assign(request, FAILED, { kind });

/**
 * Parses the complete head bytes[start, headEnd): the request line, then
 * the fields, four of which matter here (Host, Connection, Content-Length,
 * Transfer-Encoding). Allocates nothing for an ordinary GET.
 */
function parseHead(bytes: Uint8Array, start: number, headEnd: number) {
  // Request line: method SP request-target SP HTTP-version.
  const lineEnd = endOfLine(bytes, start);
  let at = start;
  while (at < lineEnd && http1.IS_TOKEN[bytes[at]]) at++;
  const methodEnd = at;
  if (methodEnd === start || bytes[at] !== SP) return fail(BAD_REQUEST);
  const targetStart = ++at;
  // The target is visible ASCII only: no spaces, controls or raw UTF-8.
  while (at < lineEnd && bytes[at] > SP && bytes[at] < 0x7f) at++;
  const targetEnd = at;
  if (targetEnd === targetStart || bytes[at] !== SP) return fail(BAD_REQUEST);
  // "HTTP/" DIGIT "." DIGIT, and nothing after it.
  const major = bytes[at + 6], minor = bytes[at + 8];
  if (
    lineEnd - at !== 9 || !bytesAre(bytes, at + 1, at + 6, "HTTP/") ||
    !isDigit(major) || bytes[at + 7] !== 0x2e || !isDigit(minor)
  ) {
    return fail(BAD_REQUEST);
  }
  if (major !== 0x31) return fail(BAD_VERSION); // HTTP/2 on this port
  const isHttp10 = minor === 0x30; // 1.1, 1.2… all speak 1.1

  let hosts = 0, length = -1, chunked = false, count = 0;
  let wantsClose = false, wantsKeepAlive = false;
  for (at = nextLine(bytes, lineEnd); at < headEnd;) {
    const end = endOfLine(bytes, at);
    if (end === at) break; // the blank line that ends the head
    if (++count > MAX_HEADER_COUNT) return fail(HEAD_TOO_LARGE);
    // A line that starts with a space (obsolete folding) fails too: RFC
    // 9112 §5.2 lets us refuse it rather than guess what it meant.
    if (!http1.parseFieldLine(bytes, at, end, field)) return fail(BAD_REQUEST);
    const { nameEnd: name, valueStart: from, valueEnd: to } = field;
    if (bytesAre(bytes, at, name, "host", true)) hosts++;
    if (bytesAre(bytes, at, name, "transfer-encoding", true)) chunked = true;
    if (bytesAre(bytes, at, name, "content-length", true)) {
      // Two different lengths: which one did a proxy in front believe?
      length = http1.parseContentLength(bytes, from, to, length);
      if (length < 0) return fail(BAD_REQUEST);
    }
    if (bytesAre(bytes, at, name, "connection", true)) {
      // A list of tokens, e.g. "keep-alive, Upgrade".
      for (const option of http1.latin1(bytes, from, to).split(",")) {
        const token = option.trim().toLowerCase();
        wantsClose ||= token === "close";
        wantsKeepAlive ||= token === "keep-alive";
      }
    }
    at = nextLine(bytes, end);
  }
  // HTTP/1.1 requires exactly one Host; HTTP/1.0 allows none.
  if (hosts > 1 || (hosts === 0 && !isHttp10)) return fail(BAD_REQUEST);
  // Transfer-Encoding with Content-Length is a smuggling attempt (RFC 9112
  // §6.1); alone, a chunked body we do not decode. Either way we cannot
  // find the next request: answer and close.
  if (chunked) return fail(length >= 0 ? BAD_REQUEST : LENGTH_REQUIRED);
  if (length > MAX_BODY) return fail(TOO_LARGE);

  const keep = isHttp10 ? wantsKeepAlive && !wantsClose : !wantsClose;
  request.say = !keep ? SAY_CLOSE : isHttp10 ? SAY_KEEP_ALIVE : SAY_NOTHING;
  request.isHead = bytesAre(bytes, start, methodEnd, "HEAD");
  request.length = Math.max(length, 0);
  request.kind = !isRootPath(bytes, targetStart, targetEnd)
    ? NOT_FOUND // whatever the method: nothing lives there
    : request.isHead || bytesAre(bytes, start, methodEnd, "GET")
    ? HELLO
    : METHOD_NOT_ALLOWED;
  return request;
}

/** Whether the target is "/" or "/?query", or absolute: "http://host[/]". */
function isRootPath(bytes: Uint8Array, from: number, to: number): boolean {
  if (bytes[from] !== SLASH) {
    // absolute-form, as a proxy sends it: skip "scheme://authority".
    const scheme = /^https?:\/\/[^/?#]*/i.exec(http1.latin1(bytes, from, to));
    if (!scheme) return false;
    from += scheme[0].length;
    if (from === to || bytes[from] === QUESTION) return true;
  }
  const next = bytes[from + 1];
  return bytes[from] === SLASH && (from + 1 === to || next === QUESTION);
}

const isDigit = (byte: number) => byte >= 0x30 && byte <= 0x39;

// Lines end in CRLF or a bare LF (RFC 9112 §2.2): where one ends (at its CR
// or LF), and where the next one starts.
function endOfLine(bytes: Uint8Array, from: number): number {
  const newline = bytes.indexOf(LF, from);
  return newline > from && bytes[newline - 1] === CR ? newline - 1 : newline;
}
const nextLine = (bytes: Uint8Array, lineEnd: number) =>
  bytes[lineEnd] === CR ? lineEnd + 2 : lineEnd + 1;

/** Whether bytes[from, to) is `text`; with `anyCase`, letters in any case
 * (a name against lower-case `text`; methods are case-sensitive). */
function bytesAre(
  bytes: Uint8Array,
  from: number,
  to: number,
  text: string,
  anyCase = false,
): boolean {
  if (to - from !== text.length) return false;
  const fold = anyCase ? 0x20 : 0; // 'A' | 0x20 is 'a'; '-' and digits stay
  for (let i = 0; i < text.length; i++) {
    if ((bytes[from + i] | fold) !== text.charCodeAt(i)) return false;
  }
  return true;
}

// --- Answers, built once a second -------------------------------------------
// Bytes that depend on the kind, on HEAD (no body, same Content-Length), on
// what we say about the connection, and on the Date (a new one each second).

const PAGE = `<!DOCTYPE html>
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
const STATUS = [
  "200 OK",
  "404 Not Found",
  "405 Method Not Allowed",
  "400 Bad Request",
  "411 Length Required",
  "413 Content Too Large",
  "431 Request Header Fields Too Large",
  "505 HTTP Version Not Supported",
];
const encoder = new TextEncoder();
let cachedSecond = -1;
const cached: (Uint8Array | undefined)[] = [];

function answer(kind: number, say: number, isHead: boolean): Uint8Array {
  const second = Math.floor(Date.now() / 1000);
  if (second !== cachedSecond) [cachedSecond, cached.length] = [second, 0];
  const slot = (kind * 3 + say) * 2 + (isHead ? 1 : 0);
  if (cached[slot]) return cached[slot];
  const status = STATUS[kind];
  const body = encoder.encode(kind === HELLO ? PAGE : status.slice(4) + "\n");
  const type = kind === HELLO ? "text/html" : "text/plain";
  const allow = kind === METHOD_NOT_ALLOWED ? "Allow: GET, HEAD\r\n" : "";
  // toUTCString() is the IMF-fixdate HTTP wants: "Sun, 22 Nov 2026 …".
  const head = encoder.encode(
    `HTTP/1.1 ${status}\r\nServer: http_raw_server.ts\r\n` +
      `Date: ${new Date(second * 1000).toUTCString()}\r\n` +
      `Content-Type: ${type}; charset=utf-8\r\n` +
      `Content-Length: ${body.length}\r\n${allow}${CONNECTION[say]}\r\n`,
  );
  return cached[slot] = isHead ? head : concat([head, body]);
}

// --- The server --------------------------------------------------------------

export function startHttpRawServer(options: HttpRawServerOptions = {}) {
  const idleMs = (options.idleTimeout ?? DEFAULT_IDLE_TIMEOUT_SECONDS) * 1000;
  const maxHead = options.maxHeadBytes ?? DEFAULT_MAX_HEAD_BYTES;
  // Room for a batch of pipelined requests, and always for more than a head.
  const capacity = Math.max(16 * 1024, maxHead * 2);
  const lingerMs = Math.min(idleMs, LINGER_MS);
  // One timer for every connection's idle deadline, not one per read.
  const sweeper = Sweeper.forTimeout(idleMs);

  /**
   * One connection: answer every complete request already read, in order,
   * in one write (pipelining); then read more (keep-alive). A head is looked
   * for only in bytes not yet searched, and never past maxHead. The hot path
   * allocates nothing: the reader's buffer is scanned in place and a lone
   * answer goes out straight from the cache.
   */
  async function serveConnection(conn: Deno.Conn) {
    const reader = new BufferedReader(conn, { maxLine: capacity });
    // The sweeper closes the connection once a complete request is overdue:
    // the pending read (or a write to a client that stopped reading) fails.
    const deadline = sweeper.add(idleMs, () => closeQuietly(conn));
    const answers: Uint8Array[] = []; // the first `queued` wait to be sent
    let queued = 0, batched = 0;
    const send = async () => {
      const bytes = queued > 1 ? concat(answers.slice(0, queued)) : answers[0];
      deadline.at = Date.now() + idleMs; // a client that never reads is cut off
      await writeAll(conn, bytes);
      queued = batched = 0;
      deadline.at = Date.now() + idleMs; // the next request's turn
    };
    let scanned = 0; // bytes after reader.start known to hold no head end
    let discard = 0; // body bytes of the last request still to skip
    let closing = false;
    try {
      while (true) {
        while (!closing) {
          const skipped = Math.min(discard, reader.buffered);
          reader.consume(skipped);
          if ((discard -= skipped) > 0) break;
          // Empty lines before a request line are allowed (RFC 9112 §2.2).
          const { bytes, end } = reader;
          let start = reader.start;
          while (start < end && (bytes[start] === CR || bytes[start] === LF)) {
            start++;
          }
          reader.consume(start - reader.start);
          const headEnd = findHeadEnd(bytes, start + scanned, end);
          if (headEnd < 0 && end - start <= maxHead) {
            // Not all here yet. Next time, search only the new bytes (and
            // the last three, which may begin the "\r\n\r\n").
            scanned = Math.max(0, end - start - 3);
            break;
          }
          const parsed = headEnd < 0 || headEnd - start > maxHead
            ? fail(HEAD_TOO_LARGE)
            : parseHead(bytes, start, headEnd);
          const bytesOut = answer(parsed.kind, parsed.say, parsed.isHead);
          batched += (answers[queued++] = bytesOut).length;
          if (headEnd > 0) reader.consume(headEnd - start);
          scanned = 0;
          closing = parsed.say === SAY_CLOSE;
          discard = parsed.length;
          if (batched >= BATCH_BYTES) await send();
        }
        if (queued > 0) await send();
        // Closing: first read and drop what the client still sends for a
        // moment, so that our last answer is not destroyed by a reset.
        if (closing) return await lingeringClose(conn, lingerMs, MAX_BODY);
        if (!await reader.fill(capacity)) return; // the client is done
      }
    } finally {
      sweeper.remove(deadline);
    }
  }

  const { hostname = "127.0.0.1", port = DEFAULT_PORT } = options;
  return server.serveTcp({ ...options, hostname, port }, serveConnection);
}

if (import.meta.main) {
  await cli.runCommand("http_raw_server.ts", async () => {
    const { values } = cli.parseCommandLine(Deno.args, {
      usage: USAGE,
      options: {
        ...LISTEN.options,
        "idle-timeout": { type: "string", default: `${IDLE_TIMEOUT}` },
        ...tls.SERVER_TLS_OPTIONS,
      },
    });
    const listen = await server.parseListen(values);
    const running = startHttpRawServer({
      ...listen,
      idleTimeout: cli.parseSeconds(values["idle-timeout"], "--idle-timeout"),
    });
    return server.runUntilSignal(running, listen.tls ? "https" : "http");
  });
}
