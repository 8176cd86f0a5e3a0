// JSON-RPC 2.0 (https://www.jsonrpc.org/specification) as rpc_server.ts
// and rpc_client.ts speak it, one JSON text per line: the error codes,
// reading a line of JSON safely, answering a request object with a table of
// methods (server), and checking a response (client). What is left in the
// scripts is the networking: concurrency, framing, limits.

/** The codes the specification defines; -32000 to -32099 are ours. */
export const PARSE_ERROR = -32700;
export const INVALID_REQUEST = -32600;
export const METHOD_NOT_FOUND = -32601;
export const INVALID_PARAMS = -32602;
export const INTERNAL_ERROR = -32603;
/** Implementation-defined server error: the server refuses the connection. */
export const SERVER_BUSY = -32000;

/** Deepest nesting of arrays and objects accepted in one message. */
export const MAX_DEPTH = 64;

/** An error that becomes (or came from) an error response. */
export class RpcError extends Error {
  constructor(readonly code: number, message: string, readonly data?: unknown) {
    super(message);
  }
}

/** A request id; a number JavaScript cannot hold exactly stays as its text. */
export type Id = string | number | null | RawJson;
type RawJson = { readonly rawJSON: string };
// JSON.rawJSON (V8 11.4+) makes JSON.stringify write the given text as is.
const { rawJSON } = JSON as unknown as { rawJSON(text: string): RawJson };

