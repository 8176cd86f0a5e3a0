/**
 * JSON-RPC 2.0 client for rpc_server.ts: sends one call and prints its
 * result as JSON. Its RpcClient keeps any number of calls in flight on one
 * connection and gives each the answer that carries its id.
 *
 * Run:    deno run --allow-net scripts/rpc_client.ts add 2 3
 * Try it: deno run --allow-net scripts/rpc_client.ts --named add a=2 b=3
 *    or:  deno run --allow-net scripts/rpc_client.ts echo hello '{"a":[1]}'
 *
 * A PARAM is JSON when it parses (2, [1], {"a":1}, '"2"'), else a string;
 * --named takes NAME=VALUE pairs for an object. An error answer, a refused
 * or timed-out connect, no reply within --timeout: one line, exit 1.
 *
 * The tutorials only name RPC (000 §1); their client (000 §4.2) sends and
 * takes one recv(1024) as the answer. Here answers are framed by lines and
 * matched to calls by id, so calls can overlap: beyond the tutorials.
 *
 * Read first: RpcClient.call.
 */
import { Failure, parseCommandLine, parsePort } from "../lib/cli.ts";
import { parseSeconds, runCommand, UsageError } from "../lib/cli.ts";
import { seconds, withDeadline } from "../lib/deadline.ts";
import { dial } from "../lib/dial.ts";
import { describeError } from "../lib/errors.ts";
import { closeQuietly, writeAll } from "../lib/io.ts";
import * as rpc from "./rpc/jsonrpc.ts";
import { BufferedReader } from "../lib/reader.ts";
import { printable, printableJson } from "../lib/terminal.ts";

export const DEFAULT_PORT = 7000;
export const DEFAULT_TIMEOUT = 15; // seconds: longer than the longest sleep
export const MAX_REPLY = 8 * 1024 * 1024; // longest answer line accepted

const USAGE = `Usage: rpc_client.ts [options] METHOD [PARAM...]

Calls METHOD over JSON-RPC 2.0 (a JSON text per line) and prints the result.
Each PARAM is JSON if it parses, else a string ('--' before one like -1).

Options:
  --hostname HOST    server address (default 127.0.0.1)
  --port PORT        server port (default ${DEFAULT_PORT})
  --named            PARAMs are NAME=VALUE: send params as an object
  --notify           send a notification (no id, no answer) and exit
  --timeout SECONDS  limit for the connect, and again for the reply (default ${DEFAULT_TIMEOUT})
  -h, --help         show this help`;

export class RpcClient {
  #conn: Deno.Conn;
  #pending = new Map<number, PromiseWithResolvers<unknown>>(); // by id
  #nextId = 1;
  #outbox: string[] = []; // lines waiting for the writer
  #writing = false;
  #failure: Error | undefined; // set once the connection is unusable
  #encoder = new TextEncoder();

  /** Connects (lib/dial.ts); `timeout` (seconds) bounds the connect. */
  static async connect(
    options: {
      hostname?: string;
      port?: number;
      timeout?: number;
      maxReply?: number;
    } = {},
  ): Promise<RpcClient> {
    const conn = await dial({
      hostname: options.hostname ?? "127.0.0.1",
      port: options.port ?? DEFAULT_PORT,
      timeoutMs: (options.timeout ?? DEFAULT_TIMEOUT) * 1000,
    }); // with TCP_NODELAY: calls are small and each waits for an answer
    return new RpcClient(conn, options.maxReply);
  }

  constructor(conn: Deno.Conn, maxReply = MAX_REPLY) {
    this.#conn = conn;
    const lines = new BufferedReader(conn, { maxLine: maxReply });
    this.#readAnswers(lines); // until it fails
  }

