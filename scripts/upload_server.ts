/**
 * File upload server: receives files over TCP into one directory, each one
 * checked by size and SHA-256, many clients at once.
 *
 * Run:    deno run --allow-net --allow-read=./uploads --allow-write=./uploads scripts/upload_server.ts --dir ./uploads
 * Try it: printf 'UPLOAD 5 hi.txt\nhello' | nc -N 127.0.0.1 8080
 *    or:  deno run --allow-net --allow-read=photo.jpg scripts/upload_client.ts photo.jpg
 *
 * Wire format: one line `UPLOAD <size> <name>\n`, then exactly <size> bytes;
 * one line back, then close: `200 OK <size> <sha256>` or `<status> <reason>`.
 *
 * 000 §4.4 shows only a client, and its server in one sentence (it parses
 * the request and answers with a status code). That client sends the name,
 * `\r\n`, then the bytes, with no length and without closing its side, and
 * waits for the status: a server reading until the client closes would
 * wait for ever too. Here the header says how many bytes follow; they go
 * to a temporary file that takes its name only when complete and flushed
 * (a client that vanishes leaves nothing), and the reply carries the
 * SHA-256 so the client can check what arrived.
 *
 * Read first: receive()
 */
import {
  parseCommandLine,
  parseInteger,
  parsePort,
  parseSeconds,
  runCommand,
  UsageError,
} from "../lib/cli.ts";
import { seconds, Sweeper } from "../lib/deadline.ts";
import { describeError, isDisconnect } from "../lib/errors.ts";
import {
  createUpload,
  FileExistsError,
  fileNameProblem,
  prepareUploadDirectory,
  type Upload,
} from "../lib/file_store.ts";
import {
  closeQuietly,
  copy,
  formatAddress,
  limited,
  lingeringClose,
  type Traffic,
  writeAll,
} from "../lib/io.ts";
import { BufferedReader, LineTooLongError } from "../lib/reader.ts";
import { runUntilSignal, type ServerHandle, serveTcp } from "../lib/server.ts";

export const DEFAULT_PORT = 8080;
export const DEFAULT_IDLE_TIMEOUT_SECONDS = 30;
/** Longest header line: "UPLOAD", a size and a name of up to 255 bytes fit. */
const HEADER_LIMIT = 4096;
const LINGER_MS = 2000;

const USAGE = `Usage: upload_server.ts --dir DIR [options]

Receives files: each client sends 'UPLOAD <size> <name>' and a newline, then
exactly <size> bytes, and gets one line back: '200 OK <size> <sha256>' once
the file is complete and on disk as DIR/<name>, or '400|409|413|500 <reason>'.

Options:
  --dir DIR               where files go (created if missing)
  --max-size BYTES        refuse larger files with 413 (default: no limit)
  --overwrite             replace existing files (default: refuse with 409)
  --idle-timeout SECONDS  drop a client silent this long (default ${DEFAULT_IDLE_TIMEOUT_SECONDS})
  --hostname HOST         address to listen on (default 127.0.0.1; 0.0.0.0 or :: to expose)
  --port PORT             port to listen on (default ${DEFAULT_PORT}; 0 picks a free port)
  -h, --help              show this help`;

export interface UploadServerOptions {
  dir: string;
  hostname?: string;
  port?: number;
  /** Largest accepted file in bytes (default: no limit). */
  maxSize?: number;
  overwrite?: boolean;
  idleTimeoutSeconds?: number;
  /** Where the one line per upload goes (default: stderr). */
  log?: (line: string) => void;
}

/** Creates `dir` if missing, removes what a crash left there, serves. */
export async function startUploadServer(
  options: UploadServerOptions,
): Promise<ServerHandle> {
  const log = options.log ?? ((line: string) => console.error(line));
  for (const name of await prepareUploadDirectory(options.dir)) {
    log(`removed leftover temporary file ${name}`);
  }
  const idleMs = (options.idleTimeoutSeconds ?? DEFAULT_IDLE_TIMEOUT_SECONDS) *
    1000;
  // One timer for every connection's deadline (see lib/deadline.ts).
  const sweeper = new Sweeper(Math.min(5000, Math.max(50, idleMs / 4)));
  return serveTcp({
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port ?? DEFAULT_PORT,
    log,
  }, async (conn, shutdown) => {
    const started = performance.now();
    const job: Job = {
      name: "",
      received: { bytes: 0 },
      // The header must arrive whole within one timeout however it is
      // trickled; after it, the client may be silent that long at a time.
      bodyStarts: () => clock.at = Date.now() + idleMs,
    };
    const clock = sweeper.idle(job.received, idleMs, () => {
      job.silence = job.upload
        ? `idle for ${seconds(idleMs)}, dropped`
        : `no complete header within ${seconds(idleMs)}, dropped`;
      closeQuietly(conn); // the pending read fails: receive() ends
    });
    let reply: string | null;
    try {
      reply = await receive(new BufferedReader(conn), job, options);
    } catch (error) {
      // We are stopping, or the client vanished or went silent (we closed
      // the connection), or storage failed: the client hears of that.
      if (shutdown.aborted) job.silence = "server shutting down";
      else if (isDisconnect(error)) {
        job.silence ??= `client vanished (${describeError(error)})`;
      }
      reply = job.silence
        ? null
        : `500 storage failure: ${describeError(error)}`;
    } finally {
      sweeper.remove(clock);
    }
    const said = reply === null ? job.silence : await answer(conn, reply);
    // Whatever happened, an unfinished upload leaves no temporary file.
    await job.upload?.abort().catch(() => {});
    const elapsed = (performance.now() - started) / 1000;
    const bytes = job.upload?.size ?? 0;
    const rate = (elapsed > 0 ? bytes / elapsed / 1e6 : 0).toFixed(1);
    // One line per connection; JSON quoting keeps odd names on one line.
    log(
      `${formatAddress(conn.remoteAddr)} ${JSON.stringify(job.name)} ` +
        `${bytes} bytes ${elapsed.toFixed(3)} s ${rate} MB/s: ${said}`,
    );
  });
}

