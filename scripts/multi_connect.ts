/**
 * Port checker: connects to several TCP servers at once and prints, for
 * each and in the order given, whether it answered, how long the connect
 * took, and the first bytes it sent (a banner, or the reply to --send).
 *
 * Run:    deno run --allow-net scripts/multi_connect.ts 127.0.0.1:9999 127.0.0.1:8888 '[::1]:9000'
 *         deno run --allow-net scripts/multi_connect.ts --send hello --json 127.0.0.1:9999
 *         deno run --allow-net --allow-read=certs scripts/multi_connect.ts --cacert certs/ca.pem localhost:9999
 * Try it: deno run --allow-net scripts/echo_server.ts   (then check 127.0.0.1:9999 --send hi)
 *
 * The tutorial (000 §4.3) makes one socket before its loop and closes it in
 * `finally`: from the second server on, connect() meets a closed socket
 * ("Bad file descriptor") and `except Exception` prints "connection failed"
 * whatever the server. Even with a socket each, it would wait for one
 * server after the other, with no timeout: one silent host stalls the list.
 * Here each target gets its own connection, all run at once, each bounded
 * by --timeout, and the lines keep the order given.
 *
 * Read first: checkTargets()
 */
import { parseCommandLine, parseHostAndPort } from "../lib/cli.ts";
import { parseSeconds, runCommand, UsageError } from "../lib/cli.ts";
import { seconds, withDeadline } from "../lib/deadline.ts";
import { type Connection, dial, DialError } from "../lib/dial.ts";
import { describeError, Failure } from "../lib/errors.ts";
import { closeQuietly, writeAll } from "../lib/io.ts";
import { printableJson } from "../lib/terminal.ts";
import { CLIENT_TLS_HELP, CLIENT_TLS_OPTIONS } from "../lib/tls.ts";
import { type ClientTls, loadClientTls } from "../lib/tls.ts";

export const FIRST_BYTES_LIMIT = 64; // bytes of the server's first data shown

const USAGE = `Usage: multi_connect.ts [options] TARGET...

Connects to every TARGET (host:port, [v6]:port for IPv6) at the same time
and prints one line per target, in the order given:
  TARGET  RESULT  MILLISECONDS  FIRST BYTES or DETAIL
RESULT: connected, refused, timed out, DNS failure, TLS failed or error.
MILLISECONDS: how long the connect took. FIRST BYTES: what the server sent
first (${FIRST_BYTES_LIMIT} at most; escaped: \\n, \\xNN). Exit 0 if all connected, else 1.

Options:
  --timeout SECONDS  per target, for the connect plus the first bytes (default 2)
  --read-timeout SECONDS
                     at most this for the first bytes (default: the rest)
  --send TEXT        send TEXT plus "\\n" right after connecting
  --json             print a JSON array instead of aligned columns
${CLIENT_TLS_HELP}
  -h, --help         show this help`;

const MAX_PARALLEL = 256; // connections open at once, however many targets

/** RESULT of a failed connect, by its kind in lib/errors.ts (or "tls"). */
const FAILED = {
  refused: "refused",
  timeout: "timed out",
  dns: "DNS failure",
  tls: "TLS failed", // TCP connected, the TLS handshake did not
} as const;
type Failed = typeof FAILED;
export type ResultKind = "connected" | "error" | Failed[keyof Failed];

export interface Target {
  target: string; // as the user wrote it, e.g. "[::1]:9999"
  hostname: string;
  port: number;
}

export interface TargetResult extends Target {
  result: ResultKind;
  ms: number; // until the connect (TLS handshake included) ended
  firstBytes: Uint8Array | null; // the server's first (FIRST_BYTES_LIMIT)
  detail: string | null; // why it failed, or why no bytes came
}

export interface CheckOptions {
  timeoutMs?: number; // per target, connect + first bytes (2000)
  readTimeoutMs?: number; // cap on the wait for bytes (rest of timeoutMs)
  send?: Uint8Array; // sent right after connecting ("--send TEXT" + "\n")
  tls?: ClientTls; // speak TLS (lib/tls.ts's loadClientTls)
}

/** Parses "host:port" / "[v6]:port"; throws UsageError on bad syntax. */
export function parseTarget(value: string): Target {
  return { target: value, ...parseHostAndPort(value, "TARGET") };
}

/**
 * Checks every target concurrently (MAX_PARALLEL at a time) and returns
 * the results in the order of `targets`; `onResult` gets each one as soon
 * as it and all before it are known, so output streams in order.
 */
