import assert from "node:assert/strict";
import { startHttpRawServer } from "../scripts/http_raw_server.ts";
import { fetchWithSocket } from "../scripts/http_client.ts";
import {
  hasCommand,
  makeTestCerts,
  readAll,
  runScript,
  runTool,
  runWrk,
  skipBecause,
  startScript,
  within,
} from "./helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const HELLO_PAGE = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Hello</title>
<style>body{font:1.05rem/1.5 system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;color:#222}</style>
</head>
<body>
<h1>Hello world!</h1>
<p>Served by http_raw_server.ts: HTTP/1.1 parsed by hand from a TCP socket.</p>
</body>
</html>
`;

// Every Date header is replaced by this before comparing, after checking it
// is an IMF-fixdate within a few seconds of now.
const DATE = "Date: <date>\r\n";

function checkDates(text: string): string {
  return text.replace(/Date: ([^\r\n]*)\r\n/g, (_, value: string) => {
    assert.match(
      value,
      /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$/,
    );
    assert.ok(Math.abs(Date.parse(value) - Date.now()) < 5000, value);
    return DATE;
  });
}

function response(
  status: string,
  type: "html" | "text",
  body: string,
  options: { extra?: string; connection?: string; head?: boolean } = {},
): string {
  const contentType = type === "html"
    ? "text/html; charset=utf-8"
    : "text/plain; charset=utf-8";
  return `HTTP/1.1 ${status}\r\n` +
    "Server: http_raw_server.ts\r\n" +
    DATE +
    `Content-Type: ${contentType}\r\n` +
    `Content-Length: ${encoder.encode(body).length}\r\n` +
    (options.extra ?? "") +
    (options.connection ? `Connection: ${options.connection}\r\n` : "") +
    "\r\n" + (options.head ? "" : body);
}

const HELLO = response("200 OK", "html", HELLO_PAGE);
const NOT_FOUND = response("404 Not Found", "text", "Not Found\n");
const BAD_REQUEST = response("400 Bad Request", "text", "Bad Request\n", {
  connection: "close",
});

/** Reads until `length` bytes (the Date header has a fixed length) arrived. */
async function readBytes(conn: Deno.Conn, length: number): Promise<string> {
  const buffer = new Uint8Array(64 * 1024);
  const chunks: Uint8Array[] = [];
  let total = 0;
  while (total < length) {
    const count = await conn.read(buffer);
    if (count === null) break;
    chunks.push(buffer.slice(0, count));
    total += count;
  }
  const all = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    all.set(chunk, at);
    at += chunk.length;
  }
  return decoder.decode(all);
}

/** Sends `request` on a new connection and reads everything until close. */
async function exchangeUntilClose(
  port: number,
  request: string | Uint8Array,
): Promise<string> {
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(
    typeof request === "string" ? encoder.encode(request) : request,
  );
  return checkDates(decoder.decode(await readAll(conn)));
}

/** Sends requests on an open connection and reads exactly `expected`. */
async function exchangeKeepingOpen(
  conn: Deno.Conn,
  request: string,
  expected: string,
): Promise<void> {
  await conn.write(encoder.encode(request));
  const received = await readBytes(conn, expected.length);
  assert.equal(checkDates(received), expected);
}

const GET = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";

Deno.test("GET / answers the hello page with exact headers and keeps the connection", async () => {
  await using server = startHttpRawServer({ port: 0 });
  using conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  await exchangeKeepingOpen(conn, GET, HELLO);
  // Same connection, second request: still open, same answer.
  await exchangeKeepingOpen(conn, GET, HELLO);
});

Deno.test("HEAD, 404, 405 with Allow, query strings and absolute-form", async () => {
  await using server = startHttpRawServer({ port: 0 });
  using conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  await exchangeKeepingOpen(
    conn,
    "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
    response("200 OK", "html", HELLO_PAGE, { head: true }),
  );
  await exchangeKeepingOpen(
    conn,
    "GET /nope HTTP/1.1\r\nHost: a\r\n\r\n",
    NOT_FOUND,
  );
  await exchangeKeepingOpen(
    conn,
    "HEAD /nope HTTP/1.1\r\nHost: a\r\n\r\n",
    response("404 Not Found", "text", "Not Found\n", { head: true }),
  );
  const notAllowed = response(
    "405 Method Not Allowed",
    "text",
    "Method Not Allowed\n",
    {
      extra: "Allow: GET, HEAD\r\n",
    },
  );
  await exchangeKeepingOpen(
    conn,
    "DELETE / HTTP/1.1\r\nHost: a\r\n\r\n",
    notAllowed,
  );
  // Methods are case-sensitive: "get" is some other method.
  await exchangeKeepingOpen(
    conn,
    "get / HTTP/1.1\r\nHost: a\r\n\r\n",
    notAllowed,
  );
  await exchangeKeepingOpen(
    conn,
    "GET /?name=x HTTP/1.1\r\nHost: a\r\n\r\n",
    HELLO,
  );
  await exchangeKeepingOpen(
    conn,
    "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
    HELLO,
  );
  // Bare "\n" line endings are accepted, and empty lines before a request.
  await exchangeKeepingOpen(conn, "\r\nGET / HTTP/1.1\nHost: a\n\n", HELLO);
});

Deno.test("pipelined requests in one write get their responses in order", async () => {
  await using server = startHttpRawServer({ port: 0 });
  using conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  const requests = GET + "GET /missing HTTP/1.1\r\nHost: a\r\n\r\n" +
    "HEAD / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
  await conn.write(encoder.encode(requests));
  const received = checkDates(decoder.decode(await readAll(conn)));
  assert.equal(
    received,
    HELLO + NOT_FOUND +
      response("200 OK", "html", HELLO_PAGE, {
        head: true,
        connection: "close",
      }),
  );
});

Deno.test("a request body is read and discarded, so the next pipelined request is found", async () => {
  await using server = startHttpRawServer({ port: 0 });
  using conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  const body = "GET /trap HTTP/1.1\r\nHost: a\r\n\r\n"; // looks like a request
  const notAllowed = response(
    "405 Method Not Allowed",
    "text",
    "Method Not Allowed\n",
    {
      extra: "Allow: GET, HEAD\r\n",
    },
  );
  // The body arrives in two writes, after its head was answered.
  await conn.write(encoder.encode(
    `POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ${body.length}\r\n\r\n${
      body.slice(0, 10)
    }`,
  ));
  assert.equal(
    checkDates(await readBytes(conn, notAllowed.length)),
    notAllowed,
  );
  await exchangeKeepingOpen(conn, body.slice(10) + GET, HELLO);
});

Deno.test("a Content-Length list of equal values is one length; the body is skipped", async () => {
  await using server = startHttpRawServer({ port: 0 });
  using conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  const notAllowed = response(
    "405 Method Not Allowed",
    "text",
    "Method Not Allowed\n",
    { extra: "Allow: GET, HEAD\r\n" },
  );
  await exchangeKeepingOpen(
    conn,
    "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n" +
      "Content-Length: 3\r\n\r\nabc" + GET,
    notAllowed + HELLO,
  );
});

Deno.test("the head limit: exactly --max-head bytes pass, one more gets 431", async () => {
  await using server = startHttpRawServer({ port: 0, maxHeadBytes: 1024 });
  const head = (size: number) => {
    const start = "GET / HTTP/1.1\r\nHost: a\r\nX: ";
    return start + "x".repeat(size - start.length - 4) + "\r\n\r\n";
  };
  assert.equal(head(1024).length, 1024);
  using conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  await exchangeKeepingOpen(conn, head(1024), HELLO);
  assert.equal(
    await exchangeUntilClose(server.addr.port, head(1025)),
    response(
      "431 Request Header Fields Too Large",
      "text",
      "Request Header Fields Too Large\n",
      { connection: "close" },
    ),
  );
});

Deno.test("garbage and protocol errors get 400/411/505 and a close; the server keeps serving", async () => {
  await using server = startHttpRawServer({ port: 0 });
  const port = server.addr.port;
  const cases: [string, string][] = [
    ["garbage\r\n\r\n", BAD_REQUEST],
    ["GET /\r\n\r\n", BAD_REQUEST], // HTTP/0.9
    ["GET  / HTTP/1.1\r\nHost: a\r\n\r\n", BAD_REQUEST], // two spaces
    ["GET / HTTP/1.1\r\n\r\n", BAD_REQUEST], // no Host
    ["GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", BAD_REQUEST],
    ["GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", BAD_REQUEST],
    ["GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", BAD_REQUEST],
    ["GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", BAD_REQUEST],
    // Other control bytes in a value too (lib/http1.ts, as the client).
    ["GET / HTTP/1.1\r\nHost: a\r\nX: \x1b[2J\r\n\r\n", BAD_REQUEST],
    ["GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", BAD_REQUEST],
    ["GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", BAD_REQUEST],
    ["GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\n\r\n", BAD_REQUEST],
    ["GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n", BAD_REQUEST],
    ["GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", BAD_REQUEST],
    [
      "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
      BAD_REQUEST,
    ],
    [
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
      BAD_REQUEST,
    ],
    [
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      response("411 Length Required", "text", "Length Required\n", {
        connection: "close",
      }),
    ],
    [
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999\r\n\r\n",
      response("413 Content Too Large", "text", "Content Too Large\n", {
        connection: "close",
      }),
    ],
    [
      "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
      response(
        "505 HTTP Version Not Supported",
        "text",
        "HTTP Version Not Supported\n",
        {
          connection: "close",
        },
      ),
    ],
  ];
  for (const [request, expected] of cases) {
    assert.equal(
      await exchangeUntilClose(port, request),
      expected,
      JSON.stringify(request),
    );
  }
  assert.equal(
    await exchangeUntilClose(
      port,
      GET.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n"),
    ),
    response("200 OK", "html", HELLO_PAGE, { connection: "close" }),
  );
});

Deno.test("a huge header gets 431 (complete or still arriving); endless junk too", async () => {
  await using server = startHttpRawServer({ port: 0 });
  const port = server.addr.port;
  const tooLarge = response(
    "431 Request Header Fields Too Large",
    "text",
    "Request Header Fields Too Large\n",
    { connection: "close" },
  );
  const big = "x".repeat(10_000);
  assert.equal(
    await exchangeUntilClose(
      port,
      `GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${big}\r\n\r\n`,
    ),
    tooLarge,
  );
  assert.equal(
    await exchangeUntilClose(port, `GET /${big} HTTP/1.1\r\n`),
    tooLarge,
  );
  // 200 header fields, each small.
  assert.equal(
    await exchangeUntilClose(
      port,
      `GET / HTTP/1.1\r\nHost: a\r\n${"X: y\r\n".repeat(200)}\r\n`,
    ),
    tooLarge,
  );
  // A megabyte with no newline at all: refused once the limit passes, and
  // the rest is drained (bounded) so our answer is not lost to a reset.
  assert.equal(
    await exchangeUntilClose(port, new Uint8Array(1024 * 1024).fill(0x41)),
    tooLarge,
  );
  assert.equal(
    await exchangeUntilClose(
      port,
      GET.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n"),
    ),
    response("200 OK", "html", HELLO_PAGE, { connection: "close" }),
  );
});

Deno.test("a slow client sending one byte at a time is served", async () => {
  await using server = startHttpRawServer({ port: 0 });
  using conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  conn.setNoDelay(true);
  for (const byte of encoder.encode(GET)) {
    await conn.write(Uint8Array.of(byte));
    // Pacing only, so the bytes travel as separate segments.
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  assert.equal(checkDates(await readBytes(conn, HELLO.length)), HELLO);
});

Deno.test("idle connections are closed after --idle-timeout, silent or half-way through a request", async () => {
  await using server = startHttpRawServer({ port: 0, idleTimeout: 0.3 });
  const port = server.addr.port;
  const started = performance.now();
  // Never sends anything.
  using silent = await Deno.connect({ hostname: "127.0.0.1", port });
  // Sends a request, then half a second one, then stalls.
  using stalled = await Deno.connect({ hostname: "127.0.0.1", port });
  await stalled.write(encoder.encode(GET + "GET / HT"));
  // Upper bound only: if the server never closes them, fail instead of hanging.
  let timer: ReturnType<typeof setTimeout> | undefined;
  const [silentGot, stalledGot] = await Promise.race([
    Promise.all([readAll(silent), readAll(stalled)]),
    new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error("not closed within 3 s")),
        3000,
      );
    }),
  ]).finally(() => clearTimeout(timer));
  const elapsed = performance.now() - started;
  assert.equal(silentGot.length, 0);
  assert.equal(checkDates(decoder.decode(stalledGot)), HELLO);
  assert.ok(elapsed >= 250 && elapsed < 2000, `closed after ${elapsed} ms`);
});

Deno.test("a client that pipelines without reading is cut off; others are served meanwhile", async () => {
  await using server = startHttpRawServer({ port: 0, idleTimeout: 0.3 });
  const port = server.addr.port;
  using hog = await Deno.connect({ hostname: "127.0.0.1", port });
  // 200 000 requests (7 MB) ask for 55 MB of responses that are never read:
  // the socket buffers fill both ways, the server's write stalls, its
  // deadline passes, it closes, and our blocked write fails.
  const flood = encoder.encode(GET.repeat(200_000));
  const writing = (async () => {
    let written = 0;
    while (written < flood.length) {
      written += await hog.write(flood.subarray(written));
    }
  })().then(() => "written", (error) => error.constructor.name);

  using other = await Deno.connect({ hostname: "127.0.0.1", port });
  await exchangeKeepingOpen(other, GET, HELLO);

  // Upper bound only, so a server that never cuts fails the test.
  let timer: ReturnType<typeof setTimeout> | undefined;
  const cutOff = await Promise.race([
    writing,
    new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error("hog not cut off within 5 s")),
        5000,
      );
    }),
  ]).finally(() => clearTimeout(timer));
  assert.match(cutOff, /ConnectionReset|BrokenPipe/);
  // What the server did send before it gave up can still be read.
  const total = await (async () => {
    const buffer = new Uint8Array(64 * 1024);
    let total = 0;
    try {
      while (true) {
        const count = await hog.read(buffer);
        if (count === null) break;
        total += count;
      }
    } catch (error) {
      if (!(error instanceof Deno.errors.ConnectionReset)) throw error;
    }
    return total;
  })();
  assert.ok(total < 200_000 * HELLO.length, `received ${total} bytes`);
});

Deno.test("HTTP/1.0 closes unless it asks for keep-alive", async () => {
  await using server = startHttpRawServer({ port: 0 });
  const port = server.addr.port;
  assert.equal(
    await exchangeUntilClose(port, "GET / HTTP/1.0\r\n\r\n"),
    response("200 OK", "html", HELLO_PAGE, { connection: "close" }),
  );
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const keptAlive = response("200 OK", "html", HELLO_PAGE, {
    connection: "keep-alive",
  });
  await exchangeKeepingOpen(
    conn,
    "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
    keptAlive,
  );
  await exchangeKeepingOpen(
    conn,
    "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    keptAlive,
  );
});

Deno.test("300 concurrent clients, each with three keep-alive requests", async () => {
  await using server = startHttpRawServer({ port: 0 });
  const port = server.addr.port;
  const clients = Array.from({ length: 300 }, async () => {
    using conn = await Deno.connect({ hostname: "127.0.0.1", port });
    for (let i = 0; i < 3; i++) await exchangeKeepingOpen(conn, GET, HELLO);
  });
  await Promise.all(clients);
});

Deno.test("a client that resets mid-request does not disturb the server", async () => {
  await using server = startHttpRawServer({ port: 0 });
  const port = server.addr.port;
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(encoder.encode("GET / HTTP/1.1\r\nHo"));
  conn.close();
  using second = await Deno.connect({ hostname: "127.0.0.1", port });
  await exchangeKeepingOpen(second, GET, HELLO);
});

Deno.test({
  name:
    "curl: exact response, HEAD, 404, 405, and one connection reused for several URLs",
  ignore: !(await hasCommand("curl")),
  async fn() {
    await using server = startHttpRawServer({ port: 0 });
    const base = `http://127.0.0.1:${server.addr.port}`;
    const result = await runTool("curl", [
      "-sv",
      "--http1.1",
      `${base}/`,
      `${base}/a`,
      `${base}/`,
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(
      decoder.decode(result.stdout),
      HELLO_PAGE + "Not Found\n" + HELLO_PAGE,
    );
    assert.equal(
      result.stderr.match(/Re-using existing connection/g)?.length,
      2,
    );
    assert.equal(result.stderr.match(/Connected to/g)?.length, 1);

    const head = await runTool("curl", ["-sI", `${base}/`]);
    assert.equal(
      checkDates(decoder.decode(head.stdout)),
      response("200 OK", "html", HELLO_PAGE, { head: true }),
    );
    const post = await runTool("curl", ["-si", "-d", "a=b", `${base}/`]);
    assert.equal(
      checkDates(decoder.decode(post.stdout)),
      response("405 Method Not Allowed", "text", "Method Not Allowed\n", {
        extra: "Allow: GET, HEAD\r\n",
      }),
    );
  },
});
if (!(await hasCommand("curl"))) skipBecause("curl not installed");

