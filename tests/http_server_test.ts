import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  CONTENT_SECURITY_POLICY,
  escapeHtml,
  page,
  startHttpServer,
} from "../scripts/http_server.ts";
import {
  type MultipartEvent,
  MultipartParser,
} from "../scripts/http/multipart.ts";
import {
  hasCommand,
  makeTestCerts,
  readAll,
  readUntil,
  runScript,
  runTool,
  runWrk,
  scriptPath,
  skipBecause,
  startScript,
} from "./helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// The hello page is plain and short (the hot path); every other page
// shares page()'s layout, whose exact bytes are checked once below.
const HELLO_PAGE = `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Hello</title></head>
<body>
<h1>Hello world!</h1>
<p><a href="/register">Register</a> · <a href="/upload">Upload a file</a></p>
</body>
</html>
`;

const SAFE_HEADERS = "content-type: text/html; charset=utf-8\r\n" +
  "x-content-type-options: nosniff\r\n" +
  `content-security-policy: ${CONTENT_SECURITY_POLICY}\r\n`;

function errorPage(title: string, message: string): string {
  return page(title, `<h1>${title}</h1>\n<p>${message}</p>`);
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  return names.sort();
}

/** One request on a raw socket with Connection: close; the reply, Date masked. */
async function rawExchange(port: number, request: string): Promise<string> {
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(encoder.encode(request));
  const reply = decoder.decode(await readAll(conn));
  return reply.replace(
    /\r\ndate: ([^\r]*)\r\n/,
    (_, value: string) => {
      assert.match(value, /^\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT$/);
      return "\r\ndate: <date>\r\n";
    },
  );
}

