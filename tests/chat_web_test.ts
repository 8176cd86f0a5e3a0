// Tests for chat_server.ts --web-port (scripts/chat/web.ts, websocket.ts,
// page.ts): the page and its HTTP answers, WebSocket members next to TCP
// members in one room, with clients nobody here wrote (Deno's WebSocket,
// npm:ws, Python's websockets, real headless Chromium) and hand-made frames
// for the hostile cases (fragments, pings, unmasked or invalid frames, a
// peer that never reads), TLS (https and wss://), IPv6, the CLI and SIGTERM.
import assert from "node:assert/strict";
import {
  type ChatServerOptions,
  startChatServer,
} from "../scripts/chat_server.ts";
import { writeAll } from "../lib/io.ts";
import {
  CHROMIUM,
  hasCommand,
  launchChromium,
  LinePeer,
  makeTestCerts,
  readUntil,
  runScript,
  runTool,
  skipBecause,
  startScript,
  within,
} from "./helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A server on free ports (chat and web) that logs into an array. */
function startServer(options: ChatServerOptions = {}) {
  const log: string[] = [];
  const server = startChatServer({
    port: 0,
    webPort: 0,
    log: (line) => log.push(line),
    ...options,
  });
  return { server, port: server.addr.port, web: server.webAddr!.port, log };
}

/** A TCP member (nc's way): LinePeer, with next() like Browserless's. */
class Line extends LinePeer {
  static async connect(port: number, hostname = "127.0.0.1") {
    const peer = new Line(await Deno.connect({ hostname, port }));
    assert.match(await peer.next(), /^\* welcome guest\d+; /);
    return peer;
  }
  next(ms = 5000): Promise<string> {
    return this.line(ms);
  }
}

/** Deno's own WebSocket client as a member: messages in order. */
class Browserless {
  #messages: (string | Error)[] = [];
  #waiting?: () => void;
  closed: Promise<CloseEvent>;
  constructor(readonly socket: WebSocket) {
    socket.onmessage = (event) => this.#push(String(event.data));
    this.closed = new Promise((resolve) => {
      socket.onclose = (event) => {
        this.#push(new Error(`closed ${event.code} ${event.reason}`));
        resolve(event);
      };
    });
  }
  static async connect(url: string, welcome = true) {
    const peer = new Browserless(new WebSocket(url));
    await within(
      5000,
      new Promise((resolve, reject) => {
        peer.socket.onopen = resolve;
        peer.socket.onerror = () => reject(new Error(`cannot open ${url}`));
      }),
      "the WebSocket to open",
    );
    if (welcome) assert.match(await peer.next(), /^\* welcome guest\d+; /);
    return peer;
  }
  #push(item: string | Error) {
    this.#messages.push(item);
    this.#waiting?.();
  }
  async next(ms = 5000): Promise<string> {
    await within(
      ms,
      (async () => {
        while (this.#messages.length === 0) {
          await new Promise<void>((resolve) => this.#waiting = resolve);
        }
      })(),
      "a message",
    );
    const item = this.#messages.shift()!;
    if (item instanceof Error) throw item;
    return item;
  }
  async expect(...messages: string[]) {
    for (const message of messages) assert.equal(await this.next(), message);
  }
  async [Symbol.asyncDispose]() {
    this.socket.close();
    await within(5000, this.closed, "the WebSocket to close");
  }
}

/**
 * Frames made by hand, for what no polite client sends: fragments, pings,
 * unmasked frames, invalid text, a peer that never reads.
 */
