/**
 * File upload client: sends one file to upload_server.ts (over TCP or TLS)
 * and checks that the server stored exactly what was sent (size, SHA-256).
 *
 * Run:    deno run --allow-net --allow-read=photo.jpg scripts/upload_client.ts photo.jpg
 *         deno run --allow-net --allow-read=photo.jpg scripts/upload_client.ts --name "Holiday 1.jpg" photo.jpg
 *         deno run --allow-net --allow-read=photo.jpg,certs scripts/upload_client.ts --cacert certs/ca.pem photo.jpg
 * Try it: start scripts/upload_server.ts --dir uploads first
 *
 * The client of 000 §4.4 sends the file's name, `\r\n` and the bytes with no
 * length, never closes its sending side, then waits for a status code in
 * one recv(1024) with no time limit: its server cannot tell that the file
 * has ended, so both wait for ever. Here the header carries the size, the
 * file is hashed as it is sent, every wait has a limit (--timeout), and
 * the exit status is 0 only when the server's `200 OK <size> <sha256>`
 * matches what was sent.
 *
 * Read first: send()
 */
import { createHash, type Hash } from "node:crypto";
import {
  Failure,
  parseCommandLine,
  parsePort,
  parseSeconds,
  runCommand,
  UsageError,
} from "../lib/cli.ts";
import { seconds, TimedConn, withDeadline } from "../lib/deadline.ts";
import { dial } from "../lib/dial.ts";
import { describeError, isDisconnect } from "../lib/errors.ts";
import { fileNameProblem } from "../lib/file_store.ts";
import {
  closeQuietly,
  copy,
  formatHostPort,
  type Reader,
  type Traffic,
  writeAll,
} from "../lib/io.ts";
import { BufferedReader } from "../lib/reader.ts";
import { printable } from "../lib/terminal.ts";
import {
  CLIENT_TLS_HELP,
  CLIENT_TLS_OPTIONS,
  type ClientTls,
  loadClientTls,
} from "../lib/tls.ts";
import { limited } from "./upload/framing.ts";

export const DEFAULT_PORT = 8080;
/** Long enough for a server to flush a large file, short enough to fail. */
export const DEFAULT_TIMEOUT_SECONDS = 30;

const USAGE = `Usage: upload_client.ts [options] FILE

Uploads FILE and checks the server's reply: prints '200 OK <size> <sha256>'
and exits 0 only when it matches what was sent; else one line, exit 1.

Options:
  --name NAME        name to store the file under (default: FILE's own name)
  --hostname HOST    server address (default 127.0.0.1)
  --port PORT        server port (default ${DEFAULT_PORT})
  --timeout SECONDS  limit for the connect, for each write to make progress
                     and for the reply after the last byte (default ${DEFAULT_TIMEOUT_SECONDS})
${CLIENT_TLS_HELP}
  -h, --help         show this help`;

export interface UploadFileOptions {
  path: string;
  /** Name on the server (default: the last part of `path`). */
  name?: string;
  hostname?: string;
  port?: number;
  timeoutSeconds?: number;
  tls?: ClientTls; // from lib/tls.ts loadClientTls
  /** Called while sending (ten times a second) with bytes sent and total. */
  onProgress?: (sent: number, total: number) => void;
}

export interface UploadOutcome {
  /** The server's reply line, e.g. "200 OK 5 2cf24d…". */
  reply: string;
  status: number;
  /** True only for a 200 whose size and SHA-256 match what we sent. */
  verified: boolean;
  size: number;
  /** SHA-256 of what we sent (of the whole file once fully sent). */
  sha256: string;
}

/**
 * Uploads one file and returns the server's verdict; Failure when there is
 * none (no such file, refused, no reply…).
 */
export async function uploadFile(
  options: UploadFileOptions,
): Promise<UploadOutcome> {
  const name = options.name ?? options.path.split("/").pop() ?? "";
  const problem = fileNameProblem(name);
  if (problem !== null) {
    throw new Failure(`cannot upload as '${printable(name)}': ${problem}`);
  }
  using file = await Deno.open(options.path).catch((error) => {
    const reason = error instanceof Deno.errors.NotFound
      ? "no such file"
      : describeError(error);
    throw new Failure(`cannot read ${options.path}: ${reason}`);
  });
  const info = await file.stat();
  if (!info.isFile) throw new Failure(`${options.path} is not a regular file`);
  const { hostname = "127.0.0.1", port = DEFAULT_PORT } = options;
  const timeoutMs = (options.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS) * 1000;
  const conn = await dial({ hostname, port, timeoutMs, tls: options.tls });
  const target = formatHostPort(hostname, port);
  try {
    const timed = new TimedConn(conn, timeoutMs, target);
    return await send(timed, file, info.size, name, options);
  } finally {
    closeQuietly(conn);
  }
}

/**
 * The protocol: the header, then the file's bytes (hashed on the way),
 * then the server's one-line verdict, compared with our own count and
 * hash. Every write and the wait for the reply are bounded (TimedConn).
 */
