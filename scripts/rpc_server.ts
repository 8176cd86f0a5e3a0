/**
 * JSON-RPC 2.0 server over TCP, one JSON text per line each way. Calls on
 * one connection run at once, and each answer goes out with its request's id
 * as soon as that call is done: a slow sleep never holds back a later add.
 *
 * Run:    deno run --allow-net scripts/rpc_server.ts [--port 7000]
 * Try it: deno run --allow-net scripts/rpc_client.ts add 2 3
 *    or:  echo '{"jsonrpc":"2.0","method":"add","params":[2,3],"id":1}' | nc -N 127.0.0.1 7000
 *
 * The tutorials name RPC (calling a function on another machine as if it
 * were local) a chief use of network programming (000 §1), and never show
 * one; their servers answer one message before reading the next. Here a
 * connection is not read while --max-in-flight calls run or 1 MiB of
 * answers waits unsent. The protocol itself is in rpc/jsonrpc.ts.
 *
 * Read first: serveConnection.
 */
import { parseCommandLine, parseInteger } from "../lib/cli.ts";
import { parseSeconds, runCommand } from "../lib/cli.ts";
import { sleep, Sweeper } from "../lib/deadline.ts";
import { isDisconnect } from "../lib/errors.ts";
import { closeQuietly, formatAddress, lingeringClose } from "../lib/io.ts";
import { writeAll } from "../lib/io.ts";
import * as rpc from "./rpc/jsonrpc.ts";
import { BufferedReader, LineTooLongError } from "../lib/reader.ts";
import { listenOptions, parseListen, serveTcp } from "../lib/server.ts";
import { runUntilSignal, type ServerHandle } from "../lib/server.ts";

export const DEFAULT_PORT = 7000, MAX_SLEEP_MS = 10_000;
const SLEEP_USAGE = `sleep takes 0 to ${MAX_SLEEP_MS} ms: [ms] or {"ms": ms}`;
const CAPS = { maxConnections: 1000, maxPerAddress: 200 }; // each holds MiBs
const DEFAULTS = {
  maxLine: 1024 * 1024,
  maxInFlight: 100,
  maxQueue: 1024 * 1024,
  idleTimeout: 60,
  ...CAPS,
};
const LISTEN = listenOptions(DEFAULT_PORT, CAPS);

const USAGE = `Usage: rpc_server.ts [--hostname HOST] [--port PORT] [options]

JSON-RPC 2.0 over TCP, one JSON text per line. Methods: add [a, b] or
{"a", "b"}; echo (returns its params); time; sleep [ms] or {"ms"} (<= ${MAX_SLEEP_MS}).

Options:
${LISTEN.help}
  --max-line BYTES     longest request line (default ${DEFAULTS.maxLine})
  --max-in-flight N    calls running at once per connection (default ${DEFAULTS.maxInFlight})
  --idle-timeout S     close a connection idle S seconds (default ${DEFAULTS.idleTimeout})
  -h, --help           show this help`;

export interface RpcServerOptions extends Partial<typeof DEFAULTS> {
  hostname?: string;
  port?: number;
  log?: (message: string) => void; // connection notes (default: stderr)
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
      throw badParams(SLEEP_USAGE);
    }
    // Cut short (timer freed) when the connection or the server closes.
    return sleep(ms, signal).then(() => ms);
  }],
]);

const encoder = new TextEncoder();
const errorLine = (code: number, message: string) =>
  rpc.encodeError(null, new rpc.RpcError(code, message));

