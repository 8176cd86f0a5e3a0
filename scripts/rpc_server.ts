/**
 * JSON-RPC 2.0 server over TCP, one JSON text per line each way. Calls on
 * one connection run at once, and each answer goes out with its request's id
 * as soon as that call is done: a slow sleep never holds back a later add.
 *
 * Run:    deno run --allow-net scripts/rpc_server.ts [--port 7000]
 * Try it: deno run --allow-net scripts/rpc_client.ts add 2 3
 *    or:  echo '{"jsonrpc":"2.0","method":"add","params":[2,3],"id":1}' | nc -N 127.0.0.1 7000
 *
 * The tutorials name RPC as a chief use of network programming (000 §1) but
 * never show one: this goes beyond them. Errors, as lib/jsonrpc.ts decides
 * them: -32700 not JSON, or a line over --max-line (then the connection
 * closes); -32600 not a request, an empty or oversized batch, nesting over
 * 64 levels (refused before parsing: deep input cannot make anything throw
 * RangeError); -32601; -32602; -32603 an answer that cannot be encoded;
 * -32000 over --max-connections.
 *
 * Per connection at most --max-in-flight calls run (a batch holds at most
 * that many); beyond that, or with over 1 MiB of answers unsent, it is not
 * read until they drain. Nothing read, written or running for
 * --idle-timeout closes it: that drops a client that never reads its
 * answers (at once if they pass 1 MiB + --max-line + 64 KiB).
 *
 * Read first: serveConnection.
 */
import {
  parseCommandLine,
  parseInteger,
  parsePort,
  parseSeconds,
  runCommand,
} from "../lib/cli.ts";
import { setTimeout as delay } from "node:timers/promises";
import * as rpc from "../lib/jsonrpc.ts";
import { LineReader, LineTooLongError } from "../lib/lines.ts";
import {
  closeQuietly,
  formatAddress,
  isDisconnect,
  writeAll,
} from "../lib/net.ts";
import { runUntilSignal, type ServerHandle, serveTcp } from "../lib/server.ts";

export const DEFAULT_PORT = 7000;
export const MAX_SLEEP_MS = 10_000;
const DEFAULTS = {
  maxLine: 1024 * 1024,
  maxInFlight: 100,
  maxQueue: 1024 * 1024,
  maxConnections: 1000,
  idleTimeout: 60,
};
const LINGER_MS = 1000; // a closing connection's late input is dropped so long

const USAGE = `Usage: rpc_server.ts [--hostname HOST] [--port PORT] [options]

JSON-RPC 2.0 over TCP, one JSON text per line. Methods: add [a, b] or
{"a", "b"}; echo (returns its params); time; sleep [ms] or {"ms"} (<= ${MAX_SLEEP_MS}).

Options:
  --hostname HOST         address to listen on (default 127.0.0.1; 0.0.0.0 or :: to expose)
  --port PORT             port to listen on (default ${DEFAULT_PORT}; 0 picks a free port)
  --max-line BYTES        longest request line (default ${DEFAULTS.maxLine})
  --max-in-flight N       calls running at once per connection (default ${DEFAULTS.maxInFlight})
  --max-connections N     connections at once (default ${DEFAULTS.maxConnections})
  --idle-timeout SECONDS  close a connection idle this long (default ${DEFAULTS.idleTimeout})
  -h, --help              show this help`;

export interface RpcServerOptions extends Partial<typeof DEFAULTS> {
  hostname?: string;
  port?: number;
  /** Where connection notes go (default: stderr). */
  log?: (message: string) => void;
}

const badParams = (why: string) =>
  new rpc.RpcError(rpc.INVALID_PARAMS, `Invalid params: ${why}`);

/** The methods. A Map, so that "constructor" or "__proto__" are not. */
const METHODS = new Map<string, rpc.Method>([
  ["add", (params) => {
    const [a, b] = Array.isArray(params) ? params : [params?.a, params?.b];
    const pair = !Array.isArray(params) || params.length === 2;
    if (!pair || typeof a !== "number" || typeof b !== "number") {
      throw badParams('add takes two numbers, [a, b] or {"a": a, "b": b}');
    }
    if (!Number.isFinite(a + b)) throw badParams("the sum is too large");
    return a + b;
  }],
  ["echo", (params) => params],
  ["time", () => new Date().toISOString()],
  ["sleep", (params, signal) => {
    const ms = Array.isArray(params) ? params[0] : params?.ms;
    const one = !Array.isArray(params) || params.length === 1;
    if (!one || typeof ms !== "number" || !(ms >= 0 && ms <= MAX_SLEEP_MS)) {
      throw badParams(
        `sleep takes 0 to ${MAX_SLEEP_MS} ms: [ms] or {"ms": ms}`,
      );
    }
    // Cancelled (timer freed) when the connection or the server closes.
    return delay(ms, ms, { signal });
  }],
]);

