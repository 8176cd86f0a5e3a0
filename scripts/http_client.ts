/**
 * HTTP/1.1 client spoken by hand over a TCP socket (TLS for https): writes the
 * request, reads the status line and headers, and streams the body however
 * the server frames it.
 *
 * Run:    deno run --allow-net scripts/http_client.ts http://127.0.0.1:8000/
 *         deno run --allow-net --allow-write=page.html scripts/http_client.ts -o page.html http://127.0.0.1:8000/
 *         deno run --allow-net --allow-read=certs scripts/http_client.ts --cacert certs/ca.pem https://localhost:8443/
 * Try it: python3 -m http.server 8000 --bind 127.0.0.1   (then the first Run line)
 *         deno run --allow-net scripts/http_client.ts -v --data username=ada http://127.0.0.1:8000/register
 *
 * 003 §TCP编程's client sends its GET, recv()s until the server closes, splits
 * the bytes at the first "\r\n\r\n" and writes the rest to a file ('wb'). That
 * saves a 404 page as happily as the real one, keeps the chunk-size lines of
 * a chunked answer inside the "page", and waits for ever on a silent server.
 * 001 §3 shows the GET and POST formats (`-v` prints ours), links found with
 * BeautifulSoup (`--links`) and requests' proxies with user:pass (`--proxy`).
 *
 * Read first: bodyReaderFor(), where the response says where its body ends.
 */
import { parseCommandLine, parseSeconds, runCommand } from "../lib/cli.ts";
import { describeError, Failure, UsageError } from "../lib/errors.ts";
import * as http1 from "../lib/http1.ts";
import { type HeaderList, HttpError } from "../lib/http1.ts";
import { concat, writeAll, type Writer } from "../lib/io.ts";
import { BufferedReader } from "../lib/reader.ts";
import { printable } from "../lib/terminal.ts";
import { type ClientTls, loadClientTls } from "../lib/tls.ts";
import * as connect from "./http/connect.ts";
import { type BodyReader, ChunkedBody, PlainBody } from "./http/response.ts";
import { readFinalHead, redirectOf } from "./http/response.ts";
import type { ResponseHead } from "./http/response.ts";
import { collectLinks } from "./html_links.ts";

const USER_AGENT = "deno-network-examples/1.0";
/** Largest status line plus headers we accept (and likewise for trailers). */
export const MAX_HEAD_BYTES = 64 * 1024;
export const MAX_REDIRECTS = 5;
const DEFAULT_TIMEOUT_SECONDS = 30;

const USAGE = `Usage: http_client.ts [options] URL

Fetches URL (http:// or https://) over a hand-written HTTP/1.1 connection and
writes the body to stdout. Exits 1 on a 4xx/5xx answer (the body is still
written, the status line goes to stderr) and on network or protocol errors.

Options:
  -i, --include        also print the response head (to stdout, as received)
  -v, --verbose        show the heads sent (> ) and received (< ) on stderr
  -I, --head           send a HEAD request and print the headers only
  -o, --output FILE    save the body to FILE (created once an answer arrived)
  --data NAME=VALUE    send a form POST (urlencoded); repeat for more fields
  -L, --location       follow redirects (up to ${MAX_REDIRECTS})
  --proxy URL          use an HTTP proxy, http://[user:pass@]host:port
  --links              the page's links (absolute), not the page (-o: to FILE)
  --cacert FILE        also trust the CA certificate(s) in this PEM file
  --client-cert FILE   present this PEM certificate (not through --proxy)
  --client-key FILE    the PEM private key for --client-cert
  --timeout SECONDS    bound on connecting and on each wait (default ${DEFAULT_TIMEOUT_SECONDS})
  -h, --help           show this help`;

/**
 * Picks the body framing of a response to `method` (RFC 9112 §6.3). This,
 * not splitting at "\r\n\r\n" and reading to the end, is what lets a body
 * be binary, chunked, or followed by more on the same connection.
 */
export function bodyReaderFor(
  head: ResponseHead,
  method: string,
  reader: BufferedReader,
): BodyReader {
  // 1. Some answers have no body, whatever their headers say.
  const { status, headers } = head;
  if (method === "HEAD" || status < 200 || status === 204 || status === 304) {
    return new PlainBody(reader, 0);
  }
  // 2. Transfer-Encoding beats Content-Length (both at once may be a
  //    smuggling attempt; we close the connection after this response
  //    anyway). If chunked is not the last coding, only the close ends it.
  const codings = http1.headerValues(headers, "transfer-encoding");
  if (codings.length > 0) {
    return codings.at(-1)!.toLowerCase() === "chunked"
      ? new ChunkedBody(reader, MAX_HEAD_BYTES)
      : new PlainBody(reader, null);
  }
  // 3. Content-Length: digits, and every copy of it the same.
  let length = -1;
  for (const [name, value] of headers) {
    if (name.toLowerCase() !== "content-length") continue;
    const bytes = http1.encodeLatin1(value);
    length = http1.parseContentLength(bytes, 0, bytes.length, length);
    if (length < 0) {
      throw new HttpError(`invalid Content-Length: '${printable(value)}'`);
    }
  }
  // 4. Neither: the body is whatever comes until the server closes.
  return new PlainBody(reader, length < 0 ? null : length);
}

