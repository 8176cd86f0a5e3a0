/**
 * The tutorial's Flask hello on Deno.serve, grown into a small site: a hello
 * page, a register form that shows the name back, and a file upload form.
 *
 * Run:    deno run --allow-net scripts/http_server.ts
 * Try it: curl http://127.0.0.1:8000/   (or open /register in a browser)
 * Uploads: deno run --allow-net --allow-read=./uploads --allow-write=./uploads scripts/http_server.ts --dir ./uploads
 *     and: curl -F file=@README.md http://127.0.0.1:8000/upload
 *
 * 001 §4 routes '/' to a function returning 'Hello World!' and starts the
 * server with app.run() (port 5000); here Deno.serve is the server and
 * handle() the route table. The register form posts the urlencoded body 001
 * §3 shows (username=…&password=…); its answer and the upload go beyond the
 * tutorials, to show what pages built from user input need: what a user sent
 * is HTML-escaped before it enters a page, every body is bounded in size
 * (413) and time (408), and a file gets its name only once complete.
 *
 * Read first: handle(), then upload().
 */
import { createHash } from "node:crypto";
import { STATUS_CODES } from "node:http";
import * as cli from "../lib/cli.ts";
import { describeError } from "../lib/errors.ts";
import * as store from "../lib/file_store.ts";
import { formatAddress } from "../lib/io.ts";
import * as server from "../lib/server.ts";
import { printable } from "../lib/terminal.ts";
import * as tls from "../lib/tls.ts";
import { HttpError, RequestBodies, type RequestBody } from "./http/body.ts";
import { multipartBoundary, MultipartParser } from "./http/multipart.ts";
import { mediaType, pathOf, serveHttp } from "./http/serve.ts";

export const DEFAULT_PORT = 8000;
export const DEFAULT_MAX_SIZE = 10 * 1024 * 1024;
export const DEFAULT_BODY_TIMEOUT_SECONDS = 30;
export const DEFAULT_IDLE_TIMEOUT_SECONDS = 20;
const FORM_OVERHEAD_BYTES = 64 * 1024; // multipart framing around the file
const MAX_FORM_BYTES = 64 * 1024; // the register form: two short fields

const USAGE = `Usage: http_server.ts [options]

A hello page at /, a register form at /register and an upload form at /upload;
HTTPS and HTTP/2 with --cert/--key (run with --allow-read for their files).

Options:
  --dir DIR          store uploads in DIR (run with --allow-read=DIR
                     --allow-write=DIR); without it, uploads are off (405)
  --max-size BYTES   largest file accepted, larger gets 413 (default ${DEFAULT_MAX_SIZE})
  --overwrite        replace existing files (default: refuse with 409)
  --body-timeout SECONDS
                     a request body gets SECONDS plus 1 s per KiB it
                     sends, then 408 (default ${DEFAULT_BODY_TIMEOUT_SECONDS})
  --idle-timeout SECONDS
                     cut idle or stalled connections within SECONDS by moving
                     to a new listener; busy clients reconnect (default ${DEFAULT_IDLE_TIMEOUT_SECONDS}; 0: off)
${tls.SERVER_TLS_HELP}
  --hostname HOST    address to listen on (default 127.0.0.1; 0.0.0.0 or :: to expose)
  --port PORT        port to listen on (default ${DEFAULT_PORT}; 0 picks a free port)
  -h, --help         show this help

Deno.serve cannot cap connections nor demand client certificates
(deno#26825): exposed to strangers, put a reverse proxy in front.`;

/** The command line's options; sizes in bytes, times in seconds. */
export interface HttpServerOptions {
  dir?: string; // without it, uploads are off
  hostname?: string;
  port?: number;
  maxSize?: number;
  overwrite?: boolean;
  bodyTimeout?: number;
  idleTimeout?: number; // 0: connections are never recycled
  tls?: server.ServerTls;
}

// Pages: every variable escaped, a few lines of CSS, and headers that let
// the browser run nothing but our own style (named by its hash) nor guess
// the type: a second wall, should escaping ever fail.
const STYLE =
  "body{font:1.05rem/1.5 system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;color:#222}" +
  "nav{margin-bottom:1.5rem;color:#666}h1{font-size:1.6rem;overflow-wrap:anywhere}" +
  "label{display:block;margin:.6rem 0}input,button{font:inherit}" +
  "code{background:#f2f2f2;padding:0 .2rem;overflow-wrap:anywhere}";
export const CONTENT_SECURITY_POLICY = `default-src 'none'; style-src 'sha256-${
  createHash("sha256").update(STYLE).digest("base64")
}'; form-action 'self'; frame-ancestors 'none'`;
const PAGE_HEADERS = {
  "content-type": "text/html; charset=utf-8",
  "x-content-type-options": "nosniff",
  "content-security-policy": CONTENT_SECURITY_POLICY,
};
const PAGE = { headers: PAGE_HEADERS };