Deno.test({
  name: "Python http.client as a peer: several requests on one connection",
  ignore: !(await hasCommand("python3")),
  async fn() {
    await using server = startHttpRawServer({ port: 0 });
    const program = `
import http.client, sys
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
for path in ["/", "/x", "/"]:
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    print(r.status, r.getheader("Content-Type"), len(body), conn.sock.getsockname()[1])
conn.request("HEAD", "/")
r = conn.getresponse()
print(r.status, r.getheader("Content-Length"), len(r.read()))
`;
    const result = await runTool("python3", [
      "-c",
      program,
      String(server.addr.port),
    ]);
    assert.equal(result.code, 0, result.stderr);
    const lines = decoder.decode(result.stdout).trim().split("\n");
    const port = lines[0].split(" ").at(-1);
    const size = encoder.encode(HELLO_PAGE).length;
    assert.deepEqual(lines, [
      `200 text/html; charset=utf-8 ${size} ${port}`,
      `404 text/plain; charset=utf-8 10 ${port}`,
      `200 text/html; charset=utf-8 ${size} ${port}`,
      `200 ${size} 0`,
    ]);
  },
});
if (!(await hasCommand("python3"))) skipBecause("python3 not installed");

Deno.test({
  name: "wrk -t1 -c100 -d2s: no socket errors, no non-2xx",
  ignore: !(await hasCommand("wrk")),
  async fn() {
    await using server = await startScript("http_raw_server.ts", [
      "--port",
      "0",
    ]);
    const rate = await runWrk(`http://127.0.0.1:${server.port}/`);
    console.log(
      `http_raw_server.ts under wrk -c100: ${rate.toFixed(0)} requests/s`,
    );
  },
});
if (!(await hasCommand("wrk"))) skipBecause("wrk not installed");

