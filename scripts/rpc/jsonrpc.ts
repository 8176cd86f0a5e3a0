// JSON-RPC 2.0 (https://www.jsonrpc.org/specification) as the RPC chapter
// speaks it, one JSON text per line: the error codes, a line parsed safely
// (UTF-8, nesting bounded, ids too large for a double kept as written), and
// a request or a batch answered from a table of methods. rpc_server.ts
// answers with it and rpc_client.ts reads answers with it; it is apart so
// that the scripts keep their networking lessons in view: concurrency,
// framing, limits. Part of the RPC chapter: run scripts/rpc_server.ts.

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

/** A line as a JSON value, or RpcError: PARSE_ERROR if not UTF-8 JSON;
 * INVALID_REQUEST if nested past MAX_DEPTH, refused before parsing (so that
 * no recursive code, a logger say, can meet a RangeError). */
export function parseMessage(line: Uint8Array): unknown {
  if (line.length > MAX_DEPTH && nestedTooDeep(line)) {
    const why = `nested deeper than ${MAX_DEPTH} levels`;
    throw new RpcError(INVALID_REQUEST, `Invalid Request: ${why}`);
  }
  let text;
  try {
    text = utf8.decode(line);
    return JSON.parse(text);
  } catch (error) {
    const why = text === undefined ? "not UTF-8" : (error as Error).message;
    throw new RpcError(PARSE_ERROR, `Parse error: ${why}`);
  }
}

/** Whether brackets nest deeper than MAX_DEPTH, counted on the raw bytes
 * (skipping strings) in one pass with no allocation. */
function nestedTooDeep(bytes: Uint8Array): boolean {
  let depth = 0, inString = false;
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i];
    if (inString) {
      if (byte === 0x5c) i++; // a backslash escapes the next byte
      else if (byte === 0x22) inString = false;
    } else if (byte === 0x22) inString = true;
    else if (byte === 0x5b || byte === 0x7b) {
      if (++depth > MAX_DEPTH) return true;
    } else if (byte === 0x5d || byte === 0x7d) depth--;
  }
  return false;
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

const isId = (value: unknown): value is Id =>
  value === null || typeof value === "string" || typeof value === "number";

/** One request object checked: the request, or the error to answer with
 * and the id to answer it to (null when the id itself is unusable). */
function checkRequest(value: unknown, line: Uint8Array) {
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
function exactId(id: Id, line: Uint8Array): Id {
  if (typeof id !== "number" || Number.isSafeInteger(id)) return id;
  let texts = idTexts.get(line);
  if (!texts) {
    const found: string[] = texts = [];
    idTexts.set(line, texts);
    type Context = { source: string };
    JSON.parse(utf8.decode(line), function (key, value, context?: Context) {
      const request = key === "id" && isObject(this) && "jsonrpc" in this;
      if (request && typeof value === "number") found.push(context!.source);
      return value;
    });
  }
  const index = texts.findIndex((source) => Number(source) === id);
  const text = index >= 0 ? texts.splice(index, 1)[0] : String(id);
  return /^-?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(text) ? rawJSON(text) : id;
}
const idTexts = new WeakMap<Uint8Array, string[]>();

export type Method = (params: Params, signal: AbortSignal) => unknown;

/**
 * Answers one request object with `methods`: the response line (without
 * "\n"), or undefined for a notification. Every outcome is an answer: an
 * unexpected exception is logged and becomes INTERNAL_ERROR.
 */
export async function answer(
  message: unknown,
  line: Uint8Array,
  methods: Map<string, Method>,
  signal: AbortSignal,
): Promise<string | undefined> {
  const request = checkRequest(message, line);
  if ("error" in request) return encodeError(request.id, request.error);
  const { method: name, params, id } = request;
  try {
    const method = methods.get(name);
    if (!method) {
      throw new RpcError(METHOD_NOT_FOUND, `Method not found: ${name}`);
    }
    const result = await method(params, signal);
    return id === undefined ? undefined : encodeResult(id, result);
  } catch (error) {
    const known = error instanceof RpcError;
    // A bug, unless the call was cancelled (its answer is never sent).
    if (!known && !signal.aborted) {
      console.error(`${name}: ${(error as Error)?.stack ?? error}`);
    }
    const sent = known ? error : new RpcError(INTERNAL_ERROR, "Internal error");
    return id === undefined ? undefined : encodeError(id, sent);
  }
}

/** A line's answer (without "\n"): a response; for a batch, the array of
 * its responses in order (notifications add none; if none, no answer); or
 * undefined. `run` answers one request (with answer(), when its turn comes). */
export async function answerLine(
  line: Uint8Array,
  run: (request: unknown, line: Uint8Array) => Promise<string | undefined>,
  maxBatch: number,
): Promise<string | undefined> {
  // Only JSON whitespace (an Enter pressed in nc): nothing to answer.
  if (line.every((b) => b === 0x20 || b === 9 || b === 0x0d)) return;
  try {
    const message = parseMessage(line);
    if (!Array.isArray(message)) return await run(message, line);
    if (message.length === 0 || message.length > maxBatch) {
      const why = message.length === 0 ? "empty batch" : "batch too long";
      throw new RpcError(INVALID_REQUEST, `Invalid Request: ${why}`);
    }
    const all = await Promise.all(message.map((one) => run(one, line)));
    const answers = all.filter((answer) => answer !== undefined);
    return answers.length > 0 ? `[${answers.join(",")}]` : undefined;
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
