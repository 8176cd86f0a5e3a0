/**
 * File upload server: takes `UPLOAD <size> <name>\n` and exactly <size> bytes
 * over TCP (or TLS) from many clients at once, stores each file in one
 * directory and answers one line: `200 OK <size> <sha256>` or `<status> <reason>`.
 *
 * Run:    deno run --allow-net --allow-read=./uploads --allow-write=./uploads scripts/upload_server.ts --dir ./uploads
 *         deno run --allow-net --allow-read=./uploads,certs --allow-write=./uploads scripts/upload_server.ts --dir ./uploads --cert certs/localhost.pem --key certs/localhost.key
 * Try it: printf 'UPLOAD 5 hi.txt\nhello' | nc -N 127.0.0.1 8080
 *    or:  deno run --allow-net --allow-read=photo.jpg scripts/upload_client.ts photo.jpg
 *
 * 000 §4.4 shows only a client, and its server in one sentence (it parses
 * the request and answers with a status code). That client sends the name,
 * `\r\n`, then the bytes, with no length and without closing its side, and
 * waits for the status: a server reading until the client closes would
 * wait for ever too. Here the header says how many bytes follow; they go
 * to a temporary file that takes its name only when complete and flushed
 * (a client that vanishes leaves nothing), and the reply carries the
 * SHA-256 so the client can check what arrived. A client too slow to be
 * honest gets 408; past --max-uploads at once, 503.
 *
 * Read first: receive()
 */
import {
  parseCommandLine,
  parseInteger,
  parseSeconds,
  runCommand,
  UsageError,
  withDefault,
} from "../lib/cli.ts";
import { seconds, Sweeper } from "../lib/deadline.ts";
import { describeError, isDisconnect } from "../lib/errors.ts";
import {
  createUpload,
  FileExistsError,
  fileNameProblem,
  prepareUploadDir,
  type Upload,
} from "../lib/file_store.ts";
import { copy, formatAddress, replyAndClose } from "../lib/io.ts";
import { BufferedReader, LineTooLongError } from "../lib/reader.ts";
import { listenOptions, parseListen, runUntilSignal } from "../lib/server.ts";
import { type ServerHandle, serveTcp } from "../lib/server.ts";
import type { TcpServerOptions } from "../lib/server.ts";
import { printable } from "../lib/terminal.ts";
import { SERVER_TLS_HELP, SERVER_TLS_OPTIONS } from "../lib/tls.ts";
import { limited } from "./upload/framing.ts";

export const DEFAULT_PORT = 8080;
export const DEFAULT_IDLE_TIMEOUT_SECONDS = 30;
/** Bytes/s: slower than any real link, not than a client holding a slot. */
export const DEFAULT_MIN_RATE = 1000;
/** Uploads share a disk, and each holds a socket and a file descriptor. */
export const DEFAULT_MAX_UPLOADS = 100;
const HEADER_LIMIT = 4096; // "UPLOAD", a size and a 255-byte name fit
const LISTEN = listenOptions(DEFAULT_PORT);

const USAGE = `Usage: upload_server.ts --dir DIR [options]

Receives files into DIR: 'UPLOAD <size> <name>', a newline and <size> bytes
in; '200 OK <size> <sha256>' or '400|408|409|413|500|503 <reason>' back.

Options:
  --dir DIR               where files go (created if missing)
  --max-size BYTES        refuse larger files with 413 (default: no limit)
  --overwrite             replace existing files (default: refuse with 409)
  --idle-timeout SECONDS  408 when the header, or a pause in the body, takes longer (default ${DEFAULT_IDLE_TIMEOUT_SECONDS})
  --min-rate BYTES        408 when the body, past the idle timeout, averages fewer bytes/s
                          (default ${DEFAULT_MIN_RATE}; 0 = no minimum)
  --max-uploads N         503 to clients beyond N uploads at once (default ${DEFAULT_MAX_UPLOADS})
${LISTEN.help}
${SERVER_TLS_HELP}
                     (clients cannot be asked for a certificate: deno#26825)
  -h, --help              show this help`;

/** As the options above; maxSize in bytes, minRate in bytes a second. */
export interface UploadServerOptions extends Partial<TcpServerOptions> {
  dir: string;
  maxSize?: number;
  overwrite?: boolean;
  idleTimeoutSeconds?: number;
  minRate?: number;
  maxUploads?: number;
}