Deno.test("subprocess: the Run line serves, SIGTERM and SIGINT exit 0 quickly", async () => {
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    const server = await startScript("http_raw_server.ts", ["--port", "0"]);
    assert.match(
      server.listeningLine,
      /^Listening on http:\/\/127\.0\.0\.1:\d+$/,
    );
    using conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: server.port,
    });
    await exchangeKeepingOpen(conn, GET, HELLO);
    const started = performance.now();
    const output = await server.stop(signal); // with a connection still open
    assert.equal(output.code, 0, output.stderr);
    assert.equal(output.stderr, "");
    assert.ok(performance.now() - started < 2000);
    assert.equal(await conn.read(new Uint8Array(1)), null);
  }
});

Deno.test("subprocess: IPv6 listening line in brackets", async () => {
  const server = await startScript("http_raw_server.ts", [
    "--hostname",
    "::1",
    "--port",
    "0",
  ]).catch(() => null);
  if (!server) return skipBecause("no IPv6 loopback");
  assert.match(server.listeningLine, /^Listening on http:\/\/\[::1\]:\d+$/);
  assert.equal((await server.stop()).code, 0);
});

Deno.test("--max-connections and --max-per-address: one more is closed at once, with one log line; a freed slot is reused", async () => {
  for (const option of ["--max-connections", "--max-per-address"]) {
    const server = await startScript("http_raw_server.ts", [
      "--port",
      "0",
      option,
      "3",
    ]);
    const port = server.port;
    const open: Deno.Conn[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        open.push(await Deno.connect({ hostname: "127.0.0.1", port }));
        await exchangeKeepingOpen(open[i], GET, HELLO);
      }
      // The fourth is accepted by the kernel, then closed by the server
      // before any answer: end of stream, or a reset.
      assert.equal(await exchangeBytes(port, GET), "", option);
      // A slot freed is a slot for the next client.
      open.shift()!.close();
      const answered = await within(
        5000,
        (async () => {
          while (true) {
            const text = await exchangeBytes(
              port,
              GET.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n"),
            );
            if (text !== "") return checkDates(text);
            await new Promise((resolve) => setTimeout(resolve, 20));
          }
        })(),
        "a freed slot",
      );
      assert.equal(
        answered,
        response("200 OK", "html", HELLO_PAGE, { connection: "close" }),
      );
    } finally {
      for (const conn of open) conn.close();
    }
    const output = await server.stop();
    assert.equal(output.code, 0);
    const what = option === "--max-connections"
      ? "3 connections open (--max-connections)"
      : "3 connections from it (--max-per-address)";
    assert.equal(output.stderr, `refused 127.0.0.1: ${what}\n`, option);
  }
  // A cap of 0 serves nobody: refused as a usage mistake.
  const zero = await runScript("http_raw_server.ts", [
    "--max-connections",
    "0",
  ]);
  assert.equal(zero.code, 2);
  assert.match(
    zero.stderr,
    /^http_raw_server\.ts: --max-connections must be a whole number from 1 /,
  );
});

