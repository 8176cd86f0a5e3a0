/**
 * HTTP/1.1 client spoken by hand over a TCP socket (TLS for https): builds
 * the request, parses the status line and headers, and streams the body,
 * however the server frames it (Content-Length, chunked, or closing).
 *
 * Run:    deno run --allow-net scripts/http_client.ts http://127.0.0.1:8000/
 *         deno run --allow-net --allow-write=page.html scripts/http_client.ts -o page.html http://127.0.0.1:8000/
 *         deno run --allow-net --allow-read=ca.pem scripts/http_client.ts --cacert ca.pem https://localhost:8443/
 * Try it: python3 -m http.server 8000 --bind 127.0.0.1   (then run the first line)
 *    or:  deno run --allow-net scripts/http_client.ts -i --data username=ada http://127.0.0.1:8000/register
 *         (the form POST, against scripts/http_server.ts)
 *
 * The tutorial sends "GET / HTTP/1.1" over a bare socket, recv()s until
 * nothing comes and splits at the first "\r\n\r\n": that works only while
 * the server closes after one response, never sends a chunked body, and the
 * page fits in memory as text. Here the head is read line by line within a
 * size limit, the body is framed as RFC 9112 says (chunked, Content-Length,
 * or connection close; none for HEAD, 204 and 304) and streamed as bytes,
 * and every wait is bounded. Only --links needs a package (npm:htmlparser2,
 * loaded when asked for).
 */
import {
  Failure,
  parseCommandLine,
  parseSeconds,
  runCommand,
  UsageError,
} from "../lib/cli.ts";
import { describeError } from "../lib/errors.ts";
import { closeQuietly, writeAll } from "../lib/net.ts";
import type { Reader } from "../lib/lines.ts";

const USER_AGENT = "deno-network-examples/1.0";
/** Largest status line plus headers we accept (and likewise for trailers). */
export const MAX_HEAD_BYTES = 64 * 1024;
/** Chunk-size lines carry a hex number and optional extensions: keep small. */
const MAX_CHUNK_LINE_BYTES = 4096;
export const MAX_REDIRECTS = 5;
const MAX_INTERIM_RESPONSES = 10;
const DEFAULT_TIMEOUT_SECONDS = 30;

const USAGE = `Usage: http_client.ts [options] URL

Fetches URL (http:// or https://) over a hand-written HTTP/1.1 connection and
writes the body to stdout. Exits 1 on a 4xx/5xx answer (the body is still
written, the status line goes to stderr) and on network or protocol errors.

Options:
  -i, --include        also print the status line and headers (to stdout)
  -I, --head           send a HEAD request and print the headers only
  -o, --output FILE    save the body to FILE instead of writing it to stdout
                       (created once an answer has arrived)
  --data NAME=VALUE    send a form POST (urlencoded); repeat for more fields
  -L, --location       follow redirects (up to ${MAX_REDIRECTS})
  --proxy URL          go through an HTTP proxy, http://host:port (port 80 if
                       omitted); https is tunnelled with CONNECT
  --links              print the page's links (a, link, img, script…), one per
                       line, resolved against the final URL, instead of the body
  --cacert FILE        also trust the CA certificate(s) in this PEM file
  --timeout SECONDS    limit for connecting and for each wait for data
                       (default ${DEFAULT_TIMEOUT_SECONDS})
  -h, --help           show this help`;

const CR = 0x0d;
const LF = 0x0a;

/** A response that breaks HTTP/1.1 (or a redirect chain gone wrong): exit 1. */
export class HttpError extends Failure {}

// --- Reading: lines and raw bytes from one buffer --------------------------

/**
 * A buffered reader that hands out both lines (the head, chunk sizes,
 * trailers) and raw body bytes: a chunked body alternates between the two,
 * which lib/lines.ts's LineReader (lines only) cannot do.
 */
export class HttpReader implements Reader {
  #source: Reader;
  #buffer: Uint8Array;
  #start = 0; // first unread byte
  #end = 0; // one past the last buffered byte

  constructor(source: Reader, bufferSize = MAX_HEAD_BYTES + 2) {
    this.#source = source;
    this.#buffer = new Uint8Array(bufferSize);
  }

