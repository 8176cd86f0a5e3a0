// Reading an HTTP/1.1 response, for http_client.ts: the head (status line
// and fields, on lib/http1.ts's grammar), interim 1xx heads skipped, where a
// redirect goes, and the two ways a body is framed: by length (or the close)
// and chunked. Apart from the script so that its lesson, choosing the
// framing (bodyReaderFor), stays in view.
// Part of the HTTP chapter: run scripts/http_client.ts.
import {
  HttpError,
  latin1,
  readFields,
  readHttpLine,
} from "../../lib/http1.ts";
import { hasControls, type HeaderList } from "../../lib/http1.ts";
import type { Reader } from "../../lib/io.ts";
import type { BufferedReader } from "../../lib/reader.ts";
import { printable } from "../../lib/terminal.ts";

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
