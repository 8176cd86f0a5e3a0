/**
 * Connects to several TCP servers at once and reports, for each, whether it
 * answered, how long the connect took, and the first bytes it sent (a banner,
 * or the reply to --send). A quick port checker.
 *
 * Run:    deno run --allow-net scripts/multi_connect.ts 127.0.0.1:9999 127.0.0.1:8888 '[::1]:9000'
 *         deno run --allow-net scripts/multi_connect.ts --send hello --json 127.0.0.1:9999
 * Try it: deno run --allow-net scripts/echo_server.ts   (then check 127.0.0.1:9999 --send hi)
 *
 * The tutorial's version made one socket, then connected it to each server
 * in turn: the second connect() fails because a closed socket cannot be
 * reused, and even when fixed it waits for each server one after the other,
 * with no timeout, so one dead host stalls the whole list. Here every target
 * gets its own connection, all run concurrently, each bounded by --timeout,
 * and the results still come out in the order given.
 */
import {
  parseCommandLine,
  parseHostAndPort,
  parseSeconds,
  runCommand,
  UsageError,
} from "../lib/cli.ts";
import { describeError } from "../lib/errors.ts";
import { closeQuietly, writeAll } from "../lib/net.ts";

/** How many bytes of the server's first data are kept and shown. */
export const FIRST_BYTES_LIMIT = 64;

const USAGE = `Usage: multi_connect.ts [options] TARGET...

Connects to every TARGET (host:port, [v6]:port for IPv6) at the same time
and prints one line per target, in the order given:

  TARGET  RESULT  MILLISECONDS  FIRST BYTES or DETAIL

RESULT is connected, refused, timed out, DNS failure or error. MILLISECONDS
is the time the connect took (or took to fail). After connecting, the
script waits for the first bytes the server sends (up to ${FIRST_BYTES_LIMIT} are shown,
with control characters and non-ASCII bytes escaped as \\n, \\xNN…).
Exit status: 0 if every target connected, 1 otherwise, 2 for bad usage.

Options:
  --timeout SECONDS       budget per target for connecting plus waiting for
                          the first bytes (default 2)
  --read-timeout SECONDS  wait at most this long for the first bytes
                          (default: whatever is left of --timeout)
  --send TEXT             send TEXT plus "\\n" right after connecting
  --json                  print a JSON array instead of aligned columns
  -h, --help              show this help`;

/** Connections open at the same time, whatever the number of targets. */
const MAX_PARALLEL = 256;

export type ResultKind =
  | "connected"
  | "refused"
  | "timed out"
  | "DNS failure"
  | "error";

export interface Target {
  /** As the user wrote it, e.g. "[::1]:9999". */
  target: string;
  hostname: string;
  port: number;
}

export interface TargetResult extends Target {
  result: ResultKind;
  /** Milliseconds until the connect succeeded or failed. */
  ms: number;
  /** The first bytes the server sent (at most FIRST_BYTES_LIMIT), if any. */
  firstBytes: Uint8Array | null;
  /** Why it failed, or what happened after connecting when no bytes came. */
  detail: string | null;
}

export interface CheckOptions {
  /** Budget per target for connect + first bytes (default 2000). */
  timeoutMs?: number;
  /** Cap on the wait for the first bytes (default: rest of timeoutMs). */
  readTimeoutMs?: number;
  /** Bytes sent right after connecting (the CLI adds "\n" to --send). */
  send?: Uint8Array;
}

/** Parses "host:port" / "[v6]:port"; throws UsageError on bad syntax. */
export function parseTarget(value: string): Target {
  return { target: value, ...parseHostAndPort(value, "TARGET") };
}

/**
 * Connects to one target and reports what happened. Throws only when the
 * script lacks the permission to connect (Deno.errors.NotCapable): that is
 * a mistake in how it was run, not a fact about the target.
 */
export async function checkTarget(
  target: Target,
  options: CheckOptions = {},
): Promise<TargetResult> {
  const timeoutMs = options.timeoutMs ?? 2000;
  const started = performance.now();
  let conn: Deno.TcpConn;
  try {
    // The signal bounds the whole connect, name lookup included. Without it
    // a host that drops our packets keeps us waiting for the kernel's own
    // timeout, which is minutes, not seconds.
    conn = await Deno.connect({
      hostname: target.hostname,
      port: target.port,
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) throw error;
    const ms = performance.now() - started;
    return { ...target, ms, firstBytes: null, ...classify(error, timeoutMs) };
  }
  const ms = performance.now() - started;
  try {
    const waitMs = Math.min(
      timeoutMs - ms,
      options.readTimeoutMs ?? Infinity,
    );
    const { firstBytes, detail } = await firstBytesWithin(
      conn,
      waitMs,
      options.send,
    );
    return { ...target, result: "connected", ms, firstBytes, detail };
  } finally {
    closeQuietly(conn);
  }
}

/**
 * Checks every target concurrently (at most MAX_PARALLEL at a time) and
 * returns the results in the order of `targets`. `onResult` is called as
 * soon as a result and all the ones before it are known, so output can be
 * streamed in order.
 */
export async function checkTargets(
  targets: Target[],
  options: CheckOptions = {},
  onResult: (result: TargetResult) => void = () => {},
): Promise<TargetResult[]> {
  const results: TargetResult[] = new Array(targets.length);
  let nextToStart = 0;
  let nextToReport = 0;
  async function worker() {
    while (nextToStart < targets.length) {
      const index = nextToStart++;
      results[index] = await checkTarget(targets[index], options);
      while (nextToReport < targets.length && results[nextToReport]) {
        onResult(results[nextToReport++]);
      }
    }
  }
  const workers = Math.min(MAX_PARALLEL, targets.length);
  await Promise.all(Array.from({ length: workers }, worker));
  return results;
}

/**
 * After connecting: sends `send` if given, then waits up to `waitMs` for the
 * server's first bytes. The timer closes the connection, which is what ends
 * a read (or a write) that would otherwise wait forever.
 */
async function firstBytesWithin(
  conn: Deno.TcpConn,
  waitMs: number,
  send: Uint8Array | undefined,
): Promise<{ firstBytes: Uint8Array | null; detail: string | null }> {
  if (waitMs <= 0) return { firstBytes: null, detail: "no time left to read" };
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    closeQuietly(conn);
  }, waitMs);
  const buffer = new Uint8Array(FIRST_BYTES_LIMIT);
  let step = "send";
  try {
    if (send) await writeAll(conn, send);
    step = "read";
    const count = await conn.read(buffer);
    if (count === null) {
      return { firstBytes: null, detail: "closed by server without data" };
    }
    return { firstBytes: buffer.slice(0, count), detail: null };
  } catch (error) {
    if (timedOut) {
      const seconds = formatSeconds(waitMs);
      return { firstBytes: null, detail: `no data within ${seconds}` };
    }
    return {
      firstBytes: null,
      detail: `${step} failed: ${describeError(error)}`,
    };
  } finally {
    clearTimeout(timer);
  }
}

