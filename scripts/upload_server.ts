/**
 * File upload server: receives files over TCP into one directory, verified
 * by size and SHA-256, many clients at once.
 *
 * Run:    deno run --allow-net --allow-read=./uploads --allow-write=./uploads scripts/upload_server.ts --dir ./uploads
 * Try it: printf 'UPLOAD 5 hi.txt\nhello' | nc -N 127.0.0.1 8080
 *    or:  deno run --allow-net --allow-read scripts/upload_client.ts FILE
 *
 * Wire format: the client sends one line `UPLOAD <size> <name>\n`, then
 * exactly <size> bytes; the server answers one line and closes:
 * `200 OK <size> <sha256>`, or `400|409|413|500 <reason>`.
 *
 * The tutorial's server reads until the connection closes and calls that the
 * file. With no length it cannot tell a finished upload from a client that
 * crashed halfway, so it keeps truncated files under their real names, and
 * nothing checks that what arrived is what was sent. Here the header says how
 * many bytes to expect, the body goes to a temporary file that gets its name
 * only when complete and flushed to disk, and the reply carries the SHA-256
 * so the client can verify it.
 */
import {
  Failure,
  parseCommandLine,
  parseInteger,
  parsePort,
  parseSeconds,
  runCommand,
  UsageError,
} from "../lib/cli.ts";
import { describeError } from "../lib/errors.ts";
import {
  createUpload,
  FileExistsError,
  fileNameProblem,
  removeLeftoverTempFiles,
  type Upload,
} from "../lib/file_store.ts";
import { LineReader, LineTooLongError, type Reader } from "../lib/lines.ts";
import { closeQuietly, formatAddress, isDisconnect } from "../lib/net.ts";
import { runUntilSignal, type ServerHandle, serveTcp } from "../lib/server.ts";

export const DEFAULT_PORT = 8080;
export const DEFAULT_IDLE_TIMEOUT_SECONDS = 30;
/** Longest header line: "UPLOAD", a size and a name of up to 255 bytes fit. */
const HEADER_LIMIT = 4096;
/**
 * Each upload reads into two reused buffers of this size (see copyBody), so
 * a client that sends a few MiB and then stalls holds 512 KiB here, not
 * more. Measured: within a few percent of 1 MiB buffers; 64 KiB costs
 * about 10% more CPU.
 */
const BUFFER_SIZE = 256 * 1024;
/** How long we keep reading (and discarding) after answering; see linger(). */
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

/** The outcome of one connection: the status line sent (or why none was). */
interface Result {
  status: number | null; // null: no answer could be sent
  reply: string;
}

/**
 * Prepares `dir` (creates it if missing, removes temporary files a crash
 * left behind) and starts serving.
 */
