// Test helpers: run scripts as real subprocesses (exactly as a user would),
// wait for their "Listening on" line instead of sleeping, and talk to them
// over loopback sockets.

import assert from "node:assert/strict";
import { writeAll } from "../lib/io.ts";
import { makeCertificates } from "../scripts/make_cert.ts";

const encoder = new TextEncoder();

// Every `deno run` would otherwise look up dl.deno.land to check for a
// newer Deno: traffic beyond loopback, which tests never send. Children
// inherit this.
Deno.env.set("DENO_NO_UPDATE_CHECK", "1");

/** Absolute path of a script in scripts/. */
export function scriptPath(name: string): string {
  return new URL(`../scripts/${name}`, import.meta.url).pathname;
}

export interface Output {
  code: number;
  signal: Deno.Signal | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Permission flags, as in the script's header. */
  allow?: string[];
  stdin?: string | Uint8Array;
  /** Kill the process if it runs longer than this (default 20 s). */
  timeoutMs?: number;
  env?: Record<string, string>;
}

/** Runs a script to completion and returns its exit code and output. */
export async function runScript(
  name: string,
  args: string[] = [],
  options: RunOptions = {},
): Promise<Output> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...(options.allow ?? ["--allow-net"]),
      scriptPath(name),
      ...args,
    ],
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    env: options.env,
  }).spawn();
  const timer = setTimeout(
    () => child.kill("SIGKILL"),
    options.timeoutMs ?? 20_000,
  );
  try {
    if (options.stdin !== undefined) {
      const writer = child.stdin.getWriter();
      const bytes = typeof options.stdin === "string"
        ? new TextEncoder().encode(options.stdin)
        : options.stdin;
      await writer.write(bytes).catch(() => {});
      await writer.close().catch(() => {});
    }
    const [stdout, stderr, status] = await Promise.all([
      new Response(child.stdout).text(),
      new Response(child.stderr).text(),
      child.status,
    ]);
    return { code: status.code, signal: status.signal, stdout, stderr };
  } finally {
    clearTimeout(timer);
  }
}

export interface RunningServer {
  /** The full first stdout line, e.g. "Listening on tcp://127.0.0.1:40123". */
  listeningLine: string;
  hostname: string;
  port: number;
  /** Every Listening line waited for (see `listenLines`), and their ports. */
  listeningLines: string[];
  ports: number[];
  child: Deno.ChildProcess;
  /** Sends `signal` (default SIGTERM) and waits for the exit. */
  stop(signal?: Deno.Signal): Promise<Output>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Starts a server script (pass `--port 0` in args) and resolves once it has
 * printed its "Listening on" line. stderr and the rest of stdout are
 * collected and returned by stop().
 */
export async function startScript(
  name: string,
  args: string[] = [],
  options: Omit<RunOptions, "stdin"> & {
    /** How many Listening lines to wait for (chat_server --web-port: 2). */
    listenLines?: number;
  } = {},
): Promise<RunningServer> {
  const wanted = options.listenLines ?? 1;
  const peer = await startPeer(
    Deno.execPath(),
    ["run", ...(options.allow ?? ["--allow-net"]), scriptPath(name), ...args],
    new RegExp(`^(?:.*\\n){${wanted}}`), // the first `wanted` lines
    { env: options.env, timeoutMs: options.timeoutMs },
  );
  const listeningLines = peer.match[0].split("\n").slice(0, wanted);
  const matches = listeningLines.map((line) =>
    /^Listening on \w+:\/\/\[?([^\]]*?)\]?:(\d+)$/.exec(line)
  );
  if (!matches.every(Boolean)) {
    const output = await peer.stop("SIGKILL");
    throw new Error(
      `${name} did not print a Listening line.\nstdout: ${output.stdout}\nstderr: ${output.stderr}`,
    );
  }
  return {
    listeningLine: listeningLines[0],
    hostname: matches[0]![1],
    port: Number(matches[0]![2]),
    listeningLines,
    ports: matches.map((found) => Number(found![2])),
    child: peer.child,
    stop: peer.stop,
    [Symbol.asyncDispose]: async () => {
      await peer.stop();
    },
  };
}

