// Tests for scripts/http/response.ts and connect.ts, the HTTP client's
// reading of a response and its URLs: readers fed bytes a few at a time (as
// a slow network hands them out), on lib/http1.ts's grammar.
import assert from "node:assert/strict";
import { HttpError } from "../lib/http1.ts";
import { BufferedReader } from "../lib/reader.ts";
import {
  parseHttpUrl,
  parseProxy,
  proxyAuthorization,
} from "../scripts/http/connect.ts";
import {
  ChunkedBody,
  readFinalHead,
  readResponseHead,
  redirectOf,
} from "../scripts/http/response.ts";
import { concat, readToEnd, trickle } from "./helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const BINARY = (() => {
  // Every byte value, then 300 KB of a pattern that is not valid UTF-8.
  const bytes = new Uint8Array(256 + 300_000);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 131 + (i >> 8)) & 0xff;
  for (let i = 0; i < 256; i++) bytes[i] = i;
  return bytes;
})();

Deno.test("response head: parsed byte by byte, folded lines joined, body left unread", async () => {
  const reader = new BufferedReader(trickle(
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Folded: one\r\n  two\r\nX-Empty:\r\n" +
      "Bare-LF:  yes  \n\r\nBODY",
  ));
  const head = await readResponseHead(reader);
  assert.equal(head.version, "HTTP/1.1");
  assert.equal(head.status, 200);
  assert.equal(head.reason, "OK");
  assert.equal(head.statusLine, "HTTP/1.1 200 OK");
  assert.deepEqual(head.headers, [
    ["Content-Type", "text/plain"],
    ["X-Folded", "one two"],
    ["X-Empty", ""],
    ["Bare-LF", "yes"],
  ]);
  assert.equal(decoder.decode(await readToEnd(reader)), "BODY");
});

Deno.test("response head: a status line without a reason phrase is accepted", async () => {
  const head = await readResponseHead(
    new BufferedReader(trickle("HTTP/1.0 404\r\n\r\n")),
  );
  assert.equal(head.status, 404);
  assert.equal(head.reason, "");
});

Deno.test("response head: malformed status and header lines are errors", async () => {
  for (
    const bad of [
      "ICY 200 OK\r\n\r\n",
      "HTTP/2 200 OK\r\n\r\n",
      "HTTP/1.1 20 OK\r\n\r\n",
      "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
      "HTTP/1.1 200 OK\r\nSpace Before : colon\r\n\r\n",
      "HTTP/1.1 200 OK\r\n folded first\r\n\r\n",
    ]
  ) {
    await assert.rejects(
      readResponseHead(new BufferedReader(trickle(bad, 3))),
      (error) => error instanceof HttpError && /malformed/.test(error.message),
      JSON.stringify(bad),
    );
  }
});

Deno.test("response head: cut short or empty is an error", async () => {
  await assert.rejects(
    readResponseHead(new BufferedReader(trickle(""))),
    /closed the connection without answering/,
  );
  await assert.rejects(
    readResponseHead(
      new BufferedReader(trickle("HTTP/1.1 200 OK\r\nA: b\r\n")),
    ),
    /closed in the middle of the headers/,
  );
});

Deno.test("response head: over 64 KiB is refused without reading much more", async () => {
  // Many headers, and one endless line: both stop near the limit.
  const many = "HTTP/1.1 200 OK\r\n" +
    "X-A: aaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(3000) + "\r\n";
  await assert.rejects(
    readResponseHead(new BufferedReader(trickle(many, 1000))),
    /larger than 65536 bytes/,
  );
  const endless = trickle(
    "HTTP/1.1 200 OK\r\nX-Endless: " + "y".repeat(1_000_000),
    4096,
  );
  await assert.rejects(
    readResponseHead(new BufferedReader(endless)),
    /larger than 65536 bytes/,
  );
  assert.ok(endless.offset < 70_000, `read ${endless.offset} bytes`);
  // Exactly at the limit is fine.
  const line = "HTTP/1.1 200 OK";
  const filler = "X: " + "z".repeat(65536 - (line.length + 2) - 2 - 2 - 3);
  const head = await readResponseHead(
    new BufferedReader(trickle(`${line}\r\n${filler}\r\n\r\n`, 999)),
    65536,
  );
  assert.equal(head.headers[0][1].length, filler.length - 3);
  // One byte more is not.
  await assert.rejects(
    readResponseHead(
      new BufferedReader(trickle(`${line}\r\n${filler}z\r\n\r\n`, 999)),
      65536,
    ),
    /larger than 65536 bytes/,
  );
});