export function page(title: string, content: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title}</title>
<style>${STYLE}</style>
</head>
<body>
<nav><a href="/">Home</a> · <a href="/register">Register</a> · <a href="/upload">Upload</a></nav>
${content}
</body>
</html>
`;
}

// The hello page is the hot path: a constant, short and plain on purpose
// (Deno.serve answers small bodies fastest).
const HELLO_PAGE = `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Hello</title></head>
<body>
<h1>Hello world!</h1>
<p><a href="/register">Register</a> · <a href="/upload">Upload a file</a></p>
</body>
</html>
`;
const HELLO = { headers: { "content-type": "text/html; charset=utf-8" } };

const REGISTER_PAGE = page(
  "Register",
  `<h1>Register</h1>
<form method="post" action="/register">
<p><label>User name <input name="username" required autocomplete="username"></label></p>
<p><label>Password <input name="password" type="password" autocomplete="new-password"></label></p>
<p><button>Register</button></p>
</form>
<p>A demo: nothing is stored, the answer only shows the name back.</p>`,
);

const UPLOADS_OFF = "Uploads are off: the server was started without --dir.";
const uploadForm = (maxSize: number) =>
  `<form method="post" action="/upload" enctype="multipart/form-data">
<p><input type="file" name="file" required></p>
<p><button>Upload</button></p>
</form>
<p>Up to ${maxSize} bytes. An existing name is refused unless the server
runs with --overwrite.</p>`;

/** Makes text safe to put in HTML, between tags or in a quoted attribute. */
export function escapeHtml(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;").replaceAll('"', "&quot;").replaceAll("'", "&#39;");
}

/** The page of an error. Its message may contain user input: escaped. */
function errorPage({ status, message, headers }: HttpError): Response {
  const title = `${status} ${STATUS_CODES[status]}`;
  const content = `<h1>${title}</h1>\n<p>${escapeHtml(message)}</p>`;
  const all = { ...PAGE_HEADERS, ...headers };
  return new Response(page(title, content), { status, headers: all });
}

type Settings = HttpServerOptions & {
  maxSize: number;
  bodies: RequestBodies;
  log: (line: string) => void;
};

/** Starts serving; with `dir`, prepares it for uploads first. */
export async function startHttpServer(
  options: HttpServerOptions = {},
): Promise<server.ServerHandle> {
  const { dir } = options;
  if (dir !== undefined) await store.prepareUploadDir(dir);
  const log = server.rateLimitedLog();
  const bodyTimeout = options.bodyTimeout ?? DEFAULT_BODY_TIMEOUT_SECONDS;
  const settings: Settings = {
    ...options,
    maxSize: options.maxSize ?? DEFAULT_MAX_SIZE,
    bodies: new RequestBodies(bodyTimeout * 1000),
    log,
  };
  const form = dir ? uploadForm(settings.maxSize) : `<p>${UPLOADS_OFF}</p>`;
  const uploadPage = page("Upload", `<h1>Upload a file</h1>\n${form}`);

  // The route table. Pages are answered synchronously, which Deno.serve
  // does fastest; the rest (forms, 404, 405) goes to withBody().
  function handle(request: Request, info: Deno.ServeHandlerInfo) {
    const path = pathOf(request.url);
    if (request.method === "GET" || request.method === "HEAD") {
      if (path === "/") return new Response(HELLO_PAGE, HELLO);
      if (path === "/register") return new Response(REGISTER_PAGE, PAGE);
      if (path === "/upload") return new Response(uploadPage, PAGE);
    }
    return withBody(request, path, settings, formatAddress(info.remoteAddr));
  }

  return serveHttp({
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port ?? DEFAULT_PORT,
    tls: options.tls,
    recycleMs: (options.idleTimeout ?? DEFAULT_IDLE_TIMEOUT_SECONDS) * 1000,
    busy: () => settings.bodies.open.size > 0,
    onShutdown: () => settings.bodies.close(),
    onError(error) {
      log(`request failed: ${(error as Error)?.stack ?? error}`);
      const message = "The server failed to handle this request.";
      return errorPage(new HttpError(500, message));
    },
  }, handle);
}

/** Routes what may carry a body; an HttpError thrown becomes its page. */
async function withBody(
  request: Request,
  path: string,
  settings: Settings,
  peer: string,
): Promise<Response> {
  const body = settings.bodies.read(request);
  try {
    if (path !== "/" && path !== "/register" && path !== "/upload") {
      throw new HttpError(404, `Nothing here: ${path}`);
    }
    if (path === "/") throw notAllowed("GET, HEAD");
    if (request.method !== "POST") throw notAllowed("GET, HEAD, POST");
    if (path === "/register") return await register(request, body);
    if (settings.dir === undefined) throw notAllowed("GET, HEAD", UPLOADS_OFF);
    return await upload(request, body, settings, peer);
  } catch (error) {
    if (error instanceof HttpError) return errorPage(error);
    throw error;
  } finally {
    body.finish();
  }
}

function notAllowed(allow: string, why = `Allowed methods: ${allow}.`) {
  return new HttpError(405, why, { allow });
}

/** /register: an urlencoded form; the answer shows the name, escaped. */
async function register(request: Request, body: RequestBody) {
  const urlencoded = "application/x-www-form-urlencoded";
  if (mediaType(request) !== urlencoded) {
    throw new HttpError(415, `Send the form as ${urlencoded}.`);
  }
  const form = new URLSearchParams(await body.text(MAX_FORM_BYTES));
  const username = form.get("username")?.trim() ?? "";
  if (username === "") throw new HttpError(400, "The user name is missing.");
  // The password is deliberately neither shown nor stored: this is a demo.
  const content = `<h1>Welcome, ${escapeHtml(username)}!</h1>