/**
 * The request head: request line, our fixed headers, the blank line (001
 * §3's formats; `-v` shows it). The target is the path and query, never the
 * #fragment; through a proxy, the whole URL (absolute form).
 */
export function buildRequestHead(
  url: URL,
  method: string,
  options: {
    body?: Uint8Array;
    contentType?: string;
    viaProxy?: boolean;
    proxyAuthorization?: string;
  },
): string {
  const { body, contentType, viaProxy, proxyAuthorization } = options;
  const path = `${url.pathname}${url.search}`;
  const lines = [
    `${method} ${viaProxy ? url.origin + path : path} HTTP/1.1`,
    `Host: ${url.host}`, // with the port only when it is not the default
    `User-Agent: ${USER_AGENT}`,
    "Accept: */*",
    // One request per connection: its end is then a safe end for a body
    // that has no length.
    "Connection: close",
  ];
  if (proxyAuthorization) {
    lines.splice(2, 0, `Proxy-Authorization: ${proxyAuthorization}`);
  }
  if (body !== undefined) {
    if (contentType) lines.push(`Content-Type: ${contentType}`);
    lines.push(`Content-Length: ${body.length}`);
  }
  return lines.join("\r\n") + "\r\n\r\n";
}

export interface FetchOptions {
  method?: string; // default GET
  body?: Uint8Array; // sent with Content-Length
  contentType?: string;
  maxRedirects?: number; // 0 (default): a 3xx is returned as is
  proxy?: string | URL; // http://[user:pass@]host:port
  tls?: ClientTls; // for https: CAs trusted besides the system's, serverName…
  timeoutSeconds?: number; // for connecting and each wait (default 30)
  maxHeadBytes?: number; // status line plus headers (default 64 KiB)
  /** Called with each request head as sent, each final response head. */
  onRequestHead?: (head: string, url: URL) => void | Promise<void>;
  onResponseHead?: (head: ResponseHead, url: URL) => unknown;
}

export interface HttpResponse {
  url: URL; // the one that answered, after redirects
  head: ResponseHead;
  status: number;
  headers: HeaderList;
  body: BodyReader; // framed: read() returns null at its end
  close(): void; // closes the connection; safe to call twice
  [Symbol.dispose](): void;
}

/**
 * Fetches `url`: a connection per request, the request written, the head of
 * the answer read; returns with the body framed but not read (close the
 * response when done). With `maxRedirects`, follows 301/302/303 (as GET,
 * as browsers do for POST) and 307/308 (same method and body).
 */
export async function fetchWithSocket(
  url: string | URL,
  options: FetchOptions = {},
): Promise<HttpResponse> {
  let current = connect.parseHttpUrl(url);
  let { method = "GET", body, contentType } = options;
  const proxy = options.proxy ? connect.parseProxy(options.proxy) : undefined;
  const maxHead = options.maxHeadBytes ?? MAX_HEAD_BYTES;
  const maxRedirects = options.maxRedirects ?? 0;
  for (let redirects = 0;; redirects++) {
    const connection = await connect.connectFor(current, {
      proxy,
      tls: options.tls ?? {},
      timeoutMs: (options.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS) * 1000,
      agent: USER_AGENT,
    });
    const close = () => connection.close();
    let head: ResponseHead, framed: BodyReader;
    try {
      const viaProxy = proxy !== undefined && current.protocol === "http:";
      const request = buildRequestHead(current, method, {
        body,
        contentType,
        viaProxy,
        proxyAuthorization: viaProxy ? connect.proxyAuthorization(proxy) : "",
      });
      await options.onRequestHead?.(request, current);
      // Head and body in one write: one packet for a small form.
      const sent = http1.encodeLatin1(request);
      await writeAll(connection, concat(body ? [sent, body] : [sent]));
      const reader = new BufferedReader(connection, { maxLine: maxHead });
      head = await readFinalHead(reader, maxHead);
      await options.onResponseHead?.(head, current);
      framed = bodyReaderFor(head, method, reader);
    } catch (error) {
      close();
      throw error;
    }
    const redirect = maxRedirects
      ? redirectOf(head, current, method)
      : undefined;
    const response = { ...head, url: current, head, body: framed, close };
    if (!redirect) return { ...response, [Symbol.dispose]: close };
    close(); // Connection: close, so there is nothing to reuse
    if (redirects === maxRedirects) {
      throw new HttpError(`too many redirects (more than ${maxRedirects})`);
    }
    if (!redirect.keepsBody) [body, contentType] = [undefined, undefined];
    ({ url: current, method } = redirect);
  }
}

