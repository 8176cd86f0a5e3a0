/**
 * File upload client: sends one file to upload_server.ts and checks that the
 * server stored exactly what was sent (size and SHA-256).
 *
 * Run:    deno run --allow-net --allow-read=photo.jpg scripts/upload_client.ts photo.jpg
 *         deno run --allow-net --allow-read=photo.jpg scripts/upload_client.ts --name "Holiday 1.jpg" photo.jpg
 * Try it: start scripts/upload_server.ts --dir ./uploads first
 *
 * The tutorial's client sends the name and the bytes and closes, so neither
 * side knows whether the file arrived whole. Here the header carries the
 * size, the client hashes the file while sending it, and it exits 0 only
 * when the server's `200 OK <size> <sha256>` matches its own count and hash.
 */
import { createHash } from "node:crypto";
import {
  Failure,
  parseCommandLine,
  parsePort,
  parseSeconds,
  runCommand,
  UsageError,
} from "../lib/cli.ts";
import { describeError } from "../lib/errors.ts";
import { fileNameProblem } from "../lib/file_store.ts";
import { LineReader } from "../lib/lines.ts";
import { closeQuietly, isDisconnect, writeAll } from "../lib/net.ts";

export const DEFAULT_PORT = 8080;
export const DEFAULT_TIMEOUT_SECONDS = 60;
const BUFFER_SIZE = 1024 * 1024;

const USAGE = `Usage: upload_client.ts [options] FILE

Uploads FILE to an upload server and verifies the server's SHA-256. Prints
the server's '200 OK <size> <sha256>' line and exits 0 only when it matches;
otherwise prints the reason on stderr and exits 1.

Options:
  --name NAME        name to store the file under (default: FILE's own name)
  --hostname HOST    server address (default 127.0.0.1)
  --port PORT        server port (default ${DEFAULT_PORT})
  --timeout SECONDS  longest wait for the connection and for the reply
                     after the last byte (default ${DEFAULT_TIMEOUT_SECONDS})
  -h, --help         show this help`;