  /**
   * The next line without "\r\n" (or a bare "\n"), one character per byte
   * (headers are bytes, not UTF-8); null at end of input. Throws HttpError
   * `tooLong` past `limit` bytes, so memory stays bounded.
   */
  async readLine(limit: number, tooLong: string): Promise<string | null> {
    let scanned = 0; // bytes from #start known to hold no "\n"
    while (true) {
      const found = this.#buffer.subarray(this.#start + scanned, this.#end)
        .indexOf(LF);
      if (found >= 0) {
        const newline = this.#start + scanned + found;
        let end = newline;
        if (end > this.#start && this.#buffer[end - 1] === CR) end--;
        if (end - this.#start > limit) throw new HttpError(tooLong);
        const line = decodeLatin1(this.#buffer.subarray(this.#start, end));
        this.#start = newline + 1;
        return line;
      }
      scanned = this.#end - this.#start;
      if (scanned > limit + 1) throw new HttpError(tooLong);
      if (!await this.#fill()) {
        if (scanned === 0) return null;
        throw new HttpError("connection closed in the middle of a line");
      }
    }
  }

  /** Raw bytes: what is buffered first, then straight from the source. */
  read(into: Uint8Array): Promise<number | null> {
    if (this.#start < this.#end) {
      const count = Math.min(into.length, this.#end - this.#start);
      into.set(this.#buffer.subarray(this.#start, this.#start + count));
      this.#start += count;
      return Promise.resolve(count);
    }
    return this.#source.read(into);
  }

  /** How many bytes were read from the source but not yet handed out. */
  get buffered(): number {
    return this.#end - this.#start;
  }

  async #fill(): Promise<boolean> {
    if (this.#start > 0) {
      // Move the unread tail to the front so the buffer never grows.
      this.#buffer.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    if (this.#end === this.#buffer.length) {
      throw new HttpError(`line longer than ${this.#buffer.length} bytes`);
    }
    const count = await this.#source.read(this.#buffer.subarray(this.#end));
    if (count === null) return false;
    this.#end += count;
    return true;
  }
}

/** Bytes to text, one character per byte (ISO-8859-1, exactly reversible). */
function decodeLatin1(bytes: Uint8Array): string {
  let text = "";
  for (let offset = 0; offset < bytes.length; offset += 8192) {
    text += String.fromCharCode(...bytes.subarray(offset, offset + 8192));
  }
  return text;
}

function encodeLatin1(text: string): Uint8Array {
  return Uint8Array.from(text, (character) => character.charCodeAt(0) & 0xff);
}

// --- The response head -----------------------------------------------------

export type HeaderList = [name: string, value: string][];

export interface ResponseHead {
  version: string; // "HTTP/1.1" or "HTTP/1.0"
  status: number;
  reason: string;
  statusLine: string;
  /** Headers in the order received, names as sent (compare case-blind). */
  headers: HeaderList;
  /** The head exactly as received, one entry per line (what -i prints). */
  lines: string[];
}

const STATUS_LINE = /^(HTTP\/1\.[01]) ([1-9]\d\d)(?: (.*))?$/;
const HEADER_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*(.*?)[ \t]*$/;

/**
 * Reads a status line and headers up to the empty line, within `maxBytes`
 * in all. Throws HttpError for a head that is too large, malformed, or cut
 * short.
 */
export async function readResponseHead(
  reader: HttpReader,
  maxBytes = MAX_HEAD_BYTES,
): Promise<ResponseHead> {
  const tooLarge = `response head larger than ${maxBytes} bytes`;
  const statusLine = await reader.readLine(maxBytes, tooLarge);
  if (statusLine === null) {
    throw new HttpError("server closed the connection without answering");
  }
  const status = STATUS_LINE.exec(statusLine);
  if (!status) {
    throw new HttpError(`malformed status line: '${printable(statusLine)}'`);
  }
  const lines = [statusLine];
  const headers = await readFields(
    reader,
    maxBytes - statusLine.length - 2,
    "header",
    tooLarge,
    lines,
  );
  return {
    version: status[1],
    status: Number(status[2]),
    reason: status[3] ?? "",
    statusLine,
    headers,
    lines,
  };
}

/**
 * Header (or trailer) fields up to the empty line, within `budget` bytes;
 * each line as received is also appended to `lines`.
 */
async function readFields(
  reader: HttpReader,
  budget: number,
  kind: "header" | "trailer",
  tooLarge: string,
  lines: string[] = [],
): Promise<HeaderList> {
  const fields: HeaderList = [];
  while (true) {
    const line = await reader.readLine(budget, tooLarge);
    if (line === null) {
      throw new HttpError(`connection closed in the middle of the ${kind}s`);
    }
    budget -= line.length + 2;
    if (budget < 0) throw new HttpError(tooLarge);
    if (line === "") return fields;
    lines.push(line);
    if (line[0] === " " || line[0] === "\t") {
      // Obsolete line folding: RFC 9112 lets a client replace it by a space.
      if (fields.length === 0) {
        throw new HttpError(`malformed ${kind}: continuation line first`);
      }
      fields[fields.length - 1][1] += " " + line.trim();
      continue;
    }
    const field = HEADER_LINE.exec(line);
    if (!field) {
      throw new HttpError(`malformed ${kind} line: '${printable(line)}'`);
    }
    fields.push([field[1], field[2]]);
  }
}

/** Every value of a header, comma lists split, in order. */
export function headerValues(headers: HeaderList, name: string): string[] {
  const wanted = name.toLowerCase();
  return headers
    .filter(([key]) => key.toLowerCase() === wanted)
    .flatMap(([, value]) => value.split(","))
    .map((value) => value.trim())
    .filter((value) => value !== "");
}

/** A header's first value, or undefined. */
export function headerValue(
  headers: HeaderList,
  name: string,
): string | undefined {
  const wanted = name.toLowerCase();
  return headers.find(([key]) => key.toLowerCase() === wanted)?.[1];
}

/**
 * Text from the network made safe for a terminal: control characters (an
 * escape sequence could rewrite the screen) shown as \xNN, long text cut.
 */
export function printable(text: string): string {
  const shown = text.length > 200 ? text.slice(0, 200) + "…" : text;
  let safe = "";
  for (const character of shown) {
    const code = character.charCodeAt(0);
    safe += code < 0x20 || (code >= 0x7f && code < 0xa0)
      ? "\\x" + code.toString(16).padStart(2, "0")
      : character;
  }
  return safe;
}

// --- Body framing (RFC 9112 section 6.3) -----------------------------------

/** A response body: read() gives bytes, then null at its end. */
export interface BodyReader extends Reader {
  /** Trailer fields, known once a chunked body has been read to its end. */
  readonly trailers: HeaderList;
}

/**
 * A body of `length` bytes (the connection ending sooner is an error), or,
 * with length null, everything until the server closes (HTTP/1.0 style).
 */
class PlainBody implements BodyReader {
  readonly trailers: HeaderList = [];
  #remaining: number;
  constructor(private reader: Reader, readonly length: number | null) {
    this.#remaining = length ?? Infinity;
  }
  async read(into: Uint8Array): Promise<number | null> {
    if (this.#remaining === 0) return null;
    const count = await this.reader.read(
      into.subarray(0, Math.min(into.length, this.#remaining)),
    );
    if (count === null && this.length !== null) {
      throw new HttpError(
        `connection closed after ${
          this.length - this.#remaining
        } of ${this.length} body bytes`,
      );
    }
    if (count !== null) this.#remaining -= count;
    return count;
  }
}

/**
 * The chunked transfer coding: `<hex size>[;extensions]\r\n<data>\r\n`
 * repeated, then a `0\r\n` chunk, optional trailer fields and an empty line.
 * Extensions are ignored (nobody agrees on a use for them); trailers are
 * kept in `trailers`, within the same size limit as the head.
 */
export class ChunkedBody implements BodyReader {
  trailers: HeaderList = [];
  #remaining = 0; // data bytes left in the current chunk
  #inChunk = false; // a chunk's data (and its CRLF) are still to come
  #done = false;

  constructor(private reader: HttpReader) {}

  async read(into: Uint8Array): Promise<number | null> {
    if (into.length === 0) return 0;
    while (!this.#done && this.#remaining === 0) await this.#nextChunk();
    if (this.#done) return null;
    const count = await this.reader.read(
      into.subarray(0, Math.min(into.length, this.#remaining)),
    );
    if (count === null) {
      throw new HttpError("connection closed in the middle of a chunk");
    }
    this.#remaining -= count;
    return count;
  }

  async #nextChunk() {
    // The data of the previous chunk is followed by CRLF, nothing else.
    if (this.#inChunk && await this.#line("chunk") !== "") {
      throw new HttpError("chunk data longer than its declared size");
    }
    const line = await this.#line("chunk size");
    const size = /^([0-9A-Fa-f]{1,13})[ \t]*(;.*)?$/.exec(line);
    if (!size) {
      throw new HttpError(`malformed chunk size line: '${printable(line)}'`);
    }
    this.#remaining = parseInt(size[1], 16);
    this.#inChunk = true;
    if (this.#remaining === 0) {
      this.trailers = await readFields(
        this.reader,
        MAX_HEAD_BYTES,
        "trailer",
        `trailers larger than ${MAX_HEAD_BYTES} bytes`,
      );
      this.#done = true;
    }
  }

  async #line(what: string): Promise<string> {
    const line = await this.reader.readLine(
      MAX_CHUNK_LINE_BYTES,
      `${what} line longer than ${MAX_CHUNK_LINE_BYTES} bytes`,
    );
    if (line === null) {
      throw new HttpError("connection closed in the middle of a chunked body");
    }
    return line;
  }
}

/** Picks the body framing for a response to `method`, per RFC 9112 6.3. */
export function bodyReaderFor(
  head: ResponseHead,
  method: string,
  reader: HttpReader,
): BodyReader {
  if (
    method === "HEAD" || head.status < 200 || head.status === 204 ||
    head.status === 304
  ) {
    return new PlainBody(reader, 0);
  }
  const codings = headerValues(head.headers, "transfer-encoding");
  if (codings.length > 0) {
    // Transfer-Encoding overrides Content-Length (both at once may be a
    // smuggling attempt; we close the connection afterwards anyway). If
    // chunked is not the last coding, only the close ends the body.
    return codings.at(-1)!.toLowerCase() === "chunked"
      ? new ChunkedBody(reader)
      : new PlainBody(reader, null);
  }
  const lengths = headerValues(head.headers, "content-length");
  if (lengths.length === 0) return new PlainBody(reader, null);
  // Repeated values are allowed only if they all agree.
  const length = Number(lengths[0]);
  if (
    !lengths.every((value) => /^\d+$/.test(value) && value === lengths[0]) ||
    !Number.isSafeInteger(length)
  ) {
    throw new HttpError(
      `invalid Content-Length: '${printable(lengths.join(", "))}'`,
    );
  }
  return new PlainBody(reader, length);
}

// --- Connections: TCP, TLS, proxies, and a time limit on every wait --------

/**
 * A connection whose every read and write gives up after `timeoutMs` (the
 * socket is closed, so nothing keeps waiting), and whose errors become one
 * readable line naming the peer.
 */
class TimedConnection implements Reader {
  constructor(
    readonly conn: Deno.Conn,
    readonly peer: string,
    readonly timeoutMs: number,
  ) {}

  read(into: Uint8Array): Promise<number | null> {
    return this.limit(this.conn.read(into), "waiting for data");
  }

  write(bytes: Uint8Array): Promise<number> {
    return this.limit(this.conn.write(bytes), "sending");
  }

  close() {
    closeQuietly(this.conn);
  }

  /**
   * Waits for `operation` at most timeoutMs; on expiry closes the socket
   * (so the operation fails too) and reports what was being waited for.
   * Other errors become `<failed>: <reason>` (by default `<peer>: …`).
   */
  async limit<T>(
    operation: Promise<T>,
    what: string,
    failed = this.peer,
  ): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.close();
        reject(
          new Failure(
            `${this.peer}: timed out after ${this.timeoutMs / 1000} s ${what}`,
          ),
        );
      }, this.timeoutMs);
    });
    try {
      return await Promise.race([operation, expired]);
    } catch (error) {
      if (error instanceof Failure) throw error;
      throw new Failure(`${failed}: ${describeError(error)}`);
    } finally {
      clearTimeout(timer);
    }
  }
}

interface Endpoint {
  hostname: string; // without IPv6 brackets
  port: number;
  display: string; // host:port as written in URLs
}

function endpointOf(url: URL): Endpoint {
  const port = Number(url.port) || (url.protocol === "https:" ? 443 : 80);
  return {
    hostname: url.hostname.replace(/^\[(.*)\]$/, "$1"),
    port,
    display: `${url.hostname}:${port}`,
  };
}

async function connectTcp(
  endpoint: Endpoint,
  timeoutMs: number,
): Promise<Deno.TcpConn> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs);
  try {
    return await Deno.connect({
      hostname: endpoint.hostname,
      port: endpoint.port,
      signal: abort.signal,
    });
  } catch (error) {
    if (abort.signal.aborted) {
      throw new Failure(
        `cannot connect to ${endpoint.display}: timed out after ${
          timeoutMs / 1000
        } s`,
      );
    }
    throw new Failure(
      `cannot connect to ${endpoint.display}: ${describeError(error)}`,
    );
  } finally {
    clearTimeout(timer);
  }
}

async function startTls(
  tcp: Deno.TcpConn,
  target: Endpoint,
  options: FetchOptions,
  timeoutMs: number,
): Promise<TimedConnection> {
  const tls = await Deno.startTls(tcp, {
    hostname: target.hostname,
    caCerts: options.caCerts,
  });
  // The handshake would otherwise happen on the first write; doing it here
  // reports certificate problems as such, within the time limit.
  const connection = new TimedConnection(tls, target.display, timeoutMs);
  try {
    await connection.limit(
      tls.handshake(),
      "in the TLS handshake",
      `TLS handshake with ${target.display} failed`,
    );
  } catch (error) {
    connection.close();
    throw error;
  }
  return connection;
}

/**
 * Opens the connection a request to `url` travels on: straight to the
 * server, or to the proxy (with a CONNECT tunnel for https), with TLS on top
 * for https.
 */
async function openConnection(
  url: URL,
  options: FetchOptions,
  timeoutMs: number,
): Promise<TimedConnection> {
  const target = endpointOf(url);
  const https = url.protocol === "https:";
  if (!options.proxy) {
    const tcp = await connectTcp(target, timeoutMs);
    if (!https) return new TimedConnection(tcp, target.display, timeoutMs);
    return startTls(tcp, target, options, timeoutMs);
  }
  const proxy = endpointOf(new URL(options.proxy));
  const tcp = await connectTcp(proxy, timeoutMs);
  if (!https) return new TimedConnection(tcp, proxy.display, timeoutMs);

  // https through a proxy: ask it for a raw tunnel, then speak TLS with the
  // real server through it. The proxy sees only the host name and port.
  const tunnel = new TimedConnection(tcp, `proxy ${proxy.display}`, timeoutMs);
  try {
    const authority = target.display; // host:port, IPv6 in brackets
    await writeAll(
      tunnel,
      encodeLatin1(
        `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n` +
          `User-Agent: ${USER_AGENT}\r\n\r\n`,
      ),
    );
    // The proxy must send nothing after its answer until our TLS hello, so
    // nothing may be left in the reader's buffer.
    const reader = new HttpReader(tunnel);
    const head = await readResponseHead(reader);
    if (head.status < 200 || head.status > 299) {
      throw new HttpError(
        `proxy ${proxy.display} refused the tunnel: '${
          printable(head.statusLine)
        }'`,
      );
    }
    if (reader.buffered > 0) {
      throw new HttpError(`proxy ${proxy.display} sent data after CONNECT`);
    }
  } catch (error) {
    tunnel.close();
    throw error;
  }
  return startTls(tcp, target, options, timeoutMs);
}

// --- Requests and redirects ------------------------------------------------

export interface FetchOptions {
  method?: string; // default GET
  body?: Uint8Array; // sent with Content-Length
  contentType?: string;
  maxRedirects?: number; // 0 (default): a 3xx is returned as is
  proxy?: string | URL; // http://host:port
  caCerts?: string[]; // PEM, trusted besides the system's CAs
  timeoutSeconds?: number; // for connecting and each wait (default 30)
  maxHeadBytes?: number; // status line plus headers (default 64 KiB)
  /** Called with every final response head, redirects included. */
  onResponseHead?: (head: ResponseHead, url: URL) => void | Promise<void>;
}

export interface HttpResponse {
  url: URL; // the one that answered, after redirects
  head: ResponseHead;
  status: number;
  headers: HeaderList;
  body: BodyReader; // framed: read() returns null at its end
  close(): void; // closes the connection; safe to call twice
  [Symbol.dispose](): void;
}

/** The request head: request line, our fixed headers, the blank line. */
export function buildRequestHead(
  url: URL,
  method: string,
  options: { body?: Uint8Array; contentType?: string; viaProxy?: boolean },
): string {
  // Through a proxy, a plain-http request names the whole URL (absolute
  // form); otherwise only the path and query. The fragment is never sent.
  const target = options.viaProxy
    ? `${url.protocol}//${url.host}${url.pathname}${url.search}`
    : `${url.pathname}${url.search}`;
  const lines = [
    `${method} ${target} HTTP/1.1`,
    // url.host carries the port only when it is not the scheme's default.
    `Host: ${url.host}`,
    `User-Agent: ${USER_AGENT}`,
    "Accept: */*",
    // One request per connection: the end of the connection is then a
    // safe end for bodies that have no length.
    "Connection: close",
  ];
  if (options.body !== undefined) {
    if (options.contentType) lines.push(`Content-Type: ${options.contentType}`);
    lines.push(`Content-Length: ${options.body.length}`);
  }
  return lines.join("\r\n") + "\r\n\r\n";
}

/** One request, one response (its head read, its body not yet). */
async function requestOnce(
  url: URL,
  method: string,
  body: Uint8Array | undefined,
  options: FetchOptions,
): Promise<HttpResponse> {
  const timeoutMs = (options.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS) * 1000;
  const connection = await openConnection(url, options, timeoutMs);
  try {
    const viaProxy = options.proxy !== undefined && url.protocol === "http:";
    const head = encodeLatin1(
      buildRequestHead(url, method, {
        body,
        contentType: options.contentType,
        viaProxy,
      }),
    );
    // Head and body in one write: one packet for a small form.
    const message = new Uint8Array(head.length + (body?.length ?? 0));
    message.set(head);
    if (body) message.set(body, head.length);
    await writeAll(connection, message);

    const reader = new HttpReader(connection);
    // 1xx answers (100 Continue, 103 Early Hints) are interim: skip them,
    // but not forever.
    let response = await readResponseHead(reader, options.maxHeadBytes);
    for (let interim = 1; response.status < 200; interim++) {
      if (interim > MAX_INTERIM_RESPONSES) {
        throw new HttpError(
          `more than ${MAX_INTERIM_RESPONSES} interim (1xx) responses`,
        );
      }
      response = await readResponseHead(reader, options.maxHeadBytes);
    }
    const bodyReader = bodyReaderFor(response, method, reader);
    return {
      url,
      head: response,
      status: response.status,
      headers: response.headers,
      body: bodyReader,
      close: () => connection.close(),
      [Symbol.dispose]: () => connection.close(),
    };
  } catch (error) {
    connection.close();
    throw error;
  }
}

/**
 * Fetches `url` over a hand-written HTTP/1.1 connection. Returns once the
 * response head is in; read the body from `response.body` and close the
 * response. With `maxRedirects`, follows 301/302/303 (as GET, like
 * browsers do for POST) and 307/308 (same method and body).
 */
export async function fetchWithSocket(
  url: string | URL,
  options: FetchOptions = {},
): Promise<HttpResponse> {
  let current = checkUrl(url);
  let method = options.method ?? "GET";
  let body = options.body;
  let contentType = options.contentType;
  const maxRedirects = options.maxRedirects ?? 0;
  for (let redirects = 0;; redirects++) {
    const response = await requestOnce(current, method, body, {
      ...options,
      contentType,
    });
    try {
      await options.onResponseHead?.(response.head, current);
    } catch (error) {
      response.close();
      throw error;
    }
    const location = headerValue(response.headers, "location");
    if (
      maxRedirects === 0 || location === undefined ||
      ![301, 302, 303, 307, 308].includes(response.status)
    ) {
      return response;
    }
    response.close(); // Connection: close, so there is nothing to reuse
    if (redirects === maxRedirects) {
      throw new HttpError(`too many redirects (more than ${maxRedirects})`);
    }
    const next = URL.parse(location, current); // relative is normal
    if (!next) {
      throw new HttpError(
        `redirect to an invalid URL: '${printable(location)}'`,
      );
    }
    if (next.protocol !== "http:" && next.protocol !== "https:") {
      throw new HttpError(`redirect to an unsupported URL: ${next.href}`);
    }
    const toGet = response.status === 303
      ? method !== "HEAD"
      : (response.status === 301 || response.status === 302) &&
        method === "POST";
    if (toGet) {
      method = "GET";
      body = undefined;
      contentType = undefined;
    }
    current = next;
  }
}

/** Parses and vets a URL to fetch; a bad one is a UsageError (exit 2). */
export function checkUrl(url: string | URL): URL {
  const parsed = URL.parse(url);
  if (!parsed) throw new UsageError(`not a valid URL: '${url}'`);
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new UsageError(
      `unsupported scheme '${parsed.protocol}' (use http:// or https://)`,
    );
  }
  return parsed;
}

function checkProxy(value: string): URL {
  const proxy = URL.parse(value);
  if (proxy?.protocol !== "http:" || proxy.pathname !== "/" || proxy.search) {
    throw new UsageError(
      `--proxy must look like http://host:port, got '${value}'`,
    );
  }
  return proxy;
}

// --- Links -----------------------------------------------------------------

// Elements whose href or src attribute is a link.
const HREF_TAGS = new Set(["a", "area", "link"]);
const SRC_TAGS = new Set(
  "img script iframe frame embed source track audio video".split(" "),
);

/**
 * Collects the links of an HTML document fed to it piece by piece, with
 * htmlparser2 (a real HTML tokenizer: quoting, entities, comments and
 * <script> contents are handled the way a browser would, which no regular
 * expression does). Only the links are kept, never the document.
 */
export async function createLinkCollector(
  documentUrl: URL,
  charset = "utf-8",
) {
  // Loaded only when --links is used: plain fetches need no npm package.
  const { Parser } = await import("npm:htmlparser2@^10.0.0");
  let decoder: TextDecoder;
  try {
    decoder = new TextDecoder(charset);
  } catch {
    decoder = new TextDecoder("utf-8"); // an unknown charset label
  }
  const found: string[] = [];
  let base: string | undefined;
  const parser = new Parser({
    onopentag(name, attributes) {
      // <base href> changes what every relative link means: the first wins.
      if (name === "base" && base === undefined && "href" in attributes) {
        base = attributes.href;
      }
      const link = HREF_TAGS.has(name)
        ? attributes.href
        : SRC_TAGS.has(name)
        ? attributes.src
        : undefined;
      if (link !== undefined) found.push(link);
    },
  }, { decodeEntities: true, lowerCaseTags: true });

  return {
    write(bytes: Uint8Array) {
      parser.write(decoder.decode(bytes, { stream: true }));
    },
    /** Ends the document; returns the links as absolute URLs, in order. */
    end(): string[] {
      parser.write(decoder.decode());
      parser.end();
      // An unusable <base> is ignored, as browsers do; so is a link that
      // is not a URL at all.
      const baseUrl = URL.parse(base ?? "", documentUrl) ?? documentUrl;
      return found.flatMap((link) => URL.parse(link, baseUrl)?.href ?? []);
    },
  };
}

function charsetOf(headers: HeaderList): string | undefined {
  const type = headerValue(headers, "content-type") ?? "";
  return /;\s*charset="?([^";\s]+)"?/i.exec(type)?.[1];
}