/** The form fields of --data NAME=VALUE, urlencoded like an HTML form. */
export function encodeForm(fields: string[]): Uint8Array {
  const form = new URLSearchParams();
  for (const field of fields) {
    const equals = field.indexOf("=");
    if (equals <= 0) {
      throw new UsageError(`--data must look like NAME=VALUE, got '${field}'`);
    }
    form.append(field.slice(0, equals), field.slice(equals + 1));
  }
  return new TextEncoder().encode(form.toString());
}

/** Writes all of `bytes` to stdout or the -o file: a failure there is ours. */
async function put(sink: Writer, bytes: Uint8Array, name = "stdout") {
  try {
    await writeAll(sink, bytes);
  } catch (error) {
    const reason = error instanceof Deno.errors.BrokenPipe
      ? "it was closed"
      : describeError(error);
    throw new Failure(`cannot write to ${name}: ${reason}`);
  }
}

/** -v: a head as curl -v shows it, each line after "> " (sent) or "< ". */
function show(mark: string, lines: string[]) {
  const shown = lines.map((line) => `${mark} ${printable(line, 1000)}`);
  console.error(shown.join("\n").replace(/ $/gm, ""));
}

async function main(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(args, {
    usage: USAGE,
    positionals: true,
    options: {
      include: { type: "boolean", short: "i" },
      verbose: { type: "boolean", short: "v" },
      head: { type: "boolean", short: "I" },
      output: { type: "string", short: "o" },
      data: { type: "string", multiple: true },
      location: { type: "boolean", short: "L" },
      proxy: { type: "string" },
      links: { type: "boolean" },
      cacert: { type: "string" },
      "client-cert": { type: "string" },
      "client-key": { type: "string" },
      timeout: { type: "string", default: String(DEFAULT_TIMEOUT_SECONDS) },
    },
  });
  if (positionals.length !== 1) {
    throw new UsageError(
      positionals.length ? "give exactly one URL" : "missing URL",
    );
  }
  const url = connect.parseHttpUrl(positionals[0]);
  if (values.head && values.data) {
    throw new UsageError("--head and --data cannot be used together");
  }
  const timeoutSeconds = parseSeconds(values.timeout, "--timeout");
  const body = values.data ? encodeForm(values.data) : undefined;
  const response = await fetchWithSocket(url, {
    method: values.head ? "HEAD" : body ? "POST" : "GET",
    body,
    contentType: body ? "application/x-www-form-urlencoded" : undefined,
    maxRedirects: values.location ? MAX_REDIRECTS : 0,
    proxy: values.proxy,
    tls: await loadClientTls(values),
    timeoutSeconds,
    onRequestHead(head) {
      // 001 §3's POST format: the head, a blank line, then the form.
      const form = body ? [http1.latin1(body)] : [];
      if (values.verbose) {
        show(">", [...head.split("\r\n").slice(0, -1), ...form]);
      }
    },
    async onResponseHead(head) {
      if (values.verbose) show("<", [...head.lines, ""]);
      // -i: the head is data, written as received, like curl -i; the
      // grammar let no control byte into it, so no terminal escape either.
      const text = head.lines.join("\r\n") + "\r\n\r\n";
      if (values.include || values.head) {
        await put(Deno.stdout, http1.encodeLatin1(text));
      }
    },
  });
  let file: Deno.FsFile | undefined;
  try {
    // The file is created only now that there is an answer to put in it.
    if (values.output !== undefined) {
      const flags = { create: true, write: true, truncate: true };
      file = await Deno.open(values.output, flags).catch((error) => {
        const reason = describeError(error);
        throw new Failure(`cannot write ${values.output}: ${reason}`);
      });
    }
    // --links: 001 §3's BeautifulSoup step, with a real HTML tokenizer.
    const type = http1.headerValues(response.headers, "content-type")[0];
    const charset = /;\s*charset="?([^";\s]+)/i.exec(type ?? "")?.[1];
    const links = values.links && await collectLinks(response.url, charset);
    const out = file ?? Deno.stdout; // the links (--links) or else the page
    const sink = links || out;
    // Stream: one reused buffer, never the whole body in memory.
    const buffer = new Uint8Array(64 * 1024);
    for (let count; (count = await response.body.read(buffer)) !== null;) {
      await put(sink, buffer.subarray(0, count), values.output);
    }
    const lines = links && links.end().map((link) => link + "\n").join("");
    if (lines) await put(out, new TextEncoder().encode(lines), values.output);
  } finally {
    file?.close();
    response.close();
  }
  if (response.status < 400) return 0;
  // Like curl --fail-with-body: the body (often an explanation) has been
  // written; the exit code and stderr say it was an error.
  const statusLine = printable(response.head.statusLine);
  console.error(`http_client.ts: ${response.url.href} answered ${statusLine}`);
  return 1;
}

if (import.meta.main) {
  await runCommand("http_client.ts", () => main(Deno.args));
}
