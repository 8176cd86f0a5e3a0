// JSON-RPC 2.0 (https://www.jsonrpc.org/specification) as the RPC chapter
// speaks it, one JSON text per line: the error codes, a line parsed safely
// (UTF-8, nesting bounded, ids too large for a double kept as written), and
// a request or a batch answered from a table of methods (no promise where
// nothing waits). rpc_server.ts answers with it and rpc_client.ts reads
// answers with it; it is apart so that the scripts keep their networking
// lessons in view: concurrency, framing, limits. Part of the RPC chapter.

import { LineTooLongError } from "../../lib/reader.ts";

/** The codes the specification defines; -32000 to -32099 are the server's. */
export const PARSE_ERROR = -32700, INVALID_REQUEST = -32600;
export const METHOD_NOT_FOUND = -32601, INVALID_PARAMS = -32602;
export const INTERNAL_ERROR = -32603, SERVER_BUSY = -32000;

export const MAX_DEPTH = 64; // of arrays and objects in one message

/** An error that becomes (or came from) an error response. */
export class RpcError extends Error {
  constructor(readonly code: number, message: string, readonly data?: unknown) {
    super(message);
  }
}

/** A request id; a number JavaScript cannot hold exactly stays as its text. */
export type Id = string | number | null | { readonly rawJSON: string };
// JSON.rawJSON (V8 11.4+) makes JSON.stringify write the given text as is.
const { rawJSON } = JSON as unknown as { rawJSON(text: string): Id };

export type Params = unknown[] | Record<string, unknown> | undefined;
/** A call; without an id, a notification, which gets no response. */
export type Request = { method: string; params?: Params; id?: Id };

const utf8 = new TextDecoder("utf-8", { fatal: true });
const lenient = new TextDecoder(); // U+FFFD for what is not UTF-8
const encoder = new TextEncoder();
const notUtf8 = () => new RpcError(PARSE_ERROR, "Parse error: not UTF-8");

/** The lines in `bytes` ("\n" or "\r\n" after each, but perhaps the last)
 * as text, decoded in one call; in place of a line, RpcError if it is not
 * UTF-8 (then each is decoded alone), LineTooLongError past `maxLine`. */
export function decodeLines(bytes: Uint8Array, maxLine: number) {
  const text = lenient.decode(bytes); // 4 times as fast as the strict one
  let lines: (string | Error)[] = [];
  try {
    // A U+FFFD was sent as such, or stands for bytes that are not UTF-8.
    if (text.includes("\uFFFD")) utf8.decode(bytes);
    lines = text.split(/\r?\n/);
    if (lines.at(-1) === "") lines.pop(); // after the last "\n"
  } catch {
    for (let start = 0, end = 0; start < bytes.length; start = end) {
      end = bytes.indexOf(0x0a, start) + 1 || bytes.length;
      try {
        const line = utf8.decode(bytes.subarray(start, end));
        lines.push(line.replace(/\r?\n$/, ""));
      } catch {
        lines.push(notUtf8());
      }
    }
  }
  // In UTF-8, a line takes at most three bytes per UTF-16 unit.
  return lines.map((line) =>
    typeof line === "string" && line.length * 3 > maxLine &&
      encoder.encode(line).length > maxLine
      ? new LineTooLongError(maxLine)
      : line
  );
}

/** A line as a JSON value, or RpcError: PARSE_ERROR if not UTF-8 JSON;
 * INVALID_REQUEST if nested past MAX_DEPTH, refused before parsing (so that
 * no recursive code, a logger say, can meet a RangeError). */
export function parseMessage(line: Uint8Array | string): unknown {
  let text = line;
  try {
    if (typeof text !== "string") text = utf8.decode(text);
  } catch {
    throw notUtf8();
  }
  // JSON nested deeper than MAX_DEPTH has over 2 × MAX_DEPTH brackets.
  if (text.length > 2 * MAX_DEPTH && nestedTooDeep(text)) {
    const why = `nested deeper than ${MAX_DEPTH} levels`;
    throw new RpcError(INVALID_REQUEST, `Invalid Request: ${why}`);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new RpcError(PARSE_ERROR, `Parse error: ${(error as Error).message}`);
  }
}

/** Whether brackets nest deeper than MAX_DEPTH, counted in one pass
 * (skipping strings) with no allocation. */