/** Starts an in-process server on a fresh temporary directory. */
async function startTestServer(
  maxSize?: number,
  bodyTimeout?: number,
  idleTimeout?: number,
) {
  const dir = await Deno.makeTempDir({ prefix: "http_server_test_" });
  const server = await startHttpServer({
    dir,
    port: 0,
    maxSize,
    bodyTimeout,
    idleTimeout,
  });
  return {
    dir,
    base: `http://127.0.0.1:${server.addr.port}`,
    port: server.addr.port,
    async [Symbol.asyncDispose]() {
      await server.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

function uploadForm(name: string, bytes: Uint8Array<ArrayBuffer>): FormData {
  const form = new FormData();
  form.append("note", "ignored field");
  form.append("file", new File([bytes], name));
  return form;
}

Deno.test("every page: one layout, readable, and the CSP allows exactly its own style", async () => {
  const html = page("T", "<p>x</p>");
  const style = /<style>(.*)<\/style>/.exec(html)![1];
  assert.equal(
    html,
    `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>T</title>
<style>${style}</style>
</head>
<body>
<nav><a href="/">Home</a> · <a href="/register">Register</a> · <a href="/upload">Upload</a></nav>
<p>x</p>
</body>
</html>
`,
  );
  const hash = createHash("sha256").update(style).digest("base64");
  assert.equal(
    CONTENT_SECURITY_POLICY,
    `default-src 'none'; style-src 'sha256-${hash}'; form-action 'self'; frame-ancestors 'none'`,
  );
  await using server = await startTestServer(1024);
  const form = await (await fetch(`${server.base}/upload`)).text();
  assert.ok(form.includes("<p>Up to 1024 bytes."), form);
});

Deno.test("GET /, HEAD / and a 404: exact status, headers and body", async () => {
  await using server = await startTestServer();
  const headers = "content-type: text/html; charset=utf-8\r\n" +
    `content-length: ${encoder.encode(HELLO_PAGE).length}\r\n` +
    "date: <date>\r\n" +
    "connection: close\r\n\r\n";
  assert.equal(
    await rawExchange(
      server.port,
      "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ),
    "HTTP/1.1 200 OK\r\n" + headers + HELLO_PAGE,
  );
  assert.equal(
    await rawExchange(
      server.port,
      "HEAD /?q=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ),
    "HTTP/1.1 200 OK\r\n" + headers,
  );
  const missing = errorPage("404 Not Found", "Nothing here: /x");
  assert.equal(
    await rawExchange(
      server.port,
      "GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ),
    "HTTP/1.1 404 Not Found\r\n" + SAFE_HEADERS +
      `content-length: ${
        encoder.encode(missing).length
      }\r\ndate: <date>\r\nconnection: close\r\n\r\n` +
      missing,
  );
});

Deno.test("unknown path → 404, wrong method → 405 with Allow", async () => {
  await using server = await startTestServer();
  const notFound = await fetch(`${server.base}/missing`);
  assert.equal(notFound.status, 404);
  assert.equal(
    await notFound.text(),
    errorPage("404 Not Found", "Nothing here: /missing"),
  );
  // The path is echoed, so it must be escaped too.
  const sneaky = await fetch(`${server.base}/%3Cb%3E<i>`);
  assert.equal(sneaky.status, 404);
  assert.doesNotMatch(await sneaky.text(), /<i>|<b>/);

  for (
    const [method, path, allow] of [
      ["POST", "/", "GET, HEAD"],
      ["DELETE", "/", "GET, HEAD"],
      ["PUT", "/register", "GET, HEAD, POST"],
      ["DELETE", "/upload", "GET, HEAD, POST"],
    ]
  ) {
    const response = await fetch(`${server.base}${path}`, { method });
    assert.equal(response.status, 405, `${method} ${path}`);
    assert.equal(response.headers.get("allow"), allow);
    assert.equal(
      await response.text(),
      errorPage("405 Method Not Allowed", `Allowed methods: ${allow}.`),
    );
  }
});

Deno.test("/register: the form, and the answer escapes the user name", async () => {
  await using server = await startTestServer();
  const form = await fetch(`${server.base}/register`);
  assert.equal(form.status, 200);
  const formHtml = await form.text();
  assert.match(formHtml, /<form method="post" action="\/register">/);
  assert.match(formHtml, /<input name="username"/);
  assert.match(formHtml, /<input name="password" type="password"/);

  const response = await fetch(`${server.base}/register`, {
    method: "POST",
    body: new URLSearchParams({
      username: `<script>alert("x")</script>&'`,
      password: "secret",
    }),
  });
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("x-content-type-options"), "nosniff");
  const html = await response.text();
  assert.ok(
    html.includes(
      "<h1>Welcome, &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;!</h1>",
    ),
    html,
  );
  assert.ok(!html.includes("<script>"));
  assert.ok(!html.includes("secret"), "the password is never echoed");
});

Deno.test("/register: missing name 400, wrong type 415, oversized 413 (declared or chunked)", async () => {
  await using server = await startTestServer();
  const post = (body: BodyInit, headers: Record<string, string> = {}) =>
    fetch(`${server.base}/register`, { method: "POST", body, headers });

  const missing = await post(new URLSearchParams({ password: "x" }));
  assert.equal(missing.status, 400);
  assert.equal(
    await missing.text(),
    errorPage("400 Bad Request", "The user name is missing."),
  );

  const json = await post('{"username":"a"}', {
    "content-type": "application/json",
  });
  assert.equal(json.status, 415);
  await json.body?.cancel();

  const big = "username=" + "a".repeat(70 * 1024);
  const declared = await post(big, {
    "content-type": "application/x-www-form-urlencoded",
  });
  assert.equal(declared.status, 413);
  await declared.body?.cancel();

  // A stream body goes out chunked, with no Content-Length: counted instead.
  const chunked = await post(
    ReadableStream.from([encoder.encode(big)]),
    { "content-type": "application/x-www-form-urlencoded" },
  );
  assert.equal(chunked.status, 413);
  await chunked.body?.cancel();
});

Deno.test("/upload: the form; a file is stored byte for byte with its sha256", async () => {
  await using server = await startTestServer();
  const form = await fetch(`${server.base}/upload`);
  assert.match(
    await form.text(),
    /<form method="post" action="\/upload" enctype="multipart\/form-data">\n<p><input type="file" name="file" required><\/p>/,
  );

  // Binary content that contains a near-boundary and CRLFs.
  const bytes = new Uint8Array(300_000);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919) % 251;
  bytes.set(encoder.encode("\r\n--\r\n\r\n"), 1000);
  const response = await fetch(`${server.base}/upload`, {
    method: "POST",
    body: uploadForm("data é.bin", bytes),
  });
  assert.equal(response.status, 200);
  assert.ok(
    (await response.text()).includes(
      `<p>Stored <code>data é.bin</code>: 300000 bytes,\nsha256 <code>${
        sha256(bytes)
      }</code>.</p>`,
    ),
  );
  assert.deepEqual(await Deno.readFile(`${server.dir}/data é.bin`), bytes);
  assert.deepEqual(await listDir(server.dir), ["data é.bin"]);

  // An empty file is a file too.
  const empty = await fetch(`${server.base}/upload`, {
    method: "POST",
    body: uploadForm("empty", new Uint8Array()),
  });
  assert.equal(empty.status, 200);
  await empty.body?.cancel();
  assert.equal((await Deno.readFile(`${server.dir}/empty`)).length, 0);
});

const INVISIBLE =
  "file name must not contain invisible formatting characters (bidi, zero-width)";
const LOOKALIKE =
  "file name must not contain characters that look like &#39;/&#39; or &#39;\\&#39;";

Deno.test("/upload: unsafe names 400, existing name 409, nothing written", async () => {
  await using server = await startTestServer();
  await Deno.writeTextFile(`${server.dir}/taken.txt`, "original");
  const cases: [string, number, string][] = [
    ["..", 400, "file name &#39;..&#39; not allowed"],
    ["a\\b", 400, "file name must not contain &#39;/&#39; or &#39;\\&#39;"],
    ["bell\x07", 400, "file name must not contain control characters"],
    ["x".repeat(256), 400, "file name longer than 255 bytes"],
    // Names that would deceive a person reading a listing or a log.
    ["invoice\u202etxt.exe", 400, INVISIBLE],
    ["a\u200bb.txt", 400, INVISIBLE],
    ["   ", 400, "file name must not be only whitespace"],
    ["..\u2215x", 400, LOOKALIKE],
    [
      "taken.txt",
      409,
      "&#39;taken.txt&#39; already exists; choose another name.",
    ],
  ];
  for (const [name, status, message] of cases) {
    const response = await fetch(`${server.base}/upload`, {
      method: "POST",
      body: uploadForm(name, encoder.encode("evil")),
    });
    assert.equal(response.status, status, JSON.stringify(name));
    const title = status === 400 ? "400 Bad Request" : "409 Conflict";
    assert.equal(await response.text(), errorPage(title, message));
  }
  // A name with "/" never reaches us whole (FormData keeps it): send by hand.
  const boundary = "XyZ";
  const body =
    `--${boundary}\r\nContent-Disposition: form-data; name="file"; ` +
    `filename="../escape.txt"\r\n\r\nevil\r\n--${boundary}--\r\n`;
  const slash = await fetch(`${server.base}/upload`, {
    method: "POST",
    body,
    headers: { "content-type": `multipart/form-data; boundary=${boundary}` },
  });
  assert.equal(slash.status, 400);
  await slash.body?.cancel();
  // Two Content-Disposition headers: a filter reading the first and a store
  // using the last would disagree about the name. Refused.
  const twice = await fetch(`${server.base}/upload`, {
    method: "POST",
    body: `--${boundary}\r\n` +
      'Content-Disposition: form-data; name="file"; filename="safe.txt"\r\n' +
      'Content-Disposition: form-data; name="file"; filename="evil.txt"\r\n' +
      `\r\nevil\r\n--${boundary}--\r\n`,
    headers: { "content-type": `multipart/form-data; boundary=${boundary}` },
  });
  assert.equal(twice.status, 400);
  assert.equal(
    await twice.text(),
    errorPage("400 Bad Request", "A part has two Content-Disposition headers."),
  );
  assert.deepEqual(await listDir(server.dir), ["taken.txt"]);
  assert.equal(await Deno.readTextFile(`${server.dir}/taken.txt`), "original");
});

Deno.test("/upload: over --max-size → 413 (declared, or counted when chunked); malformed → 400/415", async () => {
  await using server = await startTestServer(1000);
  const declared = await fetch(`${server.base}/upload`, {
    method: "POST",
    body: uploadForm("big.bin", new Uint8Array(70 * 1024)),
  });
  assert.equal(declared.status, 413);
  assert.equal(
    await declared.text(),
    errorPage("413 Payload Too Large", "The file is larger than 1000 bytes."),
  );
  // Chunked: no Content-Length, the file part alone passes the limit.
  const form = new Response(uploadForm("big.bin", new Uint8Array(5000)));
  const chunked = await fetch(`${server.base}/upload`, {
    method: "POST",
    body: ReadableStream.from([new Uint8Array(await form.arrayBuffer())]),
    headers: { "content-type": form.headers.get("content-type")! },
  });
  assert.equal(chunked.status, 413);
  await chunked.body?.cancel();

  const notMultipart = await fetch(`${server.base}/upload`, {
    method: "POST",
    body: "x",
  });
  assert.equal(notMultipart.status, 415);
  await notMultipart.body?.cancel();
  for (
    const body of [
      '--B\r\nContent-Disposition: form-data; name="file"; filename="cut"\r\n\r\nno end',
      '--B\r\nContent-Disposition: form-data; name="other"\r\n\r\nx\r\n--B--\r\n',
      "--Bjunk",
    ]
  ) {
    const response = await fetch(`${server.base}/upload`, {
      method: "POST",
      body,
      headers: { "content-type": "multipart/form-data; boundary=B" },
    });
    assert.equal(response.status, 400, body);
    await response.body?.cancel();
  }
  // Nothing stored, no temporary file left behind.
  assert.deepEqual(await listDir(server.dir), []);
});

Deno.test("/upload: a client that vanishes mid-upload leaves nothing behind", async () => {
  await using server = await startTestServer();
  using conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  const head = "POST /upload HTTP/1.1\r\nHost: x\r\n" +
    "Content-Type: multipart/form-data; boundary=B\r\nContent-Length: 100000\r\n\r\n" +
    '--B\r\nContent-Disposition: form-data; name="file"; filename="half.bin"\r\n\r\n';
  await conn.write(encoder.encode(head + "x".repeat(5000)));
  // Wait until the temporary file exists (an upper bound, not a sleep).
  for (let i = 0; i < 200 && (await listDir(server.dir)).length === 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.match(
    (await listDir(server.dir))[0] ?? "",
    /^\.upload-[0-9a-f]{32}\.tmp$/,
  );
  conn.close();
  for (let i = 0; i < 200 && (await listDir(server.dir)).length > 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.deepEqual(await listDir(server.dir), []);
});

Deno.test("a stalled body gets 408 after --body-timeout; the upload leaves nothing", async () => {
  await using server = await startTestServer(undefined, 0.3);
  const stall = async (path: string, head: string, start: string) => {
    using conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: server.port,
    });
    await conn.write(encoder.encode(
      `POST ${path} HTTP/1.1\r\nHost: x\r\n${head}Content-Length: 1000\r\n\r\n${start}`,
    ));
    // The server answers by itself, though the body never came; the timer
    // is only an upper bound, so a server that never answers fails the test.
    const bound = setTimeout(() => conn.close(), 5000);
    try {
      return await readUntil(conn, "</html>\n");
    } finally {
      clearTimeout(bound);
    }
  };
  const upload = await stall(
    "/upload",
    "Content-Type: multipart/form-data; boundary=B\r\n",
    '--B\r\nContent-Disposition: form-data; name="file"; filename="slow.bin"\r\n\r\nxxxx',
  );
  assert.match(upload, /^HTTP\/1\.1 408 Request Timeout\r\n/);
  assert.ok(
    upload.includes(
      "<p>Too slow: a request body gets 0.3 s plus 1 s per KiB it sends.</p>",
    ),
    upload,
  );
  assert.deepEqual(await listDir(server.dir), []);

  const register = await stall(
    "/register",
    "Content-Type: application/x-www-form-urlencoded\r\n",
    "username=a",
  );
  assert.match(register, /^HTTP\/1\.1 408 Request Timeout\r\n/);
});

Deno.test("the multipart parser refuses a part header over 8 KiB, even in one chunk", () => {
  const body = encoder.encode(
    '--B\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n' +
      `X-Padding: ${"a".repeat(9000)}\r\n\r\ndata\r\n--B--\r\n`,
  );
  for (const size of [body.length, 1000]) {
    const parser = new MultipartParser("B");
    assert.throws(() => {
      for (let at = 0; at < body.length; at += size) {
        parser.feed(body.slice(at, at + size));
      }
    }, /part header is too large/);
  }
});

Deno.test("the multipart parser finds boundaries split across chunks of any size", () => {
  const body = "preamble\r\n--AaB03x\r\n" +
    'Content-Disposition: form-data; name="field"\r\n\r\nvalue\r\n' +
    "--AaB03x\r\n" +
    'Content-Disposition: form-data; name="file"; filename="f \\"q\\".txt"\r\n' +
    "Content-Type: text/plain\r\n\r\n" +
    "line1\r\n--AaB03 not yet\r\nline2\r\n--AaB03x--\r\nepilogue";
  const bytes = encoder.encode(body);
  for (const size of [1, 2, 3, 7, 64, bytes.length]) {
    const parser = new MultipartParser("AaB03x");
    const events: MultipartEvent[] = [];
    for (let at = 0; at < bytes.length; at += size) {
      events.push(...parser.feed(bytes.slice(at, at + size)));
    }
    assert.ok(parser.finished);
    const parts: {
      name: string | null;
      filename: string | null;
      data: string;
    }[] = [];
    for (const event of events) {
      if (event.kind === "part") {
        parts.push({ name: event.name, filename: event.filename, data: "" });
      } else parts.at(-1)!.data += decoder.decode(event.bytes);
    }
    assert.deepEqual(parts, [
      { name: "field", filename: null, data: "value" },
      {
        name: "file",
        filename: 'f \\"q\\".txt',
        data: "line1\r\n--AaB03 not yet\r\nline2",
      },
    ], `chunk size ${size}`);
  }
});

Deno.test("escapeHtml escapes the five HTML-special characters", () => {
  assert.equal(
    escapeHtml(`<a href="x">'&'</a>`),
    "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;",
  );
});

Deno.test({
  name:
    "curl: -F upload stores exact bytes, keep-alive reuses one connection, register escapes",
  ignore: !(await hasCommand("curl")),
  async fn() {
    await using server = await startTestServer();
    const file = await Deno.makeTempFile();
    try {
      const bytes = crypto.getRandomValues(new Uint8Array(50_000));
      await Deno.writeFile(file, bytes);
      const upload = await runTool("curl", [
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-F",
        `file=@${file};filename=curl.bin`,
        `${server.base}/upload`,
      ]);
      assert.equal(decoder.decode(upload.stdout), "200", upload.stderr);
      assert.deepEqual(await Deno.readFile(`${server.dir}/curl.bin`), bytes);
    } finally {
      await Deno.remove(file);
    }

    const several = await runTool("curl", [
      "-sv",
      "--http1.1",
      `${server.base}/`,
      `${server.base}/register`,
      `${server.base}/nope`,
    ]);
    assert.equal(several.code, 0);
    assert.equal(
      several.stderr.match(/Re-using existing connection/g)?.length,
      2,
    );
    assert.equal(several.stderr.match(/Connected to/g)?.length, 1);
    assert.ok(decoder.decode(several.stdout).startsWith(HELLO_PAGE));

    const register = await runTool("curl", [
      "-s",
      "--data-urlencode",
      "username=<script>",
      `${server.base}/register`,
    ]);
    assert.ok(
      decoder.decode(register.stdout).includes(
        "<h1>Welcome, &lt;script&gt;!</h1>",
      ),
    );
  },
});
if (!(await hasCommand("curl"))) skipBecause("curl not installed");

Deno.test({
  name: "Python urllib as a peer: GET, 404 and the register POST",
  ignore: !(await hasCommand("python3")),
  async fn() {
    await using server = await startTestServer();
    const program = `
import sys, urllib.request, urllib.parse, urllib.error
base = sys.argv[1]
with urllib.request.urlopen(base + "/", timeout=5) as r:
    print(r.status, r.headers["Content-Type"], len(r.read()))
try:
    urllib.request.urlopen(base + "/nope", timeout=5)
except urllib.error.HTTPError as e:
    print(e.code)
data = urllib.parse.urlencode({"username": "<b>bob</b>", "password": "x"}).encode()
with urllib.request.urlopen(base + "/register", data=data, timeout=5) as r:
    print("&lt;b&gt;bob&lt;/b&gt;" in r.read().decode())
`;
    const result = await runTool("python3", ["-c", program, server.base]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(
      decoder.decode(result.stdout),
      `200 text/html; charset=utf-8 ${
        encoder.encode(HELLO_PAGE).length
      }\n404\nTrue\n`,
    );
  },
});
if (!(await hasCommand("python3"))) skipBecause("python3 not installed");

/** The header's Run line, with a temporary directory for ./uploads. */
function runLine(dir: string) {
  return {
    allow: ["--allow-net", `--allow-read=${dir}`, `--allow-write=${dir}`],
    args: ["--dir", dir, "--port", "0"],
  };
}

Deno.test({
  name: "wrk -t1 -c100 -d2s on /: no socket errors, no non-2xx",
  ignore: !(await hasCommand("wrk")),
  async fn() {
    const dir = await Deno.makeTempDir();
    const { allow, args } = runLine(dir);
    try {
      // Recycling cuts busy keep-alive connections too, which wrk counts as
      // errors: off for this run (its cost is measured, not asserted).
      await using server = await startScript(
        "http_server.ts",
        [...args, "--idle-timeout", "0"],
        { allow },
      );
      const rate = await runWrk(`http://127.0.0.1:${server.port}/`);
      console.log(
        `http_server.ts under wrk -c100: ${rate.toFixed(0)} requests/s`,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
if (!(await hasCommand("wrk"))) skipBecause("wrk not installed");

Deno.test("subprocess: Run line permissions, SIGTERM during an upload → exit 0 fast, no temp file", async () => {
  const dir = await Deno.makeTempDir();
  const { allow, args } = runLine(dir);
  try {
    const server = await startScript("http_server.ts", args, { allow });
    assert.match(
      server.listeningLine,
      /^Listening on http:\/\/127\.0\.0\.1:\d+$/,
    );
    const response = await fetch(`http://127.0.0.1:${server.port}/upload`, {
      method: "POST",
      body: uploadForm("sub.txt", encoder.encode("via subprocess")),
    });
    assert.equal(response.status, 200);
    await response.body?.cancel();
    assert.equal(await Deno.readTextFile(`${dir}/sub.txt`), "via subprocess");

    // An upload left hanging halfway, then SIGTERM.
    using conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: server.port,
    });
    await conn.write(encoder.encode(
      "POST /upload HTTP/1.1\r\nHost: x\r\n" +
        "Content-Type: multipart/form-data; boundary=B\r\nContent-Length: 100000\r\n\r\n" +
        '--B\r\nContent-Disposition: form-data; name="file"; filename="hang"\r\n\r\nabc',
    ));
    for (let i = 0; i < 200 && (await listDir(dir)).length < 2; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const started = performance.now();
    const output = await server.stop("SIGTERM");
    assert.equal(output.code, 0, output.stderr);
    assert.ok(performance.now() - started < 2000);
    assert.equal(output.stderr, "");
    assert.deepEqual(await listDir(dir), ["sub.txt"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("subprocess: SIGINT exits 0; IPv6 listening line in brackets", async () => {
  const dir = await Deno.makeTempDir();
  const { allow } = runLine(dir);
  try {
    const server = await startScript("http_server.ts", [
      "--dir",
      dir,
      "--hostname",
      "::1",
      "--port",
      "0",
    ], { allow }).catch(() => null);
    if (!server) return skipBecause("no IPv6 loopback");
    assert.match(server.listeningLine, /^Listening on http:\/\/\[::1\]:\d+$/);
    const response = await fetch(`http://[::1]:${server.port}/`);
    assert.equal(await response.text(), HELLO_PAGE);
    assert.equal((await server.stop("SIGINT")).code, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("CLI errors: one line, a hint, exit 2; --help exits 0", async () => {
  for (
    const args of [
      ["--dir", ""],
      ["--idle-timeout", "soon"],
      ["--cert", "only-a-cert.pem"],
      ["--dir", "/tmp/x", "--port", "-1"],
      ["--dir", "/tmp/x", "--max-size", "lots"],
      ["--dir", "/tmp/x", "--bogus"],
    ]
  ) {
    const result = await runScript("http_server.ts", args);
    assert.equal(result.code, 2, args.join(" "));
    const lines = result.stderr.trim().split("\n");
    assert.equal(lines.length, 2, result.stderr);
    assert.match(lines[0], /^http_server\.ts: /);
  }
  const help = await runScript("http_server.ts", ["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: http_server\.ts/);
  // What a user must know before exposing it is in the help.
  for (
    const text of [
      "--allow-read=DIR",
      "uploads are off (405)",
      "--idle-timeout SECONDS",
      "plus 1 s per KiB",
      "--cert FILE",
      "cannot cap connections",
      "deno#26825",
      "reverse proxy",
    ]
  ) assert.ok(help.stdout.includes(text), text);
});

// ---------------------------------------------------------------------------
// No option at all, like the Flask hello it retells.

Deno.test("no options: pages work, uploads are off (the page says so, POST gets 405)", async () => {
  await using server = await startHttpServer({ port: 0 });
  const base = `http://127.0.0.1:${server.addr.port}`;
  assert.equal(await (await fetch(`${base}/`)).text(), HELLO_PAGE);
  const form = await (await fetch(`${base}/upload`)).text();
  assert.ok(
    form.includes(
      "<p>Uploads are off: the server was started without --dir.</p>",
    ),
    form,
  );
  assert.ok(!form.includes("<form"), "no form to fill in for nothing");
  const refused = await fetch(`${base}/upload`, {
    method: "POST",
    body: uploadForm("a.txt", encoder.encode("data")),
  });
  assert.equal(refused.status, 405);
  assert.equal(refused.headers.get("allow"), "GET, HEAD");
  assert.equal(
    await refused.text(),
    errorPage(
      "405 Method Not Allowed",
      "Uploads are off: the server was started without --dir.",
    ),
  );
  const register = await fetch(`${base}/register`, {
    method: "POST",
    body: new URLSearchParams({ username: "ann" }),
  });
  assert.equal(register.status, 200);
  await register.body?.cancel();
});

Deno.test("subprocess: runs with --allow-net alone and no option but --port 0", async () => {
  await using server = await startScript("http_server.ts", ["--port", "0"], {
    allow: ["--allow-net"],
  });
  assert.match(
    server.listeningLine,
    /^Listening on http:\/\/127\.0\.0\.1:\d+$/,
  );
  const response = await fetch(`http://127.0.0.1:${server.port}/`);
  assert.equal(await response.text(), HELLO_PAGE);
  const output = await server.stop("SIGTERM");
  assert.equal(output.code, 0);
  assert.equal(output.stderr, "");
});

// ---------------------------------------------------------------------------
// Slow and idle clients. Deno.serve has no timeout of its own for them;
// scripts/http/serve.ts bounds them (see its header for how, and the price).

interface Probe {
  /** When it was closed, in ms after it connected, or null if still open. */
  closedAfter: number | null;
  received: string;
}

/**
 * Connects, writes `head`, then one byte of `drip` every `everyMs` until the
 * server closes or `forMs` pass; reports what came back and when it closed.
 */
async function probe(
  port: number,
  head: string,
  drip: string,
  everyMs: number,
  forMs: number,
): Promise<Probe> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const started = performance.now();
  let closedAfter: number | null = null;
  let received = "";
  const reading = (async () => {
    const buffer = new Uint8Array(4096);
    try {
      for (let n; (n = await conn.read(buffer)) !== null;) {
        received += decoder.decode(buffer.subarray(0, n));
      }
    } catch {
      // Reset or closed by us: either way, over.
    }
    closedAfter ??= performance.now() - started;
  })();
  try {
    if (head) await conn.write(encoder.encode(head));
    for (let i = 0; closedAfter === null; i++) {
      if (performance.now() - started > forMs) break;
      await new Promise((resolve) => setTimeout(resolve, everyMs));
      if (drip && closedAfter === null) {
        await conn.write(encoder.encode(drip[i % drip.length])).catch(() => {});
      }
    }
  } finally {
    const stillOpen = closedAfter === null;
    conn.close();
    await reading;
    if (stillOpen) closedAfter = null;
  }
  return { closedAfter, received };
}

const FORM_HEAD = "POST /register HTTP/1.1\r\nHost: x\r\n" +
  "Content-Type: application/x-www-form-urlencoded\r\n";
const UPLOAD_HEAD = "POST /upload HTTP/1.1\r\nHost: x\r\n" +
  "Content-Type: multipart/form-data; boundary=B\r\n";

Deno.test("idle, silent and slow-head connections are closed within --idle-timeout", async () => {
  await using server = await startTestServer(undefined, undefined, 0.5);
  const [silent, slowHead, idle] = await Promise.all([
    probe(server.port, "", "", 100, 8000),
    probe(server.port, "GET / HTTP/1.1\r\n", "X-Slow: yes\r\n", 100, 8000),
    probe(server.port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "", 100, 8000),
  ]);
  // 0.5 s plus scheduling; on the old code all three stayed open.
  for (const [what, result] of Object.entries({ silent, slowHead, idle })) {
    assert.ok(
      result.closedAfter !== null && result.closedAfter < 4000,
      `${what}: ${JSON.stringify(result)}`,
    );
  }
  assert.equal(silent.received, "");
  assert.equal(slowHead.received, "", "half a request head gets no answer");
  assert.match(idle.received, /^HTTP\/1\.1 200 OK\r\n/);
  // And the server still serves.
  assert.equal(await (await fetch(`${server.base}/`)).text(), HELLO_PAGE);
});

Deno.test("an upload that spans several --idle-timeout periods is not cut by them", async () => {
  await using server = await startTestServer(undefined, undefined, 0.3);
  // 1.5 s of steady data: five recycling periods go by meanwhile.
  const head =
    '--B\r\nContent-Disposition: form-data; name="file"; filename="slow.bin"\r\n\r\n';
  let sent = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (sent === 0) controller.enqueue(encoder.encode(head));
      if (sent === 150_000) {
        controller.enqueue(encoder.encode("\r\n--B--\r\n"));
        return controller.close();
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
      controller.enqueue(new Uint8Array(10_000).fill(0x61));
      sent += 10_000;
    },
  });
  const response = await fetch(`${server.base}/upload`, {
    method: "POST",
    body,
    headers: { "content-type": "multipart/form-data; boundary=B" },
  });
  assert.equal(response.status, 200, await response.clone().text());
  await response.body?.cancel();
  assert.equal((await Deno.readFile(`${server.dir}/slow.bin`)).length, 150_000);
});

Deno.test("a trickled body gets 408 within --body-timeout plus 1 s per KiB, and its connection closes", async () => {
  await using server = await startTestServer(undefined, 0.5, 0);
  const results = await Promise.all([
    // One byte every 100 ms: on the old code each byte restarted the timer.
    probe(
      server.port,
      FORM_HEAD + "Content-Length: 1000\r\n\r\n",
      "a",
      100,
      9000,
    ),
    probe(
      server.port,
      UPLOAD_HEAD + "Content-Length: 100000\r\n\r\n" +
        '--B\r\nContent-Disposition: form-data; name="file"; filename="t"\r\n\r\n',
      "x",
      100,
      9000,
    ),
    probe(
      server.port,
      FORM_HEAD + "Transfer-Encoding: chunked\r\n\r\n",
      "1\r\na\r\n",
      100,
      9000,
    ),
  ]);
  for (const result of results) {
    // 0.5 s, the bytes' allowance, then at most 2 s of lingering.
    assert.ok(
      result.closedAfter !== null && result.closedAfter < 5000,
      JSON.stringify(result),
    );
    assert.match(result.received, /^HTTP\/1\.1 408 Request Timeout\r\n/);
    assert.match(result.received, /\r\nconnection: close\r\n/);
  }
  assert.deepEqual(await listDir(server.dir), []);
});

Deno.test("refused before the body is read (413): the rest is not read, the connection closes", async () => {
  await using server = await startTestServer(1000, undefined, 0);
  const result = await probe(
    server.port,
    UPLOAD_HEAD + "Content-Length: 10000000000\r\n\r\n",
    "x",
    100,
    9000,
  );
  // On the old code Deno.serve went on reading the 10 GB, one byte at a time.
  assert.ok(
    result.closedAfter !== null && result.closedAfter < 5000,
    JSON.stringify(result),
  );
  assert.match(result.received, /^HTTP\/1\.1 413 Payload Too Large\r\n/);
});

Deno.test("a body sent with GET, which Deno.serve reads by itself, is cut by --idle-timeout", async () => {
  // Deno.serve gives a GET handler no body to read, and after answering it
  // reads and drops the body itself, as slowly as the client sends it
  // (ext/http/http_next.rs: discard_body). Only recycling the listener ends
  // that; on the old code the connection stayed open as long as the client
  // kept sending.
  await using server = await startTestServer(undefined, undefined, 0.3);
  const result = await probe(
    server.port,
    "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n",
    "x",
    100,
    8000,
  );
  assert.ok(
    result.closedAfter !== null && result.closedAfter < 4000,
    JSON.stringify(result),
  );
  assert.match(result.received, /^HTTP\/1\.1 200 OK\r\n/);
  const after = await fetch(`${server.base}/`);
  await after.body?.cancel();
  assert.equal(after.status, 200);
});

// ---------------------------------------------------------------------------
// Malformed bodies and a full disk: an answer that says what went wrong.

Deno.test("a chunked body with a bad chunk size gets 400 and the connection closes", async () => {
  await using server = await startTestServer();
  for (const size of ["5junk", "-1", "f".repeat(18)]) {
    using conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: server.port,
    });
    await conn.write(encoder.encode(
      FORM_HEAD + "Transfer-Encoding: chunked\r\n\r\n9\r\nusername=\r\n",
    ));
    // The handler is reading by now; the bad size comes next.
    await new Promise((resolve) => setTimeout(resolve, 200));
    await conn.write(encoder.encode(`${size}\r\nhello\r\n0\r\n\r\n`));
    const bound = setTimeout(() => conn.close(), 5000);
    const reply = decoder.decode(await readAll(conn)); // the server closes
    clearTimeout(bound);
    assert.match(reply, /^HTTP\/1\.1 400 Bad Request\r\n/, size);
    assert.match(reply, /\r\nconnection: close\r\n/);
    assert.ok(
      reply.includes("<p>The request body is malformed or cut short.</p>"),
    );
  }
  // Sent in one piece with its head, a bad chunk never reaches the handler:
  // Deno.serve closes the connection without an answer (http_next.rs,
  // try_take_full_body). It costs that connection only.
  using conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  await conn.write(encoder.encode(
    FORM_HEAD + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n5junk\r\nx\r\n",
  ));
  const bound = setTimeout(() => conn.close(), 5000);
  assert.equal(decoder.decode(await readAll(conn)), "");
  clearTimeout(bound);
  assert.equal(await (await fetch(`${server.base}/`)).text(), HELLO_PAGE);
});

Deno.test({
  name:
    "a full disk: 500 that names the failure, one log line, no stack, the space is given back",
  ignore: !(await hasCommand("unshare")),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "http_server_full_" });
    try {
      // A 64 KiB file system of our own, in a private mount namespace that
      // disappears with the server.
      const child = new Deno.Command("unshare", {
        args: [
          "-rm",
          "sh",
          "-c",
          'mount -t tmpfs -o size=64k tmpfs "$1" && shift && exec "$@"',
          "sh",
          dir,
          Deno.execPath(),
          "run",
          "--allow-net",
          `--allow-read=${dir}`,
          `--allow-write=${dir}`,
          scriptPath("http_server.ts"),
          "--dir",
          dir,
          "--port",
          "0",
        ],
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const stderr = new Response(child.stderr).text();
      const lines = child.stdout.pipeThrough(new TextDecoderStream())
        .getReader();
      const first = (await lines.read()).value ?? "";
      const port = Number(/:(\d+)\n/.exec(first)?.[1]);
      if (!port) {
        child.kill("SIGKILL");
        await child.status;
        await lines.cancel();
        return skipBecause(`cannot mount a tmpfs here: ${await stderr}`);
      }
      try {
        const big = await fetch(`http://127.0.0.1:${port}/upload`, {
          method: "POST",
          body: uploadForm("big.bin", new Uint8Array(200_000)),
        });
        assert.equal(big.status, 500);
        const page = await big.text();
        assert.match(
          page,
          /<p>The file could not be stored \(storage failure: No space left on device \(os error 28\)\)\.<\/p>/,
        );
        // The temporary file went: a file that fits is stored.
        const small = await fetch(`http://127.0.0.1:${port}/upload`, {
          method: "POST",
          body: uploadForm("small.bin", new Uint8Array(40_000)),
        });
        assert.equal(small.status, 200);
        await small.body?.cancel();
      } finally {
        child.kill("SIGTERM");
        await lines.cancel();
      }
      assert.equal((await child.status).code, 0);
      const log = (await stderr).trim().split("\n");
      assert.equal(log.length, 1, log.join("\n"));
      assert.match(
        log[0],
        /^127\.0\.0\.1:\d+ upload "big\.bin": storage failure: No space left on device \(os error 28\)$/,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
if (!(await hasCommand("unshare"))) skipBecause("unshare not installed");

// ---------------------------------------------------------------------------
// Out of file descriptors, and signals.

Deno.test("out of file descriptors (ulimit -n 64): one log line, and it serves again when the load drops", async () => {
  const child = new Deno.Command("sh", {
    args: [
      "-c",
      'ulimit -n 64 && exec "$@"',
      "sh",
      Deno.execPath(),
      "run",
      "--allow-net",
      scriptPath("http_server.ts"),
      "--port",
      "0",
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const port = Number(/:(\d+)\n/.exec((await lines.read()).value ?? "")?.[1]);
  const flood: Deno.Conn[] = [];
  try {
    assert.ok(port > 0, "no Listening line");
    // More connections than descriptors: accept() fails with EMFILE, and on
    // the old code that ended Deno.serve and the process (exit 1).
    for (let i = 0; i < 120; i++) {
      try {
        flood.push(await Deno.connect({ hostname: "127.0.0.1", port }));
      } catch {
        break; // refused: the listener is down until descriptors come back
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
    for (const conn of flood.splice(0)) conn.close();
    // Served again: within a few seconds of the load dropping.
    let status = 0;
    for (let i = 0; i < 50 && status !== 200; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      status = await fetch(`http://127.0.0.1:${port}/`)
        .then(async (
          response,
        ) => (await response.body?.cancel(), response.status))
        .catch(() => 0);
    }
    assert.equal(status, 200);
  } finally {
    for (const conn of flood) conn.close();
    child.kill("SIGTERM");
    await lines.cancel();
  }
  assert.equal((await child.status).code, 0);
  const log = await stderr;
  assert.match(
    log,
    /^listener failed \(.*Too many open files \(os error 24\)\); listening again\n/,
  );
  assert.ok(!log.includes("Uncaught"), log);
  assert.ok(log.split("\n").length <= 4, `a few lines at most:\n${log}`);
});

Deno.test("two SIGTERMs 50 ms apart during a stalled upload: exit 0 within 2 s, no temp file", async () => {
  const dir = await Deno.makeTempDir();
  const { allow, args } = runLine(dir);
  try {
    const server = await startScript("http_server.ts", args, { allow });
    using conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: server.port,
    });
    await conn.write(encoder.encode(
      UPLOAD_HEAD + "Content-Length: 100000\r\n\r\n" +
        '--B\r\nContent-Disposition: form-data; name="file"; filename="hang"\r\n\r\nabc',
    ));
    for (let i = 0; i < 200 && (await listDir(dir)).length === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.equal((await listDir(dir)).length, 1, "the upload has begun");
    const started = performance.now();
    server.child.kill("SIGTERM");
    await new Promise((resolve) => setTimeout(resolve, 50));
    const output = await server.stop("SIGTERM");
    assert.equal(output.code, 0, output.stderr);
    assert.equal(output.signal, null);
    assert.ok(performance.now() - started < 2000);
    assert.deepEqual(await listDir(dir), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---------------------------------------------------------------------------
// TLS: --cert/--key give HTTPS, and Deno.serve then offers HTTP/2 by ALPN.

const haveTlsTools = await hasCommand("openssl") && await hasCommand("curl");

/** curl against the HTTPS server; returns its output, exit code and stderr. */
async function curl(args: string[]) {
  const result = await runTool("curl", ["-s", "--max-time", "10", ...args]);
  return { ...result, stdout: decoder.decode(result.stdout) };
}

Deno.test({
  name:
    "TLS subprocess: https:// line, HTTP/2 and HTTP/1.1 (curl), Python ssl, wrong CA and wrong name fail alone",
  ignore: !haveTlsTools,
  async fn() {
    await using certs = await makeTestCerts();
    await using server = await startScript("http_server.ts", [
      "--cert",
      certs.certFile,
      "--key",
      certs.keyFile,
      "--port",
      "0",
    ], { allow: ["--allow-net", `--allow-read=${certs.dir}`] });
    assert.match(
      server.listeningLine,
      /^Listening on https:\/\/127\.0\.0\.1:\d+$/,
    );
    const url = `https://localhost:${server.port}/`;
    const h2 = await curl(["-i", "--http2", "--cacert", certs.caFile, url]);
    assert.equal(h2.code, 0, h2.stderr);
    assert.match(h2.stdout, /^HTTP\/2 200 \r\n/);
    assert.ok(h2.stdout.endsWith(HELLO_PAGE));
    const h1 = await curl(["-i", "--http1.1", "--cacert", certs.caFile, url]);
    assert.match(h1.stdout, /^HTTP\/1\.1 200 OK\r\n/);
    // HEAD over HTTP/2: the length of the page, and no body (a body there
    // is a protocol error to curl and browsers); a 404 likewise.
    const length = new TextEncoder().encode(HELLO_PAGE).length;
    for (const [path, status] of [["", 200], ["missing", 404]] as const) {
      const head = await curl([
        "-I",
        "--http2",
        "--cacert",
        certs.caFile,
        url + path,
      ]);
      assert.equal(head.code, 0, head.stderr);
      assert.match(head.stdout, new RegExp(`^HTTP/2 ${status} \r\n`));
      if (status === 200) {
        assert.match(head.stdout, new RegExp(`content-length: ${length}\r\n`));
      }
    }
    // An upload form posted over HTTP/2 reaches the same handler.
    const form = await curl([
      "--http2",
      "--cacert",
      certs.caFile,
      "--data-urlencode",
      "username=<b>",
      `${url}register`,
    ]);
    assert.ok(form.stdout.includes("<h1>Welcome, &lt;b&gt;!</h1>"));

    // A CA that signed nothing here, and a name the certificate lacks.
    const untrusted = await curl(["--cacert", certs.otherCaFile, url]);
    assert.equal(untrusted.code, 60, "curl: peer certificate not trusted");
    const misnamed = await curl([
      "--cacert",
      certs.caFile,
      "--resolve",
      `example.com:${server.port}:127.0.0.1`,
      `https://example.com:${server.port}/`,
    ]);
    assert.ok([51, 60].includes(misnamed.code), `curl exit ${misnamed.code}`);
    // Plain HTTP to the HTTPS port costs that connection only.
    const plain = await curl([`http://127.0.0.1:${server.port}/`]);
    assert.notEqual(plain.code, 0);

    if (await hasCommand("python3")) {
      const program = `
import http.client, ssl, sys
context = ssl.create_default_context(cafile=sys.argv[1])
conn = http.client.HTTPSConnection("localhost", int(sys.argv[2]), context=context, timeout=5)
conn.request("GET", "/")
response = conn.getresponse()
print(response.status, response.version, conn.sock.version(), len(response.read()))
`;
      const python = await runTool("python3", [
        "-c",
        program,
        certs.caFile,
        String(server.port),
      ]);
      assert.equal(python.code, 0, python.stderr);
      assert.match(
        decoder.decode(python.stdout),
        new RegExp(
          `^200 11 TLSv1\\.[23] ${encoder.encode(HELLO_PAGE).length}\n$`,
        ),
      );
    } else skipBecause("python3 not installed");

    // After all that, it still serves.
    const again = await curl(["--http2", "--cacert", certs.caFile, url]);
    assert.equal(again.stdout, HELLO_PAGE);
    const output = await server.stop("SIGTERM");
    assert.equal(output.code, 0);
  },
});
if (!haveTlsTools) skipBecause("openssl or curl not installed");

Deno.test({
  name: "TLS in-process: 50 concurrent clients, and ::1",
  ignore: !(await hasCommand("openssl")),
  async fn() {
    await using certs = await makeTestCerts();
    const tls = { cert: certs.cert, key: certs.key };
    await using server = await startHttpServer({ port: 0, tls });
    using client = Deno.createHttpClient({ caCerts: [certs.ca] });
    const url = `https://localhost:${server.addr.port}/`;
    const pages = await Promise.all(
      Array.from(
        { length: 50 },
        () => fetch(url, { client }).then((response) => response.text()),
      ),
    );
    assert.ok(pages.every((page) => page === HELLO_PAGE));

    await using v6 = await startHttpServer({ hostname: "::1", port: 0, tls })
      .catch(() => null);
    if (v6 === null) return skipBecause("no IPv6 loopback");
    const response = await fetch(`https://[::1]:${v6.addr.port}/`, { client });
    assert.equal(await response.text(), HELLO_PAGE);
  },
});

Deno.test({
  name:
    "known gap (Deno.serve): a client stalled mid-TLS-handshake keeps its socket, even across recycling",
  ignore: !(await hasCommand("openssl")),
  async fn() {
    // Deno.serve's TLS handshake runs in a task of its own that neither
    // shutdown() nor aborting the server stops (seen open after 120 s), so no
    // bound we set reaches it. Each such client holds one descriptor: with
    // TLS exposed to strangers, terminate it in a proxy that bounds
    // handshakes. This test documents the gap; it fails the day it closes.
    await using certs = await makeTestCerts();
    const tls = { cert: certs.cert, key: certs.key };
    await using server = await startHttpServer({
      port: 0,
      tls,
      idleTimeout: 0.3,
    });
    const stalled = await probe(
      server.addr.port,
      "\x16\x03\x01",
      "",
      100,
      1500,
    );
    assert.equal(stalled.closedAfter, null, JSON.stringify(stalled));
    using client = Deno.createHttpClient({ caCerts: [certs.ca] });
    const url = `https://localhost:${server.addr.port}/`;
    assert.equal(await (await fetch(url, { client })).text(), HELLO_PAGE);
  },
});
