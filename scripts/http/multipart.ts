// Streaming multipart/form-data (RFC 7578 on RFC 2046), for http_server.ts's
// upload form: machinery apart from the script, which teaches routing,
// escaping and safe storage. The body is
//
//   --BOUNDARY\r\n  part headers \r\n\r\n  data  \r\n--BOUNDARY\r\n  …  \r\n--BOUNDARY--
//
// Bytes arrive in chunks of any size, so a delimiter can be split across two
// chunks: the parser keeps back the last few bytes of each chunk that could
// be the start of one. Memory stays one chunk plus the part header limit, so
// a file of any size streams through it to disk.
// Part of the HTTP chapter: run scripts/http_server.ts.
import { concat } from "../../lib/io.ts";
import { HttpError } from "./body.ts";

/** Largest header block of one part. */
export const MAX_PART_HEADER_BYTES = 8 * 1024;

/** The boundary of a multipart/form-data Content-Type, or null. */
export function multipartBoundary(contentType: string | null): string | null {
  const [type, ...parameters] = (contentType ?? "").split(";");
  if (type.trim().toLowerCase() !== "multipart/form-data") return null;
  for (const parameter of parameters) {
    const match = /^\s*boundary\s*=\s*(?:"([^"]{1,70})"|([^\s"]{1,70}))\s*$/i
      .exec(parameter);
    if (match) return match[1] ?? match[2];
  }
  return null;
}

export type MultipartEvent =
  | { kind: "part"; name: string | null; filename: string | null }
  | { kind: "data"; bytes: Uint8Array };

const CRLF = new Uint8Array([0x0d, 0x0a]);
const HEADER_END = new Uint8Array([0x0d, 0x0a, 0x0d, 0x0a]);

/** Feed it the body chunk by chunk; it returns part starts and their data. */
export class MultipartParser {
  finished = false;
  #delimiter: Uint8Array;
  #pending: Uint8Array;
  #state: "preamble" | "after-delimiter" | "headers" | "data" | "epilogue" =
    "preamble";

  constructor(boundary: string) {
    this.#delimiter = new TextEncoder().encode(`\r\n--${boundary}`);
    // The first delimiter has no "\r\n" before it; pretend it had, so one
    // search finds every delimiter.
    this.#pending = CRLF;
  }

  /** The events in `chunk`; the data events view bytes valid until the next call. */
  feed(chunk: Uint8Array): MultipartEvent[] {
    const pending = this.#pending;
    let buffer = concat(pending.length > 0 ? [pending, chunk] : [chunk]);
    const events: MultipartEvent[] = [];
    let progressing = true;
    while (progressing) {
      progressing = false;
      if (this.#state === "preamble" || this.#state === "data") {
        const at = indexOfBytes(buffer, this.#delimiter);
        // Without a delimiter, all but its possible start is data.
        const dataEnd = at >= 0
          ? at
          : Math.max(0, buffer.length - this.#delimiter.length + 1);
        if (this.#state === "data" && dataEnd > 0) {
          events.push({ kind: "data", bytes: buffer.subarray(0, dataEnd) });
        }
        buffer = buffer.subarray(
          at >= 0 ? at + this.#delimiter.length : dataEnd,
        );
        if (at >= 0) {
          this.#state = "after-delimiter";
          progressing = true;
        }
      } else if (this.#state === "after-delimiter") {
        if (buffer.length < 2) break;
        if (buffer[0] === 0x2d && buffer[1] === 0x2d) { // "--": the last one
          this.#state = "epilogue";
          this.finished = true;
        } else if (buffer[0] !== 0x0d || buffer[1] !== 0x0a) {
          throw new HttpError(400, "Malformed multipart body.");
        } else {
          // Keep the "\r\n": an empty header block is then "\r\n\r\n" too.
          this.#state = "headers";
          progressing = true;
        }
      } else if (this.#state === "headers") {
        const at = indexOfBytes(buffer, HEADER_END);
        // Too large whether it came in one chunk or is still arriving.
        if (
          at > MAX_PART_HEADER_BYTES ||
          (at < 0 && buffer.length > MAX_PART_HEADER_BYTES)
        ) {
          throw new HttpError(400, "A multipart part header is too large.");
        }
        if (at < 0) break;
        events.push(
          partHeaders(new TextDecoder().decode(buffer.subarray(2, at))),
        );
        // The data ends at the next "\r\n--BOUNDARY" (at once if empty).
        buffer = buffer.subarray(at + HEADER_END.length);
        this.#state = "data";
        progressing = true;
      }
    }
    // What follows the last delimiter is ignored, as RFC 2046 says. Copy
    // what we keep: the caller may reuse its chunk.
    this.#pending = this.#state === "epilogue"
      ? new Uint8Array()
      : buffer.slice();
    return events;
  }
}

/**
 * name and filename from the Content-Disposition of one part. Two of them
 * are refused: a filter that read the first and a store that used the last
 * would disagree about the file's name.
 */
function partHeaders(headers: string): MultipartEvent {
  let disposition: string | null = null;
  for (const line of headers.split("\r\n")) {
    const colon = line.indexOf(":");
    if (line.slice(0, colon).trim().toLowerCase() !== "content-disposition") {
      continue;
    }
    if (disposition !== null) {
      throw new HttpError(400, "A part has two Content-Disposition headers.");
    }
    disposition = line.slice(colon + 1);
  }
  let name: string | null = null;
  let filename: string | null = null;
  // form-data; name="file"; filename="notes.txt"
  const parameters =
    /;\s*([\w!#$%&'*+.^`|~-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))/g;
  for (const match of (disposition ?? "").matchAll(parameters)) {
    const key = match[1].toLowerCase();
    const value = match[2] ?? match[3];
    if (key === "name") name = value;
    if (key === "filename") filename = value;
  }
  return { kind: "part", name, filename };
}

/** Index of `needle` in `haystack`, or -1. */
function indexOfBytes(haystack: Uint8Array, needle: Uint8Array): number {
  const last = haystack.length - needle.length;
  let at = haystack.indexOf(needle[0]);
  while (at >= 0 && at <= last) {
    let i = 1;
    while (i < needle.length && haystack[at + i] === needle[i]) i++;
    if (i === needle.length) return at;
    at = haystack.indexOf(needle[0], at + 1);
  }
  return -1;
}