export async function startUploadServer(
  options: UploadServerOptions,
): Promise<ServerHandle> {
  const log = options.log ?? ((line: string) => console.error(line));
  await prepareUploadDir(options.dir, log);
  const idleMs = (options.idleTimeoutSeconds ?? DEFAULT_IDLE_TIMEOUT_SECONDS) *
    1000;
  const minRate = options.minRate ?? DEFAULT_MIN_RATE;
  const maxUploads = options.maxUploads ?? DEFAULT_MAX_UPLOADS;
  const sweeper = Sweeper.forTimeout(idleMs);
  let uploads = 0;
  return serveTcp({
    ...options,
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port ?? DEFAULT_PORT,
    log,
  }, async (conn, shutdown) => {
    const started = performance.now();
    const job: Job = {
      reader: new BufferedReader(conn),
      name: "",
      received: { bytes: 0 },
      // One timer for all (lib/deadline.ts): the header must come whole in
      // the idle timeout, the body may pause as long and must keep up.
      clock: (on) =>
        on ? clock.at = Date.now() + idleMs : sweeper.remove(clock),
    };
    // One reply, once what is unfinished is removed (a 408 or 500 leaves
    // nothing behind); the client may still be sending (after a 413, say),
    // so it is drained for 2 s rather than reset, which could lose the reply.
    let replied: Promise<string> | undefined;
    const reply = (line: string) =>
      replied ??= (async () => {
        await job.upload?.abort().catch(() => {}); // after a commit: no-op
        const bytes = new TextEncoder().encode(line + "\n");
        const sent = await replyAndClose(conn, bytes, 2000, Infinity);
        return sent ? line : `${line} (not delivered)`;
      })();
    const clock = sweeper.idle(job.received, idleMs, (why) => {
      reply( // its lingering close ends the pending read: receive() ends
        !job.upload
          ? `408 no complete header within ${seconds(idleMs)}`
          : why === "idle"
          ? `408 idle for ${seconds(idleMs)}`
          : `408 slower than ${minRate} bytes/s`,
      );
    }, minRate);
    let line: string | null = null; // the status line owed to the client
    let note = "closed before sending a header"; // why none is, if so
    try {
      line = uploads++ >= maxUploads
        ? `503 too many uploads at once (${maxUploads})`
        : await receive(job, options);
    } catch (error) {
      // We are stopping or the client left: no reply. Else storage failed.
      const why = describeError(error);
      if (shutdown.aborted) note = "server shutting down";
      else if (isDisconnect(error)) note = `client vanished (${why})`;
      else line = `500 storage failure: ${why}`;
    } finally {
      uploads--;
      sweeper.remove(clock);
    }
    const said = replied ? await replied : line ? await reply(line) : note;
    await job.upload?.abort().catch(() => {}); // nothing unfinished stays
    const elapsed = (performance.now() - started) / 1000;
    const bytes = job.upload?.size ?? 0;
    const rate = (elapsed > 0 ? bytes / elapsed / 1e6 : 0).toFixed(1);
    // One line per connection; the name as the client sent it, escaped.
    log(
      `${formatAddress(conn.remoteAddr)} "${printable(job.name)}" ` +
        `${bytes} bytes ${elapsed.toFixed(3)} s ${rate} MB/s: ${said}`,
    );
  });
}

/** One connection's upload, as receive() learns about it. */
interface Job {
  reader: BufferedReader;
  name: string;
  upload?: Upload;
  /** Body bytes stored so far: copy() counts, the Sweeper watches. */
  received: { bytes: number };
  clock(on: boolean): void; // restarts (true) or stops the client's clock
}

/** The protocol: the header and its checks, exactly <size> bytes into a
 * temporary file, the commit that names it. The status line, or null. */
async function receive(job: Job, options: UploadServerOptions) {
  const header = await job.reader.readLine(HEADER_LIMIT)
    .catch((error: Error) => error);
  if (header instanceof LineTooLongError) {
    return `400 header line longer than ${HEADER_LIMIT} bytes`;
  }
  if (header instanceof Error) throw header;
  if (header === null) return null;
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
    job.clock(true);
    // Exactly <size> bytes (those read past the header first), in 256 KiB
    // reads while they stream (fewer file writes); what follows is not ours.
    const body = limited(job.reader, size);
    const got = await copy(body, job.upload, job.received, 256 * 1024);
    job.clock(false); // all in: flushing is our time, not the client's
    if (got < size) return `400 body ended after ${got} of ${size} bytes`;
    const stored = await job.upload.commit();
    return `200 OK ${stored.size} ${stored.sha256}`;
  } catch (error) {
    // The name exists, or another upload of it has just won the race.
    if (error instanceof FileExistsError) return `409 ${error.message}`;
    throw error; // a storage failure (500), or the client left
  }
}

if (import.meta.main) {
  await runCommand("upload_server.ts", async () => {
    const { values } = parseCommandLine(Deno.args, {
      usage: USAGE,
      options: {
        dir: { type: "string" },
        "max-size": withDefault(Number.MAX_SAFE_INTEGER),
        overwrite: { type: "boolean", default: false },
        "idle-timeout": withDefault(DEFAULT_IDLE_TIMEOUT_SECONDS),
        "min-rate": withDefault(DEFAULT_MIN_RATE),
        "max-uploads": withDefault(DEFAULT_MAX_UPLOADS),
        ...LISTEN.options,
        ...SERVER_TLS_OPTIONS,
      },
    });
    if (!values.dir) throw new UsageError("--dir DIR is required");
    const listen = await parseListen(values);
    const idle = values["idle-timeout"];
    const server = await startUploadServer({
      ...listen,
      dir: values.dir,
      maxSize: parseInteger(values["max-size"], "--max-size"),
      overwrite: values.overwrite,
      idleTimeoutSeconds: parseSeconds(idle, "--idle-timeout"),
      minRate: parseInteger(values["min-rate"], "--min-rate"),
      maxUploads: parseInteger(values["max-uploads"], "--max-uploads", 1),
    });
    return runUntilSignal(server, listen.tls ? "tls" : "tcp");
  });
}
