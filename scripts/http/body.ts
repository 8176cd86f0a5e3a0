// Request bodies read within limits, for http_server.ts. Deno.serve hands a
// handler the body as a stream with no deadline, and after an early answer
// reads the rest itself, however slowly it comes. RequestBody reads a body
// within a size limit and a deadline that grows with what arrives, so a
// trickle is cut off like a stall; after an early answer it keeps reading a
// moment (Deno then sends `connection: close`), and dropping it closes the
// connection instead of reading the rest. Its HttpError is how the script
// and ./multipart.ts say "answer with this status".
// Part of the HTTP chapter: run scripts/http_server.ts.
import { raceTimeout, seconds } from "../../lib/deadline.ts";
import { Sweeper, type Timed, TIMED_OUT } from "../../lib/deadline.ts";

/**
 * An error answer: thrown anywhere in a handler, the server answers it with
 * its status and message. RequestBody throws 413 (too large), 408 (too
 * slow), 400 (malformed) and 503 (the server is closing).
 */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

const MIN_BYTES_PER_SECOND = 1024; // once the first --body-timeout is spent
// After an early answer, how long and how much we read before closing.
const LINGER_MS = 2000, LINGER_BYTES = 1024 * 1024;

/** The request bodies of one server: one deadline rule, one timer. */
export class RequestBodies {
  readonly sweeper: Sweeper;
  readonly open = new Set<RequestBody>();
  closing = false;

  /** A body gets `timeoutMs`, plus one second per KiB it brings. */
  constructor(readonly timeoutMs: number) {
    this.sweeper = Sweeper.forTimeout(timeoutMs);
  }

  read(request: Request): RequestBody {
    return new RequestBody(request, this);
  }

  /** The server is closing: bodies still being read fail with 503. */
  close() {
    this.closing = true;
    for (const body of this.open) {
      body.fail(new HttpError(503, "The server is shutting down."));
    }
  }
}

/** One request's body, read within its limits; finish() it in a finally. */
export class RequestBody {
  #reader: ReadableStreamDefaultReader<Uint8Array> | null;
  #declared: number;
  #started = Date.now();
  #received = 0;
  #limit = Infinity;
  #tooLarge = "";
  #done = false;
  #failed: HttpError | null = null;
  #stop: ((error: HttpError) => void) | null = null; // rejects the read
  #deadline: Timed | null = null;

  constructor(request: Request, readonly bodies: RequestBodies) {
    this.#declared = Number(request.headers.get("content-length") ?? 0);
    this.#reader = request.body?.getReader() ?? null;
    if (this.#reader === null) return;
    bodies.open.add(this);
    const { timeoutMs } = bodies;
    this.#deadline = bodies.sweeper.add(timeoutMs, () => {
      const rule = `${seconds(timeoutMs)} plus 1 s per KiB it sends`;
      this.fail(new HttpError(408, `Too slow: a request body gets ${rule}.`));
    });
  }

  /** Refuses a body over `bytes` with 413 and `message`: now if declared. */
  limit(bytes: number, message: string) {
    [this.#limit, this.#tooLarge] = [bytes, message];
    if (this.#declared > bytes) throw new HttpError(413, message);
  }

  /** The next chunk, or null at the end of the body. */
  async read(): Promise<Uint8Array | null> {
    if (this.#failed) throw this.#failed;
    if (this.#done || this.#reader === null) return null;
    const reader = this.#reader;
    const result = await new Promise<ReadableStreamReadResult<Uint8Array>>(
      (resolve, reject) => {
        this.#stop = reject;
        // A bad chunk size, or the client went away.
        const broken = "The request body is malformed or cut short.";
        reader.read().then(resolve, () => reject(new HttpError(400, broken)));
      },
    ).finally(() => this.#stop = null);
    if (result.done) {
      this.#done = true;
      return null;
    }
    this.#received += result.value.length;
    if (this.#received > this.#limit) throw new HttpError(413, this.#tooLarge);
    // The deadline moves with what arrived, not with each read.
    this.#deadline!.at = this.#started + this.bodies.timeoutMs +
      this.#received * 1000 / MIN_BYTES_PER_SECOND;
    return result.value;
  }

  /** The whole body as UTF-8 text, at most `limit` bytes (small forms). */
  async text(limit: number): Promise<string> {
    this.limit(limit, `The body is larger than ${limit} bytes.`);
    const decoder = new TextDecoder();
    let text = "";
    for (let chunk; (chunk = await this.read()) !== null;) {
      text += decoder.decode(chunk, { stream: true });
    }
    return text + decoder.decode();
  }

  /** Makes the read in progress, and every later one, throw `error`. */
  fail(error: HttpError) {
    this.#failed ??= error;
    this.#stop?.(this.#failed);
  }

  /**
   * Done with the body. Not read to its end, it is read (and dropped) for
   * a moment longer, so that a client still sending gets to read our answer
   * rather than a reset; then it is let go, which closes the connection.
   */
  finish() {
    if (this.#deadline) this.bodies.sweeper.remove(this.#deadline);
    this.bodies.open.delete(this);
    if (this.#done || this.#reader === null) return;
    this.#done = true;
    void linger(this.#reader, this.bodies.closing ? 0 : LINGER_MS);
  }
}

async function linger(reader: ReadableStreamDefaultReader, ms: number) {
  const until = Date.now() + ms;
  try {
    for (let bytes = 0; bytes < LINGER_BYTES;) {
      const left = Math.max(0, until - Date.now());
      const result = await raceTimeout(reader.read(), left);
      if (result === TIMED_OUT || result.done) break;
      bytes += result.value.length;
    }
  } catch { /* the client is gone */ }
  await reader.cancel().catch(() => {});
}