Deno.test("CLI errors: one line, a hint, exit 2; --help exits 0", async () => {
  for (
    const args of [
      ["--port", "70000"],
      ["--idle-timeout", "0"],
      ["--bogus"],
      ["extra"],
      ["--cert", "cert.pem"], // without --key
    ]
  ) {
    const result = await runScript("http_raw_server.ts", args);
    assert.equal(result.code, 2, args.join(" "));
    const lines = result.stderr.trim().split("\n");
    assert.equal(lines.length, 2, result.stderr);
    assert.match(lines[0], /^http_raw_server\.ts: /);
    assert.match(lines[1], /--help/);
  }
  const help = await runScript("http_raw_server.ts", ["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: http_raw_server\.ts/);
  // Where a user would look: no client certificates in Deno yet.
  assert.match(help.stdout, /--cert FILE[^]*deno#26825/);
});

// ---------------------------------------------------------------------------
// HTTPS: --cert/--key (certificates from tests/helpers.ts makeTestCerts)
// ---------------------------------------------------------------------------

const haveOpenssl = await hasCommand("openssl");
if (!haveOpenssl) skipBecause("openssl not installed (TLS tests)");

Deno.test({
  name:
    "HTTPS: curl --cacert, Python ssl and our client are served; plain HTTP, a wrong CA cost only their connection",
  ignore: !haveOpenssl,
  async fn() {
    await using certs = await makeTestCerts();
    const allow = ["--allow-net", `--allow-read=${certs.dir}`];
    const server = await startScript("http_raw_server.ts", [
      "--port",
      "0",
      "--cert",
      certs.certFile,
      "--key",
      certs.keyFile,
    ], { allow });
    assert.match(
      server.listeningLine,
      /^Listening on https:\/\/127\.0\.0\.1:\d+$/,
    );
    const base = `https://127.0.0.1:${server.port}`;

    // Plain HTTP to the HTTPS port: that connection ends, no HTTP answer.
    const plain = await exchangeBytes(server.port, GET);
    assert.ok(!plain.startsWith("HTTP/"), JSON.stringify(plain));

    const [ours, wrongCa, noCa] = await Promise.all([
      runScript("http_client.ts", ["--cacert", certs.caFile, `${base}/`], {
        allow,
      }),
      runScript("http_client.ts", ["--cacert", certs.otherCaFile, `${base}/`], {
        allow,
      }),
      runScript("http_client.ts", [`${base}/`]),
    ]);
    assert.deepEqual([ours.code, ours.stdout, ours.stderr], [
      0,
      HELLO_PAGE,
      "",
    ]);
    for (const refused of [wrongCa, noCa]) {
      assert.deepEqual([refused.code, refused.stdout, refused.stderr], [
        1,
        "",
        `http_client.ts: cannot connect to 127.0.0.1:${server.port}: certificate not trusted (unknown issuer)\n`,
      ]);
    }

    if (await hasCommand("curl")) {
      const curl = await runTool("curl", [
        "-si",
        "--cacert",
        certs.caFile,
        `${base}/`,
        `${base}/nope`,
      ]);
      assert.equal(curl.code, 0, curl.stderr);
      assert.equal(checkDates(decoder.decode(curl.stdout)), HELLO + NOT_FOUND);
    } else skipBecause("curl not installed (HTTPS with curl)");

    if (await hasCommand("python3")) {
      // Keep-alive over TLS: three requests, one connection.
      const python = await runTool("python3", [
        "-c",
        `
import http.client, ssl, sys
context = ssl.create_default_context(cafile=sys.argv[2])
conn = http.client.HTTPSConnection("localhost", int(sys.argv[1]), context=context, timeout=5)
for path in ["/", "/x", "/"]:
    conn.request("GET", path)
    r = conn.getresponse()
    print(r.status, len(r.read()), conn.sock.getsockname()[1], conn.sock.version())
`,
        String(server.port),
        certs.caFile,
      ]);
      assert.equal(python.code, 0, python.stderr);
      const lines = decoder.decode(python.stdout).trim().split("\n");
      const [, , port, version] = lines[0].split(" ");
      const size = encoder.encode(HELLO_PAGE).length;
      assert.deepEqual(lines, [
        `200 ${size} ${port} ${version}`,
        `404 10 ${port} ${version}`,
        `200 ${size} ${port} ${version}`,
      ]);
      assert.match(version, /^TLSv1\.[23]$/);
    } else skipBecause("python3 not installed (HTTPS with Python ssl)");

    const output = await server.stop();
    assert.equal(output.code, 0);
    // Failed handshakes are logged, one line each at most (and at most one
    // a second), naming the peer: never a stack trace.
    const log = output.stderr.trim().split("\n");
    assert.ok(log.length >= 1 && log.length <= 3, output.stderr);
    for (const line of log) {
      assert.match(line, /^TLS handshake with 127\.0\.0\.1:\d+ failed: /);
    }
  },
});

Deno.test({
  name:
    "HTTPS: a name the certificate lacks, or a client stalled mid-handshake: one line for one, others served meanwhile",
  ignore: !haveOpenssl,
  async fn() {
    await using certs = await makeTestCerts();
    await using server = startHttpRawServer({
      port: 0,
      tls: { cert: certs.cert, key: certs.key },
    });
    const port = server.addr.port;
    // Half a ClientHello record header, then silence.
    using stalled = await Deno.connect({ hostname: "127.0.0.1", port });
    await stalled.write(Uint8Array.of(0x16, 0x03, 0x01));
    // 40 TLS clients at once, three keep-alive requests each.
    const clients = Array.from({ length: 40 }, async () => {
      using conn = await Deno.connectTls({
        hostname: "localhost",
        port,
        caCerts: [certs.ca],
      });
      for (let i = 0; i < 3; i++) await exchangeKeepingOpen(conn, GET, HELLO);
    });
    await within(20_000, Promise.all(clients), "40 TLS clients");
    // The certificate names localhost, 127.0.0.1 and ::1, not example.com.
    const mismatch = await fetchWithSocket(`https://127.0.0.1:${port}/`, {
      tls: { caCerts: [certs.ca], serverName: "example.com" },
    }).then(() => "served", (error) => (error as Error).message);
    assert.equal(
      mismatch,
      `cannot connect to 127.0.0.1:${port}: certificate is not valid for example.com`,
    );
  },
});

Deno.test({
  name: "HTTPS on ::1: Listening line in brackets, our client --cacert",
  ignore: !haveOpenssl,
  async fn() {
    await using certs = await makeTestCerts();
    const allow = ["--allow-net", `--allow-read=${certs.dir}`];
    const server = await startScript("http_raw_server.ts", [
      "--hostname",
      "::1",
      "--port",
      "0",
      "--cert",
      certs.certFile,
      "--key",
      certs.keyFile,
    ], { allow }).catch(() => null);
    if (!server) return skipBecause("no IPv6 loopback");
    assert.match(server.listeningLine, /^Listening on https:\/\/\[::1\]:\d+$/);
    const result = await runScript("http_client.ts", [
      "-i",
      "--cacert",
      certs.caFile,
      `https://[::1]:${server.port}/nope`,
    ], { allow });
    assert.equal(result.code, 1);
    // Our client sends "Connection: close", so the answer says close too.
    assert.equal(
      checkDates(result.stdout),
      response("404 Not Found", "text", "Not Found\n", { connection: "close" }),
    );
    assert.equal(
      result.stderr,
      `http_client.ts: https://[::1]:${server.port}/nope answered HTTP/1.1 404 Not Found\n`,
    );
    assert.equal((await server.stop()).code, 0);
  },
});

/** Sends `request` on a new connection; everything until close, as text. */
async function exchangeBytes(port: number, request: string): Promise<string> {
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(encoder.encode(request));
  return decoder.decode(
    await within(5000, readAll(conn).catch(() => new Uint8Array()), "close"),
  );
}