interface Connection { // what the idle sweep looks at
  lastActive: number;
  unanswered: number; // lines whose answer is not queued yet
  abort(why?: string): void;
}

export function startRpcServer(options: RpcServerOptions = {}): ServerHandle {
  const maxLine = options.maxLine ?? DEFAULTS.maxLine;
  const maxInFlight = options.maxInFlight ?? DEFAULTS.maxInFlight;
  const maxQueue = options.maxQueue ?? DEFAULTS.maxQueue;
  const maxConnections = options.maxConnections ?? DEFAULTS.maxConnections;
  const idleTimeout = options.idleTimeout ?? DEFAULTS.idleTimeout;
  const log = options.log ?? ((message: string) => console.error(message));
  const encoder = new TextEncoder();
  const errorLine = (code: number, message: string) =>
    encoder.encode(
      `${rpc.encodeError(null, new rpc.RpcError(code, message))}\n`,
    );
  const open = new Set<Connection>();

  async function serveConnection(conn: Deno.Conn, shutdown: AbortSignal) {
    const peer = formatAddress(conn.remoteAddr);
    if (open.size >= maxConnections) {
      log(`${peer}: refused, ${maxConnections} connections already open`);
      await writeAll(conn, errorLine(rpc.SERVER_BUSY, "Server busy"));
      return await lingeringClose(conn);
    }
    // Each wait below is "until something changes" (a call ends, bytes go
    // out, the connection aborts), then the waiter looks again.
    const waiters: (() => void)[] = [];
    const nextChange = () => new Promise<void>((wake) => waiters.push(wake));
    const changed = () => waiters.splice(0).forEach((wake) => wake());
    const stop = new AbortController(); // cancels sleeps, ends both loops
    const connection: Connection = {
      lastActive: Date.now(),
      unanswered: 0,
      abort(why) {
        if (stop.signal.aborted) return;
        if (why) log(`${peer}: closed, ${why}`);
        stop.abort();
        closeQuietly(conn);
        changed();
      },
    };
    // Server shutdown aborts us; our own end removes this listener.
    shutdown.addEventListener("abort", () => connection.abort(), {
      signal: stop.signal,
    });
    open.add(connection);

    // Answers wait here for the writer, and count until written: bytes
    // stuck behind a client that does not read count against its bound.
    const queue: Uint8Array[] = [];
    let queuedBytes = 0;
    const send = (bytes: Uint8Array) => {
      queue.push(bytes);
      queuedBytes += bytes.length;
      // On a full queue may come one line's answers and the small answers
      // of calls still running; past that, the client is not reading.
      if (queuedBytes > maxQueue + maxLine + 65_536) {
        connection.abort(`not reading its answers (${queuedBytes} B unsent)`);
      }
      changed();
    };
    let inFlight = 0; // calls running: at most maxInFlight
    let waiting = 0; // calls of a batch waiting for a turn
    const run = async (message: unknown, line: Uint8Array) => {
      waiting++;
      while (inFlight >= maxInFlight && !stop.signal.aborted) {
        await nextChange();
      }
      waiting--;
      if (stop.signal.aborted) return undefined; // closing: start nothing
      inFlight++;
      try {
        return await rpc.answer(message, line, METHODS, stop.signal);
      } finally {
        inFlight--;
        changed();
      }
    };

    /** One line's answer, whenever it is ready; undefined: no answer. */
    const answerLine = async (line: Uint8Array) => {
      let message;
      try {
        message = rpc.parseMessage(line);
      } catch (error) {
        return rpc.encodeError(null, error as rpc.RpcError);
      }
      if (!Array.isArray(message)) return await run(message, line);
      if (message.length === 0 || message.length > maxInFlight) {
        const why = message.length === 0 ? "empty batch" : "batch too long";
        const error = new rpc.RpcError(
          rpc.INVALID_REQUEST,
          `Invalid Request: ${why}`,
        );
        return rpc.encodeError(null, error);
      }
      // A batch is answered by one array, in order; notifications add
      // nothing to it, and a batch of notifications only is not answered.
      const all = await Promise.all(message.map((item) => run(item, line)));
      const answers = all.filter((answer) => answer !== undefined);
      return answers.length > 0 ? `[${answers.join(",")}]` : undefined;
    };
    // Each line's answer is sent when ready; until then the line counts as
    // unanswered, which keeps the connection from looking idle.
    const handleLine = (line: Uint8Array) => {
      connection.unanswered++;
      answerLine(line).then((text) => {
        if (text !== undefined && !stop.signal.aborted) {
          send(encoder.encode(text + "\n"));
        }
      }).finally(() => (connection.unanswered--, changed()));
    };

    let readingDone = false;
    const writing = (async () => {
      const buffer = new Uint8Array(16 * 1024); // small answers: one write
      try {
        while (!stop.signal.aborted) {
          if (queue.length === 0) {
            if (readingDone && connection.unanswered === 0) return;
            await nextChange();
            continue;
          }
          let size = 0;
          while (queue.length > 0 && size + queue[0].length <= buffer.length) {
            const bytes = queue.shift()!;
            buffer.set(bytes, size);
            size += bytes.length;
          }
          const chunk = size > 0 ? buffer.subarray(0, size) : queue.shift()!;
          await writeAll(conn, chunk);
          queuedBytes -= chunk.length;
          connection.lastActive = Date.now();
          changed();
        }
      } catch (error) {
        if (!isDisconnect(error)) throw error;
        connection.abort();
      }
    })();

    // The reader: a line at a time, and only while there is room for it.
    const lines = new LineReader(conn, maxLine);
    let tooLong = false;
    try {
      while (!stop.signal.aborted) {
        if (inFlight + waiting >= maxInFlight || queuedBytes > maxQueue) {
          await nextChange();
          continue;
        }
        const line = await lines.readLine();
        if (line === null) break; // half-closed: answer what came, then close
        connection.lastActive = Date.now();
        if (!blank(line)) handleLine(line);
      }
    } catch (error) {
      if (error instanceof LineTooLongError) {
        tooLong = true;
        send(errorLine(rpc.PARSE_ERROR, `Parse error: ${error.message}`));
      } else if (isDisconnect(error)) connection.abort();
      else throw error;
    } finally {
      readingDone = true;
      changed();
      await writing;
      open.delete(connection);
      if (tooLong && !stop.signal.aborted) await lingeringClose(conn);
      stop.abort(); // the end: also removes the shutdown listener
    }
  }

  const server = serveTcp({
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port ?? DEFAULT_PORT,
    onShutdown: () => clearInterval(sweep),
  }, serveConnection);
  // One timer for all connections closes the idle ones.
  const sweep = setInterval(() => {
    for (const connection of open) {
      if (
        connection.unanswered === 0 &&
        Date.now() - connection.lastActive > idleTimeout * 1000
      ) connection.abort(`idle for ${idleTimeout} s`);
    }
  }, Math.min(1000, Math.max(50, idleTimeout * 250)));
  return server;
}

