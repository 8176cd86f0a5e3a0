// HTTP/1.1's grammar, once for the scripts that speak it by hand: the http
// client reads responses, http_raw_server requests, and two parsers that
// disagree on a field name, a value or a Content-Length are how request
// smuggling happens (RFC 9112 §11.2). The byte rules scan a buffer in place
// (the raw server's hot path); readFields() reads from a BufferedReader.
import { Failure } from "./errors.ts";
import { BufferedReader, LineTooLongError } from "./reader.ts";
import { printable } from "./terminal.ts";

/** A message that breaks HTTP/1.1 (or a limit): one line, exit 1. */
export class HttpError extends Failure {}

const SP = 0x20, HTAB = 0x09, COLON = 0x3a, COMMA = 0x2c, DEL = 0x7f;
const LF = 0x0a, CR = 0x0d;
const isBlank = (byte: number) => byte === SP || byte === HTAB;

/** tchar (RFC 9110 §5.6.2): the bytes methods and field names are made of. */
export const IS_TOKEN = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") IS_TOKEN[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) IS_TOKEN[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) IS_TOKEN[c] = IS_TOKEN[c + 0x20] = 1;

/** Name [line start, nameEnd), value [valueStart, valueEnd). */
export interface FieldLine {
  nameEnd: number;
  valueStart: number;
  valueEnd: number;
}

/** `name ":" OWS value OWS` in bytes[from, to), into `into`; false if the
 * name is no token (a space before the colon, a folded line…) or the value
 * holds a control. */
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
  while (start < end && isBlank(bytes[start])) start++;
  while (end > start && isBlank(bytes[end - 1])) end--;
  if (hasControls(bytes, start, end)) return false;
  into.nameEnd = at;
  into.valueStart = start;
  into.valueEnd = end;
  return true;
}

/** A control other than tab: a NUL, bare CR or ESC is never innocent. */
export function hasControls(bytes: Uint8Array, from: number, to: number) {
  for (let i = from; i < to; i++) {
    if ((bytes[i] < SP && bytes[i] !== HTAB) || bytes[i] === DEL) return true;
  }
  return false;
}

/** Where the head at `from` ends (past its blank line), or -1 if not before
 * `end`. Lines end in "\r\n" or a bare "\n" (RFC 9112 §2.2). */
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
    while (at < to && isBlank(bytes[at])) at++;
    if (at === to) return length;
    if (bytes[at++] !== COMMA) return -1;
    while (at < to && isBlank(bytes[at])) at++;
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

export function encodeLatin1(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

/** The next line without its CRLF, null at the end of input; HttpError
 * `tooLong` past `limit` bytes, or if the input ends inside the line. */
export async function readHttpLine(
  reader: BufferedReader,
  limit: number,
  tooLong: string,
): Promise<Uint8Array | null> {
  const line = await reader.readLine(limit).catch((error) => {
    throw error instanceof LineTooLongError ? new HttpError(tooLong) : error;
  });
  if (line !== null && !reader.lastLineTerminated) {
    throw new HttpError("connection closed in the middle of a line");
  }
  return line;
}

export type HeaderList = [name: string, value: string][];

/** Header (or trailer) fields up to the empty line, within `budget` bytes;
 * a folded line joined with a space (RFC 9112 §5.2); each line to `lines`. */
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
    const folded = isBlank(line[0]);
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

/** Every value of the header `name` (lower case), comma lists split. */
export function headerValues(headers: HeaderList, name: string): string[] {
  return headers.filter(([key]) => key.toLowerCase() === name)
    .flatMap(([, value]) => value.split(",").map((item) => item.trim()))
    .filter((value) => value !== "");
}