Deno.test("chunked body: sizes, extensions and trailers, one byte at a time", async () => {
  const reader = new BufferedReader(trickle(
    '4;name=value\r\nWiki\r\n5 ; q="a;b"\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n' +
      "0\r\nX-Checksum: 42\r\nExpires: never\r\n\r\nNEXT",
  ));
  const body = new ChunkedBody(reader);
  assert.equal(
    decoder.decode(await readToEnd(body)),
    "Wikipedia in\r\n\r\nchunks.",
  );
  assert.deepEqual(body.trailers, [["X-Checksum", "42"], ["Expires", "never"]]);
  // Nothing past the body was taken.
  assert.equal(decoder.decode(await readToEnd(reader)), "NEXT");
});

Deno.test("chunked body: binary data and large chunks come through unchanged", async () => {
  const wire = concat(
    encoder.encode(BINARY.length.toString(16) + "\r\n"),
    BINARY,
    encoder.encode("\r\n1\r\nZ\r\n0\r\n\r\n"),
  );
  const body = await readToEnd(
    new ChunkedBody(new BufferedReader(trickle(wire, 1500))),
  );
  assert.deepEqual(body.subarray(0, BINARY.length), BINARY);
  assert.equal(decoder.decode(body.subarray(BINARY.length)), "Z");
});

Deno.test("chunked body: malformed framing is an error", async () => {
  const cases: [string, RegExp][] = [
    ["zz\r\nhello\r\n0\r\n\r\n", /malformed chunk size/],
    ["-5\r\nhello\r\n0\r\n\r\n", /malformed chunk size/],
    ["3\r\nhello\r\n0\r\n\r\n", /longer than its declared size/],
    ["5\r\nhel", /middle of a chunk/],
    ["5\r\nhello\r\n", /middle of a chunked body/],
    ["0\r\nTrailer: cut", /middle of a line/],
    ["0\r\nbad trailer\r\n\r\n", /malformed trailer/],
    ["10000000000000\r\n", /malformed chunk size/], // 14 hex digits: absurd
  ];
  for (const [wire, expected] of cases) {
    await assert.rejects(
      readToEnd(new ChunkedBody(new BufferedReader(trickle(wire, 2)))),
      expected,
      wire,
    );
  }
});

Deno.test("response head: control characters are refused and shown escaped, never raw", async () => {
  const cases: [string, RegExp][] = [
    [
      "HTTP/1.1 200 OK\x1b[2J\r\n\r\n",
      /^malformed status line: 'HTTP\/1\.1 200 OK\\x1b\[2J'$/,
    ],
    [
      "HTTP/1.1 200 OK\r\nX: a\x1b]0;pwned\x07b\r\n\r\n",
      /^malformed header line: 'X: a\\x1b\]0;pwned\\x07b'$/,
    ],
    [
      "HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n",
      /^malformed header line: 'X: a\\x00b'$/,
    ],
    [
      "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
      /^malformed header line: 'X: a\\x0db'$/,
    ],
    [
      "HTTP/1.1 200 OK\r\nX: a\r\n \x1bfolded\r\n\r\n",
      /^malformed header line: ' \\x1bfolded'$/,
    ],
  ];
  for (const [wire, expected] of cases) {
    await assert.rejects(
      readResponseHead(new BufferedReader(trickle(wire, 5))),
      (error) => error instanceof HttpError && expected.test(error.message),
      JSON.stringify(wire),
    );
  }
  // Tab and bytes 0x80-0xFF (obs-text) are allowed in a value, kept as latin1.
  const head = await readResponseHead(
    new BufferedReader(trickle(concat(
      encoder.encode("HTTP/1.1 200 Ok\tfine\r\nX-Latin1: caf"),
      Uint8Array.of(0xe9, 0x09, 0x80),
      encoder.encode("\r\n\r\n"),
    ))),
  );
  assert.equal(head.reason, "Ok\tfine");
  assert.deepEqual(head.headers, [["X-Latin1", "caf\u00e9\t\u0080"]]);
});