/** Only JSON whitespace (an Enter pressed in nc): nothing to answer. */
function blank(line: Uint8Array): boolean {
  return line.every((byte) => byte === 0x20 || byte === 0x09 || byte === 0x0d);
}

/**
 * Half-closes, then reads and drops what the client still sends, for at
 * most LINGER_MS: closing with unread input makes the kernel send a reset,
 * which can destroy our last answer before the client has read it.
 */
async function lingeringClose(conn: Deno.Conn) {
  const timer = setTimeout(() => closeQuietly(conn), LINGER_MS);
  try {
    await conn.closeWrite();
    const scratch = new Uint8Array(64 * 1024);
    while (await conn.read(scratch) !== null) { /* drop */ }
  } catch (error) {
    if (!isDisconnect(error)) throw error;
  } finally {
    clearTimeout(timer);
  }
}

if (import.meta.main) {
  await runCommand("rpc_server.ts", () => {
    const option = (value: number) => ({
      type: "string",
      default: String(value),
    } as const);
    const { values } = parseCommandLine(Deno.args, {
      usage: USAGE,
      options: {
        hostname: { type: "string", default: "127.0.0.1" },
        port: option(DEFAULT_PORT),
        "max-line": option(DEFAULTS.maxLine),
        "max-in-flight": option(DEFAULTS.maxInFlight),
        "max-connections": option(DEFAULTS.maxConnections),
        "idle-timeout": option(DEFAULTS.idleTimeout),
      },
    });
    const count = (name: "max-in-flight" | "max-connections") =>
      parseInteger(values[name], `--${name}`, 1);
    const server = startRpcServer({
      hostname: values.hostname,
      port: parsePort(values.port),
      maxLine: parseInteger(values["max-line"], "--max-line", 64, 2 ** 26),
      maxInFlight: count("max-in-flight"),
      maxConnections: count("max-connections"),
      idleTimeout: parseSeconds(values["idle-timeout"], "--idle-timeout"),
    });
    return runUntilSignal(server, "tcp");
  });
}