/**
 * Reads a connection until the peer closes its sending side. The connection
 * stays open (we may still write, and the caller closes it).
 */
export async function readAll(conn: Deno.Conn): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const buffer = new Uint8Array(64 * 1024);
  while (true) {
    const count = await conn.read(buffer);
    if (count === null) return concat(...chunks);
    chunks.push(buffer.slice(0, count));
  }
}

/** Joins byte arrays (strings are UTF-8 encoded) into one. */
export function concat(...parts: (string | Uint8Array)[]): Uint8Array {
  const chunks = parts.map((part) =>
    typeof part === "string" ? new TextEncoder().encode(part) : part
  );
  const result = new Uint8Array(chunks.reduce((sum, c) => sum + c.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    result.set(chunk, offset);
    offset += chunk.length;
  }
  return result;
}

/** A Reader that hands out `bytes` a few at a time, like a slow network. */
export class Trickle {
  offset = 0;
  constructor(readonly bytes: Uint8Array, readonly step = 1) {}
  read(into: Uint8Array): Promise<number | null> {
    if (this.offset >= this.bytes.length) return Promise.resolve(null);
    const count = Math.min(
      into.length,
      this.step,
      this.bytes.length - this.offset,
    );
    into.set(this.bytes.subarray(this.offset, this.offset + count));
    this.offset += count;
    return Promise.resolve(count);
  }
}

export function trickle(text: string | Uint8Array, step = 1) {
  const bytes = typeof text === "string"
    ? new TextEncoder().encode(text)
    : text;
  return new Trickle(bytes, step);
}

/** Everything a Reader gives until its end, read in odd-sized pieces. */
export async function readToEnd(
  reader: { read(into: Uint8Array): Promise<number | null> },
): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const buffer = new Uint8Array(7); // odd size: exercises partial reads
  for (let count; (count = await reader.read(buffer)) !== null;) {
    chunks.push(buffer.slice(0, count));
  }
  return concat(...chunks);
}

/** `size` random bytes (binary payloads for exact-bytes tests). */
export function randomBytes(size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  // getRandomValues fills at most 64 KiB per call.
  for (let offset = 0; offset < size; offset += 65536) {
    crypto.getRandomValues(bytes.subarray(offset, offset + 65536));
  }
  return bytes;
}

/** A loopback port with nothing listening on it (connects are refused). */
export function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

