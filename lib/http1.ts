// HTTP/1.1's grammar, written once for the two scripts that speak it by hand:
// http_client.ts (reads responses) and http_raw_server.ts (reads requests).
// Two parsers that disagree on what a field name, a field value or a
// Content-Length may be are how request smuggling happens (RFC 9112 §11.2),
// so both use the same rules here. The byte-level ones (token table, field
// line, Content-Length) scan a buffer in place, allocating nothing, for the
// raw server's hot path; the readers over lib/reader.ts's BufferedReader
// (response head, header and trailer fields, chunked and plain bodies, the
// proxy CONNECT) are the client's, kept here to keep its lesson in view.
import { TimedConn } from "./deadline.ts";
import { dial, startTlsWithin } from "./dial.ts";
import {
  classifyError,
  Failure,
  isExpectedError,
  UsageError,
} from "./errors.ts";
import { formatHostPort, type Reader, writeAll } from "./io.ts";
import { BufferedReader, LineTooLongError } from "./reader.ts";
import { printable } from "./terminal.ts";
import type { ClientTls } from "./tls.ts";

/** A message that breaks HTTP/1.1 (or a limit): one line, exit 1. */
export class HttpError extends Failure {}

const SP = 0x20, HTAB = 0x09, COLON = 0x3a, COMMA = 0x2c, DEL = 0x7f;
const LF = 0x0a, CR = 0x0d;

/** tchar (RFC 9110 §5.6.2): the bytes methods and field names are made of. */
export const IS_TOKEN = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") IS_TOKEN[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) IS_TOKEN[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) IS_TOKEN[c] = IS_TOKEN[c + 0x20] = 1;

/** A field line's parts: name [line start, nameEnd), value [valueStart, valueEnd). */
export interface FieldLine {
  nameEnd: number;
  valueStart: number;
  valueEnd: number;
}

/**
 * Parses `name ":" OWS value OWS` in bytes[from, to) into `into`. False when
 * the name is not a token (empty, a space before the colon, a folded line)
 * or the value holds a control character.
 */
export function parseFieldLine(
  bytes: Uint8Array,
  from: number,
  to: number,
  into: FieldLine,
): boolean {
  let at = from;
  while (at < to && IS_TOKEN[bytes[at]] === 1) at++;
  if (at === from || at === to || bytes[at] !== COLON) return false;
  let start = at + 1, end = to;
  while (start < end && (bytes[start] === SP || bytes[start] === HTAB)) start++;
  while (end > start && (bytes[end - 1] === SP || bytes[end - 1] === HTAB)) {
    end--;
  }
  if (hasControls(bytes, start, end)) return false;
  into.nameEnd = at;
  into.valueStart = start;
  into.valueEnd = end;
  return true;
}

/**
 * Whether bytes[from, to) holds a control character other than tab: a NUL,
 * a bare CR or an ESC in a head is never innocent (RFC 9110 §5.5).
 */
export function hasControls(bytes: Uint8Array, from: number, to: number) {
  for (let i = from; i < to; i++) {
    if ((bytes[i] < SP && bytes[i] !== HTAB) || bytes[i] === DEL) return true;
  }
  return false;
}

/** Where the line starting at `from` ends: its CR of CRLF, or a bare LF. */
export function endOfLine(bytes: Uint8Array, from: number): number {
  const newline = bytes.indexOf(LF, from);
  return newline > from && bytes[newline - 1] === CR ? newline - 1 : newline;
}

/** Where the next line starts, given endOfLine()'s answer. */
export function nextLine(bytes: Uint8Array, lineEnd: number): number {
  return bytes[lineEnd] === CR ? lineEnd + 2 : lineEnd + 1;
}

/**
 * Where the head that starts at `from` ends (past its blank line), or -1 if
 * not within `end`. Lines end in "\r\n" or a bare "\n" (RFC 9112 §2.2).
 */
export function findHeadEnd(bytes: Uint8Array, from: number, end: number) {
  // A plain loop: indexOf() would search the rest of the buffer past `end`.
  for (let i = from; i < end; i++) {
    if (bytes[i] !== LF) continue;
    if (i + 1 < end && bytes[i + 1] === LF) return i + 2;
    if (i + 2 < end && bytes[i + 1] === CR && bytes[i + 2] === LF) return i + 3;
  }
  return -1;
}

/**
 * Whether bytes[from, to) is `text`; with `anyCase`, letters in any case
 * (for a field name already checked to be a token, and `text` in lower
 * case; methods are case-sensitive).
 */