export function startRpcServer(options: RpcServerOptions = {}): ServerHandle {
  const maxLine = options.maxLine ?? DEFAULTS.maxLine;
  const maxInFlight = options.maxInFlight ?? DEFAULTS.maxInFlight;
  const maxQueue = options.maxQueue ?? DEFAULTS.maxQueue;
  const idleTimeout = options.idleTimeout ?? DEFAULTS.idleTimeout;
  const log = options.log ?? ((message: string) => console.error(message));
  // One timer for every connection's idle deadline (lib/deadline.ts).
  const sweeper = Sweeper.forTimeout(idleTimeout * 1000);

  async function serveConnection(conn: Deno.Conn, shutdown: AbortSignal) {
    // Each wait below is "until something changes" (a call ends, bytes go
    // out, the connection aborts), then the waiter looks again.
    let change = Promise.withResolvers<void>();
    const changed = () => (change.resolve(), change = Promise.withResolvers());
    const stop = new AbortController(), closed = stop.signal; // ends it all
    const abort = (why?: string) => {
      if (closed.aborted) return;
      if (why) log(`${formatAddress(conn.remoteAddr)}: closed, ${why}`);
      stop.abort();
      closeQuietly(conn);
      changed();
    };
    shutdown.addEventListener("abort", () => abort(), { signal: closed });
    // Calls running (at most maxInFlight), calls of a batch waiting for a
    // turn, lines whose answer is not queued yet.
    let running = 0, waiting = 0, unanswered = 0;
    const traffic = { bytes: 0 }; // idle: this stands still, no call runs
    const expire = () => {
      if (unanswered === 0) abort(`idle for ${idleTimeout} s`);
      else idle = sweeper.idle(traffic, idleTimeout * 1000, expire);
    };
    let idle = sweeper.idle(traffic, idleTimeout * 1000, expire);

    // Answers wait here for the writer, and count until written: text
    // stuck behind a client that does not read counts against its bound.
    const queue: string[] = [];
    let queued = 0;
    const send = (text: string | undefined) => {
      if (text === undefined || closed.aborted) return; // a notification
      if (queue.push(text + "\n") === 1) changed(); // wakes the writer
      queued += text.length + 1;
      // On a full queue may come one line's answers and the small answers
      // of calls still running; past that, the client is not reading.
      if (queued > maxQueue + maxLine + 65_536) {
        abort(`not reading its answers (${queued} characters unsent)`);
      }
    };
    // A call done at once (add, echo) is answered with no promise; sleep
    // counts as running until it ends. A batch's call past the bound waits.
    const run = (message: unknown, line: rpc.Line): rpc.Answer => {
      if (running >= maxInFlight) return later(message, line);
      running++;
      const answer = rpc.answer(message, line, METHODS, closed);
      if (!(answer instanceof Promise)) running--;
      else answer.finally(() => (running--, changed()));
      return answer;
    };
    const later = async (message: unknown, line: rpc.Line) => {
      waiting++;
      while (running >= maxInFlight && !closed.aborted) await change.promise;
      waiting--;
      return closed.aborted ? undefined : run(message, line); // or start none
    };
    const handleLine = (line: string | Error) => {
      if (line instanceof LineTooLongError) throw line; // closes, below
      const answer = rpc.answerLine(line, run, maxInFlight);
      if (!(answer instanceof Promise)) return send(answer);
      unanswered++; // keeps the connection from looking idle
      answer.then((text) => (send(text), unanswered--, changed()));
    };

    let readingDone = false;
    const writing = (async () => {
      while (!closed.aborted && (queue.length || unanswered || !readingDone)) {
        if (queue.length === 0) await change.promise;
        else {
          const text = queue.splice(0).join(""); // all that is ready, at once
          await writeAll(conn, encoder.encode(text));
          queued -= text.length;
          traffic.bytes += text.length;
          changed();
        }
      }
    })().catch((error) => {
      if (!isDisconnect(error)) throw error;
      abort();
    });

    // The reader answers all the lines of a read in one pass, no await in
    // between: the writer wakes after it and sends the answers together.
    // It stops while calls in flight or answers unsent are at their bound.
    const reader = new BufferedReader(conn, { maxLine, largeReads: true });
    let lines: (string | Error)[] = [], more = true, tooLong = false;
    try {
      while (!closed.aborted) {
        if (running + waiting >= maxInFlight || queued > maxQueue) {
          await change.promise;
        } else if (lines.length > 0) handleLine(lines.shift()!);
        else if (!more) break; // half-closed: answer what came, then close
        else {
          const before = reader.buffered;
          more = await reader.fill();
          traffic.bytes += reader.buffered - before;
          // TCP is a byte stream: a read may end mid-line. Its whole lines
          // are taken (at the end, the last needs no "\n"); the rest waits.
          const unread = reader.bytes.subarray(reader.start, reader.end);
          const cut = more ? unread.lastIndexOf(0x0a) + 1 : unread.length;
          reader.consume(cut);
          lines = rpc.decodeLines(unread.subarray(0, cut), maxLine);
        }
      }
    } catch (error) {
      if (error instanceof LineTooLongError) {
        tooLong = true;
        send(errorLine(rpc.PARSE_ERROR, `Parse error: ${error.message}`));
      } else if (isDisconnect(error)) abort();
      else throw error;
    } finally {
      readingDone = true;
      changed();
      await writing;
      sweeper.remove(idle);
      // The rest of a long line is read and dropped (1 s at most), so that
      // closing does not reset the connection and destroy our answer.
      if (tooLong) await lingeringClose(conn, 1000, Infinity);
      stop.abort(); // the end: also removes the shutdown listener
    }
  }

  return serveTcp({
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port ?? DEFAULT_PORT,
    maxConnections: options.maxConnections ?? DEFAULTS.maxConnections,
    maxPerAddress: options.maxPerAddress ?? DEFAULTS.maxPerAddress,
    busyMessage: encoder.encode(
      errorLine(rpc.SERVER_BUSY, "Server busy") + "\n",
    ),
    log,
  }, serveConnection);
}

if (import.meta.main) {
  await runCommand("rpc_server.ts", async () => {
    const { values } = parseCommandLine(Deno.args, {
      usage: USAGE,
      options: {
        ...LISTEN.options,
        "max-line": { type: "string", default: String(DEFAULTS.maxLine) },
        "max-in-flight": { type: "string", default: `${DEFAULTS.maxInFlight}` },
        "idle-timeout": { type: "string", default: `${DEFAULTS.idleTimeout}` },
      },
    });
    const server = startRpcServer({
      ...await parseListen(values),
      maxLine: parseInteger(values["max-line"], "--max-line", 64, 2 ** 26),
      maxInFlight: parseInteger(values["max-in-flight"], "--max-in-flight", 1),
      idleTimeout: parseSeconds(values["idle-timeout"], "--idle-timeout"),
    });
    return runUntilSignal(server, "tcp");
  });
}
