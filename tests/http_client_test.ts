// Tests for scripts/http_client.ts: the parsers in-process on bytes trickled
// one at a time, then real loopback servers: a raw Deno.listen server written
// here for exact edge cases, Python's http.server, a Node http server that
// sends chunked bodies, a tiny proxy (absolute form and CONNECT), and TLS
// with a CA and certificate made by openssl during the test.
import assert from "node:assert/strict";
import {
  bodyReaderFor,
  buildRequestHead,
  encodeForm,
  fetchWithSocket,
  type HttpResponse,
} from "../scripts/http_client.ts";
import { readResponseHead } from "../scripts/http/response.ts";
import { closeQuietly, writeAll } from "../lib/io.ts";
import { BufferedReader } from "../lib/reader.ts";
import {
  closedPort,
  hasCommand,
  makeTestCerts,
  readToEnd,
  runScript,
  runTool,
  skipBecause,
  startUnansweredPort,
  trickle,
} from "./helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const SCRIPT = "http_client.ts";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

function concat(chunks: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const result = new Uint8Array(chunks.reduce((sum, c) => sum + c.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    result.set(chunk, offset);
    offset += chunk.length;
  }
  return result;
}

async function bodyText(response: HttpResponse): Promise<string> {
  try {
    return decoder.decode(await readToEnd(response.body));
  } finally {
    response.close();
  }
}

interface RecordedRequest {
  head: string; // request line and headers, up to and including "\r\n\r\n"
  body: Uint8Array;
  requestLine: string;
  target: string; // the request-target of the request line
}

/** Reads one request (head, then a Content-Length body) from a socket. */
async function readRequest(conn: Deno.Conn): Promise<RecordedRequest | null> {
  let received: Uint8Array<ArrayBuffer> = new Uint8Array(0);
  const buffer = new Uint8Array(16 * 1024);
  let headEnd = -1;
  while (headEnd < 0) {
    const count = await conn.read(buffer);
    if (count === null) return null;
    received = concat([received, buffer.subarray(0, count)]);
    headEnd = decoder.decode(received).indexOf("\r\n\r\n");
    if (received.length > 256 * 1024) throw new Error("request head too big");
  }
  const head = decoder.decode(received).slice(0, headEnd + 4);
  const headBytes = encoder.encode(head).length;
  const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
  while (received.length < headBytes + length) {
    const count = await conn.read(buffer);
    if (count === null) break;
    received = concat([received, buffer.subarray(0, count)]);
  }
  const requestLine = head.split("\r\n")[0];
  return {
    head,
    body: received.slice(headBytes, headBytes + length),
    requestLine,
    target: requestLine.split(" ")[1],
  };
}

type Responder = (
  request: RecordedRequest,
  conn: Deno.Conn,
) => Promise<void>;

/**
 * Serves every connection of `listener` (TCP or TLS) with `respond`, one
 * request per connection, and records the requests. close() stops it and
 * closes whatever is still open.
 */
function serveRaw(listener: Deno.Listener, respond: Responder) {
  const requests: RecordedRequest[] = [];
  const conns = new Set<Deno.Conn>();
  const tasks = new Set<Promise<void>>();
  const accepting = (async () => {
    while (true) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch {
        return; // listener closed
      }
      conns.add(conn);
      const task = (async () => {
        try {
          const request = await readRequest(conn);
          if (request) {
            requests.push(request);
            await respond(request, conn);
          }
        } catch {
          // The client went away or was told off: fine for these tests.
        } finally {
          conns.delete(conn);
          closeQuietly(conn);
        }
      })();
      tasks.add(task);
      task.finally(() => tasks.delete(task));
    }
  })();
  const addr = listener.addr as Deno.NetAddr;
  const close = async () => {
    closeQuietly(listener);
    for (const conn of conns) closeQuietly(conn);
    await accepting;
    await Promise.allSettled([...tasks]);
  };
  return {
    port: addr.port,
    requests,
    close,
    [Symbol.asyncDispose]: close,
  };
}

async function send(conn: Deno.Conn, data: string | Uint8Array, step = 0) {
  const bytes = typeof data === "string" ? encoder.encode(data) : data;
  if (step === 0) return await writeAll(conn, bytes);
  // Many tiny writes, each sent at once, to split the response everywhere.
  (conn as Deno.TcpConn).setNoDelay?.(true);
  for (let offset = 0; offset < bytes.length; offset += step) {
    await writeAll(conn, bytes.subarray(offset, offset + step));
  }
}

const BINARY = (() => {
  // Every byte value, then 300 KB of a pattern that is not valid UTF-8.
  const bytes = new Uint8Array(256 + 300_000);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 131 + (i >> 8)) & 0xff;
  for (let i = 0; i < 256; i++) bytes[i] = i;
  return bytes;
})();

const PAGE = `<!doctype html>
<html><head><title>Links</title>
<link rel="stylesheet" href="style.css">
<script src="/js/app.js"></script>
<script>document.write('<a href="not-a-link">')</script>
</head><body>
<!-- <a href="commented-out"> -->
<a href="about.html">About</a>
<a href='../up.html?a=1&amp;b=2#top'>Up</a>
<a href="https://example.com/x">Elsewhere</a>
<img src="img/logo.png" alt="logo">
<A HREF=bare>Upper case, no quotes</A>
</body></html>
`;

