// What Deno.serve lacks, for http_server.ts (any Deno.serve server here may
// use it). Deno 2.9's Deno.serve has no timeout for a connection that is idle
// or slow to send a request (deno#3515) and cannot close one connection; its
// accept loop ends at the first accept error (out of descriptors, and the
// server is gone); after an early answer it reads the rest of the body
// itself, however slowly it comes; and its graceful shutdown() cancels the
// HTTP/1.1 bodies still being read. So:
//
// - serveHttp() runs Deno.serve in generations. When one dies, a new one
//   takes the port as soon as descriptors allow. With `recycleMs`, a new one
//   takes over that often: the old one is aborted at a moment when no body
//   is being read, which closes its idle, slow and lingering connections.
//   The price: busy keep-alive clients are cut between requests too, and
//   reconnect (a request racing the cut fails).
// - RequestBody reads a body within a size limit and a deadline that grows
//   with what arrives, so a trickle is cut off like a stall. After an early
//   answer it keeps the body a moment (Deno then sends `connection: close`),
//   and dropping it closes the connection instead of reading the rest.
import {
  raceTimeout,
  seconds,
  sleep,
  Sweeper,
  type Timed,
  TIMED_OUT,
} from "./deadline.ts";
import { describeError } from "./errors.ts";
import {
  rateLimitedLog,
  type ServerHandle,
  serverHandle,
  type ServerTls,
} from "./server.ts";

export interface HttpServeOptions {
  hostname: string;
  port: number;
  /** With a certificate: HTTPS, and HTTP/2 by ALPN. */
  tls?: ServerTls;
  /** A new listener takes over the port this often (default 0: never). */
  recycleMs?: number;
  /** While this says so (a request body is being read), no cutting. */
  busy?: () => boolean;
  onError?: (error: unknown) => Response | Promise<Response>;
  /** Called once when close() begins. */
  onShutdown?: () => void;
  /** Where listener failures are logged, at most once a second. */
  log?: (line: string) => void;
}

/** How long close() waits for requests in flight. */
const GRACE_MS = 1000;

interface Generation {
  http: Deno.HttpServer<Deno.NetAddr>;
  stop: AbortController;
}

/** Deno.serve in generations: see the top of this file. */
export function serveHttp(
  options: HttpServeOptions,
  handler: Deno.ServeHandler<Deno.NetAddr>,
): ServerHandle {
  const log = rateLimitedLog(options.log);
  const busy = options.busy ?? (() => false);
  const closing = new AbortController();
  const closed = () => closing.signal.aborted;
  const dead = new Set<Generation>(); // no listener, still serving

  // Resolves once nothing is busy at two looks 100 ms apart (an answer
  // just handed to Deno is on the wire by then), or once `enough`.
  const calm = async (enough: () => boolean, signal?: AbortSignal) => {
    for (let looks = busy() ? 0 : 1; looks < 2 && !enough();) {
      await sleep(100, signal);
      looks = busy() ? 0 : looks + 1;
    }
  };
  // Cuts every connection of a generation. (shutdown() would cancel the
  // uploads, keep lingering clients, and could not be followed by this.)
  const cut = ({ http, stop }: Generation) => {
    stop.abort();
    return http.finished.catch(() => {});
  };

  const listen = (port: number): Generation => {
    const stop = new AbortController();
    const http = Deno.serve({
      hostname: options.hostname,
      port,
      ...(options.tls && { cert: options.tls.cert, key: options.tls.key }),
      signal: stop.signal,
      onListen() {},
      onError: options.onError,
    }, handler);
    const generation = { http, stop };
    http.finished.catch((error) => {
      if (stop.signal.aborted || closed()) return;
      log(`listener failed (${describeError(error)}); listening again`);
      dead.add(generation);
      calm(closed, closing.signal).then(() => {
        if (!closed()) cut(generation);
      });
      if (generation === current) swap();
    });
    return generation;
  };
  let current = listen(options.port);
  const { port } = current.http.addr;

  // A new listener for the old one, once the old one has let go of the port
  // (cut when calm, or died) and descriptors are there to be had.
  let swapping: Promise<void> | undefined;
  const swap = () =>
    swapping ??= (async () => {
      const old = current;
      await calm(() => dead.has(old) || closed(), closing.signal);
      if (!dead.has(old) && !closed()) await cut(old);
      for (let wait = 1; !closed(); wait = Math.min(wait * 4, 1000)) {
        try {
          current = listen(port);
          return;
        } catch (error) {
          if (wait === 1000) log(`cannot listen: ${describeError(error)}`);
        }
        await sleep(wait, closing.signal);
      }
    })().finally(() => swapping = undefined);
  const recycling = options.recycleMs
    ? setInterval(swap, options.recycleMs)
    : undefined;

  let stopped!: () => void;
  const running = new Promise<void>((resolve) => stopped = resolve);
  return serverHandle(current.http.addr, running, async () => {
    closing.abort();
    clearInterval(recycling);
    await swapping;
    options.onShutdown?.();
    // Requests in flight get a moment to finish; then everything is cut.
    const deadline = Date.now() + GRACE_MS;
    await calm(() => Date.now() > deadline);
    await Promise.all([current, ...dead].map(cut));
    stopped();
  });
}

/** The path of a request URL ("http://host:port/a?b" → "/a"), cheaply. */
export function pathOf(url: string): string {
  const start = url.indexOf("/", url.indexOf("://") + 3);
  if (start < 0) return "/";
  const query = url.indexOf("?", start);
  return query < 0 ? url.slice(start) : url.slice(start, query);
}

/** The request's Content-Type without parameters, in lower case. */
export function mediaType(request: Request): string {
  const type = request.headers.get("content-type") ?? "";
  return type.split(";")[0].trim().toLowerCase();
}

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

/** The slowest a body may average once its first --body-timeout is spent. */
const MIN_BYTES_PER_SECOND = 1024;
/** After an early answer, how long and how much we read before closing. */
const LINGER_MS = 2000;
const LINGER_BYTES = 1024 * 1024;

/** The request bodies of one server: one deadline rule, one timer. */
export class RequestBodies {
  readonly sweeper: Sweeper;
  readonly open = new Set<RequestBody>();
  closing = false;

  /** A body gets `timeoutMs`, plus one second per KiB it brings. */
  constructor(readonly timeoutMs: number) {
    this.sweeper = new Sweeper(Math.min(1000, timeoutMs / 4));
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
  #stop: ((error: HttpError) => void) | null = null;
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
  } catch {
    // The client is gone.
  }
  await reader.cancel().catch(() => {});
}