<p>This is a demo: nothing was stored. The name is shown back escaped
(markup appears as text, it never runs); the password is ignored.</p>`;
  return new Response(page("Registered", content), PAGE);
}

/**
 * /upload: a multipart/form-data body, streamed part by part to a temporary
 * file, never held in memory whole.
 */
async function upload(
  request: Request,
  body: RequestBody,
  settings: Settings,
  peer: string,
): Promise<Response> {
  const boundary = multipartBoundary(request.headers.get("content-type"));
  if (boundary === null) throw new HttpError(415, "Send multipart/form-data.");
  const tooLarge = `The file is larger than ${settings.maxSize} bytes.`;
  body.limit(settings.maxSize + FORM_OVERHEAD_BYTES, tooLarge);
  // A storage failure is ours: a 500 that says which, and a log line.
  const failed = (name: string) => (error: unknown): never => {
    if (error instanceof store.FileExistsError) {
      throw new HttpError(409, `${error.message}; choose another name.`);
    }
    if (error instanceof store.UnsafeNameError) {
      throw new HttpError(400, error.message);
    }
    const reason = `storage failure: ${describeError(error)}`;
    settings.log(`${peer} upload "${printable(name)}": ${reason}`);
    throw new HttpError(500, `The file could not be stored (${reason}).`);
  };
  const parser = new MultipartParser(boundary);
  let file: store.Upload | null = null;
  let inFilePart = false;
  try {
    while (!parser.finished) {
      const chunk = await body.read();
      if (chunk === null) throw new HttpError(400, "The form ended early.");
      for (const event of parser.feed(chunk)) {
        if (event.kind === "data") {
          if (!inFilePart) continue; // other fields: read and ignored
          if (file!.size + event.bytes.length > settings.maxSize) {
            throw new HttpError(413, tooLarge);
          }
          await file!.write(event.bytes).catch(failed(file!.name));
          continue;
        }
        inFilePart = event.name === "file" && event.filename !== null;
        if (!inFilePart) continue;
        if (file) throw new HttpError(400, "Send one file per request.");
        // The name is checked (400), the temporary file made (409 if taken).
        const name = event.filename!;
        file = await store.createUpload(settings.dir!, name, settings)
          .catch(failed(name));
      }
    }
    // What follows the last delimiter (usually "\r\n") is read and dropped,
    // so the connection can carry the next request.
    while (await body.read() !== null);
    if (!file) throw new HttpError(400, "The form has no field 'file'.");
    const stored = await file.commit().catch(failed(file.name));
    const content = `<h1>Uploaded</h1>
<p>Stored <code>${escapeHtml(stored.name)}</code>: ${stored.size} bytes,
sha256 <code>${stored.sha256}</code>.</p>`;
    return new Response(page("Uploaded", content), PAGE);
  } finally {
    // Not committed (error, early end, shutdown): the temporary file goes.
    await file?.abort();
  }
}

if (import.meta.main) {
  await cli.runCommand("http_server.ts", async () => {
    const { values } = cli.parseCommandLine(Deno.args, {
      usage: USAGE,
      options: {
        ...tls.SERVER_TLS_OPTIONS,
        dir: { type: "string" },
        "max-size": cli.withDefault(DEFAULT_MAX_SIZE),
        overwrite: { type: "boolean", default: false },
        "body-timeout": cli.withDefault(DEFAULT_BODY_TIMEOUT_SECONDS),
        "idle-timeout": cli.withDefault(DEFAULT_IDLE_TIMEOUT_SECONDS),
        hostname: cli.withDefault("127.0.0.1"),
        port: cli.withDefault(DEFAULT_PORT),
      },
    });
    if (values.dir === "") throw new cli.UsageError("--dir needs a directory");
    const seconds = (name: "body-timeout" | "idle-timeout", zero = false) =>
      cli.parseSeconds(values[name], `--${name}`, zero);
    const certificate = await tls.loadServerTls(values);
    const site = await startHttpServer({
      dir: values.dir,
      hostname: values.hostname,
      port: cli.parsePort(values.port),
      maxSize: cli.parseInteger(values["max-size"], "--max-size"),
      overwrite: values.overwrite,
      bodyTimeout: seconds("body-timeout"),
      idleTimeout: seconds("idle-timeout", true),
      tls: certificate,
    });
    return server.runUntilSignal(site, certificate ? "https" : "http");
  });
}