/** The raw server's pages: each is one exact edge case. */
const respond: Responder = async (request, conn) => {
  const path = request.target.replace(/^https?:\/\/[^/]+/, "");
  switch (path) {
    case "/length":
      return send(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nhello world\n",
      );
    case "/close":
      // No length at all: the body ends when the connection does.
      return send(
        conn,
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end\n",
      );
    case "/chunked":
      return send(
        conn,
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
          "4;name=value\r\nWiki\r\n" +
          '5 ; quoted="a;b"\r\npedia\r\n' +
          "E\r\n in\r\n\r\nchunks.\r\n" +
          "0\r\nX-Checksum: 42\r\nExpires: never\r\n\r\n",
        1,
      );
    case "/huge-head":
      return send(
        conn,
        "HTTP/1.1 200 OK\r\n" +
          Array.from(
            { length: 100 },
            (_, i) => `X-Filler-${i}: ${"x".repeat(700)}\r\n`,
          )
            .join("") +
          "Content-Length: 2\r\n\r\nhi",
      );
    case "/bad-status":
      return send(conn, "ICY 200 OK\r\nContent-Length: 2\r\n\r\nhi");
    case "/redirect/a":
      return send(
        conn,
        "HTTP/1.1 302 Found\r\nLocation: b\r\nContent-Length: 5\r\n\r\nmoved",
      );
    case "/redirect/b":
      return send(
        conn,
        "HTTP/1.1 301 Moved Permanently\r\nLocation: /final?from=b\r\nContent-Length: 0\r\n\r\n",
      );
    case "/final?from=b":
      return send(conn, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\ndone\n");
    case "/loop":
      return send(
        conn,
        "HTTP/1.1 302 Found\r\nLocation: /loop\r\nContent-Length: 0\r\n\r\n",
      );
    case "/see-other":
      return send(
        conn,
        "HTTP/1.1 303 See Other\r\nLocation: /method\r\nContent-Length: 0\r\n\r\n",
      );
    case "/temporary":
      return send(
        conn,
        "HTTP/1.1 307 Temporary Redirect\r\nLocation: /method\r\nContent-Length: 0\r\n\r\n",
      );
    case "/method": {
      const text = `${request.requestLine.split(" ")[0]} ${
        decoder.decode(request.body)
      }\n`;
      return send(
        conn,
        `HTTP/1.1 200 OK\r\nContent-Length: ${
          encoder.encode(text).length
        }\r\n\r\n${text}`,
      );
    }
    case "/missing":
      return send(
        conn,
        "HTTP/1.1 404 Not Found\r\nContent-Length: 13\r\n\r\nno such page\n",
      );
    case "/register":
      return send(conn, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n");
    case "/binary":
      await send(
        conn,
        `HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${BINARY.length}\r\n\r\n`,
      );
      return send(conn, BINARY);
    case "/page.html":
      return send(
        conn,
        `HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: ${
          encoder.encode(PAGE).length
        }\r\n\r\n${PAGE}`,
      );
    case "/short":
      return send(conn, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf\n");
    case "/no-content":
      return send(conn, "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n");
    case "/interim":
      return send(
        conn,
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n" +
          "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nyes\n",
      );
    case "/endless-interim":
      return send(conn, "HTTP/1.1 100 Continue\r\n\r\n".repeat(20));
    case "/escape":
      // A status line carrying a terminal escape (it would clear the screen).
      return send(conn, "HTTP/1.1 200 OK\x1b[2J\r\nContent-Length: 0\r\n\r\n");
    case "/escape-404": {
      // One raw byte 0x9b: a C1 control (CSI) to a latin1 reader.
      const head = "HTTP/1.1 404 Not\x9b Found\r\nContent-Length: 0\r\n\r\n";
      return send(conn, Uint8Array.from(head, (c) => c.charCodeAt(0)));
    }
    case "/stall-body":
      // Part of the body, then nothing: the wait for the rest is bounded.
      await send(conn, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf\n");
      await conn.read(new Uint8Array(1));
      return;
    case "/stall-chunked":
      await send(
        conn,
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n",
      );
      await conn.read(new Uint8Array(1));
      return;
    case "/hostile-links": {
      // Links holding an escape, a bidi override and a newline.
      const page = '<a href="/x\x1b[2Jy">a</a><a href="/\u202Etxt.exe">b</a>' +
        '<img src="/two\nlines">';
      return send(
        conn,
        `HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: ${
          encoder.encode(page).length
        }\r\n\r\n${page}`,
      );
    }
    case "/silent":
      // Never answer; wait until the client gives up and closes.
      await conn.read(new Uint8Array(1));
      return;
    default:
      return send(conn, "HTTP/1.1 500 Unexpected\r\nContent-Length: 0\r\n\r\n");
  }
};

function startRawServer() {
  return serveRaw(Deno.listen({ hostname: "127.0.0.1", port: 0 }), respond);
}

// ---------------------------------------------------------------------------
// In-process: parsers on trickled bytes
// ---------------------------------------------------------------------------

Deno.test("body framing: HEAD, 204 and 304 have none; lengths must agree; chunked beats Content-Length", async () => {
  const framed = async (head: string, method = "GET", rest = "abcdef") => {
    const reader = new BufferedReader(trickle(head + rest, 2));
    const parsed = await readResponseHead(reader);
    return decoder.decode(
      await readToEnd(bodyReaderFor(parsed, method, reader)),
    );
  };
  assert.equal(
    await framed("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n", "HEAD"),
    "",
  );
  assert.equal(
    await framed("HTTP/1.1 204 No Content\r\nContent-Length: 6\r\n\r\n"),
    "",
  );
  assert.equal(
    await framed("HTTP/1.1 304 Not Modified\r\nContent-Length: 6\r\n\r\n"),
    "",
  );
  assert.equal(
    await framed("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"),
    "abc",
  );
  assert.equal(
    await framed(
      "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\n",
    ),
    "abc",
  );
  assert.equal(await framed("HTTP/1.0 200 OK\r\n\r\n"), "abcdef");
  assert.equal(
    await framed(
      "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
      "GET",
      "2\r\nab\r\n0\r\n\r\n",
    ),
    "ab",
  );
  await assert.rejects(
    framed("HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\n"),
    /invalid Content-Length/,
  );
  await assert.rejects(
    framed("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
    /invalid Content-Length/,
  );
  await assert.rejects(
    framed("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"),
    /closed after 6 of 9 body bytes/,
  );
});

Deno.test("request head: exact bytes, default port dropped, fragment never sent, absolute form for proxies", () => {
  assert.equal(
    buildRequestHead(
      new URL("http://example.com:80/a%20b?q=1#frag"),
      "GET",
      {},
    ),
    "GET /a%20b?q=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: deno-network-examples/1.0\r\n" +
      "Accept: */*\r\nConnection: close\r\n\r\n",
  );
  assert.equal(
    buildRequestHead(new URL("http://user:pw@[::1]:8000"), "POST", {
      body: encoder.encode("a=1"),
      contentType: "application/x-www-form-urlencoded",
      viaProxy: true,
    }),
    "POST http://[::1]:8000/ HTTP/1.1\r\nHost: [::1]:8000\r\nUser-Agent: deno-network-examples/1.0\r\n" +
      "Accept: */*\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\n" +
      "Content-Length: 3\r\n\r\n",
  );
});

Deno.test("form data: urlencoded like a browser form", () => {
  assert.equal(
    decoder.decode(
      encodeForm(["username=Jürgen Ö", "password=a&b=c", "empty="]),
    ),
    "username=J%C3%BCrgen+%C3%96&password=a%26b%3Dc&empty=",
  );
  assert.throws(() => encodeForm(["novalue"]), /NAME=VALUE/);
});

// ---------------------------------------------------------------------------
// In-process against the raw server
// ---------------------------------------------------------------------------

Deno.test("fetchWithSocket: Content-Length, close-delimited and chunked bodies; exact request bytes", async () => {
  await using server = startRawServer();
  const origin = `http://127.0.0.1:${server.port}`;

  assert.equal(
    await bodyText(await fetchWithSocket(`${origin}/length`)),
    "hello world\n",
  );
  assert.equal(
    await bodyText(await fetchWithSocket(`${origin}/close`)),
    "until the end\n",
  );
  const chunked = await fetchWithSocket(`${origin}/chunked`);
  assert.equal(await bodyText(chunked), "Wikipedia in\r\n\r\nchunks.");
  assert.deepEqual(chunked.body.trailers, [["X-Checksum", "42"], [
    "Expires",
    "never",
  ]]);
  // Interim 1xx responses are skipped, but only up to a bound.
  const interim = await fetchWithSocket(`${origin}/interim`);
  assert.equal(interim.status, 200);
  assert.equal(await bodyText(interim), "yes\n");
  await assert.rejects(
    fetchWithSocket(`${origin}/endless-interim`),
    /more than 10 interim \(1xx\) responses/,
  );

  assert.equal(
    server.requests[0].head,
    `GET /length HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\nUser-Agent: deno-network-examples/1.0\r\n` +
      "Accept: */*\r\nConnection: close\r\n\r\n",
  );
});

Deno.test("fetchWithSocket: a binary request body goes out byte for byte after the head", async () => {
  await using server = startRawServer();
  const response = await fetchWithSocket(
    `http://127.0.0.1:${server.port}/register`,
    { method: "PUT", body: BINARY, contentType: "application/octet-stream" },
  );
  assert.equal(await bodyText(response), "ok\n");
  assert.equal(
    server.requests[0].head,
    `PUT /register HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\n` +
      "User-Agent: deno-network-examples/1.0\r\nAccept: */*\r\nConnection: close\r\n" +
      `Content-Type: application/octet-stream\r\nContent-Length: ${BINARY.length}\r\n\r\n`,
  );
  assert.deepEqual(server.requests[0].body, BINARY);
});

Deno.test("fetchWithSocket: redirects followed with relative Locations, 303 turns POST into GET, 307 keeps it", async () => {
  await using server = startRawServer();
  const origin = `http://127.0.0.1:${server.port}`;
  const heads: string[] = [];
  const response = await fetchWithSocket(`${origin}/redirect/a`, {
    maxRedirects: 5,
    onResponseHead: (head, url) =>
      void heads.push(`${url.pathname} ${head.status}`),
  });
  assert.equal(await bodyText(response), "done\n");
  assert.equal(response.url.href, `${origin}/final?from=b`);
  assert.deepEqual(heads, ["/redirect/a 302", "/redirect/b 301", "/final 200"]);

  const post = {
    method: "POST",
    body: encoder.encode("k=v"),
    contentType: "application/x-www-form-urlencoded",
    maxRedirects: 5,
  };
  assert.equal(
    await bodyText(await fetchWithSocket(`${origin}/see-other`, post)),
    "GET \n",
  );
  assert.equal(
    await bodyText(await fetchWithSocket(`${origin}/temporary`, post)),
    "POST k=v\n",
  );

  // Without maxRedirects the 3xx itself is the answer.
  const unfollowed = await fetchWithSocket(`${origin}/redirect/a`);
  assert.equal(unfollowed.status, 302);
  assert.equal(await bodyText(unfollowed), "moved");

  await assert.rejects(
    fetchWithSocket(`${origin}/loop`, { maxRedirects: 5 }),
    /too many redirects/,
  );
  // The loop was followed exactly 5 times: 6 requests.
  assert.equal(server.requests.filter((r) => r.target === "/loop").length, 6);
});

// ---------------------------------------------------------------------------
// As a subprocess, exactly as the header's Run line
// ---------------------------------------------------------------------------

Deno.test("CLI: body to stdout, -i head first, exit 0", async () => {
  await using server = startRawServer();
  const origin = `http://127.0.0.1:${server.port}`;
  const [plain, include, chunked, head] = await Promise.all([
    runScript(SCRIPT, [`${origin}/length`]),
    runScript(SCRIPT, ["-i", `${origin}/length`]),
    runScript(SCRIPT, ["-i", `${origin}/chunked`]),
    runScript(SCRIPT, ["-I", `${origin}/no-content`]),
  ]);
  assert.deepEqual([plain.code, plain.stdout, plain.stderr], [
    0,
    "hello world\n",
    "",
  ]);
  assert.equal(include.code, 0);
  assert.equal(
    include.stdout,
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nhello world\n",
  );
  assert.equal(
    chunked.stdout,
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nWikipedia in\r\n\r\nchunks.",
  );
  assert.deepEqual([head.code, head.stdout], [
    0,
    "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
  ]);
  assert.equal(
    server.requests.find((r) => r.target === "/no-content")?.requestLine,
    "HEAD /no-content HTTP/1.1",
  );
});

Deno.test("CLI: 404 prints the body, the status line on stderr, exit 1", async () => {
  await using server = startRawServer();
  const result = await runScript(SCRIPT, [
    `http://127.0.0.1:${server.port}/missing`,
  ]);
  assert.equal(result.code, 1);
  assert.equal(result.stdout, "no such page\n");
  assert.equal(
    result.stderr,
    `http_client.ts: http://127.0.0.1:${server.port}/missing answered HTTP/1.1 404 Not Found\n`,
  );
});

Deno.test("CLI: broken responses exit 1 with one line (oversize head, bad status, short body)", async () => {
  await using server = startRawServer();
  const origin = `http://127.0.0.1:${server.port}`;
  const [huge, bad, short] = await Promise.all([
    runScript(SCRIPT, [`${origin}/huge-head`]),
    runScript(SCRIPT, [`${origin}/bad-status`]),
    runScript(SCRIPT, [`${origin}/short`]),
  ]);
  assert.deepEqual([huge.code, huge.stdout, huge.stderr], [
    1,
    "",
    "http_client.ts: response head larger than 65536 bytes\n",
  ]);
  assert.deepEqual([bad.code, bad.stdout, bad.stderr], [
    1,
    "",
    "http_client.ts: malformed status line: 'ICY 200 OK'\n",
  ]);
  // What arrived is written (it streams), then the truncation is reported.
  assert.deepEqual([short.code, short.stdout, short.stderr], [
    1,
    "half\n",
    "http_client.ts: connection closed after 5 of 10 body bytes\n",
  ]);
});

Deno.test("CLI: -L follows relative redirects; a loop stops after 5 with exit 1", async () => {
  await using server = startRawServer();
  const origin = `http://127.0.0.1:${server.port}`;
  const [followed, loop, included] = await Promise.all([
    runScript(SCRIPT, ["-L", `${origin}/redirect/a`]),
    runScript(SCRIPT, ["-L", `${origin}/loop`]),
    runScript(SCRIPT, ["-L", "-i", `${origin}/redirect/b`]),
  ]);
  assert.deepEqual([followed.code, followed.stdout], [0, "done\n"]);
  assert.deepEqual([loop.code, loop.stdout, loop.stderr], [
    1,
    "",
    "http_client.ts: too many redirects (more than 5)\n",
  ]);
  // -i shows every response on the way, like curl -iL.
  assert.equal(
    included.stdout,
    "HTTP/1.1 301 Moved Permanently\r\nLocation: /final?from=b\r\nContent-Length: 0\r\n\r\n" +
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\ndone\n",
  );
});

Deno.test("CLI: --data sends the tutorial's register form as an urlencoded POST", async () => {
  await using server = startRawServer();
  const result = await runScript(SCRIPT, [
    "--data",
    "username=Ada Lovelace",
    "--data",
    "email=ada@example.org",
    "--data",
    "note=1+1=2 & ünïcode",
    `http://127.0.0.1:${server.port}/register`,
  ]);
  assert.deepEqual([result.code, result.stdout], [0, "ok\n"]);
  const request = server.requests[0];
  const body =
    "username=Ada+Lovelace&email=ada%40example.org&note=1%2B1%3D2+%26+%C3%BCn%C3%AFcode";
  assert.equal(
    request.head,
    `POST /register HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\nUser-Agent: deno-network-examples/1.0\r\n` +
      `Accept: */*\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\n` +
      `Content-Length: ${body.length}\r\n\r\n`,
  );
  assert.equal(decoder.decode(request.body), body);
});

Deno.test("CLI: -v shows the request head sent and the response head received, like curl -v", async () => {
  await using server = startRawServer();
  const origin = `http://127.0.0.1:${server.port}`;
  const [post, redirected, escaped] = await Promise.all([
    // 001 §3's POST: request line, headers, blank line, the form.
    runScript(SCRIPT, [
      "-v",
      "--data",
      "username=ada",
      "--data",
      "password=a b",
      `${origin}/register`,
    ]),
    runScript(SCRIPT, ["-v", "-i", "-L", `${origin}/redirect/b`]),
    runScript(SCRIPT, ["-v", `${origin}/escape-404`]),
  ]);
  const agent = "User-Agent: deno-network-examples/1.0";
  assert.deepEqual([post.code, post.stdout], [0, "ok\n"]);
  assert.equal(
    post.stderr,
    [
      "> POST /register HTTP/1.1",
      `> Host: 127.0.0.1:${server.port}`,
      `> ${agent}`,
      "> Accept: */*",
      "> Connection: close",
      "> Content-Type: application/x-www-form-urlencoded",
      "> Content-Length: 25",
      ">",
      "> username=ada&password=a+b",
      "< HTTP/1.1 200 OK",
      "< Content-Length: 3",
      "<",
      "",
    ].join("\n"),
  );
  // Every hop of a redirect; -i still writes the heads to stdout as data.
  assert.equal(redirected.code, 0);
  assert.equal(
    redirected.stdout,
    "HTTP/1.1 301 Moved Permanently\r\nLocation: /final?from=b\r\nContent-Length: 0\r\n\r\n" +
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\ndone\n",
  );
  const heads = (path: string) =>
    [`> GET ${path} HTTP/1.1`, `> Host: 127.0.0.1:${server.port}`, `> ${agent}`]
      .concat("> Accept: */*", "> Connection: close", ">");
  assert.equal(
    redirected.stderr,
    [
      ...heads("/redirect/b"),
      "< HTTP/1.1 301 Moved Permanently",
      "< Location: /final?from=b",
      "< Content-Length: 0",
      "<",
      ...heads("/final?from=b"),
      "< HTTP/1.1 200 OK",
      "< Content-Length: 5",
      "<",
      "",
    ].join("\n"),
  );
  // What the peer sent is escaped on stderr, in -v as in errors.
  assert.equal(escaped.code, 1);
  assert.match(escaped.stderr, /\n< HTTP\/1\.1 404 Not\\x9b Found\n/);
  assert.doesNotMatch(escaped.stderr, /\x9b/);
});

Deno.test("CLI: -o saves exact binary bytes and prints nothing", async () => {
  await using server = startRawServer();
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/out.bin`;
    const result = await runScript(SCRIPT, [
      "-o",
      file,
      `http://127.0.0.1:${server.port}/binary`,
    ], {
      allow: ["--allow-net", `--allow-write=${dir}`],
    });
    assert.deepEqual([result.code, result.stdout, result.stderr], [0, "", ""]);
    assert.deepEqual(await Deno.readFile(file), BINARY);
    // No answer, no file: a refused connection leaves nothing behind.
    const refused = await runScript(SCRIPT, [
      "-o",
      `${dir}/none.bin`,
      `http://127.0.0.1:${closedPort()}/`,
    ], {
      allow: ["--allow-net", `--allow-write=${dir}`],
    });
    assert.equal(refused.code, 1);
    await assert.rejects(Deno.stat(`${dir}/none.bin`), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The links of PAGE served from `origin`, one a line, as --links prints them. */
function pageLinks(origin: string): string {
  return [
    `${origin}/style.css`,
    `${origin}/js/app.js`,
    `${origin}/about.html`,
    `${origin}/up.html?a=1&b=2#top`,
    "https://example.com/x",
    `${origin}/img/logo.png`,
    `${origin}/bare`,
  ].map((link) => link + "\n").join("");
}

Deno.test("CLI: --links prints every link resolved against the page URL, parsed as HTML", async () => {
  await using server = startRawServer();
  const origin = `http://127.0.0.1:${server.port}`;
  const result = await runScript(SCRIPT, ["--links", `${origin}/page.html`]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout, pageLinks(origin));
});

Deno.test("CLI: --links with -o writes the links to FILE and nothing to stdout", async () => {
  await using server = startRawServer();
  const origin = `http://127.0.0.1:${server.port}`;
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/links.txt`;
    const result = await runScript(
      SCRIPT,
      ["--links", "-o", file, `${origin}/page.html`],
      { allow: ["--allow-net", `--allow-write=${dir}`] },
    );
    assert.deepEqual([result.code, result.stdout, result.stderr], [0, "", ""]);
    assert.equal(await Deno.readTextFile(file), pageLinks(origin));
    // A page with no links leaves FILE empty (but there: an answer came).
    const none = await runScript(
      SCRIPT,
      ["--links", "-o", file, `${origin}/length`],
      { allow: ["--allow-net", `--allow-write=${dir}`] },
    );
    assert.deepEqual([none.code, none.stdout, none.stderr], [0, "", ""]);
    assert.equal(await Deno.readTextFile(file), "");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("CLI: usage errors exit 2 with one line and a hint", async () => {
  const cases: [string[], string][] = [
    [[], "missing URL"],
    [
      ["ftp://127.0.0.1/"],
      "unsupported scheme 'ftp:' (use http:// or https://)",
    ],
    [["http://exa mple.com/"], "not a valid URL: 'http://exa mple.com/'"],
    [
      ["--timeout", "soon", "http://127.0.0.1/"],
      "--timeout must be a number of seconds above 0 (up to 86400), got 'soon'",
    ],
    [
      ["--data", "novalue", "http://127.0.0.1/"],
      "--data must look like NAME=VALUE, got 'novalue'",
    ],
    [
      ["--proxy", "socks5://127.0.0.1:1080", "http://127.0.0.1/"],
      "--proxy must look like http://host:port, got 'socks5://127.0.0.1:1080'",
    ],
    [["--bogus", "http://127.0.0.1/"], "Unknown option '--bogus'"],
  ];
  const results = await Promise.all(
    cases.map(([args]) => runScript(SCRIPT, args)),
  );
  results.forEach((result, index) => {
    assert.equal(result.code, 2, cases[index][0].join(" "));
    assert.equal(
      result.stderr,
      `http_client.ts: ${
        cases[index][1]
      }\nTry 'http_client.ts --help' for more information.\n`,
    );
  });
  const help = await runScript(SCRIPT, ["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: http_client.ts \[options\] URL\n/);
});

Deno.test("CLI: refused connection and a silent server: one line, exit 1", async () => {
  await using server = startRawServer();
  const port = closedPort();
  const [refused, silent] = await Promise.all([
    runScript(SCRIPT, [`http://127.0.0.1:${port}/`]),
    runScript(SCRIPT, [
      "--timeout",
      "0.5",
      `http://127.0.0.1:${server.port}/silent`,
    ]),
  ]);
  assert.deepEqual(
    [refused.code, refused.stdout, refused.stderr],
    [
      1,
      "",
      `http_client.ts: cannot connect to 127.0.0.1:${port}: connection refused\n`,
    ],
  );
  assert.deepEqual(
    [silent.code, silent.stdout, silent.stderr],
    [
      1,
      "",
      `http_client.ts: 127.0.0.1:${server.port}: timed out after 0.5 s waiting for data\n`,
    ],
  );
});

Deno.test("CLI: every wait on the server is bounded: mid-body, mid-chunk, a proxy that never answers CONNECT", async () => {
  await using server = startRawServer();
  const origin = `http://127.0.0.1:${server.port}`;
  // A "proxy" that accepts and reads, and never answers.
  const mute = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of mute) held.push(conn);
  })();
  try {
    const timeout = ["--timeout", "0.5"];
    const [body, chunked, proxied] = await Promise.all([
      runScript(SCRIPT, [...timeout, `${origin}/stall-body`]),
      runScript(SCRIPT, [...timeout, `${origin}/stall-chunked`]),
      runScript(SCRIPT, [
        ...timeout,
        "--proxy",
        `http://127.0.0.1:${mute.addr.port}`,
        "https://localhost:1/",
      ]),
    ]);
    const waited = (peer: string) =>
      `http_client.ts: ${peer}: timed out after 0.5 s waiting for data\n`;
    // What arrived is written (it streams), then the stall is reported.
    assert.deepEqual([body.code, body.stdout, body.stderr], [
      1,
      "half\n",
      waited(`127.0.0.1:${server.port}`),
    ]);
    assert.deepEqual([chunked.code, chunked.stdout, chunked.stderr], [
      1,
      "first",
      waited(`127.0.0.1:${server.port}`),
    ]);
    assert.deepEqual([proxied.code, proxied.stdout, proxied.stderr], [
      1,
      "",
      waited(`proxy 127.0.0.1:${mute.addr.port}`),
    ]);
  } finally {
    mute.close();
    await accepting;
    for (const conn of held) conn.close();
  }
});

// Answers half a body, then resets the connection (SO_LINGER 0).
const RESETTING_SERVER = `
import socket, struct
server = socket.create_server(("127.0.0.1", 0))
server.settimeout(20)
print("port", server.getsockname()[1], flush=True)
conn, _ = server.accept()
conn.recv(65536)
conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 100\\r\\n\\r\\npartial")
conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
conn.close()
`;

Deno.test({
  name:
    "CLI: a server that resets mid-body: what came is written, one line naming the peer",
  ignore: !(await hasCommand("python3")),
  async fn() {
    const python = await startChild(
      "python3",
      ["-u", "-c", RESETTING_SERVER],
      /port (\d+)/,
    );
    try {
      const port = python.match[1];
      const result = await runScript(SCRIPT, [`http://127.0.0.1:${port}/`]);
      assert.equal(result.code, 1);
      // The reset may overtake the last bytes: "partial" or nothing of it.
      assert.match(result.stdout, /^(partial)?$/);
      assert.equal(
        result.stderr,
        `http_client.ts: 127.0.0.1:${port}: connection reset\n`,
      );
    } finally {
      await python.stop();
    }
  },
});

Deno.test("CLI: --links prints URLs only: control and bidi characters in a link come out percent-encoded", async () => {
  await using server = startRawServer();
  const origin = `http://127.0.0.1:${server.port}`;
  const result = await runScript(SCRIPT, [
    "--links",
    `${origin}/hostile-links`,
  ]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(
    result.stdout,
    `${origin}/x%1B[2Jy\n${origin}/%E2%80%AEtxt.exe\n${origin}/twolines\n`,
  );
});

Deno.test("CLI: one wording for failed connects: IPv6 in brackets, a connect timeout told from a silent server", async () => {
  const unanswered = await startUnansweredPort();
  try {
    const v6 = await Deno.listen({ hostname: "::1", port: 0 });
    const v6Port = (v6.addr as Deno.NetAddr).port;
    v6.close();
    const [timedOut, refusedV6] = await Promise.all([
      runScript(SCRIPT, [
        "--timeout",
        "0.5",
        `http://127.0.0.1:${unanswered.addr.port}/`,
      ]),
      runScript(SCRIPT, [`http://[::1]:${v6Port}/`]),
    ]);
    assert.deepEqual([timedOut.code, timedOut.stdout, timedOut.stderr], [
      1,
      "",
      `http_client.ts: cannot connect to 127.0.0.1:${unanswered.addr.port}: timed out after 0.5 s\n`,
    ]);
    assert.deepEqual([refusedV6.code, refusedV6.stderr], [
      1,
      `http_client.ts: cannot connect to [::1]:${v6Port}: connection refused\n`,
    ]);
  } catch (error) {
    if (!(error instanceof Deno.errors.AddrNotAvailable)) throw error;
    skipBecause("no IPv6 loopback");
  } finally {
    unanswered.close();
  }
});

Deno.test("CLI: a peer's control characters reach stderr escaped, never raw", async () => {
  await using server = startRawServer();
  const origin = `http://127.0.0.1:${server.port}`;
  const [escape, escape404] = await Promise.all([
    runScript(SCRIPT, [`${origin}/escape`]),
    runScript(SCRIPT, [`${origin}/escape-404`]),
  ]);
  assert.deepEqual([escape.code, escape.stdout, escape.stderr], [
    1,
    "",
    "http_client.ts: malformed status line: 'HTTP/1.1 200 OK\\x1b[2J'\n",
  ]);
  // A C1 control byte in a reason phrase is allowed (obs-text) but shown
  // escaped in the one line on stderr.
  assert.deepEqual([escape404.code, escape404.stderr], [
    1,
    `http_client.ts: ${origin}/escape-404 answered HTTP/1.1 404 Not\\x9b Found\n`,
  ]);
});

// ---------------------------------------------------------------------------
// Proxy: absolute form for http, CONNECT tunnel for https
// ---------------------------------------------------------------------------

/** Copies bytes one way until the source ends, then half-closes the target. */
async function pipe(from: Deno.Conn, to: Deno.Conn) {
  const buffer = new Uint8Array(16 * 1024);
  try {
    while (true) {
      const count = await from.read(buffer);
      if (count === null) break;
      await writeAll(to, buffer.subarray(0, count));
    }
    await (to as Deno.TcpConn).closeWrite();
  } catch {
    // One side went away: the other is closed by the caller.
  }
}

/** A tiny forward proxy recording each request line it receives. */
function startProxy() {
  const upstreams = new Set<Deno.Conn>();
  const proxy = serveRaw(
    Deno.listen({ hostname: "127.0.0.1", port: 0 }),
    async (request, client) => {
      const [method, target] = request.requestLine.split(" ");
      if (method === "CONNECT") {
        const [hostname, port] = [
          target.slice(0, target.lastIndexOf(":")),
          target.slice(target.lastIndexOf(":") + 1),
        ];
        const upstream = await Deno.connect({ hostname, port: Number(port) });
        upstreams.add(upstream);
        try {
          await send(client, "HTTP/1.1 200 Connection established\r\n\r\n");
          await Promise.all([pipe(client, upstream), pipe(upstream, client)]);
        } finally {
          upstreams.delete(upstream);
          upstream.close();
        }
        return;
      }
      // Absolute form: the URL names the server; pass the request on as is.
      const url = new URL(target);
      const upstream = await Deno.connect({
        hostname: url.hostname,
        port: Number(url.port),
      });
      upstreams.add(upstream);
      try {
        await writeAll(
          upstream,
          concat([encoder.encode(request.head), request.body]),
        );
        await pipe(upstream, client);
      } finally {
        upstreams.delete(upstream);
        upstream.close();
      }
    },
  );
  return {
    ...proxy,
    close: async () => {
      for (const upstream of upstreams) closeQuietly(upstream);
      await proxy.close();
    },
  };
}

Deno.test("CLI: --proxy sends the absolute-form request line for http", async () => {
  await using server = startRawServer();
  const proxy = startProxy();
  try {
    const origin = `http://127.0.0.1:${server.port}`;
    const result = await runScript(SCRIPT, [
      "--proxy",
      `http://127.0.0.1:${proxy.port}`,
      `${origin}/final?from=b#frag`,
    ]);
    assert.deepEqual([result.code, result.stdout], [0, "done\n"]);
    assert.equal(
      proxy.requests[0].requestLine,
      `GET ${origin}/final?from=b HTTP/1.1`,
    );
    assert.match(
      proxy.requests[0].head,
      new RegExp(`\r\nHost: 127\\.0\\.0\\.1:${server.port}\r\n`),
    );
    // requests' proxies with user:pass (001 §3): the credentials go to the
    // proxy as Proxy-Authorization, percent-escapes decoded.
    const withCredentials = await runScript(SCRIPT, [
      "--proxy",
      `http://ada:p%40ss@127.0.0.1:${proxy.port}`,
      `${origin}/length`,
    ]);
    assert.deepEqual([withCredentials.code, withCredentials.stdout], [
      0,
      "hello world\n",
    ]);
    assert.match(
      proxy.requests[1].head,
      new RegExp(`\r\nProxy-Authorization: Basic ${btoa("ada:p@ss")}\r\n`),
    );
    assert.doesNotMatch(proxy.requests[0].head, /Proxy-Authorization/);
    // The proxy refused: one line, exit 1.
    const refused = await runScript(SCRIPT, [
      "--proxy",
      `http://127.0.0.1:${closedPort()}`,
      `${origin}/length`,
    ]);
    assert.equal(refused.code, 1);
    assert.match(
      refused.stderr,
      /^http_client.ts: cannot connect to 127\.0\.0\.1:\d+: connection refused\n$/,
    );
  } finally {
    await proxy.close();
  }
});

// ---------------------------------------------------------------------------
// TLS with a throwaway CA (tests/helpers.ts makeTestCerts, with openssl)
// ---------------------------------------------------------------------------

const haveOpenssl = await hasCommand("openssl");
if (!haveOpenssl) skipBecause("openssl not installed (TLS tests)");

Deno.test({
  name:
    "TLS: https with --cacert, refused without it, and through a CONNECT tunnel",
  ignore: !haveOpenssl,
  async fn() {
    await using certs = await makeTestCerts();
    const dir = certs.dir;
    const tls = serveRaw(
      Deno.listenTls({
        hostname: "127.0.0.1",
        port: 0,
        cert: certs.cert,
        key: certs.key,
      }),
      respond,
    );
    const proxy = startProxy();
    try {
      const url = `https://127.0.0.1:${tls.port}`;
      // In-process.
      const response = await fetchWithSocket(`${url}/chunked`, {
        tls: { caCerts: [certs.ca] },
      });
      assert.equal(await bodyText(response), "Wikipedia in\r\n\r\nchunks.");

      const allow = ["--allow-net", `--allow-read=${dir}`];
      const [trusted, untrusted, tunnelled] = await Promise.all([
        runScript(SCRIPT, ["--cacert", `${dir}/ca.pem`, `${url}/length`], {
          allow,
        }),
        runScript(SCRIPT, [`${url}/length`]),
        runScript(SCRIPT, [
          "--cacert",
          `${dir}/ca.pem`,
          "--proxy",
          `http://tunnel:user@127.0.0.1:${proxy.port}`,
          "-o",
          `${dir}/tunnelled.bin`,
          `${url}/binary`,
        ], {
          allow: [...allow, `--allow-write=${dir}`],
        }),
      ]);
      assert.deepEqual([trusted.code, trusted.stdout, trusted.stderr], [
        0,
        "hello world\n",
        "",
      ]);
      assert.equal(untrusted.code, 1);
      assert.equal(untrusted.stdout, "");
      // One wording for every client (lib/dial.ts), naming the problem.
      assert.equal(
        untrusted.stderr,
        `http_client.ts: cannot connect to 127.0.0.1:${tls.port}: certificate not trusted (unknown issuer)\n`,
      );
      assert.deepEqual([tunnelled.code, tunnelled.stderr], [0, ""]);
      assert.deepEqual(await Deno.readFile(`${dir}/tunnelled.bin`), BINARY);
      assert.equal(
        proxy.requests[0].requestLine,
        `CONNECT 127.0.0.1:${tls.port} HTTP/1.1`,
      );
      assert.match(
        proxy.requests[0].head,
        new RegExp(
          `\r\nProxy-Authorization: Basic ${btoa("tunnel:user")}\r\n`,
        ),
      );
      // The proxy only ever saw the CONNECT line, never the path.
      assert.doesNotMatch(proxy.requests[0].head, /binary/);
      // The TLS server got the origin-form request through the tunnel.
      assert.ok(
        tls.requests.some((r) => r.requestLine === "GET /binary HTTP/1.1"),
      );
    } finally {
      await proxy.close();
      await tls.close();
    }
  },
});

Deno.test({
  name:
    "TLS: one way to pass CAs (tls.caCerts); a caller's tls.serverName holds straight and through a CONNECT tunnel",
  ignore: !haveOpenssl,
  async fn() {
    // A certificate for localhost only, served on 127.0.0.1: the URL's host
    // does not match it, the serverName "localhost" does.
    await using certs = await makeTestCerts({ names: ["DNS:localhost"] });
    await using tls = serveRaw(
      Deno.listenTls({
        hostname: "127.0.0.1",
        port: 0,
        cert: certs.cert,
        key: certs.key,
      }),
      respond,
    );
    const proxy = startProxy();
    try {
      const url = `https://127.0.0.1:${tls.port}/length`;
      const target = `127.0.0.1:${tls.port}`;
      const outcome = (options: Parameters<typeof fetchWithSocket>[1]) =>
        fetchWithSocket(url, options).then(
          (response) => bodyText(response),
          (error: Error) => error.message,
        );
      const viaProxy = { proxy: `http://127.0.0.1:${proxy.port}` };
      const trusted = { caCerts: [certs.ca] };
      for (const route of [{}, viaProxy]) {
        const where = route === viaProxy ? "through the proxy" : "straight";
        assert.equal(
          await outcome({
            ...route,
            tls: { ...trusted, serverName: "localhost" },
          }),
          "hello world\n",
          where,
        );
        assert.equal(
          await outcome({ ...route, tls: trusted }),
          `cannot connect to ${target}: certificate is not valid for 127.0.0.1`,
          where,
        );
        assert.equal(
          await outcome({
            ...route,
            tls: { ...trusted, serverName: "example.com" },
          }),
          `cannot connect to ${target}: certificate is not valid for example.com`,
          where,
        );
      }
      // The CAs have one place, tls.caCerts: a top-level caCerts (once a
      // second way, which an undefined tls.caCerts silently overrode) is no
      // option any more, and trusts nothing.
      assert.equal(
        await outcome({
          // @ts-expect-error: caCerts goes in tls, nowhere else
          caCerts: [certs.ca],
          tls: { serverName: "localhost" },
        }),
        `cannot connect to ${target}: certificate not trusted (unknown issuer)`,
      );
      // Every connection through the proxy was a tunnel to the server.
      assert.deepEqual(
        proxy.requests.map((request) => request.requestLine),
        Array(3).fill(`CONNECT ${target} HTTP/1.1`),
      );
    } finally {
      await proxy.close();
    }
  },
});

// A server that demands a client certificate: Python's ssl (Deno's own
// servers cannot ask for one yet, deno#26825). It answers "hello <CN>".
const CLIENT_CERT_SERVER = `
import socket, ssl, sys
cert, key, ca = sys.argv[1:4]
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
context.load_verify_locations(ca)
context.verify_mode = ssl.CERT_REQUIRED
server = socket.create_server(("127.0.0.1", 0))
server.settimeout(20)
print("port", server.getsockname()[1], flush=True)
for _ in range(2):
    conn, _ = server.accept()
    conn.settimeout(10)
    try:
        tls = context.wrap_socket(conn, server_side=True)
    except (ssl.SSLError, OSError) as error:
        conn.close()
        continue
    tls.recv(65536)
    subject = dict(pair[0] for pair in tls.getpeercert()["subject"])
    body = ("hello " + subject["commonName"] + "\\n").encode()
    tls.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(body) + body)
    tls.close()
`;

/**
 * A client certificate (extendedKeyUsage clientAuth) signed by the test CA
 * in `dir` (ca.pem, ca.key): client.pem and client.key there.
 */
async function makeClientCert(dir: string) {
  const openssl = async (args: string[]) => {
    const result = await runTool("openssl", args);
    if (result.code !== 0) throw new Error(`openssl: ${result.stderr}`);
  };
  await Deno.writeTextFile(
    `${dir}/client.ext`,
    "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n" +
      "extendedKeyUsage=clientAuth\nsubjectAltName=DNS:localhost\n",
  );
  await openssl([
    ...["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    ...["-nodes", "-keyout", `${dir}/client.key`, "-out", `${dir}/client.csr`],
    ...["-subj", "/CN=localhost"],
  ]);
  await openssl([
    ...["x509", "-req", "-in", `${dir}/client.csr`, "-days", "1"],
    ...["-CA", `${dir}/ca.pem`, "-CAkey", `${dir}/ca.key`, "-CAcreateserial"],
    ...["-extfile", `${dir}/client.ext`, "-out", `${dir}/client.pem`],
  ]);
  return { cert: `${dir}/client.pem`, key: `${dir}/client.key` };
}

Deno.test({
  name:
    "TLS: --client-cert/--client-key present a certificate to a server that demands one (Python ssl)",
  ignore: !haveOpenssl || !(await hasCommand("python3")),
  async fn() {
    await using certs = await makeTestCerts();
    const client = await makeClientCert(certs.dir);
    const python = await startChild(
      "python3",
      [
        "-u",
        "-c",
        CLIENT_CERT_SERVER,
        certs.certFile,
        certs.keyFile,
        certs.caFile,
      ],
      /port (\d+)/,
    );
    try {
      const url = `https://localhost:${python.match[1]}/`;
      const allow = ["--allow-net", `--allow-read=${certs.dir}`];
      const trust = ["--cacert", certs.caFile];
      const presented = await runScript(SCRIPT, [
        ...trust,
        "--client-cert",
        client.cert,
        "--client-key",
        client.key,
        url,
      ], { allow });
      assert.deepEqual(
        [presented.code, presented.stdout, presented.stderr],
        [0, "hello localhost\n", ""],
      );
      // Without one: the server's refusal, in one line.
      const refused = await runScript(SCRIPT, [...trust, url], { allow });
      assert.deepEqual([refused.code, refused.stdout], [1, ""]);
      assert.equal(
        refused.stderr,
        `http_client.ts: localhost:${
          python.match[1]
        }: the server requires a client certificate\n`,
      );
    } finally {
      await python.stop();
    }
    // Usage mistakes: one option without the other, or through a proxy
    // (a tunnel needs Deno.startTls, which cannot present a certificate).
    const alone = await runScript(SCRIPT, [
      "--client-cert",
      certs.certFile,
      "https://localhost:1/",
    ], { allow: ["--allow-net", `--allow-read=${certs.dir}`] });
    assert.deepEqual([alone.code, alone.stderr.split("\n")[0]], [
      2,
      "http_client.ts: --client-cert and --client-key go together: give both or neither",
    ]);
    const proxied = await runScript(SCRIPT, [
      "--client-cert",
      certs.certFile,
      "--client-key",
      certs.keyFile,
      "--proxy",
      `http://127.0.0.1:${closedPort()}`,
      "https://localhost:1/",
    ], { allow: ["--allow-net", `--allow-read=${certs.dir}`] });
    assert.deepEqual([proxied.code, proxied.stderr.split("\n")[0]], [
      2,
      "http_client.ts: --client-cert cannot be used through --proxy",
    ]);
  },
});

// ---------------------------------------------------------------------------
// Peers nobody here wrote: Python's http.server, Node's http
// ---------------------------------------------------------------------------

/** Starts a child and reads stdout until `pattern` matches; returns the match. */
async function startChild(command: string, args: string[], pattern: RegExp) {
  const child = new Deno.Command(command, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  let text = "";
  let match: RegExpExecArray | null = null;
  while (!(match = pattern.exec(text))) {
    const { value, done } = await reader.read();
    if (done) break;
    text += value;
  }
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // Already gone.
    }
    await reader.cancel();
    await child.status;
    clearTimeout(timer);
  };
  if (!match) {
    await stop();
    throw new Error(`${command} did not start: ${text}`);
  }
  return { match, stop };
}

const havePython = await hasCommand("python3");
if (!havePython) skipBecause("python3 not installed (http.server tests)");

Deno.test({
  name:
    "Python http.server: exact file bytes, 404 exit 1, HEAD, directory links",
  ignore: !havePython,
  async fn() {
    const dir = await Deno.makeTempDir();
    const python = await startChild(
      "python3",
      [
        "-u",
        "-m",
        "http.server",
        "0",
        "--bind",
        "127.0.0.1",
        "--directory",
        dir,
      ],
      /Serving HTTP on \S+ port (\d+)/,
    );
    try {
      await Deno.writeFile(`${dir}/data.bin`, BINARY);
      await Deno.writeTextFile(`${dir}/hello world.txt`, "hello\n");
      const origin = `http://127.0.0.1:${python.match[1]}`;

      const response = await fetchWithSocket(`${origin}/data.bin`);
      assert.equal(response.head.version, "HTTP/1.0");
      assert.deepEqual(await readToEnd(response.body), BINARY);
      response.close();

      const [file, missing, head, links] = await Promise.all([
        runScript(SCRIPT, [`${origin}/hello%20world.txt`]),
        runScript(SCRIPT, [`${origin}/nope`]),
        runScript(SCRIPT, ["-I", `${origin}/data.bin`]),
        runScript(SCRIPT, ["--links", `${origin}/`]),
      ]);
      assert.deepEqual([file.code, file.stdout], [0, "hello\n"]);
      assert.equal(missing.code, 1);
      assert.equal(
        missing.stderr,
        `http_client.ts: ${origin}/nope answered HTTP/1.0 404 File not found\n`,
      );
      assert.match(missing.stdout, /<title>Error response<\/title>/);
      assert.equal(head.code, 0);
      assert.match(
        head.stdout,
        new RegExp(
          `^HTTP/1.0 200 OK\r\n(.*\r\n)*Content-Length: ${BINARY.length}\r\n(.*\r\n)*\r\n$`,
        ),
      );
      assert.equal(
        links.stdout,
        `${origin}/data.bin\n${origin}/hello%20world.txt\n`,
      );
    } finally {
      await python.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

const haveNode = await hasCommand("node");
if (!haveNode) skipBecause("node not installed (chunked server test)");

const NODE_SERVER = `
const http = require("http");
const server = http.createServer((request, response) => {
  response.writeHead(200, { "Content-Type": "text/plain; charset=utf-8" });
  response.write("first, ");
  setImmediate(() => {
    response.write("zweite, ");
    setImmediate(() => response.end("третий\\n"));
  });
});
server.listen(0, "127.0.0.1", () => console.log("port " + server.address().port));
`;

Deno.test({
  name: "Node http server: chunked body decoded, headers shown with -i",
  ignore: !haveNode,
  async fn() {
    const node = await startChild("node", ["-e", NODE_SERVER], /port (\d+)/);
    try {
      const url = `http://127.0.0.1:${node.match[1]}/`;
      const response = await fetchWithSocket(url);
      assert.equal(
        response.headers.find(([name]) =>
          name.toLowerCase() === "transfer-encoding"
        )?.[1],
        "chunked",
      );
      assert.equal(await bodyText(response), "first, zweite, третий\n");

      const result = await runScript(SCRIPT, ["-i", url]);
      assert.equal(result.code, 0);
      assert.match(
        result.stdout,
        /^HTTP\/1\.1 200 OK\r\n(.*\r\n)*Transfer-Encoding: chunked\r\n(.*\r\n)*\r\nfirst, zweite, третий\n$/,
      );
    } finally {
      await node.stop();
    }
  },
});