export function bytesAre(
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

/**
 * A Content-Length value in bytes[from, to): digits only, a safe integer; a
 * list ("5, 5") or a repeated field only if every value is the same (RFC
 * 9110 §8.6), `previous` being the one seen before (-1: none). Returns the
 * length, or -1: then nobody can tell where the message ends.
 */
export function parseContentLength(
  bytes: Uint8Array,
  from: number,
  to: number,
  previous = -1,
): number {
  let length = previous, at = from;
  while (true) {
    let value = 0, digits = 0;
    for (; at < to && bytes[at] >= 0x30 && bytes[at] <= 0x39; at++, digits++) {
      value = value * 10 + (bytes[at] - 0x30);
    }
    if (digits === 0 || digits > 16 || !Number.isSafeInteger(value)) return -1;
    if (length >= 0 && value !== length) return -1;
    length = value;
    while (at < to && (bytes[at] === SP || bytes[at] === HTAB)) at++;
    if (at === to) return length;
    if (bytes[at++] !== COMMA) return -1;
    while (at < to && (bytes[at] === SP || bytes[at] === HTAB)) at++;
  }
}

/** Bytes to text, one character per byte (ISO-8859-1: exactly reversible). */
export function latin1(bytes: Uint8Array, from = 0, to = bytes.length): string {
  let text = "";
  for (let at = from; at < to; at += 8192) {
    text += String.fromCharCode(...bytes.subarray(at, Math.min(to, at + 8192)));
  }
  return text;
}

/** Text to bytes, one byte per character (heads are ASCII or latin1). */
export function encodeLatin1(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

/**
 * The next line without its CRLF, null at the end of input; HttpError
 * `tooLong` past `limit` bytes, or if the input ends inside the line.
 */
export async function readHttpLine(
  reader: BufferedReader,
  limit: number,
  tooLong: string,
): Promise<Uint8Array | null> {
  let line;
  try {
    line = await reader.readLine(limit);
  } catch (error) {
    throw error instanceof LineTooLongError ? new HttpError(tooLong) : error;
  }
  if (line !== null && !reader.lastLineTerminated) {
    throw new HttpError("connection closed in the middle of a line");
  }
  return line;
}

export type HeaderList = [name: string, value: string][];

/**
 * Header (or trailer) fields up to the empty line, within `budget` bytes
 * counting each CRLF. A folded line is joined to its field with a space, as
 * RFC 9112 §5.2 asks of a client. Each line as received goes to `lines`.
 */
export async function readFields(
  reader: BufferedReader,
  budget: number,
  kind: "header" | "trailer",
  tooLarge: string,
  lines: string[] = [],
): Promise<HeaderList> {
  const fields: HeaderList = [];
  const field: FieldLine = { nameEnd: 0, valueStart: 0, valueEnd: 0 };
  while (true) {
    const line = await readHttpLine(reader, budget, tooLarge);
    if (line === null) {
      throw new HttpError(`connection closed in the middle of the ${kind}s`);
    }
    budget -= line.length + 2;
    if (budget < 0) throw new HttpError(tooLarge);
    if (line.length === 0) return fields;
    const text = latin1(line);
    lines.push(text);
    const folded = line[0] === SP || line[0] === HTAB;
    if (folded && fields.length === 0) {
      throw new HttpError(`malformed ${kind}: continuation line first`);
    }
    if (folded && !hasControls(line, 0, line.length)) {
      fields[fields.length - 1][1] += " " + text.trim();
    } else if (!folded && parseFieldLine(line, 0, line.length, field)) {
      const name = latin1(line, 0, field.nameEnd);
      fields.push([name, latin1(line, field.valueStart, field.valueEnd)]);
    } else {
      throw new HttpError(`malformed ${kind} line: '${printable(text)}'`);
    }
  }
}

export interface ResponseHead {
  version: string; // "HTTP/1.1" or "HTTP/1.0"
  status: number;
  reason: string;
  statusLine: string;
  headers: HeaderList; // in the order received; compare names case-blind
  lines: string[]; // the head exactly as received, one entry per line
}

const STATUS_LINE = /^(HTTP\/1\.[01]) ([1-9]\d\d)(?: (.*))?$/;

/** A status line and headers, within `maxBytes` in all; or HttpError. */
export async function readResponseHead(
  reader: BufferedReader,
  maxBytes = 64 * 1024,
): Promise<ResponseHead> {
  const tooLarge = `response head larger than ${maxBytes} bytes`;
  const line = await readHttpLine(reader, maxBytes, tooLarge);
  if (line === null) {
    throw new HttpError("server closed the connection without answering");
  }
  const statusLine = latin1(line);
  const match = STATUS_LINE.exec(statusLine);
  if (!match || hasControls(line, 0, line.length)) {
    throw new HttpError(`malformed status line: '${printable(statusLine)}'`);
  }
  const lines = [statusLine];
  const budget = maxBytes - line.length - 2;
  const headers = await readFields(reader, budget, "header", tooLarge, lines);
  const [, version, status, reason = ""] = match;
  return { version, status: +status, reason, statusLine, headers, lines };
}

/** The final response head: 1xx ones (100 Continue…) skipped, at most 10. */
export async function readFinalHead(reader: BufferedReader, maxBytes: number) {
  for (let interim = 0;; interim++) {
    const head = await readResponseHead(reader, maxBytes);
    if (head.status >= 200) return head;
    if (interim === 10) {
      throw new HttpError("more than 10 interim (1xx) responses");
    }
  }
}

/**
 * Where a redirect sends a request for `url`, and how (RFC 9110 §15.4):
 * undefined if `head` is not one. 303 means "GET the answer there"; after
 * 301 and 302 browsers turn a POST into a GET too, and everyone expects it.
 */
export function redirectOf(head: ResponseHead, url: URL, method: string) {
  const { status, headers } = head;
  const location = headers.find(([name]) => /^location$/i.test(name))?.[1];
  if (![301, 302, 303, 307, 308].includes(status) || !location) return;
  const next = URL.parse(location, url); // relative is normal
  if (next?.protocol !== "http:" && next?.protocol !== "https:") {
    throw new HttpError(
      `redirect to an unusable URL: '${printable(location)}'`,
    );
  }
  const toGet = status === 303
    ? method !== "HEAD"
    : status < 303 && method === "POST";
  return { url: next, method: toGet ? "GET" : method, keepsBody: !toGet };
}

/** Every value of the header `name` (lower case), comma lists split. */
export function headerValues(headers: HeaderList, name: string): string[] {
  return headers.filter(([key]) => key.toLowerCase() === name)
    .flatMap(([, value]) => value.split(",").map((item) => item.trim()))
    .filter((value) => value !== "");
}

/** A message body: read() gives bytes, then null at its end. */
export interface BodyReader extends Reader {
  /** Trailer fields, known once a chunked body has been read to its end. */
  readonly trailers: HeaderList;
}

/** `length` bytes (fewer is an error), or with null, all until the close. */
export class PlainBody implements BodyReader {
  readonly trailers: HeaderList = [];
  #left: number;
  constructor(private reader: Reader, readonly length: number | null) {
    this.#left = length ?? Infinity;
  }

  async read(into: Uint8Array): Promise<number | null> {
    if (this.#left === 0) return null;
    const count = await this.reader.read(
      into.subarray(0, Math.min(into.length, this.#left)),
    );
    if (count === null && this.length !== null) {
      const got = this.length - this.#left;
      throw new HttpError(
        `connection closed after ${got} of ${this.length} body bytes`,
      );
    }
    if (count !== null) this.#left -= count;
    return count;
  }
}

const MAX_CHUNK_LINE = 4096; // a hex size, and extensions nobody uses
const CHUNK_SIZE = /^([0-9A-Fa-f]{1,13})[ \t]*(;.*)?$/;

/**
 * The chunked transfer coding: `<hex size>[;extensions]\r\n<data>\r\n`
 * repeated, then a `0` chunk, trailer fields and an empty line. Extensions
 * are ignored; trailers are kept, within `maxTrailerBytes`.
 */
export class ChunkedBody implements BodyReader {
  trailers: HeaderList = [];
  #left = 0; // data bytes left in the current chunk
  #inChunk = false; // a chunk's data (and its CRLF) came before
  #done = false;

  constructor(
    private reader: BufferedReader,
    readonly maxTrailerBytes = 64 * 1024,
  ) {}

  async read(into: Uint8Array): Promise<number | null> {
    if (into.length === 0) return 0;
    while (!this.#done && this.#left === 0) await this.#nextChunk();
    if (this.#done) return null;
    const count = await this.reader.read(
      into.subarray(0, Math.min(into.length, this.#left)),
    );
    if (count === null) {
      throw new HttpError("connection closed in the middle of a chunk");
    }
    this.#left -= count;
    return count;
  }

  async #nextChunk() {
    // A chunk's data is followed by CRLF and nothing else.
    if (this.#inChunk && (await this.#line("chunk")).length !== 0) {
      throw new HttpError("chunk data longer than its declared size");
    }
    const line = latin1(await this.#line("chunk size"));
    const size = CHUNK_SIZE.exec(line);
    if (!size) {
      throw new HttpError(`malformed chunk size line: '${printable(line)}'`);
    }
    this.#left = parseInt(size[1], 16);
    this.#inChunk = true;
    if (this.#left === 0) {
      this.trailers = await readFields(
        this.reader,
        this.maxTrailerBytes,
        "trailer",
        `trailers larger than ${this.maxTrailerBytes} bytes`,
      );
      this.#done = true;
    }
  }

  async #line(what: string): Promise<Uint8Array> {
    const line = await readHttpLine(
      this.reader,
      MAX_CHUNK_LINE,
      `${what} line longer than ${MAX_CHUNK_LINE} bytes`,
    );
    if (line === null) {
      throw new HttpError("connection closed in the middle of a chunked body");
    }
    return line;
  }
}

// --- The client's side: URLs, proxies, connections, redirects ---------------

/** Host (IPv6 without brackets), port and host:port for display, of a URL. */
export function endpointOf(url: URL) {
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
  const named = { ...tls, serverName: target.hostname };
  const conn = await startTlsWithin(tcp, named, ms, target.display);
  return new PeerConn(conn, ms, target.display);
}