/** One connection's upload, as receive() learns about it. */
interface Job {
  name: string;
  upload?: Upload;
  /** Body bytes stored so far: copy() counts, the Sweeper watches. */
  received: Traffic;
  /** Why no reply is owed, when none is. */
  silence?: string;
  /** Called once the header is in. */
  bodyStarts(): void;
}

/**
 * The protocol, start to verdict: the header line and its checks, then
 * exactly <size> bytes into a temporary file, then the commit that gives
 * the file its name. Returns the status line, or null if none is owed.
 */
async function receive(
  reader: BufferedReader,
  job: Job,
  options: UploadServerOptions,
): Promise<string | null> {
  let header: Uint8Array | null;
  try {
    header = await reader.readLine(HEADER_LIMIT);
  } catch (error) {
    if (!(error instanceof LineTooLongError)) throw error;
    return `400 header line longer than ${HEADER_LIMIT} bytes`;
  }
  if (header === null) {
    job.silence = "closed before sending a header";
    return null;
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(header);
  } catch {
    return "400 header is not valid UTF-8";
  }
  // The name is the rest of the line: spaces are allowed in it.
  const match = /^UPLOAD (\d+) (.*)$/s.exec(text);
  if (!match) return "400 malformed header, expected 'UPLOAD <size> <name>'";
  const size = Number(match[1]);
  job.name = match[2];
  const problem = fileNameProblem(job.name);
  if (problem !== null) return `400 ${problem}`;
  // Refuse before reading any of the body.
  const maxSize = options.maxSize ?? Number.MAX_SAFE_INTEGER;
  if (size > maxSize) {
    return `413 file too large: ${match[1]} bytes, limit ${maxSize}`;
  }
  try {
    job.upload = await createUpload(options.dir, job.name, options);
  } catch (error) {
    if (error instanceof FileExistsError) return `409 ${error.message}`;
    return `500 storage failure: ${describeError(error)}`;
  }
  job.bodyStarts();
  // Exactly <size> bytes, in whatever pieces they come (the reader first
  // hands out what it read past the header). Bytes after them are not
  // part of the file.
  const received = await copy(limited(reader, size), job.upload, job.received);
  if (received < size) {
    return `400 body ended after ${received} of ${size} bytes`;
  }
  try {
    const stored = await job.upload.commit();
    return `200 OK ${stored.size} ${stored.sha256}`;
  } catch (error) {
    // Someone else's upload of the same name won the race.
    if (error instanceof FileExistsError) return `409 ${error.message}`;
    throw error;
  }
}

/** Sends the one reply line and closes; returns what the log should say. */
async function answer(conn: Deno.Conn, line: string): Promise<string> {
  try {
    await writeAll(conn, new TextEncoder().encode(line + "\n"));
  } catch (error) {
    if (!isDisconnect(error)) throw error;
    return `${line} (not delivered)`;
  }
  // After an early answer (413, 409, 400) the client may still be sending:
  // closing with its bytes unread would reset the connection, which can
  // destroy the answer. lingeringClose half-closes and drains (for at most
  // LINGER_MS, however much the client sends) first.
  await lingeringClose(conn, LINGER_MS, Infinity);
  return line;
}

if (import.meta.main) {
  await runCommand("upload_server.ts", async () => {
    const { values } = parseCommandLine(Deno.args, {
      usage: USAGE,
      options: {
        dir: { type: "string" },
        "max-size": {
          type: "string",
          default: String(Number.MAX_SAFE_INTEGER),
        },
        overwrite: { type: "boolean", default: false },
        "idle-timeout": {
          type: "string",
          default: String(DEFAULT_IDLE_TIMEOUT_SECONDS),
        },
        hostname: { type: "string", default: "127.0.0.1" },
        port: { type: "string", default: String(DEFAULT_PORT) },
      },
    });
    if (!values.dir) throw new UsageError("--dir DIR is required");
    const server = await startUploadServer({
      dir: values.dir,
      hostname: values.hostname,
      port: parsePort(values.port),
      maxSize: parseInteger(values["max-size"], "--max-size"),
      overwrite: values.overwrite,
      idleTimeoutSeconds: parseSeconds(
        values["idle-timeout"],
        "--idle-timeout",
      ),
    });
    return runUntilSignal(server, "tcp");
  });
}