export interface UploadFileOptions {
  path: string;
  /** Name on the server (default: the last part of `path`). */
  name?: string;
  hostname?: string;
  port?: number;
  timeoutSeconds?: number;
  /** Called after each chunk is sent, with bytes sent so far and in total. */
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
 * Uploads one file and returns the server's verdict. Throws Failure for
 * what stops the upload before there is a verdict (no such file, refused,
 * no reply…).
 */
export async function uploadFile(
  options: UploadFileOptions,
): Promise<UploadOutcome> {
  const name = options.name ?? options.path.split("/").pop() ?? "";
  const problem = fileNameProblem(name);
  if (problem !== null) {
    throw new Failure(`cannot upload as '${name}': ${problem}`);
  }
  const timeoutMs = (options.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS) * 1000;

  let file: Deno.FsFile;
  let size: number;
  try {
    file = await Deno.open(options.path, { read: true });
    const info = await file.stat();
    if (!info.isFile) {
      file.close();
      throw new Failure(`${options.path} is not a regular file`);
    }
    size = info.size;
  } catch (error) {
    if (error instanceof Failure) throw error;
    const reason = error instanceof Deno.errors.NotFound
      ? "no such file"
      : describeError(error);
    throw new Failure(`cannot read ${options.path}: ${reason}`);
  }
  using _file = file;

  const { hostname = "127.0.0.1", port = DEFAULT_PORT } = options;
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({
      hostname,
      port,
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (error) {
    const reason = error instanceof DOMException
      ? `timed out after ${timeoutMs / 1000} s`
      : describeError(error);
    throw new Failure(`cannot connect to ${hostname}:${port}: ${reason}`);
  }
  try {
    return await send(conn, file, size, name, timeoutMs, options);
  } finally {
    closeQuietly(conn);
  }
}

/** Sends header and body over `conn`, then waits for the verdict. */
async function send(
  conn: Deno.TcpConn,
  file: Deno.FsFile,
  size: number,
  name: string,
  timeoutMs: number,
  options: UploadFileOptions,
): Promise<UploadOutcome> {
  // Listen for the reply while sending: a server that refuses (413, 409…)
  // answers before reading the body, and we should stop sending then.
  let replied = false;
  const reply = readReply(conn).finally(() => replied = true);
  reply.catch(() => {}); // awaited below; keep it from counting as unhandled

  const hash = createHash("sha256");
  let sent = 0;
  try {
    await writeAll(conn, new TextEncoder().encode(`UPLOAD ${size} ${name}\n`));
    // Two reused buffers: while one is being sent, the next is read from
    // the file and hashed (the same pipeline as the server's).
    const buffers = [new Uint8Array(BUFFER_SIZE), new Uint8Array(BUFFER_SIZE)];
    let turn = 0;
    let hashed = 0;
    let sending: Promise<void> = Promise.resolve();
    try {
      while (hashed < size && !replied) {
        const buffer = buffers[turn];
        turn = 1 - turn;
        const want = Math.min(buffer.length, size - hashed);
        const count = await file.read(buffer.subarray(0, want));
        if (count === null) {
          throw new Failure(`${options.path} shrank while being sent`);
        }
        hashed += count;
        const chunk = buffer.subarray(0, count);
        hash.update(chunk);
        await sending; // the other buffer is free again once this resolves
        sending = writeAll(conn, chunk).then(() => {
          sent += count;
          options.onProgress?.(sent, size);
        });
        sending.catch(() => {}); // reported by the next await
      }
    } finally {
      await sending.catch(() => {});
    }
    await sending;
    // "That is all": the server needs no end marker, but this is polite.
    if (!replied) await conn.closeWrite();
  } catch (error) {
    // A reset while sending usually means the server answered and closed;
    // its reply tells why. Anything else is ours to report.
    if (!isDisconnect(error)) throw error;
  }

  // Bound the wait for the reply (the server flushes the file to disk
  // first): when the time is up, closing the connection ends the read.
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    closeQuietly(conn);
  }, timeoutMs);
  let line: string;
  try {
    line = await reply;
  } catch (error) {
    if (error instanceof Failure) throw error;
    throw new Failure(
      timedOut
        ? `no reply from the server within ${timeoutMs / 1000} s`
        : `connection to the server lost: ${describeError(error)}`,
    );
  } finally {
    clearTimeout(timer);
  }

  const sha256 = hash.digest("hex");
  const status = Number(/^(\d{3}) /.exec(line)?.[1] ?? NaN);
  const ok = /^200 OK (\d+) ([0-9a-f]{64})$/.exec(line);
  const verified = ok !== null && sent === size && Number(ok[1]) === size &&
    ok[2] === sha256;
  return { reply: line, status, verified, size, sha256 };
}

/** Reads the server's one-line reply. */
async function readReply(conn: Deno.TcpConn): Promise<string> {
  const line = await new LineReader(conn, 4096).readLine();
  if (line === null) throw new Failure("server closed without a reply");
  return new TextDecoder().decode(line);
}

/** Progress on one terminal line: bar, percent, bytes, rate and ETA. */
function progressBar() {
  const started = performance.now();
  let lastDrawn = 0;
  const encoder = new TextEncoder();
  return (sent: number, total: number) => {
    const now = performance.now();
    if (now - lastDrawn < 100 && sent < total) return; // ten frames a second
    lastDrawn = now;
    const seconds = (now - started) / 1000;
    const rate = seconds > 0 ? sent / seconds : 0;
    const fraction = total > 0 ? sent / total : 1;
    const width = 20;
    const filled = Math.round(fraction * width);
    const eta = rate > 0 ? (total - sent) / rate : 0;
    const line = `\r[${"#".repeat(filled)}${".".repeat(width - filled)}] ${
      (fraction * 100).toFixed(0).padStart(3)
    }%  ${mebibytes(sent)}/${mebibytes(total)} MiB  ${
      (rate / 1e6).toFixed(1)
    } MB/s  ETA ${Math.ceil(eta)} s  `;
    Deno.stderr.writeSync(encoder.encode(sent < total ? line : line + "\n"));
  };
}

function mebibytes(bytes: number): string {
  return (bytes / 1024 / 1024).toFixed(1);
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
      onProgress: Deno.stderr.isTerminal() ? progressBar() : undefined,
    });
    if (outcome.verified) {
      console.log(outcome.reply);
      return 0;
    }
    if (outcome.status === 200) {
      throw new Failure(
        `server's reply does not match what was sent (${outcome.size} bytes, sha256 ${outcome.sha256}): ${outcome.reply}`,
      );
    }
    throw new Failure(`server refused: ${outcome.reply}`);
  });
}