Deno.test("readFinalHead skips up to 10 interim (1xx) heads, then refuses", async () => {
  const interim = "HTTP/1.1 100 Continue\r\n\r\n";
  const reader = new BufferedReader(
    trickle(interim.repeat(10) + "HTTP/1.1 204 No Content\r\n\r\n", 7),
  );
  assert.equal((await readFinalHead(reader, 65536)).status, 204);
  await assert.rejects(
    readFinalHead(new BufferedReader(trickle(interim.repeat(11))), 65536),
    /^Error: more than 10 interim \(1xx\) responses$|more than 10 interim/,
  );
});

Deno.test("redirectOf: which answers redirect, where to, and with which method", () => {
  const head = (status: number, location?: string) => ({
    version: "HTTP/1.1",
    status,
    reason: "",
    statusLine: "",
    headers: location === undefined
      ? []
      : [["LOCATION", location]] as [string, string][],
    lines: [],
  });
  const from = new URL("http://a.test/dir/page?x=1");
  assert.equal(redirectOf(head(200, "/b"), from, "GET"), undefined);
  assert.equal(redirectOf(head(304, "/b"), from, "GET"), undefined);
  assert.equal(redirectOf(head(302), from, "GET"), undefined);
  const cases: [number, string, string, boolean][] = [
    [301, "POST", "GET", false],
    [302, "POST", "GET", false],
    [302, "GET", "GET", true],
    [303, "POST", "GET", false],
    [303, "PUT", "GET", false],
    [303, "HEAD", "HEAD", true],
    [307, "POST", "POST", true],
    [308, "POST", "POST", true],
  ];
  for (const [status, method, next, keepsBody] of cases) {
    const redirect = redirectOf(head(status, "other?y=2#f"), from, method);
    assert.deepEqual(
      [redirect?.url.href, redirect?.method, redirect?.keepsBody],
      ["http://a.test/dir/other?y=2#f", next, keepsBody],
      `${status} ${method}`,
    );
  }
  assert.equal(
    redirectOf(head(301, "https://b.test:8443/"), from, "GET")?.url.href,
    "https://b.test:8443/",
  );
  for (const location of ["ftp://a.test/", "http://[nope/", "javascript:x"]) {
    assert.throws(
      () => redirectOf(head(302, location), from, "GET"),
      /^Error: redirect to an unusable URL: |redirect to an unusable URL/,
    );
  }
});

Deno.test("parseHttpUrl, parseProxy and proxyAuthorization", () => {
  assert.equal(parseHttpUrl("http://[::1]:8000/x").hostname, "[::1]");
  assert.throws(() => parseHttpUrl("ftp://a/"), /unsupported scheme 'ftp:'/);
  assert.throws(() => parseHttpUrl("http://exa mple/"), /not a valid URL/);
  assert.equal(parseProxy("http://127.0.0.1:3128").port, "3128");
  for (
    const bad of [
      "socks5://127.0.0.1:1080",
      "https://127.0.0.1:3128",
      "http://127.0.0.1:3128/path",
      "http://127.0.0.1:3128/?q",
      "127.0.0.1:3128",
    ]
  ) {
    assert.throws(
      () => parseProxy(bad),
      (error) =>
        error instanceof Error &&
        error.message ===
          `--proxy must look like http://host:port, got '${bad}'`,
      bad,
    );
  }
  assert.equal(proxyAuthorization(parseProxy("http://h:1")), undefined);
  // requests' proxies with user:pass (001 §3): percent-escapes decoded,
  // then user:pass as UTF-8, in base64.
  const auth = proxyAuthorization(
    parseProxy("http://j%C3%BCrgen:p%40ss:w@h:1"),
  );
  assert.equal(auth, "Basic " + btoa("j\xc3\xbcrgen:p@ss:w"));
  assert.equal(
    decoder.decode(
      Uint8Array.from(atob(auth!.slice(6)), (c) => c.charCodeAt(0)),
    ),
    "jürgen:p@ss:w",
  );
});