// --- Command line ----------------------------------------------------------

/** The form fields of --data NAME=VALUE, urlencoded like an HTML form. */
export function encodeForm(fields: string[]): Uint8Array {
  const form = new URLSearchParams();
  for (const field of fields) {
    const equals = field.indexOf("=");
    if (equals <= 0) {
      throw new UsageError(`--data must look like NAME=VALUE, got '${field}'`);
    }
    form.append(field.slice(0, equals), field.slice(equals + 1));
  }
  return new TextEncoder().encode(form.toString());
}

/** Writes to the -o file or stdout; failing there is not a network error. */
async function writeOutput(
  output: Deno.FsFile | typeof Deno.stdout,
  bytes: Uint8Array,
  name = "stdout",
) {
  try {
    await writeAll(output, bytes);
  } catch (error) {
    const reason = error instanceof Deno.errors.BrokenPipe
      ? "it was closed"
      : describeError(error);
    throw new Failure(`cannot write to ${name}: ${reason}`);
  }
}

async function main(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(args, {
    usage: USAGE,
    positionals: true,
    options: {
      include: { type: "boolean", short: "i" },
      head: { type: "boolean", short: "I" },
      output: { type: "string", short: "o" },
      data: { type: "string", multiple: true },
      location: { type: "boolean", short: "L" },
      proxy: { type: "string" },
      links: { type: "boolean" },
      cacert: { type: "string" },
      timeout: { type: "string", default: String(DEFAULT_TIMEOUT_SECONDS) },
    },
  });
  if (positionals.length !== 1) {
    throw new UsageError(
      positionals.length === 0 ? "missing URL" : "give exactly one URL",
    );
  }
  const url = checkUrl(positionals[0]);
  if (values.head && values.data) {
    throw new UsageError("--head and --data cannot be used together");
  }
  const proxy = values.proxy === undefined
    ? undefined
    : checkProxy(values.proxy);
  const timeoutSeconds = parseSeconds(values.timeout, "--timeout");
  const body = values.data ? encodeForm(values.data) : undefined;
  let caCerts: string[] | undefined;
  if (values.cacert !== undefined) {
    try {
      caCerts = [await Deno.readTextFile(values.cacert)];
    } catch (error) {
      throw new Failure(
        `cannot read ${values.cacert}: ${describeError(error)}`,
      );
    }
  }

  const include = values.include || values.head;
  const response = await fetchWithSocket(url, {
    method: values.head ? "HEAD" : body ? "POST" : "GET",
    body,
    contentType: body ? "application/x-www-form-urlencoded" : undefined,
    maxRedirects: values.location ? MAX_REDIRECTS : 0,
    proxy,
    caCerts,
    timeoutSeconds,
    onResponseHead: include
      ? (head) =>
        writeAll(
          Deno.stdout,
          encodeLatin1(head.lines.join("\r\n") + "\r\n\r\n"),
        )
      : undefined,
  });
  let file: Deno.FsFile | undefined;
  try {
    // The file is created only now that there is an answer to put in it.
    if (values.output !== undefined) {
      try {
        file = await Deno.open(values.output, {
          write: true,
          create: true,
          truncate: true,
        });
      } catch (error) {
        throw new Failure(
          `cannot write ${values.output}: ${describeError(error)}`,
        );
      }
    }
    const links = values.links
      ? await createLinkCollector(response.url, charsetOf(response.headers))
      : undefined;
    const output = file ?? (links ? undefined : Deno.stdout);

    // Stream: one reused buffer, never the whole body in memory.
    const buffer = new Uint8Array(64 * 1024);
    while (true) {
      const count = await response.body.read(buffer);
      if (count === null) break;
      const chunk = buffer.subarray(0, count);
      if (output) await writeOutput(output, chunk, values.output);
      links?.write(chunk);
    }
    if (links) {
      const lines = links.end().map((link) => link + "\n").join("");
      await writeAll(Deno.stdout, new TextEncoder().encode(lines));
    }
  } finally {
    file?.close();
    response.close();
  }
  if (response.status >= 400) {
    // Like curl --fail-with-body: the body (often an explanation) has been
    // written; the exit code and stderr say it was an error.
    console.error(
      `http_client.ts: ${response.url.href} answered ${
        printable(response.head.statusLine)
      }`,
    );
    return 1;
  }
  return 0;
}

if (import.meta.main) {
  await runCommand("http_client.ts", () => main(Deno.args));
}