/** Sorts a connect failure into the result kinds users care about. */
function classify(
  error: unknown,
  timeoutMs: number,
): { result: ResultKind; detail: string | null } {
  if (error instanceof Deno.errors.ConnectionRefused) {
    return { result: "refused", detail: null };
  }
  // AbortSignal.timeout rejects with a DOMException named TimeoutError; the
  // operating system's own connect timeout arrives as Deno.errors.TimedOut.
  if (
    (error instanceof DOMException && error.name === "TimeoutError") ||
    error instanceof Deno.errors.TimedOut
  ) {
    return {
      result: "timed out",
      detail: `no answer within ${formatSeconds(timeoutMs)}`,
    };
  }
  const message = error instanceof Error ? error.message : String(error);
  // Deno reports getaddrinfo failures as a plain Error naming the lookup;
  // what follows the colon says which kind ("Name or service not known" is
  // NXDOMAIN, "Temporary failure in name resolution" is no DNS server).
  const lookup = /failed to lookup address information: (.*)/i.exec(message);
  if (lookup) return { result: "DNS failure", detail: lookup[1] };
  return { result: "error", detail: describeError(error) };
}

function formatSeconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(3))} s`;
}

/**
 * Shows bytes as a quoted ASCII string that is safe to print: printable
 * ASCII as is, \n \r \t \\ \" as escapes, every other byte as \xNN. A
 * banner with terminal escape sequences or binary cannot mess up the screen.
 */
export function escapeBytes(bytes: Uint8Array): string {
  const named: Record<number, string> = {
    0x0a: "\\n",
    0x0d: "\\r",
    0x09: "\\t",
    0x5c: "\\\\",
    0x22: '\\"',
  };
  let text = "";
  for (const byte of bytes) {
    if (named[byte]) text += named[byte];
    else if (byte >= 0x20 && byte < 0x7f) text += String.fromCharCode(byte);
    else text += `\\x${byte.toString(16).padStart(2, "0")}`;
  }
  return `"${text}"`;
}

/** One aligned line for humans; `targetWidth` pads the first column. */
export function formatLine(result: TargetResult, targetWidth: number): string {
  const detail = result.firstBytes
    ? escapeBytes(result.firstBytes)
    : result.detail === null
    ? ""
    : result.result === "connected"
    ? `(${result.detail})`
    : result.detail;
  return [
    result.target.padEnd(targetWidth),
    result.result.padEnd("DNS failure".length),
    `${result.ms.toFixed(1)} ms`.padStart(10),
    detail,
  ].join("  ").trimEnd();
}

/**
 * The --json form of a result. `firstBytes` is the text decoded as UTF-8
 * (invalid bytes become U+FFFD; JSON escapes control characters), and
 * `firstBytesBase64` the exact bytes.
 */
export function toJson(result: TargetResult) {
  const bytes = result.firstBytes;
  return {
    target: result.target,
    hostname: result.hostname,
    port: result.port,
    result: result.result,
    ms: Number(result.ms.toFixed(1)),
    firstBytes: bytes ? new TextDecoder().decode(bytes) : null,
    firstBytesBase64: bytes ? btoa(String.fromCharCode(...bytes)) : null,
    detail: result.detail,
  };
}

if (import.meta.main) {
  await runCommand("multi_connect.ts", async () => {
    const { values, positionals } = parseCommandLine(Deno.args, {
      usage: USAGE,
      positionals: true,
      options: {
        timeout: { type: "string", default: "2" },
        "read-timeout": { type: "string" },
        send: { type: "string" },
        json: { type: "boolean", default: false },
      },
    });
    if (positionals.length === 0) {
      throw new UsageError("no TARGET given (host:port)");
    }
    const targets = positionals.map(parseTarget);
    const readTimeout = values["read-timeout"];
    const options: CheckOptions = {
      timeoutMs: parseSeconds(values.timeout, "--timeout") * 1000,
      readTimeoutMs: readTimeout === undefined
        ? undefined
        : parseSeconds(readTimeout, "--read-timeout") * 1000,
      send: values.send === undefined
        ? undefined
        : new TextEncoder().encode(values.send + "\n"),
    };
    const width = Math.max(...targets.map((target) => target.target.length));
    const results = await checkTargets(
      targets,
      options,
      values.json ? undefined : (result) => {
        console.log(formatLine(result, width));
      },
    );
    if (values.json) {
      console.log(JSON.stringify(results.map(toJson), null, 2));
    }
    return results.every((result) => result.result === "connected") ? 0 : 1;
  });
}