  /**
   * Calls `method`. Resolves with the result; rejects with rpc.RpcError for
   * an error answer, or Failure when the connection fails first.
   */
  call(method: string, params?: rpc.Params): Promise<unknown> {
    if (this.#failure) return Promise.reject(this.#failure);
    const id = this.#nextId++;
    const answer = Promise.withResolvers<unknown>();
    this.#pending.set(id, answer);
    this.#send({ jsonrpc: "2.0", method, params, id });
    return answer.promise;
  }

  /** Sends a notification: no id, so no answer (not even an error). */
  async notify(method: string, params?: rpc.Params): Promise<void> {
    await this.#send({ jsonrpc: "2.0", method, params });
    if (this.#failure) throw this.#failure;
  }

  /** Closes the connection; calls still waiting fail with `reason`. */
  close(reason = new Failure("connection closed")) {
    this.#fail(reason);
  }

  [Symbol.dispose]() {
    this.close();
  }

  /**
   * Queues one line; a single writer sends everything queued in one write.
   * Lines written concurrently could interleave, so only the writer writes.
   */
  async #send(message: object): Promise<void> {
    this.#outbox.push(JSON.stringify(message) + "\n");
    if (this.#writing) return;
    this.#writing = true;
    try {
      while (this.#outbox.length > 0 && !this.#failure) {
        const text = this.#outbox.join("");
        this.#outbox.length = 0;
        await writeAll(this.#conn, this.#encoder.encode(text));
      }
    } catch (error) {
      this.#fail(new Failure(`cannot send: ${describeError(error)}`));
    } finally {
      this.#writing = false;
    }
  }

  async #readAnswers(lines: BufferedReader) {
    try {
      while (true) {
        const line = await lines.readLine();
        if (line === null) {
          throw new Failure("no reply: the server closed the connection");
        }
        const answer = parseResponse(line);
        const pending = this.#pending.get(answer.id as number);
        if (!pending) {
          // An error for no call in particular (a line it could not parse,
          // a full server) concerns them all.
          if (answer.id === null && "error" in answer) throw answer.error;
          throw new Failure(`answer to a call never made (id ${answer.id})`);
        }
        this.#pending.delete(answer.id as number);
        if ("error" in answer) pending.reject(answer.error);
        else pending.resolve(answer.result);
      }
    } catch (error) {
      this.#fail(
        error instanceof Failure || error instanceof rpc.RpcError
          ? error
          : new Failure(`no reply: ${describeError(error)}`),
      );
    }
  }

  #fail(error: Error) {
    this.#failure ??= error;
    closeQuietly(this.#conn);
    for (const pending of this.#pending.values()) pending.reject(error);
    this.#pending.clear();
  }
}

/** The command line's PARAMs as params: JSON when they parse, else text. */
export function parseParams(args: string[], named = false): rpc.Params {
  const value = (text: string) => {
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  };
  if (args.length === 0) return undefined;
  if (!named) return args.map(value);
  return Object.fromEntries(args.map((arg) => {
    const match = /^([^=]+)=(.*)$/s.exec(arg);
    if (!match) throw new UsageError(`--named wants NAME=VALUE, got '${arg}'`);
    return [match[1], value(match[2])];
  }));
}

/** One line as a response: its id, and its result or its error. */
function parseResponse(line: Uint8Array) {
  const bad = (why: string) => new Failure(`bad reply: ${why}`);
  let reply;
  try {
    reply = rpc.parseMessage(line) as Record<string, unknown> | null;
  } catch (error) {
    throw bad((error as Error).message);
  }
  const id = reply?.id as rpc.Id;
  const idOk = id === null || ["string", "number"].includes(typeof id);
  if (typeof reply !== "object" || reply?.jsonrpc !== "2.0" || !idOk) {
    throw bad("reply is not a JSON-RPC 2.0 response");
  }
  if ("result" in reply && !("error" in reply)) {
    return { id, result: reply.result };
  }
  const { code, message, data } = (reply.error ?? {}) as {
    [k: string]: unknown;
  };
  if (!Number.isInteger(code) || typeof message !== "string") {
    throw bad("reply has neither a result nor a well-formed error");
  }
  return { id, error: new rpc.RpcError(code as number, message, data) };
}

if (import.meta.main) {
  await runCommand("rpc_client.ts", async () => {
    const { values, positionals } = parseCommandLine(Deno.args, {
      usage: USAGE,
      positionals: true,
      options: {
        hostname: { type: "string", default: "127.0.0.1" },
        port: { type: "string", default: String(DEFAULT_PORT) },
        named: { type: "boolean", default: false },
        notify: { type: "boolean", default: false },
        timeout: { type: "string", default: String(DEFAULT_TIMEOUT) },
      },
    });
    const [method, ...args] = positionals;
    if (method === undefined) throw new UsageError("missing METHOD");
    const params = parseParams(args, values.named);
    const timeout = parseSeconds(values.timeout, "--timeout");
    using client = await RpcClient.connect({
      hostname: values.hostname,
      port: parsePort(values.port),
      timeout,
    });
    if (values.notify) return await client.notify(method, params);
    try {
      // On time, or the connection is closed and the call fails with this.
      const result = await withDeadline(
        client,
        timeout * 1000,
        () => client.call(method, params),
        `no reply: timed out after ${seconds(timeout * 1000)}`,
      );
      console.log(printableJson(result, 0));
    } catch (error) {
      if (!(error instanceof rpc.RpcError)) throw error;
      throw new Failure(`error ${error.code}: ${printable(error.message)}`);
    }
  });
}