export async function checkTargets(
  targets: Target[],
  options: CheckOptions = {},
  onResult: (result: TargetResult) => void = () => {},
): Promise<TargetResult[]> {
  const results: TargetResult[] = new Array(targets.length);
  let nextToStart = 0, nextToReport = 0;
  // Workers share one queue: each takes the next target when done with
  // its own, so a slow target holds up one worker, never the list.
  async function worker() {
    while (nextToStart < targets.length) {
      const index = nextToStart++;
      results[index] = await checkTarget(targets[index], options);
      // Report in order: everything up to the first result still missing.
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
 * Connects to one target, waits for its first bytes, and says how it went.
 * Throws only without permission to connect (Deno.errors.NotCapable): a
 * mistake in how the script was run, not a fact about the target.
 */
export async function checkTarget(
  target: Target,
  options: CheckOptions = {},
): Promise<TargetResult> {
  const timeoutMs = options.timeoutMs ?? 2000;
  const started = performance.now();
  let conn: Connection;
  try {
    // Bounded, name lookup and TLS included: else a host that drops our
    // packets would keep us waiting for minutes.
    conn = await dial({ ...target, timeoutMs, tls: options.tls });
  } catch (error) {
    if (!(error instanceof DialError)) throw error; // NotCapable
    const kind = error.stage === "tls" ? "tls" : error.kind;
    const result = FAILED[kind as keyof Failed] ?? "error";
    const detail = result === "refused"
      ? null
      : result === "timed out"
      ? `no answer within ${seconds(timeoutMs)}`
      : error.reason;
    const ms = performance.now() - started;
    return { ...target, result, ms, firstBytes: null, detail };
  }
  const ms = performance.now() - started;
  const connected = { ...target, result: "connected" as const, ms };
  // Send, then read the first bytes, in the time left. A read has no timeout
  // of its own: withDeadline closes the connection when time is up.
  const waitMs = Math.min(timeoutMs - ms, options.readTimeoutMs ?? Infinity);
  const buffer = new Uint8Array(FIRST_BYTES_LIMIT);
  let step = "send";
  try {
    if (waitMs <= 0) throw new Failure("no time left to read", "timeout");
    const count = await withDeadline(conn, waitMs, async () => {
      if (options.send) await writeAll(conn, options.send);
      step = "read";
      return await conn.read(buffer);
    }, `no data within ${seconds(waitMs)}`);
    const firstBytes = count === null ? null : buffer.slice(0, count);
    const detail = firstBytes ? null : "closed by server without data";
    return { ...connected, firstBytes, detail };
  } catch (error) {
    const detail = error instanceof Failure && error.kind === "timeout"
      ? error.message
      : `${step} failed: ${describeError(error)}`;
    return { ...connected, firstBytes: null, detail };
  } finally {
    closeQuietly(conn);
  }
}

// A banner as one harmless line, binary or hostile: quoted ASCII, \t \n \r
// \" \\ escaped by name, any other byte as \xNN.
const NAMED = new Map([[9, "t"], [10, "n"], [13, "r"], [34, '"'], [92, "\\"]]);
export function escapeBytes(bytes: Uint8Array): string {
  let text = "";
  for (const byte of bytes) {
    const name = NAMED.get(byte);
    if (name) text += "\\" + name;
    else if (byte >= 0x20 && byte < 0x7f) text += String.fromCharCode(byte);
    else text += `\\x${byte.toString(16).padStart(2, "0")}`;
  }
  return `"${text}"`;
}

/** One aligned line for humans; `targetWidth` pads the first column. */
export function formatLine(result: TargetResult, targetWidth: number): string {
  let detail = result.detail ?? "";
  if (result.firstBytes) detail = escapeBytes(result.firstBytes);
  else if (detail && result.result === "connected") detail = `(${detail})`;
  return [
    result.target.padEnd(targetWidth),
    result.result.padEnd("DNS failure".length),
    `${result.ms.toFixed(1)} ms`.padStart(10),
    detail,
  ].join("  ").trimEnd();
}

/** For --json: `firstBytes` as UTF-8 (bad bytes U+FFFD), and as Base64. */
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
        ...CLIENT_TLS_OPTIONS,
      },
    });
    if (positionals.length === 0) {
      throw new UsageError("no TARGET given (host:port)");
    }
    const targets = positionals.map(parseTarget);
    const msOf = (v: string, name: string) => parseSeconds(v, name) * 1000;
    const { "read-timeout": readTimeout, send } = values;
    const options: CheckOptions = {
      timeoutMs: msOf(values.timeout, "--timeout"),
      readTimeoutMs: readTimeout === undefined
        ? undefined
        : msOf(readTimeout, "--read-timeout"),
      send: send === undefined
        ? undefined
        : new TextEncoder().encode(send + "\n"),
      tls: await loadClientTls(values),
    };
    const width = Math.max(...targets.map((target) => target.target.length));
    const results = await checkTargets(targets, options, (result) => {
      if (!values.json) console.log(formatLine(result, width));
    });
    if (values.json) console.log(printableJson(results.map(toJson)));
    return results.every((result) => result.result === "connected") ? 0 : 1;
  });
}
