// What Deno.serve lacks as a server, for http_server.ts. Deno 2.9's
// Deno.serve has no timeout for a connection that is idle or slow to send a
// request (deno#3515) and cannot close one connection; its accept loop ends
// at the first accept error (out of descriptors: the server is gone); and
// its graceful shutdown() cancels HTTP/1.1 bodies still being read. So
// serveHttp() runs Deno.serve in generations. When one dies, a new one takes
// the port as soon as descriptors allow. With `recycleMs`, a new one takes
// over that often and the old one is aborted at a moment when no body is
// being read, which closes its idle, slow and lingering connections. The
// price: busy keep-alive clients are cut between requests too, and
// reconnect (a request racing the cut fails). And HEAD: Deno.serve drops
// the body of a HEAD answer over HTTP/1.1 but sends it over HTTP/2, where
// curl and browsers call it a protocol error; headless() strips it.
// Request bodies: ./body.ts.
// Part of the HTTP chapter: run scripts/http_server.ts.
import { sleep } from "../../lib/deadline.ts";
import { describeError } from "../../lib/errors.ts";
import { rateLimitedLog, serverHandle } from "../../lib/server.ts";
import type { ServerHandle, ServerTls } from "../../lib/server.ts";

export interface HttpServeOptions {
  hostname: string;
  port: number;
  tls?: ServerTls; // HTTPS, and HTTP/2 by ALPN
  recycleMs?: number; // a new listener takes over this often (0: never)
  busy?: () => boolean; // while true (a body is being read), no cutting
  onError?: (error: unknown) => Response | Promise<Response>;
  onShutdown?: () => void; // once, when close() begins
  log?: (line: string) => void; // listener failures, at most once a second
}

const GRACE_MS = 1000; // how long close() waits for requests in flight

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
    const { hostname, tls, onError } = options;
    const http = Deno.serve(
      {
        ...{ hostname, port, signal: stop.signal, onError, onListen() {} },
        ...(tls && { cert: tls.cert, key: tls.key }),
      },
      (request, info) =>
        request.method === "HEAD"
          ? Promise.resolve(handler(request, info)).then(headless)
          : handler(request, info),
    );
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

/** The answer to a HEAD: the same status and headers, its length, no body. */
async function headless(response: Response): Promise<Response> {
  const length = response.body ? (await response.arrayBuffer()).byteLength : 0;
  const headers = new Headers(response.headers);
  headers.set("content-length", String(length));
  return new Response(null, { status: response.status, headers });
}