export async function startUploadServer(
  options: UploadServerOptions,
): Promise<ServerHandle> {
  try {
    if (!(await Deno.stat(options.dir)).isDirectory) {
      throw new Failure(`--dir ${options.dir} is not a directory`);
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    await Deno.mkdir(options.dir, { recursive: true });
  }
  const log = options.log ?? ((line: string) => console.error(line));
  for (const name of await removeLeftoverTempFiles(options.dir)) {
    log(`removed leftover temporary file ${name}`);
  }
  const settings: Settings = {
    dir: options.dir,
    maxSize: options.maxSize ?? Number.MAX_SAFE_INTEGER,
    overwrite: options.overwrite ?? false,
    idleMs: (options.idleTimeoutSeconds ?? DEFAULT_IDLE_TIMEOUT_SECONDS) *
      1000,
    log,
  };
  return serveTcp({
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port ?? DEFAULT_PORT,
  }, (conn, shutdown) => handleUpload(conn, settings, shutdown));
}

interface Settings {
  dir: string;
  maxSize: number;
  overwrite: boolean;
  idleMs: number;
  log: (line: string) => void;
}

/**
 * Every read from the client goes through this: if nothing arrives for
 * `idleMs`, the connection is closed, which makes the pending read fail.
 * Python's settimeout(), per read.
 */
class IdleTimeoutReader implements Reader {
  /** Why we dropped the client, once we have. */
  dropped: string | null = null;
  constructor(private conn: Deno.Conn, private idleMs: number) {}

  async read(buffer: Uint8Array): Promise<number | null> {
    const timer = setTimeout(
      () => this.drop(`idle for ${this.idleMs / 1000} s, dropped`),
      this.idleMs,
    );
    try {
      return await this.conn.read(buffer);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Closes the connection, which makes a pending read fail. */
  drop(reason: string) {
    this.dropped = reason;
    closeQuietly(this.conn);
  }
}

async function handleUpload(
  conn: Deno.Conn,
  settings: Settings,
  shutdown: AbortSignal,
) {
  const started = performance.now();
  const reader = new IdleTimeoutReader(conn, settings.idleMs);
  let name = "";
  let upload: Upload | undefined;
  let result: Result;
  try {
    result = await receive();
  } catch (error) {
    // The server is stopping, or the client reset, or went silent and we
    // closed the connection; or storage failed (the client hears about it).
    if (shutdown.aborted) {
      result = { status: null, reply: "server shutting down" };
    } else if (reader.dropped !== null) {
      result = { status: null, reply: reader.dropped };
    } else if (isDisconnect(error)) {
      result = { status: null, reply: `client vanished (${describe(error)})` };
    } else {
      result = await answer(500, `storage failure: ${describeError(error)}`);
    }
  } finally {
    // Whatever happened, an unfinished upload leaves no temporary file.
    await upload?.abort().catch(() => {});
  }
  const seconds = (performance.now() - started) / 1000;
  const bytes = upload?.size ?? 0;
  const rate = seconds > 0 ? bytes / seconds / 1e6 : 0;
  // One line per connection; JSON quoting keeps odd names on one line.
  const peer = formatAddress(conn.remoteAddr);
  const timing = `${seconds.toFixed(3)} s ${rate.toFixed(1)} MB/s`;
  settings.log(
    `${peer} ${JSON.stringify(name)} ${bytes} bytes ${timing}: ${result.reply}`,
  );
  if (result.status !== null && reader.dropped === null) await linger();

  async function receive(): Promise<Result> {
    const lines = new LineReader(reader, HEADER_LIMIT);
    // The idle timer restarts with every read, so a client sending one
    // byte just before each timeout could hold the connection for hours.
    // The header is a few bytes: it must arrive whole within one timeout.
    const headerDeadline = setTimeout(
      () =>
        reader.drop(
          `no complete header within ${settings.idleMs / 1000} s, dropped`,
        ),
      settings.idleMs,
    );
    let header: Uint8Array | null;
    try {
      header = await lines.readLine();
    } catch (error) {
      if (error instanceof LineTooLongError) {
        return answer(400, `header line longer than ${HEADER_LIMIT} bytes`);
      }
      throw error;
    } finally {
      clearTimeout(headerDeadline);
    }
    if (header === null) {
      return { status: null, reply: "closed before sending a header" };
    }
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(header);
    } catch {
      return answer(400, "header is not valid UTF-8");
    }
    // The name is the rest of the line: spaces are allowed in it.
    const match = /^UPLOAD (\d+) (.*)$/s.exec(text);
    if (!match) {
      return answer(400, "malformed header, expected 'UPLOAD <size> <name>'");
    }
    const size = Number(match[1]);
    name = match[2];
    const problem = fileNameProblem(name);
    if (problem !== null) return answer(400, problem);
    // Refuse before reading any of the body.
    if (size > settings.maxSize) {
      return answer(
        413,
        `file too large: ${match[1]} bytes, limit ${settings.maxSize}`,
      );
    }
    try {
      upload = await createUpload(settings.dir, name, {
        overwrite: settings.overwrite,
      });
    } catch (error) {
      if (error instanceof FileExistsError) return answer(409, error.message);
      return answer(500, `storage failure: ${describeError(error)}`);
    }

    // The line reader may have read past the header: the body's first bytes
    // (and, from a client that sends too much, bytes after the body, which
    // are not part of the file and are ignored).
    const first = lines.takeBuffered().subarray(0, size);
    await upload.write(first);
    const received = await copyBody(reader, upload, size - first.length);
    if (received < size - first.length) {
      const got = first.length + received;
      return answer(400, `body ended after ${got} of ${size} bytes`);
    }
    try {
      const stored = await upload.commit();
      return answer(200, `OK ${stored.size} ${stored.sha256}`);
    } catch (error) {
      // Someone else's upload of the same name won the race.
      if (error instanceof FileExistsError) return answer(409, error.message);
      throw error;
    }
  }

  async function answer(status: number, text: string): Promise<Result> {
    const reply = `${status} ${text}`;
    try {
      // One short line: fits any socket buffer, so one write is enough in
      // practice, but write() may still be partial in principle.
      const bytes = new TextEncoder().encode(reply + "\n");
      let written = 0;
      while (written < bytes.length) {
        written += await conn.write(bytes.subarray(written));
      }
      await conn.closeWrite();
    } catch (error) {
      if (!isDisconnect(error)) throw error;
      return { status: null, reply: `${reply} (not delivered)` };
    }
    return { status, reply };
  }

  /**
   * After answering early (413, 409, 400) the client may still be sending
   * its body. Closing a socket with unread data makes the kernel send a
   * reset, which can destroy our answer before the client reads it. So we
   * half-close (done above), then read and discard until the client closes
   * too, for at most LINGER_MS.
   */
  async function linger() {
    const scrap = new Uint8Array(64 * 1024);
    const deadline = setTimeout(() => closeQuietly(conn), LINGER_MS);
    try {
      while (await conn.read(scrap) !== null) {
        // Discard.
      }
    } catch {
      // Reset by the client, or closed by the deadline: either way, done.
    } finally {
      clearTimeout(deadline);
    }
  }
}

/**
 * Copies `length` bytes from the client into the upload; returns how many
 * arrived (fewer if the client closed early). Two reused buffers make a
 * pipeline: while one is being written to disk (on Deno's I/O threads), the
 * next is read from the socket and hashed. Memory stays at two buffers for
 * any file size.
 *
 * Where the time goes for 256 MiB: SHA-256 0.14 CPU seconds, writing the
 * file 0.07, reading the socket 0.05, then about 70 ms waiting for the
 * flush to disk. `nc -l > file` only reads and writes (0.16 CPU seconds, no
 * flush), so it stays well ahead; `nc | tee file | openssl sha256`, which
 * does our work in C, is no faster than this loop. Hashing in a Worker was
 * tried: more CPU in total, no faster on one CPU, within noise on two.
 */
async function copyBody(
  reader: Reader,
  upload: Upload,
  length: number,
): Promise<number> {
  const buffers = [new Uint8Array(BUFFER_SIZE), new Uint8Array(BUFFER_SIZE)];
  let turn = 0;
  let received = 0;
  let writing: Promise<void> = Promise.resolve();
  try {
    while (received < length) {
      const buffer = buffers[turn];
      turn = 1 - turn;
      // Never ask for more than the body still owes us: bytes after it are
      // not part of the file.
      const want = Math.min(buffer.length, length - received);
      const count = await reader.read(buffer.subarray(0, want));
      if (count === null) break;
      received += count;
      await writing; // the other buffer is free again once this resolves
      writing = upload.write(buffer.subarray(0, count));
      // A failed write is reported by the next await; this only keeps it
      // from counting as an unhandled rejection meanwhile.
      writing.catch(() => {});
    }
  } finally {
    // Never leave a write running on a buffer, even when a read failed.
    await writing.catch(() => {});
  }
  await writing;
  return received;
}

function describe(error: unknown): string {
  return error instanceof Deno.errors.BadResource
    ? "connection closed"
    : describeError(error);
}

if (import.meta.main) {
  await runCommand("upload_server.ts", async () => {
    const { values } = parseCommandLine(Deno.args, {
      usage: USAGE,
      options: {
        dir: { type: "string" },
        "max-size": { type: "string" },
        overwrite: { type: "boolean", default: false },
        "idle-timeout": {
          type: "string",
          default: String(DEFAULT_IDLE_TIMEOUT_SECONDS),
        },
        hostname: { type: "string", default: "127.0.0.1" },
        port: { type: "string", default: String(DEFAULT_PORT) },
      },
    });
    if (values.dir === undefined || values.dir === "") {
      throw new UsageError("--dir DIR is required");
    }
    const server = await startUploadServer({
      dir: values.dir,
      hostname: values.hostname,
      port: parsePort(values.port),
      maxSize: values["max-size"] === undefined
        ? undefined
        : parseInteger(values["max-size"], "--max-size"),
      overwrite: values.overwrite,
      idleTimeoutSeconds: parseSeconds(
        values["idle-timeout"],
        "--idle-timeout",
      ),
    });
    return runUntilSignal(server, "tcp");
  });
}