async function send(
  timed: TimedConn,
  file: Reader,
  size: number,
  name: string,
  options: UploadFileOptions,
): Promise<UploadOutcome> {
  const { conn, ms } = timed;
  // Listen for the reply while sending: a server that refuses (413, 409…)
  // answers before reading the body, and we should stop sending then.
  let replied = false;
  const reply = readReply(conn).finally(() => replied = true);
  reply.catch(() => {}); // awaited below; keep it from counting as unhandled

  const hash = createHash("sha256");
  const sent: Traffic = { bytes: 0 };
  const report = () => options.onProgress?.(sent.bytes, size);
  const progress = options.onProgress && setInterval(report, 100);
  try {
    await writeAll(timed, new TextEncoder().encode(`UPLOAD ${size} ${name}\n`));
    await copy(hashed(file, size, hash, () => replied), timed, sent);
    if (!replied && sent.bytes < size) {
      throw new Failure(`${options.path} shrank while being sent`);
    }
    // "That is all": the server needs no end marker, but this is polite.
    if (!replied) await conn.closeWrite();
  } catch (error) {
    // A reset while sending usually means the server answered and closed;
    // its reply tells why. Anything else is ours to report.
    if (!isDisconnect(error)) throw error;
  } finally {
    clearInterval(progress);
    report();
  }

  const late = `no reply from the server within ${seconds(ms)}`;
  const line = await withDeadline(conn, ms, () => reply, late);
  const sha256 = hash.digest("hex");
  const status = Number(/^(\d{3}) /.exec(line)?.[1] ?? NaN);
  const ok = /^200 OK (\d+) ([0-9a-f]{64})$/.exec(line);
  const verified = ok !== null && sent.bytes === size &&
    Number(ok[1]) === size && ok[2] === sha256;
  return { reply: line, status, verified, size, sha256 };
}

/** `size` bytes of `file`, hashed as they are read; none once stop(). */
function hashed(file: Reader, size: number, hash: Hash, stop: () => boolean) {
  const source = limited(file, size);
  return {
    async read(into: Uint8Array) {
      if (stop()) return null;
      const count = await source.read(into);
      if (count !== null) hash.update(into.subarray(0, count));
      return count;
    },
  };
}

/** Reads the server's one-line reply. */
async function readReply(conn: Deno.Conn): Promise<string> {
  const line = await new BufferedReader(conn).readLine().catch((error) => {
    throw new Failure(`connection to the server lost: ${describeError(error)}`);
  });
  if (line === null) throw new Failure("server closed without a reply");
  return new TextDecoder().decode(line);
}

/** Progress on one terminal line: bar, percent, bytes, rate and ETA. */
function progressBar() {
  const started = performance.now();
  const mib = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);
  return (sent: number, total: number) => {
    const rate = sent / ((performance.now() - started) / 1000 || 1);
    const fraction = total > 0 ? sent / total : 1;
    const bar = "#".repeat(Math.round(fraction * 20)).padEnd(20, ".");
    const eta = rate > 0 ? Math.ceil((total - sent) / rate) : 0;
    const percent = (fraction * 100).toFixed(0).padStart(3);
    const line = `\r[${bar}] ${percent}%  ${mib(sent)}/${mib(total)} MiB  ` +
      `${(rate / 1e6).toFixed(1)} MB/s  ETA ${eta} s  `;
    const end = sent < total ? "" : "\n";
    Deno.stderr.writeSync(new TextEncoder().encode(line + end));
  };
}

if (import.meta.main) {
  await runCommand("upload_client.ts", async () => {
    const { values, positionals } = parseCommandLine(Deno.args, {
      usage: USAGE,
      positionals: true,
      options: {
        name: { type: "string" },
        hostname: { type: "string", default: "127.0.0.1" },
        port: { type: "string", default: String(DEFAULT_PORT) },
        timeout: { type: "string", default: String(DEFAULT_TIMEOUT_SECONDS) },
        ...CLIENT_TLS_OPTIONS,
      },
    });
    if (positionals.length !== 1) {
      throw new UsageError("expected exactly one FILE to upload");
    }
    const outcome = await uploadFile({
      path: positionals[0],
      name: values.name,
      hostname: values.hostname,
      port: parsePort(values.port),
      timeoutSeconds: parseSeconds(values.timeout, "--timeout"),
      tls: await loadClientTls(values),
      onProgress: Deno.stderr.isTerminal() ? progressBar() : undefined,
    });
    if (outcome.verified) {
      console.log(outcome.reply);
      return 0;
    }
    const reply = printable(outcome.reply);
    if (outcome.status === 200) {
      throw new Failure(
        `server's reply does not match what was sent (${outcome.size} bytes, sha256 ${outcome.sha256}): ${reply}`,
      );
    }
    throw new Failure(`server refused: ${reply}`);
  });
}