class RawSocket {
  #buffer = new Uint8Array(0);
  constructor(readonly conn: Deno.TcpConn) {}
  static async connect(port: number, headers = "") {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAll(
      conn,
      encoder.encode(
        `GET /ws HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
          "Upgrade: websocket\r\nConnection: Upgrade\r\n" +
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
          `Sec-WebSocket-Version: 13\r\n${headers}\r\n`,
      ),
    );
    const raw = new RawSocket(conn);
    const head = await raw.#until("\r\n\r\n");
    return { raw, head };
  }
  async #until(mark: string): Promise<string> {
    while (true) {
      const text = decoder.decode(this.#buffer);
      const at = text.indexOf(mark);
      if (at >= 0) {
        this.#buffer = this.#buffer.slice(at + mark.length);
        return text.slice(0, at);
      }
      await this.#more();
    }
  }
  async #more() {
    const chunk = new Uint8Array(65536);
    const count = await within(5000, this.conn.read(chunk), "server bytes");
    if (count === null) throw new Error("closed");
    const joined = new Uint8Array(this.#buffer.length + count);
    joined.set(this.#buffer);
    joined.set(chunk.subarray(0, count), this.#buffer.length);
    this.#buffer = joined;
  }
  /** One frame; masked unless told otherwise, as clients must. */
  send(opcode: number, payload: Uint8Array | string, fin = true, mask = true) {
    const bytes = typeof payload === "string"
      ? encoder.encode(payload)
      : payload;
    const size = bytes.length;
    const extra = size < 126 ? 0 : size < 65536 ? 2 : 8;
    const frame = new Uint8Array(2 + extra + (mask ? 4 : 0) + size);
    frame[0] = (fin ? 0x80 : 0) | opcode;
    frame[1] = (mask ? 0x80 : 0) |
      (extra === 0 ? size : extra === 2 ? 126 : 127);
    const view = new DataView(frame.buffer);
    if (extra === 2) view.setUint16(2, size);
    if (extra === 8) view.setBigUint64(2, BigInt(size));
    const key = mask ? crypto.getRandomValues(new Uint8Array(4)) : undefined;
    if (key) frame.set(key, 2 + extra);
    const start = 2 + extra + (mask ? 4 : 0);
    for (let i = 0; i < size; i++) {
      frame[start + i] = key ? bytes[i] ^ key[i & 3] : bytes[i];
    }
    return writeAll(this.conn, frame);
  }
  /** The next frame from the server: [opcode, payload]. */
  async frame(): Promise<[number, Uint8Array]> {
    while (this.#buffer.length < 2) await this.#more();
    const short = this.#buffer[1] & 0x7f;
    assert.equal(this.#buffer[1] & 0x80, 0, "server frames are not masked");
    const extra = short === 126 ? 2 : short === 127 ? 8 : 0;
    while (this.#buffer.length < 2 + extra) await this.#more();
    const view = new DataView(this.#buffer.buffer, 2);
    const size = extra === 2
      ? view.getUint16(0)
      : extra === 8
      ? Number(view.getBigUint64(0))
      : short;
    while (this.#buffer.length < 2 + extra + size) await this.#more();
    assert.equal(this.#buffer[0] & 0xf0, 0x80, "FIN, no extension bits");
    const result: [number, Uint8Array] = [
      this.#buffer[0] & 0x0f,
      this.#buffer.slice(2 + extra, 2 + extra + size),
    ];
    this.#buffer = this.#buffer.slice(2 + extra + size);
    return result;
  }
  async text(): Promise<string> {
    const [opcode, payload] = await this.frame();
    assert.equal(opcode, 1, `a text frame, got opcode ${opcode}`);
    return decoder.decode(payload);
  }
  /** The close frame's code and reason. */
  async closing(): Promise<[number, string]> {
    while (true) {
      const [opcode, payload] = await this.frame();
      if (opcode !== 8) continue;
      const code = new DataView(payload.buffer).getUint16(0);
      return [code, decoder.decode(payload.subarray(2))];
    }
  }
  close() {
    try {
      this.conn.close();
    } catch {
      // closed already
    }
  }
}

const TEXT = 1, BINARY = 2, CLOSE = 8, PING = 9;

// ---- the page and the HTTP around it ----

Deno.test("GET / is one self-contained page under a strict CSP; other requests get plain HTTP answers", async () => {
  const { server, web } = startServer();
  await using _ = server;
  const base = `http://127.0.0.1:${web}`;
  const page = await fetch(`${base}/`);
  const html = await page.text();
  assert.equal(page.status, 200);
  assert.equal(page.headers.get("content-type"), "text/html; charset=utf-8");
  assert.equal(page.headers.get("x-content-type-options"), "nosniff");
  assert.equal(page.headers.get("connection"), "close");
  const policy = page.headers.get("content-security-policy")!;
  assert.match(policy, /^default-src 'none'; /);
  assert.match(policy, /connect-src 'self'/);
  assert.match(policy, /frame-ancestors 'none'/);
  // Nothing from elsewhere: no src=, href= or url(), no inline handlers.
  assert.doesNotMatch(html, /\ssrc=|\shref=|url\(|\son\w+=/i);
  // Its one style and one script are exactly those the policy hashes.
  for (const tag of ["style", "script"]) {
    const inline = html.split(`<${tag}>`)[1].split(`</${tag}>`)[0];
    const digest = await crypto.subtle.digest(
      "SHA-256",
      encoder.encode(inline),
    );
    const hash = btoa(String.fromCharCode(...new Uint8Array(digest)));
    assert.ok(policy.includes(`${tag}-src 'sha256-${hash}'`), tag);
  }
  assert.match(html, /<meta name="viewport" content="width=device-width/);

  const head = await fetch(`${base}/`, { method: "HEAD" });
  assert.equal(head.status, 200);
  assert.equal(await head.text(), "");
  const answers: [string, RequestInit, number, string][] = [
    ["/nope", {}, 404, "no such page; try /\n"],
    ["/", { method: "POST", body: "x" }, 405, "GET only\n"],
    ["/ws", {}, 426, "a WebSocket lives here\n"],
    [
      "/ws",
      {
        headers: { upgrade: "websocket", connection: "Upgrade" },
      },
      426,
      "WebSocket version 13 only\n",
    ],
  ];
  for (const [path, init, status, body] of answers) {
    const response = await fetch(`${base}${path}`, init);
    assert.equal(response.status, status, path);
    assert.equal(await response.text(), body);
  }
  // A bad key, a page from another site, an opaque origin: refused.
  const refusals: [string, RegExp][] = [
    ["Sec-WebSocket-Key: short==\r\n", /^HTTP\/1\.1 400 /],
    ["Origin: http://evil.example\r\n", /^HTTP\/1\.1 403 /],
    ["Origin: null\r\n", /^HTTP\/1\.1 403 /],
  ];
  for (const [extra, status] of refusals) {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: web });
    const key = extra.startsWith("Sec")
      ? extra
      : "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" + extra;
    await writeAll(
      conn,
      encoder.encode(
        `GET /ws HTTP/1.1\r\nHost: 127.0.0.1:${web}\r\nUpgrade: websocket\r\n` +
          `Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n${key}\r\n`,
      ),
    );
    assert.match(await readUntil(conn, "\r\n\r\n"), status);
    conn.close();
  }
  // Garbage instead of HTTP: 400, and the server goes on.
  const junk = await runTool(
    "nc",
    ["-N", "127.0.0.1", String(web)],
    "hello\r\n\r\n",
  );
  assert.match(decoder.decode(junk.stdout), /^HTTP\/1\.1 400 Bad Request\r\n/);
});

Deno.test("the handshake answers RFC 6455's own example, and the same origin may join", async () => {
  const { server, web } = startServer();
  await using _ = server;
  const { raw, head } = await RawSocket.connect(
    web,
    `Origin: http://127.0.0.1:${web}\r\n`,
  );
  try {
    assert.match(head, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
    // The key and accept value printed in RFC 6455 §1.3.
    assert.match(
      head,
      /\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=/i,
    );
    assert.match(await raw.text(), /^\* welcome guest1; /);
  } finally {
    raw.close();
  }
});

// ---- one room, both kinds of member ----

Deno.test("a WebSocket member and a TCP member talk both ways: one message per line; /nick, /who, /msg", async () => {
  const { server, port, web, log } = startServer();
  await using _ = server;
  await using browser = await Browserless.connect(`ws://127.0.0.1:${web}/ws`);
  using terminal = await Line.connect(port);
  await browser.expect("* guest2 joined");

  browser.socket.send("hello from the web");
  await terminal.expect("guest1: hello from the web\n");
  await terminal.send("hi from nc\nand a second line\n");
  await browser.expect("guest2: hi from nc", "guest2: and a second line");

  browser.socket.send("/nick webby");
  await browser.expect("* guest1 is now webby");
  await terminal.expect("* guest1 is now webby\n");
  await terminal.send("/nick term\n");
  await browser.expect("* guest2 is now term");
  browser.socket.send("/msg TERM just you");
  await terminal.expect(
    "* guest2 is now term\n",
    "webby (private): just you\n",
  );
  await terminal.send("/msg webby back at you\n");
  await browser.expect("term (private): back at you");
  browser.socket.send("/who");
  await browser.expect("* 2 here: webby, term");
  // A final newline is dropped; one inside cannot make a second line.
  browser.socket.send("trailing\r\n");
  browser.socket.send("two\nlines");
  await terminal.expect("webby: trailing\n", "webby: two\uFFFDlines\n");
  browser.socket.send("/quit");
  await browser.expect("* bye webby");
  const closed = await browser.closed;
  assert.equal(closed.code, 1000);
  await terminal.expect("* webby left\n");
  assert.ok(log.includes("webby left (quit)"), log.join("\n"));
});

Deno.test("binary refused, over-limit refused (the limit itself accepted), invalid UTF-8 closes with 1007; the room goes on", async () => {
  const { server, port, web } = startServer({ maxLine: 100 });
  await using _ = server;
  using terminal = await Line.connect(port);
  const { raw } = await RawSocket.connect(web);
  try {
    assert.match(await raw.text(), /^\* welcome guest2; /);
    await raw.send(BINARY, new Uint8Array([0, 1, 2]));
    assert.equal(
      await raw.text(),
      "* binary messages are not accepted; send text",
    );
    await raw.send(TEXT, "é".repeat(51)); // 102 bytes
    assert.equal(
      await raw.text(),
      "* line too long (over 100 bytes); not sent",
    );
    // Over the limit across fragments, with a ping between them: the ping
    // is answered at once, the message refused once it ends.
    await raw.send(TEXT, "a".repeat(60), false);
    await raw.send(PING, "are you there");
    const [opcode, payload] = await raw.frame();
    assert.equal(opcode, 10);
    assert.equal(decoder.decode(payload), "are you there");
    await raw.send(0, "b".repeat(60), true);
    assert.equal(
      await raw.text(),
      "* line too long (over 100 bytes); not sent",
    );
    // Exactly 100 bytes, in three fragments, is one line.
    await raw.send(TEXT, "x".repeat(40), false);
    await raw.send(0, "y".repeat(40), false);
    await raw.send(0, "z".repeat(20), true);
    await terminal.expect(
      "* guest2 joined\n",
      `guest2: ${"x".repeat(40)}${"y".repeat(40)}${"z".repeat(20)}\n`,
    );
    // Large binary streams past without being kept.
    await raw.send(BINARY, new Uint8Array(300_000));
    assert.equal(
      await raw.text(),
      "* binary messages are not accepted; send text",
    );
    await raw.send(TEXT, new Uint8Array([0x68, 0xff, 0x69]));
    assert.deepEqual(await raw.closing(), [1007, "text is not UTF-8"]);
    await terminal.expect("* guest2 left\n");
  } finally {
    raw.close();
  }
  const { raw: rude } = await RawSocket.connect(web);
  try {
    await rude.text();
    await rude.send(TEXT, "not masked", true, false);
    assert.deepEqual(await rude.closing(), [1002, "client frames are masked"]);
  } finally {
    rude.close();
  }
  await terminal.expect("* guest3 joined\n", "* guest3 left\n");
  await terminal.send("/who\n");
  await terminal.expect("* 1 here: guest1\n");
});

Deno.test("a client's close frame is answered, and its socket closed", async () => {
  const { server, port, web } = startServer();
  await using _ = server;
  using terminal = await Line.connect(port);
  const { raw } = await RawSocket.connect(web);
  try {
    await raw.text();
    await raw.send(CLOSE, new Uint8Array([0x03, 0xe8])); // 1000
    assert.deepEqual(await raw.closing(), [1000, ""]);
    await terminal.expect("* guest2 joined\n", "* guest2 left\n");
    // The server half-closed after its close frame; we close, it goes.
    assert.equal(await raw.conn.read(new Uint8Array(16)), null);
  } finally {
    raw.close();
  }
});

const PYTHON = "/usr/bin/python3";
const havePythonWebsockets = (await runTool(PYTHON, ["-c", "import websockets"])
  .catch(() => ({ code: 1 }))).code === 0;

// Python's websockets (Debian's 10.x: the asyncio client): join, talk, and
// the refusals, each answer printed as it comes.
const PYTHON_PEER = `
import asyncio, sys, websockets
async def main():
    async with websockets.connect(sys.argv[1], open_timeout=5, close_timeout=2) as ws:
        async def answer():
            print(await asyncio.wait_for(ws.recv(), 5), flush=True)
        await answer()
        await ws.send("from python")
        await answer()
        await ws.send(b"\\x00\\x01")
        await answer()
        await ws.send("y" * 5000)
        await answer()
        await ws.send("/quit")
        await answer()
asyncio.run(main())
`;

Deno.test({
  name:
    "python3 websockets (a client nobody here wrote) joins, talks, gets the refusals",
  ignore: !havePythonWebsockets,
  async fn() {
    const { server, port, web } = startServer();
    await using _ = server;
    using terminal = await Line.connect(port);
    const python = runTool(PYTHON, [
      "-c",
      PYTHON_PEER,
      `ws://127.0.0.1:${web}/ws`,
    ]);
    await terminal.expect("* guest2 joined\n", "guest2: from python\n");
    await terminal.send("hello python\n");
    const result = await python;
    assert.equal(result.code, 0, result.stderr);
    assert.equal(
      decoder.decode(result.stdout),
      "* welcome guest2; /help lists commands\nguest1: hello python\n" +
        "* binary messages are not accepted; send text\n" +
        "* line too long (over 4096 bytes); not sent\n* bye guest2\n",
    );
    await terminal.expect("* guest2 left\n");
  },
});
if (!havePythonWebsockets) skipBecause(`${PYTHON} has no websockets module`);

Deno.test("200 members, 100 on npm:ws WebSockets and 100 on TCP, each receive a broadcast", async () => {
  const { default: WebSocketClient } = await import("npm:ws@8.23.0");
  const { server, port, web } = startServer({ announceLimit: 0 });
  await using _ = server;
  using first = await Line.connect(port);
  const started = performance.now();
  const sockets = await Promise.all(
    Array.from(
      { length: 100 },
      () =>
        new Promise<
          { socket: InstanceType<typeof WebSocketClient>; got: string[] }
        >(
          (resolve, reject) => {
            const socket = new WebSocketClient(`ws://127.0.0.1:${web}/ws`);
            const got: string[] = [];
            socket.on("message", (data: unknown, binary: boolean) => {
              assert.equal(binary, false);
              got.push(String(data));
              if (got.length === 1) resolve({ socket, got });
            });
            socket.on("error", reject);
          },
        ),
    ),
  );
  const terminals = await Promise.all(
    Array.from({ length: 99 }, () => Line.connect(port)),
  );
  try {
    await first.send("/who\n");
    assert.match(
      await first.next(),
      /^\* 200 here: guest1, .* and 100 more\n$/,
    );
    await first.send("hello, everyone\n");
    await Promise.all(
      terminals.map((peer) => peer.expect("guest1: hello, everyone\n")),
    );
    await within(
      10_000,
      (async () => {
        while (sockets.some(({ got }) => got.length < 2)) {
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      })(),
      "every WebSocket to get the line",
    );
    for (const { got } of sockets) {
      assert.match(got[0], /^\* welcome guest\d+; /);
      assert.equal(got[1], "guest1: hello, everyone");
    }
    console.log(
      `  200 members joined and got the line in ${
        (performance.now() - started).toFixed(0)
      } ms`,
    );
  } finally {
    for (const peer of terminals) peer[Symbol.dispose]();
    await Promise.all(sockets.map(({ socket }) =>
      new Promise((resolve) => {
        socket.on("close", resolve);
        socket.close();
      })
    ));
  }
});

// ---- readers, slow and stopped ----

Deno.test("a WebSocket that never reads is dropped and its socket closed; the others are not delayed", async () => {
  const maxQueue = 1024 * 1024;
  const { server, port, web, log } = startServer({
    maxLine: 64 * 1024,
    maxQueue,
  });
  await using _ = server;
  const { raw: stalled } = await RawSocket.connect(web); // guest1: reads no more
  try {
    using sender = await Line.connect(port);
    await using watcher = await Browserless.connect(`ws://127.0.0.1:${web}/ws`);
    await sender.expect("* guest3 joined\n");
    const line = "m".repeat(32 * 1024 - 1);
    let received = 0, dropped = false;
    let caughtUp: (() => void) | undefined;
    const watching = (async () => {
      try {
        while (true) {
          const text = await watcher.next(10_000);
          if (text === "* guest1 left (not reading)") return;
          assert.equal(text, `guest2: ${line}`);
          received++;
          caughtUp?.();
        }
      } finally {
        dropped = true;
        caughtUp?.();
      }
    })();
    // The sender stays at most 16 lines ahead of the watcher, as a reader
    // would; only the stalled socket falls behind.
    let sent = 0;
    while (!dropped && sent < 4096) {
      if (sent - received >= 16) {
        await new Promise<void>((resolve) => caughtUp = resolve);
        continue;
      }
      await sender.send(line + "\n");
      sent++;
    }
    await within(15_000, watching, "the drop notice");
    assert.ok(log.includes("guest1 left (not reading)"), log.join("\n"));
    await sender.expect("* guest1 left (not reading)\n");
    const ping = performance.now();
    await sender.send("ping\n");
    while (received < sent) {
      assert.equal(await watcher.next(), `guest2: ${line}`);
      received++;
    }
    await watcher.expect("guest2: ping");
    assert.ok(performance.now() - ping < 1000);
    console.log(`  dropped after ${(sent * line.length / 1e6).toFixed(1)} MB`);
    // What the kernel held for the stalled socket, then the end: the
    // server closed it at once, without waiting for a close handshake.
    const closed = within(
      10_000,
      (async () => {
        const buffer = new Uint8Array(1 << 20);
        try {
          while (await stalled.conn.read(buffer) !== null) { /* drain */ }
        } catch (error) {
          if (!(error instanceof Deno.errors.ConnectionReset)) throw error;
        }
      })(),
      "the stalled socket to be closed",
    );
    await closed;
  } finally {
    stalled.close();
  }
});

Deno.test("a 32 MB burst past an 8 MiB queue bound: the WebSocket that reads gets every line, the one that does not is dropped (server in a subprocess)", async () => {
  const server = await startScript("chat_server.ts", [
    "--port",
    "0",
    "--web-port",
    "0",
    "--max-line",
    "65536",
    // Room for a reader that the busy machine holds up for a moment; the
    // kernel buffers (~10 MB on loopback) plus this are far below 32 MB.
    "--max-queue",
    String(8 * 1024 * 1024),
  ], { listenLines: 2 });
  try {
    const [port, web] = server.ports;
    const { raw: stalled } = await RawSocket.connect(web); // guest1
    await using reader = await Browserless.connect(`ws://127.0.0.1:${web}/ws`);
    using sender = await Line.connect(port);
    await reader.expect("* guest3 joined");
    const line = "z".repeat(65535);
    const count = 512;
    // One write of 32 MB: the server reads it 64 KiB at a time, and each
    // read's lines reach the reader as fast as it takes them.
    const sending = sender.send(`${line}\n`.repeat(count));
    let lines = 0, droppedNotice = false;
    while (lines < count) {
      const text = await reader.next(20_000);
      if (text === "* guest1 left (not reading)") droppedNotice = true;
      else {
        assert.equal(text.length, 65535 + "guest3: ".length);
        lines++;
      }
    }
    await sending;
    if (!droppedNotice) {
      await reader.expect("* guest1 left (not reading)");
    }
    stalled.close();
    const output = await server.stop();
    assert.equal(output.code, 0);
    assert.match(output.stderr, /guest1 left \(not reading\)/);
    assert.doesNotMatch(output.stderr, /guest2 left \(not reading\)/);
  } finally {
    await server.stop("SIGKILL");
  }
});

// ---- the command line, TLS, IPv6 ----

Deno.test("chat_server.ts --web-port 0: two Listening lines; SIGTERM tells WebSocket members and closes them with 1000", async () => {
  const server = await startScript("chat_server.ts", [
    "--port",
    "0",
    "--web-port",
    "0",
  ], {
    listenLines: 2,
  });
  try {
    const [port, web] = server.ports;
    assert.deepEqual(server.listeningLines, [
      `Listening on tcp://127.0.0.1:${port}`,
      `Listening on http://127.0.0.1:${web}`,
    ]);
    await using browser = await Browserless.connect(`ws://127.0.0.1:${web}/ws`);
    using terminal = await Line.connect(port);
    await browser.expect("* guest2 joined");
    const started = performance.now();
    const output = await server.stop("SIGTERM");
    assert.equal(output.code, 0);
    assert.ok(performance.now() - started < 2000);
    await browser.expect("* server shutting down");
    assert.equal((await browser.closed).code, 1000);
    await terminal.expect("* server shutting down\n");
  } finally {
    await server.stop("SIGKILL");
  }
});

Deno.test("CLI: --web-port and --room are checked (exit 2)", async () => {
  const cases: [string[], string][] = [
    [
      ["--web-port", "http"],
      "--web-port must be a whole number from 0 to 65535, got 'http'",
    ],
    [["--room", "kitchen"], "--room needs --redis"],
  ];
  for (const [args, message] of cases) {
    const result = await runScript("chat_server.ts", args);
    assert.equal(result.code, 2, args.join(" "));
    assert.equal(
      result.stderr,
      `chat_server.ts: ${message}\nTry 'chat_server.ts --help' for more information.\n`,
    );
  }
  const help = await runScript("chat_server.ts", ["--help"]);
  assert.match(help.stdout, /--web-port PORT/);
  assert.match(help.stdout, /--redis URL/);
});

const haveOpenssl = await hasCommand("openssl");
const haveCurl = await hasCommand("curl");

Deno.test({
  name:
    "TLS: --cert/--key make it https:// and wss://; curl fetches the page, Python joins over wss, a TLS terminal talks with it",
  ignore: !haveOpenssl || !haveCurl || !havePythonWebsockets,
  async fn() {
    await using certs = await makeTestCerts();
    const server = await startScript("chat_server.ts", [
      "--port",
      "0",
      "--web-port",
      "0",
      "--cert",
      certs.certFile,
      "--key",
      certs.keyFile,
    ], { allow: ["--allow-net", `--allow-read=${certs.dir}`], listenLines: 2 });
    try {
      const [port, web] = server.ports;
      assert.deepEqual(server.listeningLines, [
        `Listening on tls://127.0.0.1:${port}`,
        `Listening on https://127.0.0.1:${web}`,
      ]);
      const page = await runTool("curl", [
        "-sS",
        "--cacert",
        certs.caFile,
        `https://127.0.0.1:${web}/`,
      ]);
      assert.equal(page.code, 0, page.stderr);
      assert.match(decoder.decode(page.stdout), /^<!doctype html>/);
      const conn = await Deno.connectTls({
        hostname: "127.0.0.1",
        port,
        caCerts: [certs.ca],
      });
      using terminal = new Line(conn as unknown as Deno.TcpConn);
      assert.match(await terminal.next(), /^\* welcome guest1; /);
      const python = runTool(PYTHON, [
        "-c",
        `
import asyncio, ssl, sys, websockets
async def main():
    context = ssl.create_default_context(cafile=sys.argv[2])
    async with websockets.connect(sys.argv[1], ssl=context, open_timeout=5) as ws:
        print(await asyncio.wait_for(ws.recv(), 5))
        await ws.send("over wss")
        print(await asyncio.wait_for(ws.recv(), 5))
asyncio.run(main())
`,
        `wss://127.0.0.1:${web}/ws`,
        certs.caFile,
      ]);
      await terminal.expect("* guest2 joined\n", "guest2: over wss\n");
      await terminal.send("over tls\n");
      const result = await python;
      assert.equal(result.code, 0, result.stderr);
      assert.equal(
        decoder.decode(result.stdout),
        "* welcome guest2; /help lists commands\nguest1: over tls\n",
      );
    } finally {
      await server.stop();
    }
  },
});

Deno.test("IPv6: --hostname ::1 prints bracketed lines; a WebSocket and a TCP member meet on ::1", async () => {
  const server = await startScript("chat_server.ts", [
    "--hostname",
    "::1",
    "--port",
    "0",
    "--web-port",
    "0",
  ], { listenLines: 2 });
  try {
    const [port, web] = server.ports;
    assert.deepEqual(server.listeningLines, [
      `Listening on tcp://[::1]:${port}`,
      `Listening on http://[::1]:${web}`,
    ]);
    await using browser = await Browserless.connect(`ws://[::1]:${web}/ws`);
    using terminal = await Line.connect(port, "::1");
    await browser.expect("* guest2 joined");
    await terminal.send("over six\n");
    await browser.expect("guest2: over six");
  } finally {
    await server.stop();
  }
});

Deno.test("--idle-timeout and --max-per-address hold for WebSocket members too", async () => {
  const { server, port, web } = startServer({
    idleTimeout: 0.4,
    maxPerAddress: 2,
  });
  await using _ = server;
  await using idle = await Browserless.connect(`ws://127.0.0.1:${web}/ws`);
  await idle.expect("* idle for 0.4 s; closing");
  assert.equal((await idle.closed).code, 1000);
  // Two from one address on the web port; a third is closed at once.
  await using one = await Browserless.connect(`ws://127.0.0.1:${web}/ws`);
  await using two = await Browserless.connect(`ws://127.0.0.1:${web}/ws`);
  const three = new Browserless(new WebSocket(`ws://127.0.0.1:${web}/ws`));
  const refused = await within(5000, three.closed, "the third to be refused");
  assert.notEqual(refused.code, 1000);
  // The TCP port counts its own connections.
  using terminal = await Line.connect(port);
  await terminal.send("still here\n");
  await one.expect("* guest3 joined", "* guest4 joined", "guest4: still here");
  await two.expect("* guest4 joined", "guest4: still here");
});

// ---- a real browser ----

const haveChromium = await Deno.stat(CHROMIUM).then(() => true, () => false);

// What the functions that run inside the page use of it (Deno has no DOM).
declare const document: {
  getElementById(id: string): { textContent: string | null };
  querySelectorAll(selector: string): ArrayLike<{ textContent: string | null }>;
};

Deno.test({
  name:
    "headless Chromium: the page joins, shows a terminal user's line as text, sends its own, /nick, a long line refused, two tabs, reconnects",
  ignore: !haveChromium,
  async fn() {
    let { server, port, web } = startServer({ maxLine: 200 });
    try {
      await using chromium = await launchChromium();
      const problems: string[] = [];
      const open = async () => {
        const tab = await chromium.browser.newPage();
        tab.on("console", (message) => {
          if (message.type() === "error") problems.push(message.text());
        });
        tab.on("pageerror", (error) => problems.push(String(error)));
        await tab.goto(`http://127.0.0.1:${web}/`);
        await connected(tab);
        return tab;
      };
      type Tab = Awaited<ReturnType<typeof open>>;
      // Waits re-check on every change to the page. (The default re-checks
      // on each animation frame, and a background tab, as the first is once
      // the second opens, has none: a line arriving after the wait began
      // went unseen, and the test failed now and then.)
      const connected = (tab: Tab) =>
        tab.waitForFunction(
          () => document.getElementById("status")!.textContent === "connected",
          { timeout: 10_000, polling: "mutation" },
        );
      const shows = (tab: Tab, text: string) =>
        tab.waitForFunction(
          (wanted) =>
            Array.from(document.querySelectorAll("#log p")).some((line) =>
              line.textContent === wanted
            ),
          { timeout: 10_000, polling: "mutation" },
          text,
        );
      const say = async (tab: Tab, text: string) => {
        await tab.$eval(
          "#text",
          (input, value) =>
            (input as unknown as { value: string }).value = value,
          text,
        );
        await tab.click("#send");
      };
      const first = await open();
      await shows(first, "* welcome guest1; /help lists commands");
      using terminal = await Line.connect(port);
      await shows(first, "* guest2 joined");
      // Markup from the room is text on the page, never elements.
      const hostile =
        `<img src=x onerror="document.title='owned'"> &amp; <b>bold</b>`;
      await terminal.send(`${hostile}\n`);
      await shows(first, `guest2: ${hostile}`);
      assert.equal(
        await first.$$eval("#log img, #log b", (found) => found.length),
        0,
      );
      assert.equal(await first.title(), "Chat");

      await say(first, "hi from chromium");
      await terminal.expect("guest1: hi from chromium\n");
      await shows(first, "› hi from chromium");
      await say(first, "/nick Chrome");
      await terminal.expect("* guest1 is now Chrome\n");
      await shows(first, "* guest1 is now Chrome");
      await say(first, "x".repeat(201));
      await shows(first, "* line too long (over 200 bytes); not sent");

      const second = await open();
      await terminal.expect("* guest3 joined\n");
      await say(second, "from the second tab");
      await shows(first, "guest3: from the second tab");
      await terminal.expect("guest3: from the second tab\n");
      await second.close();

      // The server goes away and comes back on the same port: the page
      // says so and joins again by itself.
      await server.close();
      await first.waitForFunction(
        () =>
          document.getElementById("status")!.textContent!.startsWith(
            "disconnected",
          ),
        { timeout: 10_000, polling: "mutation" },
      );
      ({ server, port, web } = startServer({ webPort: web, maxLine: 200 }));
      await connected(first);
      await shows(first, "* welcome guest1; /help lists commands");
      assert.deepEqual(problems, []);
    } finally {
      await server.close();
    }
  },
});
if (!haveChromium) skipBecause(`${CHROMIUM} is not installed`);