function nestedTooDeep(text: string): boolean {
  let depth = 0, inString = false;
  for (let i = 0; i < text.length; i++) {
    const char = text.charCodeAt(i);
    if (inString) {
      if (char === 0x5c) i++; // a backslash escapes the next character
      else if (char === 0x22) inString = false;
    } else if (char === 0x22) inString = true;
    else if (char === 0x5b || char === 0x7b) {
      if (++depth > MAX_DEPTH) return true;
    } else if (char === 0x5d || char === 0x7d) depth--;
  }
  return false;
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

const isId = (value: unknown): value is Id =>
  value === null || typeof value === "string" || typeof value === "number";

/** A line being answered; `ids`: how its numeric ids are written (exactId). */
export type Line = { readonly text: string; ids?: string[] };

/** One request object checked: the request, or the error to answer with
 * and the id to answer it to (null when the id itself is unusable). */
function checkRequest(value: unknown, line: Line) {
  const invalid = (why: string, id: Id = null) => ({
    error: new RpcError(INVALID_REQUEST, `Invalid Request: ${why}`),
    id,
  });
  if (!isObject(value)) return invalid("not a JSON object");
  const { method, params, id } = value;
  if ("id" in value && !isId(id)) {
    return invalid("id must be a string, a number or null");
  }
  const replyId = id === undefined ? null : exactId(id as Id, line);
  const bad = (why: string) => invalid(why, replyId);
  if (value.jsonrpc !== "2.0") return bad('"jsonrpc" must be "2.0"');
  if (typeof method !== "string") return bad('"method" must be a string');
  if (params !== undefined && !Array.isArray(params) && !isObject(params)) {
    return bad('"params" must be an array or an object');
  }
  return { method, params, id: "id" in value ? replyId : undefined } as Request;
}

/** An id a double cannot hold (12345678901234567890, 1e400) is answered as
 * written: the line is parsed again (once per line, a rare cost) for each
 * request's "id" text; each call takes the first left that reads as its. */
function exactId(id: Id, line: Line): Id {
  if (typeof id !== "number" || Number.isSafeInteger(id)) return id;
  let texts = line.ids;
  if (!texts) {
    const found: string[] = texts = line.ids = [];
    type Context = { source: string };
    JSON.parse(line.text, function (key, value, context?: Context) {
      const request = key === "id" && isObject(this) && "jsonrpc" in this;
      if (request && typeof value === "number") found.push(context!.source);
      return value;
    });
  }
  const index = texts.findIndex((source) => Number(source) === id);
  const text = index >= 0 ? texts.splice(index, 1)[0] : String(id);
  return /^-?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(text) ? rawJSON(text) : id;
}

export type Method = (params: Params, signal: AbortSignal) => unknown;
/** A response line (without "\n") or none; a promise while a method runs. */
export type Answer = string | undefined | Promise<string | undefined>;

/**
 * Answers one request object with `methods`: the response line, or
 * undefined for a notification. Every outcome is an answer: an unexpected
 * exception is logged and becomes INTERNAL_ERROR.
 */
export function answer(
  message: unknown,
  line: Line,
  methods: Map<string, Method>,
  signal: AbortSignal,
): Answer {
  const request = checkRequest(message, line);
  if ("error" in request) return encodeError(request.id, request.error);
  const { method: name, params, id } = request;
  const done = (result: unknown) =>
    id === undefined ? undefined : encodeResult(id, result);
  const failed = (error: unknown) => {
    const known = error instanceof RpcError;
    // A bug, unless the call was cancelled (its answer is never sent).
    if (!known && !signal.aborted) {
      console.error(`${name}: ${(error as Error)?.stack ?? error}`);
    }
    const sent = known ? error : new RpcError(INTERNAL_ERROR, "Internal error");
    return id === undefined ? undefined : encodeError(id, sent);
  };
  try {
    const method = methods.get(name);
    if (!method) {
      throw new RpcError(METHOD_NOT_FOUND, `Method not found: ${name}`);
    }
    const result = method(params, signal);
    return result instanceof Promise ? result.then(done, failed) : done(result);
  } catch (error) {
    return failed(error);
  }
}

/** A line's answer: a response; for a batch, the array of its responses in
 * order (notifications add none; if none, no answer); or undefined. `run`
 * answers one request (with answer(), when its turn comes). */
export function answerLine(
  text: string | Error,
  run: (request: unknown, line: Line) => Answer,
  maxBatch: number,
): Answer {
  // Only JSON whitespace (an Enter pressed in nc): nothing to answer.
  if (typeof text === "string" && /^[ \t\r]*$/.test(text)) return;
  try {
    if (typeof text !== "string") throw text; // not UTF-8
    const message = parseMessage(text), line = { text };
    if (!Array.isArray(message)) return run(message, line);
    if (message.length === 0 || message.length > maxBatch) {
      const why = message.length === 0 ? "empty batch" : "batch too long";
      throw new RpcError(INVALID_REQUEST, `Invalid Request: ${why}`);
    }
    const all = message.map((one) => run(one, line));
    const join = (answers: (string | undefined)[]) => {
      const some = answers.filter((answer) => answer !== undefined);
      return some.length > 0 ? `[${some.join(",")}]` : undefined;
    };
    return all.some((one) => one instanceof Promise)
      ? Promise.all(all).then(join)
      : join(all as (string | undefined)[]);
  } catch (error) { // parseMessage's, or the batch's: run() never throws
    return encodeError(null, error as RpcError);
  }
}

/** The response line (without "\n") for a result. */
export function encodeResult(id: Id, result: unknown): string {
  try {
    return JSON.stringify({ jsonrpc: "2.0", result: result ?? null, id });
  } catch (error) { // cyclic or too deep: the caller still gets an answer
    const { name } = error as Error;
    const why = `Internal error: result cannot be encoded (${name})`;
    return encodeError(id, new RpcError(INTERNAL_ERROR, why));
  }
}

/** The response line (without "\n") for an error. */
export function encodeError(id: Id | undefined, error: RpcError): string {
  const { code, message, data } = error;
  const body = data === undefined ? { code, message } : { code, message, data };
  return JSON.stringify({ jsonrpc: "2.0", error: body, id: id ?? null });
}