export interface Request {
  method: string;
  params?: unknown[] | Record<string, unknown>;
  /** Absent for a notification, which gets no response. */
  id?: Id;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * One received line as a JSON value. Throws RpcError: PARSE_ERROR for bytes
 * that are not UTF-8 JSON, INVALID_REQUEST for nesting deeper than
 * MAX_DEPTH (refused before parsing: deep values make recursive code, such
 * as JSON.stringify with a replacer or a logger, throw RangeError).
 */
export function parseMessage(line: Uint8Array): unknown {
  if (line.length > MAX_DEPTH && nestedTooDeep(line)) {
    throw new RpcError(
      INVALID_REQUEST,
      `Invalid Request: nested deeper than ${MAX_DEPTH} levels`,
    );
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

/**
 * Whether brackets nest deeper than MAX_DEPTH, counted on the raw bytes
 * (skipping strings) in one pass with no allocation.
 */
function nestedTooDeep(bytes: Uint8Array): boolean {
  let depth = 0;
  let inString = false;
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

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isId(value: unknown): value is Id {
  return value === null || typeof value === "string" ||
    typeof value === "number";
}

/**
 * Checks one request object. Returns the request, or an RpcError carrying
 * the id to answer with (null when the id itself is unusable).
 */
export function checkRequest(
  value: unknown,
  line: Uint8Array,
): Request | { error: RpcError; id: Id } {
  const invalid = (why: string, id: Id = null) => ({
    error: new RpcError(INVALID_REQUEST, `Invalid Request: ${why}`),
    id,
  });
  if (!isObject(value)) return invalid("not a JSON object");
  const { method, params } = value;
  const id = value.id as Id | undefined;
  if ("id" in value && !isId(id)) {
    return invalid("id must be a string, a number or null");
  }
  const replyId = id === undefined ? null : exactId(id, line);
  if (value.jsonrpc !== "2.0") {
    return invalid('"jsonrpc" must be "2.0"', replyId);
  }
  if (typeof method !== "string") {
    return invalid('"method" must be a string', replyId);
  }
  if (params !== undefined && !Array.isArray(params) && !isObject(params)) {
    return invalid('"params" must be an array or an object', replyId);
  }
  return "id" in value ? { method, params, id: replyId } : { method, params };
}

/**
 * A number id that a double cannot hold exactly (12345678901234567890,
 * 1e400) is answered with the text the client sent: the line is parsed
 * again, once however many such ids its batch holds, keeping the source
 * text of every request's "id". Rare, so the common case pays nothing.
 */
function exactId(id: Id, line: Uint8Array): Id {
  if (typeof id !== "number" || Number.isSafeInteger(id)) return id;
  let texts = idTexts.get(line);
  if (!texts) {
    const found: string[] = texts = [];
    idTexts.set(line, texts);
    JSON.parse(
      utf8.decode(line),
      function (this: unknown, key, value, context?: { source?: string }) {
        if (key === "id" && isObject(this) && "jsonrpc" in this) {
          if (typeof value === "number" && context?.source) {
            found.push(context.source);
          }
        }
        return value;
      },
    );
  }
  // The first id left in the line that reads back as this number: calls
  // are checked in the order they come, so each takes its own.
  const index = texts.findIndex((source) => Number(source) === id);
  const text = index >= 0 ? texts.splice(index, 1)[0] : String(id);
  return /^-?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(text) ? rawJSON(text) : id;
}
const idTexts = new WeakMap<Uint8Array, string[]>();

export type Method = (
  params: Request["params"],
  signal: AbortSignal,
) => unknown;

/**
 * Answers one request object with `methods`: the response line (without
 * "\n"), undefined for a notification, or a promise of either when the
 * method returns one. Every outcome is an answer: an unexpected exception
 * is logged and becomes INTERNAL_ERROR, and nothing reaches the caller.
 */
export function answer(
  message: unknown,
  line: Uint8Array,
  methods: Map<string, Method>,
  signal: AbortSignal,
): string | undefined | Promise<string | undefined> {
  const request = checkRequest(message, line);
  if ("error" in request) return encodeError(request.id, request.error);
  const { id } = request;
  const succeed = (result: unknown) =>
    id === undefined ? undefined : encodeResult(id, result);
  const fail = (error: unknown) => {
    if (!(error instanceof RpcError)) {
      // A bug, unless the call was cancelled (its answer is never sent).
      if (!signal.aborted) {
        console.error(`${request.method}: ${(error as Error)?.stack ?? error}`);
      }
      error = new RpcError(INTERNAL_ERROR, "Internal error");
    }
    return id === undefined ? undefined : encodeError(id, error as RpcError);
  };
  const method = methods.get(request.method);
  if (!method) {
    return fail(
      new RpcError(METHOD_NOT_FOUND, `Method not found: ${request.method}`),
    );
  }
  try {
    const result = method(request.params, signal);
    return result instanceof Promise
      ? result.then(succeed, fail)
      : succeed(result);
  } catch (error) {
    return fail(error);
  }
}

/** The response line (without "\n") for a result. */
export function encodeResult(id: Id, result: unknown): string {
  try {
    return JSON.stringify({ jsonrpc: "2.0", result: result ?? null, id });
  } catch (error) {
    // Cyclic or too deep to encode: the caller still gets an answer.
    return encodeError(
      id,
      new RpcError(
        INTERNAL_ERROR,
        `Internal error: result cannot be encoded (${(error as Error).name})`,
      ),
    );
  }
}

/** The response line (without "\n") for an error. */
export function encodeError(id: Id | undefined, error: RpcError): string {
  const body: Record<string, unknown> = {
    code: error.code,
    message: error.message,
  };
  if (error.data !== undefined) body.data = error.data;
  return JSON.stringify({ jsonrpc: "2.0", error: body, id: id ?? null });
}

export type Response =
  | { id: Id; result: unknown }
  | { id: Id; error: RpcError };

/** Checks one response object (client side); throws a plain Error if not. */
export function checkResponse(value: unknown): Response {
  if (!isObject(value) || value.jsonrpc !== "2.0" || !isId(value.id)) {
    throw new Error("reply is not a JSON-RPC 2.0 response");
  }
  if ("result" in value && !("error" in value)) {
    return { id: value.id, result: value.result };
  }
  const error = value.error;
  if (
    !isObject(error) || !Number.isInteger(error.code) ||
    typeof error.message !== "string"
  ) {
    throw new Error("reply has neither a result nor a well-formed error");
  }
  return {
    id: value.id,
    error: new RpcError(error.code as number, error.message, error.data),
  };
}