/** Fails if `promise` takes longer than `ms`; the timer is always cleared. */
export async function within<T>(
  ms: number,
  promise: Promise<T>,
  what = "operation",
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what} not done within ${ms} ms`)),
      ms,
    );
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A loopback port where connect() never completes, for "connect timed out"
 * tests: a listener that never accepts, its accept queue filled until one
 * more connect does not finish within 200 ms (Linux then drops new SYNs).
 */
export async function startUnansweredPort() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const fillers: Deno.Conn[] = [];
  const close = () => {
    for (const conn of fillers) conn.close();
    listener.close();
  };
  for (let attempt = 0; attempt < 5000; attempt++) {
    try {
      fillers.push(
        await Deno.connect({
          hostname: listener.addr.hostname,
          port: listener.addr.port,
          signal: AbortSignal.timeout(200),
        }),
      );
    } catch {
      return { addr: listener.addr, close };
    }
  }
  close();
  throw new Error("could not fill the accept queue");
}

/** Reads until `text` has appeared in what the connection sent. */
export async function readUntil(
  conn: Deno.Conn,
  text: string,
  decoder = new TextDecoder(),
): Promise<string> {
  const buffer = new Uint8Array(4096);
  let received = "";
  while (!received.includes(text)) {
    const count = await conn.read(buffer);
    if (count === null) {
      throw new Error(
        `connection closed before ${JSON.stringify(text)}; got ${
          JSON.stringify(received)
        }`,
      );
    }
    received += decoder.decode(buffer.subarray(0, count), { stream: true });
  }
  return received;
}

/**
 * A test's raw TCP connection to a line-based server (chat, RPC) that reads
 * whole lines exactly as sent: the server must only ever send valid UTF-8
 * (the decoder is fatal). Subclasses add how to connect.
 */
export class LinePeer {
  #pending: Uint8Array = new Uint8Array(0);
  #chunk = new Uint8Array(256 * 1024);
  #decoder = new TextDecoder("utf-8", { fatal: true });

  constructor(readonly conn: Deno.TcpConn) {}

  send(text: string | Uint8Array): Promise<void> {
    const bytes = typeof text === "string" ? encoder.encode(text) : text;
    return writeAll(this.conn, bytes);
  }

  /** The next line's raw bytes, "\n" included. */
  lineBytes(ms = 5000): Promise<Uint8Array> {
    return within(ms, this.#lineBytes(), "a line from the server");
  }

  /** The next line, "\n" included. */
  async line(ms = 5000): Promise<string> {
    return this.#decoder.decode(await this.lineBytes(ms));
  }

  async #lineBytes(): Promise<Uint8Array> {
    while (true) {
      const newline = this.#pending.indexOf(0x0a);
      if (newline >= 0) {
        const line = this.#pending.slice(0, newline + 1);
        this.#pending = this.#pending.slice(newline + 1);
        return line;
      }
      const count = await this.conn.read(this.#chunk);
      if (count === null) {
        throw new Error(
          `closed before a full line; got ${
            JSON.stringify(new TextDecoder().decode(this.#pending))
          }`,
        );
      }
      this.#pending = concat(this.#pending, this.#chunk.subarray(0, count));
    }
  }

  /** Asserts the next lines, in order, exactly. */
  async expect(...lines: string[]) {
    for (const line of lines) assert.equal(await this.line(), line);
  }

  /** Reads what is left until the server closes (a reset counts as
   * closed) and returns it, lines not yet read included. */
  async rest(ms = 5000): Promise<string> {
    const chunks = [this.#decoder.decode(this.#pending)];
    this.#pending = new Uint8Array(0);
    await within(ms, this.#untilClosed(chunks), "the server to close");
    return chunks.join("");
  }

  /** Waits for the server to close; throws if anything more came first. */
  async ended(ms = 5000) {
    const rest = await this.rest(ms);
    if (rest) throw new Error(`unexpected bytes: ${rest}`);
  }

  async #untilClosed(chunks: string[]) {
    try {
      while (true) {
        const count = await this.conn.read(this.#chunk);
        if (count === null) return;
        chunks.push(new TextDecoder().decode(this.#chunk.subarray(0, count)));
      }
    } catch (error) {
      if (!(error instanceof Deno.errors.ConnectionReset)) throw error;
    }
  }

  close() {
    try {
      this.conn.close();
    } catch {
      // Already closed.
    }
  }

  [Symbol.dispose]() {
    this.close();
  }
}

// Runs a program on a pseudo-terminal (Python's pty module): its output is
// what a terminal showed, stdout and stderr together, "\n" as "\r\n".
const ON_A_TERMINAL = `
import os, pty, sys
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
shown = b""
while True:
    try:
        data = os.read(fd, 65536)
    except OSError:
        break
    if not data:
        break
    shown += data
_, status = os.waitpid(pid, 0)
sys.stdout.buffer.write(shown)
sys.exit(os.waitstatus_to_exitcode(status))
`;

/** `deno` with `args` run on a pseudo-terminal (needs python3); stdout is
 * what the terminal showed. */
export function runOnTerminal(args: string[], timeoutMs = 10_000) {
  return runTool(
    "python3",
    ["-c", ON_A_TERMINAL, Deno.execPath(), ...args],
    undefined,
    timeoutMs,
  );
}

/** Whether a command-line tool is installed (for tests that need nc, curl…). */
export async function hasCommand(command: string): Promise<boolean> {
  try {
    const { success } = await new Deno.Command("sh", {
      args: ["-c", `command -v ${command}`],
      stdout: "null",
      stderr: "null",
    }).output();
    return success;
  } catch {
    return false;
  }
}

/** Runs an outside tool (nc, python3, curl…) with input and a time limit. */
export async function runTool(
  command: string,
  args: string[],
  stdin?: string | Uint8Array,
  timeoutMs = 20_000,
): Promise<{ code: number; stdout: Uint8Array; stderr: string }> {
  const child = new Deno.Command(command, {
    args,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  try {
    if (stdin !== undefined) {
      const writer = child.stdin.getWriter();
      await writer.write(
        typeof stdin === "string" ? new TextEncoder().encode(stdin) : stdin,
      ).catch(() => {});
      await writer.close().catch(() => {});
    }
    const [stdout, stderr, status] = await Promise.all([
      new Response(child.stdout).arrayBuffer(),
      new Response(child.stderr).text(),
      child.status,
    ]);
    return { code: status.code, stdout: new Uint8Array(stdout), stderr };
  } finally {
    clearTimeout(timer);
  }
}

/** Marks a test as skipped with a visible reason when a tool is missing. */
export function skipBecause(reason: string) {
  console.log(`SKIPPED: ${reason}`);
}

/**
 * Runs `wrk -t1 -c100 -d2s` against `url` and checks it saw no socket
 * errors and no non-2xx answers; returns requests/s.
 */
export async function runWrk(url: string): Promise<number> {
  const result = await runTool("wrk", ["-t1", "-c100", "-d2s", url]);
  const report = new TextDecoder().decode(result.stdout);
  if (result.code !== 0) throw new Error(`wrk failed: ${result.stderr}`);
  if (/Socket errors|Non-2xx/.test(report)) {
    throw new Error(`wrk saw errors:\n${report}`);
  }
  const rate = Number(/Requests\/sec:\s+([\d.]+)/.exec(report)?.[1]);
  if (!(rate > 1000)) throw new Error(`wrk: too few requests/s:\n${report}`);
  return rate;
}

/** A CA and a leaf signed by it, in a temporary folder (see makeTestCerts). */
export interface TestCerts {
  /** The temporary folder (for --allow-read=DIR). */
  dir: string;
  /** File paths, for --cert, --key and --cacert. */
  caFile: string;
  certFile: string;
  keyFile: string;
  /** A second CA that signed nothing here: the "wrong CA". */
  otherCaFile: string;
  /** The same as PEM text, for Deno.listenTls, QuicEndpoint.listen, caCerts. */
  ca: string;
  cert: string;
  key: string;
  otherCa: string;
  /** Removes the folder. */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Makes a fresh CA, a `localhost` leaf it signed (ECDSA P-256; names
 * localhost, 127.0.0.1 and ::1; valid 14 days) and a second, unrelated CA,
 * in a temporary folder, with the recipe of scripts/make_cert.ts (so check
 * hasCommand("openssl") first). `days: -1` makes an expired leaf;
 * `names: ["DNS:localhost"]` one that does not match 127.0.0.1.
 * Use: `await using certs = await makeTestCerts()`.
 */
export async function makeTestCerts(
  options: { days?: number; names?: string[] } = {},
): Promise<TestCerts> {
  const dir = await Deno.makeTempDir({ prefix: "test-certs-" });
  try {
    const [files, other] = await Promise.all([
      makeCertificates({ dir, ...options }),
      makeCertificates({ dir: `${dir}/other` }),
    ]);
    const [ca, cert, key, otherCa] = await Promise.all(
      [files.caCert, files.cert, files.key, other.caCert]
        .map((file) => Deno.readTextFile(file)),
    );
    return {
      dir,
      caFile: files.caCert,
      certFile: files.cert,
      keyFile: files.key,
      otherCaFile: other.caCert,
      ca,
      cert,
      key,
      otherCa,
      [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
    };
  } catch (error) {
    await Deno.remove(dir, { recursive: true });
    throw error;
  }
}

export interface RunningPeer {
  /** What the ready pattern matched in the child's stdout (e.g. its port). */
  match: RegExpExecArray;
  child: Deno.ChildProcess;
  /** Writes to the child's stdin (started with `input: true`). */
  write(data: string | Uint8Array): Promise<void>;
  /** Closes the child's stdin: end of input. */
  endInput(): Promise<void>;
  /** Sends `signal` (default SIGTERM) unless it has exited; returns its output. */
  stop(signal?: Deno.Signal): Promise<Output>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Starts any program (a script that reads stdin, Python's http.server, a
 * Python peer…) and resolves once its stdout matches `ready`. With `input`
 * its stdin is a pipe the test writes to. The rest of stdout and all of
 * stderr are collected and returned by stop(); the child is killed after
 * `timeoutMs` (default 20 s) whatever happens.
 */
export async function startPeer(
  command: string,
  args: string[],
  ready: RegExp,
  options: {
    input?: boolean;
    timeoutMs?: number;
    env?: Record<string, string>;
  } = {},
): Promise<RunningPeer> {
  const child = new Deno.Command(command, {
    args,
    env: options.env,
    stdin: options.input ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(
    () => child.kill("SIGKILL"),
    options.timeoutMs ?? 20_000,
  );
  const stderr = new Response(child.stderr).text();
  const writer = options.input ? child.stdin.getWriter() : undefined;
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let stdout = "";
  let match: RegExpExecArray | null = null;
  while (!(match = ready.exec(stdout))) {
    const { value, done } = await reader.read();
    if (done) break;
    stdout += value;
  }
  const rest = (async () => {
    while (true) {
      const { value, done } = await reader.read();
      if (done) return;
      stdout += value;
    }
  })();
  let inputEnded: Promise<void> | undefined;
  const endInput = () =>
    inputEnded ??= writer?.close().catch(() => {}) ?? Promise.resolve();
  let stopped: Promise<Output> | undefined;
  const stop = (signal: Deno.Signal = "SIGTERM") => {
    stopped ??= (async () => {
      await endInput();
      try {
        child.kill(signal);
      } catch {
        // Already exited.
      }
      const status = await child.status;
      clearTimeout(timer);
      await rest;
      return {
        code: status.code,
        signal: status.signal,
        stdout,
        stderr: await stderr,
      };
    })();
    return stopped;
  };
  if (!match) {
    const output = await stop("SIGKILL");
    throw new Error(
      `${command} ${
        args.join(" ")
      } never printed ${ready}.\nstdout: ${output.stdout}\nstderr: ${output.stderr}`,
    );
  }
  return {
    match,
    child,
    write: async (data) => {
      if (!writer) throw new Error("started without input: true");
      await writer.write(
        typeof data === "string" ? new TextEncoder().encode(data) : data,
      );
    },
    endInput,
    stop,
    [Symbol.asyncDispose]: async () => {
      await stop();
    },
  };
}

/**
 * Starts a script in scripts/ whose stdin the test writes to (a server that
 * reads typed input), once it has printed its "Listening on" line;
 * `match[1]` is the port.
 */
export function startScriptWithInput(
  name: string,
  args: string[] = [],
  allow = ["--allow-net"],
): Promise<RunningPeer> {
  return startPeer(
    Deno.execPath(),
    ["run", ...allow, scriptPath(name), ...args],
    /^Listening on \w+:\/\/\S+:(\d+)\n/,
    { input: true },
  );
}

/** Debian's Chromium, which the browser tests drive. */
export const CHROMIUM = "/usr/bin/chromium";

/**
 * Headless Chromium (CHROMIUM, driven by npm:puppeteer-core over a pipe)
 * that stays on loopback: no background networking, no component updates,
 * no sync, and every host name but 127.0.0.1 unresolvable. Check
 * `Deno.stat(CHROMIUM)` first. Use: `await using chromium = await
 * launchChromium()`, then `chromium.browser.newPage()`.
 */
export async function launchChromium() {
  const { default: puppeteer } = await import("npm:puppeteer-core@25.16.0");
  const profile = await Deno.makeTempDir({ prefix: "chromium-" });
  try {
    const browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      pipe: true, // DevTools over a pipe: no debugging port is opened
      userDataDir: profile,
      args: [
        ...(Deno.uid() === 0 ? ["--no-sandbox"] : []),
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--no-first-run",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
      ],
    });
    return {
      browser,
      async [Symbol.asyncDispose]() {
        await browser.close();
        await Deno.remove(profile, { recursive: true });
      },
    };
  } catch (error) {
    await Deno.remove(profile, { recursive: true });
    throw error;
  }
}
