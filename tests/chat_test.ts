// Tests for scripts/chat_server.ts and scripts/chat_client.ts, over real
// loopback sockets: exact bytes of every notice, the commands, the hostile
// cases (over-long and endless lines, invalid UTF-8, a client that never
// reads, resets, thousands of clients, silent ones, a hostile server), the
// client script, nc, openssl and Python as TLS clients, the CLI and SIGTERM.
import assert from "node:assert/strict";
import {
  type ChatServerOptions,
  startChatServer,
} from "../scripts/chat_server.ts";
import { chat } from "../scripts/chat_client.ts";
import { dial } from "../lib/dial.ts";
import { writeAll } from "../lib/io.ts";
import {
  hasCommand,
  LinePeer,
  makeTestCerts,
  runScript,
  runTool,
  scriptPath,
  skipBecause,
  startScript,
  startUnansweredPort,
  within,
} from "./helpers.ts";

const encoder = new TextEncoder();

/** A test's chat connection (lines as in LinePeer), welcomed by default. */
class Peer extends LinePeer {
  static async connect(port: number, expectWelcome = true): Promise<Peer> {
    const peer = new Peer(await Deno.connect({ hostname: "127.0.0.1", port }));
    if (expectWelcome) {
      assert.match(
        await peer.line(),
        /^\* welcome guest\d+; \/help lists commands\n$/,
      );
    }
    return peer;
  }
}

/** A server on a free port that logs into an array instead of stderr. */
function startServer(options: ChatServerOptions = {}) {
  const log: string[] = [];
  const server = startChatServer({
    port: 0,
    log: (line) => log.push(line),
    ...options,
  });
  return { server, port: server.addr.port, log };
}

Deno.test("welcome, joined, broadcast to others only, left: exact bytes", async () => {
  const { server, port, log } = startServer();
  await using _ = server;
  using alice = await Peer.connect(port);
  using bob = await Peer.connect(port);
  await alice.expect("* guest2 joined\n");

  await alice.send("hello, room\n");
  await bob.expect("guest1: hello, room\n");
  // The sender does not get its own line back: the next thing it reads is
  // the answer to a later command.
  await alice.send("/who\n");
  await alice.expect("* 2 here: guest1, guest2\n");

  // "\r\n" (telnet, Windows) works like "\n"; blank lines are ignored.
  await bob.send("from telnet\r\n\r\n   \nnext\n");
  await alice.expect("guest2: from telnet\n", "guest2: next\n");

  bob.close();
  await alice.expect("* guest2 left\n");
  assert.deepEqual(log.slice(-1), ["guest2 left (disconnected)"]);
  assert.match(log[0], /^guest1 joined from 127\.0\.0\.1:\d+$/);
});

Deno.test("/nick: success, taken (any case), invalid", async () => {
  const { server, port } = startServer();
  await using _ = server;
  using alice = await Peer.connect(port);
  using bob = await Peer.connect(port);
  await alice.expect("* guest2 joined\n");

  await alice.send("/nick alice\n");
  await alice.expect("* guest1 is now alice\n");
  await bob.expect("* guest1 is now alice\n");
  await alice.send("hi\n");
  await bob.expect("alice: hi\n");

  await bob.send("/nick ALICE\n");
  await bob.expect("* name ALICE is taken\n");
  await bob.send("/nick alice\n");
  await bob.expect("* name alice is taken\n");
  await alice.send("/nick alice\n");
  await alice.expect("* you are already alice\n");

  const invalid = [
    ["/nick\n", "* usage: /nick NAME\n"],
    ["/nick   \n", "* usage: /nick NAME\n"],
    [
      "/nick two words\n",
      "* name may hold only letters, digits, '_', '.' and '-'\n",
    ],
    [
      "/nick bell\x07\n",
      "* name may hold only letters, digits, '_', '.' and '-'\n",
    ],
    [
      "/nick fake:\n",
      "* name may hold only letters, digits, '_', '.' and '-'\n",
    ],
    [`/nick ${"x".repeat(25)}\n`, "* name too long (at most 24 characters)\n"],
  ];
  for (const [command, answer] of invalid) {
    await bob.send(command);
    await bob.expect(answer);
  }
  // Unicode names are fine, up to 24 characters (not bytes).
  await bob.send(`/nick ${"é".repeat(24)}\n`);
  await bob.expect(`* guest2 is now ${"é".repeat(24)}\n`);
  await alice.expect(`* guest2 is now ${"é".repeat(24)}\n`);

  // A guest name taken with /nick is skipped for the next newcomer.
  await alice.send("/nick guest3\n");
  await alice.expect("* alice is now guest3\n");
  using carol = new Peer(await Deno.connect({ hostname: "127.0.0.1", port }));
  await carol.expect("* welcome guest4; /help lists commands\n");
  await carol.send("/who\n");
  await carol.expect(`* 3 here: guest3, ${"é".repeat(24)}, guest4\n`);
});

Deno.test("/msg: one member alone gets it as 'NAME (private): text'; unknown names and bad usage are told to the sender", async () => {
  const { server, port } = startServer();
  await using _ = server;
  using alice = await Peer.connect(port);
  using bob = await Peer.connect(port);
  using carol = await Peer.connect(port);
  await alice.expect("* guest2 joined\n", "* guest3 joined\n");
  await bob.expect("* guest3 joined\n");

  // Any case finds the name; the text keeps its spaces; controls are replaced.
  await alice.send("/msg GUEST2 just  for you\n/msg guest2 \x1b[2J é\n");
  await bob.expect(
    "guest1 (private): just  for you\n",
    "guest1 (private): \uFFFD[2J é\n",
  );
  await alice.send("/msg nobody hi\n/msg guest2\n/msg\n/msg guest2    \n");
  await alice.expect(
    "* no one called nobody here\n",
    "* usage: /msg NAME text\n",
    "* usage: /msg NAME text\n",
    "* usage: /msg NAME text\n",
  );
  // After a rename the new name reaches the member, the old one nobody.
  await bob.send("/nick bob\n");
  await alice.expect("* guest2 is now bob\n");
  await carol.expect("* guest2 is now bob\n");
  await carol.send("/msg guest2 old name\n/msg Bob new name\n");
  await carol.expect("* no one called guest2 here\n");
  await bob.expect("* guest2 is now bob\n", "guest3 (private): new name\n");
  // carol's next line from alice is the public one: no private got through.
  await alice.send("public\n");
  await carol.expect("guest1: public\n");
  await bob.expect("guest1: public\n");
});

Deno.test("/help, unknown command, /quit says goodbye and closes", async () => {
  const { server, port, log } = startServer();
  await using _ = server;
  using alice = await Peer.connect(port);
  using bob = await Peer.connect(port);
  await alice.expect("* guest2 joined\n");

  await alice.send("/help\n");
  await alice.expect(
    "* commands: /nick NAME (change your name), /who (list the room), /msg NAME text (to NAME only), /quit (leave), /help\n",
  );
  await alice.send("/dance now\n/\n");
  await alice.expect(
    "* unknown command /dance; /help lists commands\n",
    "* unknown command /; /help lists commands\n",
  );
  // Commands are not broadcast: bob's next line is alice leaving.
  await alice.send("/QUIT\nnot sent after quit\n");
  assert.equal(await alice.rest(), "* bye guest1\n");
  await bob.expect("* guest1 left\n");
  assert.ok(log.includes("guest1 left (quit)"));
});

Deno.test("half-close: the client still gets its queued lines, then the server closes", async () => {
  const { server, port } = startServer();
  await using _ = server;
  using alice = await Peer.connect(port);
  using bob = await Peer.connect(port);
  await alice.expect("* guest2 joined\n");
  // Like `printf 'last words' | nc -N`: a final line without "\n" counts.
  await bob.send("/who\nlast words");
  await bob.conn.closeWrite();
  assert.equal(await bob.rest(), "* 2 here: guest1, guest2\n");
  await alice.expect("guest2: last words\n", "* guest2 left\n");
});

Deno.test("a line over --max-line is refused to its sender only; the connection goes on", async () => {
  const { server, port } = startServer({ maxLine: 16 });
  await using _ = server;
  using alice = await Peer.connect(port);
  using bob = await Peer.connect(port);
  await alice.expect("* guest2 joined\n");

  await alice.send(`${"a".repeat(17)}\n`);
  await alice.expect("* line too long (over 16 bytes); not sent\n");
  // Exactly the limit is fine, with "\n" or "\r\n"; the limit counts bytes.
  await alice.send(`${"b".repeat(16)}\r\n${"é".repeat(8)}\n${"é".repeat(9)}\n`);
  await alice.expect("* line too long (over 16 bytes); not sent\n");
  await alice.send("still here\n");
  await bob.expect(
    `guest1: ${"b".repeat(16)}\n`,
    `guest1: ${"é".repeat(8)}\n`,
    "guest1: still here\n",
  );
});

Deno.test("an endless line (32 MB, no newline) keeps memory bounded and the sender served", async () => {
  const { server, port } = startServer();
  await using _ = server;
  using alice = await Peer.connect(port);
  using bob = await Peer.connect(port);
  await alice.expect("* guest2 joined\n");

  const chunk = new Uint8Array(64 * 1024).fill(0x78); // "xxxx…"
  const before = Deno.memoryUsage().rss;
  await alice.send(chunk);
  await alice.expect("* line too long (over 4096 bytes); not sent\n");
  // While alice is still inside her endless line, she keeps receiving.
  const total = 32 * 1024 * 1024;
  for (let sent = chunk.length; sent < total; sent += chunk.length) {
    await alice.send(chunk);
    if (sent === 16 * 1024 * 1024) {
      await bob.send("are you there?\n");
      await alice.expect("guest2: are you there?\n");
    }
  }
  await alice.send("\nback to normal\n");
  await bob.expect("guest1: back to normal\n");
  const grown = Deno.memoryUsage().rss - before;
  assert.ok(
    grown < 16 * 1024 * 1024,
    `memory grew by ${grown} bytes for a 32 MB line`,
  );
});

Deno.test("invalid UTF-8 becomes U+FFFD; control characters cannot reach terminals", async () => {
  const { server, port } = startServer();
  await using _ = server;
  using alice = await Peer.connect(port);
  using bob = await Peer.connect(port);
  await alice.expect("* guest2 joined\n");

  await alice.send(
    new Uint8Array([0x62, 0x61, 0x64, 0x20, 0xff, 0xfe, 0x20, 0xc3, 0x0a]),
  );
  assert.deepEqual(
    await bob.lineBytes(),
    new Uint8Array([
      ...encoder.encode("guest1: bad "),
      0xef,
      0xbf,
      0xbd,
      0xef,
      0xbf,
      0xbd,
      0x20,
      0xef,
      0xbf,
      0xbd,
      0x0a,
    ]),
  );
  await alice.send("\x1b[2Jclear\tscreen\r\n");
  await bob.expect("guest1: \uFFFD[2Jclear\tscreen\n");
  await alice.send("still fine\n");
  await bob.expect("guest1: still fine\n");
});

Deno.test("a client that never reads is dropped; the others are not delayed", async () => {
  const maxQueue = 1024 * 1024;
  const { server, port, log } = startServer({ maxLine: 64 * 1024, maxQueue });
  await using _ = server;
  using stalled = await Peer.connect(port); // guest1: reads nothing more
  using sender = await Peer.connect(port);
  using watcher = await Peer.connect(port);
  await sender.expect("* guest3 joined\n");

  const line = `${"m".repeat(32 * 1024 - 1)}\n`;
  const message = `guest2: ${line}`;
  let received = 0;
  let dropped = false;
  let caughtUp: (() => void) | undefined;
  // The watcher reads everything while the sender floods the room.
  const watching = (async () => {
    try {
      while (true) {
        const text = await watcher.line();
        if (text === "* guest1 left (not reading)\n") return;
        assert.equal(text, message);
        received++;
        caughtUp?.();
      }
    } finally {
      dropped = true; // or failed: either way the flood stops
      caughtUp?.();
    }
  })();
  // The sender stays at most 16 lines ahead of the watcher, as a reading
  // client would; only the stalled one falls behind. The kernel buffers a
  // few MB for it before its queue starts to grow: 64 MB is plenty.
  let sent = 0;
  const started = performance.now();
  while (!dropped && sent < 2048) {
    if (sent - received >= 16) {
      await new Promise<void>((resolve) => caughtUp = resolve);
      continue;
    }
    await sender.send(line);
    sent++;
  }
  await within(10_000, watching, "the drop notice");
  const floodMs = performance.now() - started;
  assert.ok(log.includes("guest1 left (not reading)"));
  await sender.expect("* guest1 left (not reading)\n");

  // Every line sent before the drop reached the watcher, and the room
  // still answers at once.
  const pingStarted = performance.now();
  await sender.send("ping\n");
  const flood = received;
  while (received < sent) {
    assert.equal(await watcher.line(), message);
    received++;
  }
  await watcher.expect("guest2: ping\n");
  const pingMs = performance.now() - pingStarted;
  assert.ok(pingMs < 1000, `ping took ${pingMs} ms`);
  console.log(
    `  dropped after ${sent} lines (${
      (sent * line.length / 1e6).toFixed(1)
    } MB) in ${floodMs.toFixed(0)} ms; watcher had ${flood} at the drop; ping ${
      pingMs.toFixed(1)
    } ms`,
  );
  // The stalled client finds what the kernel held, then the end.
  const tail = await stalled.rest();
  assert.ok(tail.startsWith("* guest2 joined\n* guest3 joined\n" + message));
  assert.ok(tail.length < sent * message.length);
});

// A client that connects, sends half a line and resets the connection
// (SO_LINGER 0: Deno cannot set it, Python can).
const RESET_CLIENT = `
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.makefile("rb").readline()
s.sendall(b"half a li")
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
`;
const havePython = await hasCommand("python3");

Deno.test("vanishing mid-line: close delivers the fragment, a reset drops it; the server goes on", async () => {
  const { server, port, log } = startServer();
  await using _ = server;
  using bob = await Peer.connect(port);

  // A plain close is an orderly end (FIN): like the last line of a file
  // without "\n", the fragment is delivered, then the client leaves.
  const alice = await Peer.connect(port);
  await bob.expect("* guest2 joined\n");
  await alice.send("half a li");
  alice.close();
  await bob.expect("guest2: half a li\n", "* guest2 left\n");

  if (!havePython) {
    skipBecause("python3 not installed (reset part of the test)");
  } else {
    const reset = await runTool("python3", ["-c", RESET_CLIENT, String(port)]);
    assert.equal(reset.code, 0, reset.stderr);
    await bob.expect("* guest3 joined\n", "* guest3 left\n");
    assert.ok(log.includes("guest3 left (connection lost)"), log.join("\n"));
  }
  using carol = await Peer.connect(port);
  await bob.expect(`* guest${havePython ? 4 : 3} joined\n`);
  await carol.send("hi\n");
  await bob.expect(`guest${havePython ? 4 : 3}: hi\n`);
});

Deno.test("200 concurrent clients each receive a broadcast", async () => {
  // Every join announced: the room stays within --announce-limit.
  const { server, port } = startServer({ announceLimit: 200 });
  await using _ = server;
  using first = await Peer.connect(port);
  const count = 200;
  const started = performance.now();
  const others = await Promise.all(
    Array.from({ length: count - 1 }, () => Peer.connect(port)),
  );
  try {
    await first.send("hello, everyone\n");
    // Each reads "joined" notices for later arrivals, then the message.
    const counts = await Promise.all(others.map(async (peer) => {
      let joins = 0;
      while (true) {
        const text = await peer.line();
        if (text === "guest1: hello, everyone\n") return joins;
        assert.match(text, /^\* guest\d+ joined\n$/);
        joins++;
      }
    }));
    assert.equal(counts.length, count - 1);
    // Between them they saw every join after their own exactly once.
    assert.equal(
      counts.reduce((sum, joins) => sum + joins, 0),
      (count - 1) * (count - 2) / 2,
    );
    await first.send("/who\n");
    let line = await first.line();
    while (line.endsWith(" joined\n")) line = await first.line();
    assert.match(line, /^\* 200 here: guest1, .* and 100 more\n$/);
    console.log(
      `  ${count} clients joined and received the broadcast in ${
        (performance.now() - started).toFixed(0)
      } ms`,
    );
  } finally {
    for (const peer of others) peer.close();
  }
});

Deno.test("chat() in process: input goes out, room lines come in, half-close ends it", async () => {
  const { server, port } = startServer();
  await using _ = server;
  using bob = await Peer.connect(port);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const output: Uint8Array[] = [];
  // Input that ends after two lines, like a file on stdin.
  let remaining = encoder.encode("hi bob\n/who\n");
  const input = {
    read(buffer: Uint8Array): Promise<number | null> {
      if (remaining.length === 0) return Promise.resolve(null);
      const count = Math.min(buffer.length, remaining.length);
      buffer.set(remaining.subarray(0, count));
      remaining = remaining.subarray(count);
      return Promise.resolve(count);
    },
  };
  try {
    await within(
      5000,
      chat(conn, input, {
        write(bytes) {
          output.push(bytes.slice());
          return Promise.resolve(bytes.length);
        },
      }, 2000),
      "chat() to end",
    );
  } finally {
    conn.close();
  }
  assert.equal(
    new TextDecoder().decode(new Uint8Array(output.flatMap((b) => [...b]))),
    "* welcome guest2; /help lists commands\n* 2 here: guest1, guest2\n",
  );
  await bob.expect("* guest2 joined\n", "guest2: hi bob\n", "* guest2 left\n");
});

Deno.test("chat() after end of input waits for the server only a bounded time", async () => {
  // A server that never closes (it ignores our half-close).
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: listener.addr.port,
  });
  using _server = await listener.accept();
  const started = performance.now();
  try {
    await within(
      2000,
      chat(conn, { read: () => Promise.resolve(null) }, {
        write: (bytes) => Promise.resolve(bytes.length),
      }, 200),
      "chat() to give up waiting",
    );
  } finally {
    conn.close();
  }
  const elapsed = performance.now() - started;
  assert.ok(elapsed >= 150 && elapsed < 1500, `took ${elapsed} ms`);
});

Deno.test("chat_client.ts as a subprocess: stdin to the room, room to stdout", async () => {
  const { server, port } = startServer();
  await using _ = server;
  using bob = await Peer.connect(port);
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      scriptPath("chat_client.ts"),
      "--port",
      String(port),
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout = child.stdout.getReader();
  const stderr = new Response(child.stderr).text();
  const stdin = child.stdin.getWriter();
  const decoder = new TextDecoder();
  let printed = "";
  /** Reads the client's stdout until `text` shows up (or to the end). */
  async function waitForOutput(text?: string) {
    await within(
      10_000,
      (async () => {
        while (text === undefined || !printed.includes(text)) {
          const { value, done } = await stdout.read();
          if (done && text === undefined) return;
          if (done) {
            throw new Error(
              `stdout ended; got ${JSON.stringify(printed)}`,
            );
          }
          printed += decoder.decode(value, { stream: true });
        }
      })(),
      `client output ${JSON.stringify(text ?? "to end")}`,
    );
  }
  try {
    await bob.expect("* guest2 joined\n");
    await waitForOutput("* welcome guest2; /help lists commands\n");
    // Full duplex: room lines print while stdin stays open.
    await bob.send("hello, script\n");
    await waitForOutput("guest1: hello, script\n");
    await stdin.write(encoder.encode("hello, bob\n"));
    await bob.expect("guest2: hello, bob\n");
    // End of stdin: half-close, the server closes, the client exits 0.
    await stdin.close();
    await bob.expect("* guest2 left\n");
    await waitForOutput();
    const status = await within(5000, child.status, "the client to exit");
    assert.equal(status.code, 0);
    assert.equal(
      printed,
      "* welcome guest2; /help lists commands\nguest1: hello, script\n",
    );
    assert.equal(await stderr, "");
  } finally {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
    await child.status;
    await stdout.cancel().catch(() => {});
    await stderr;
  }
});

Deno.test("chat_client.ts exits 0 when the server shuts down, 1 when refused", async () => {
  const { server, port } = startServer();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      scriptPath("chat_client.ts"),
      "--port",
      String(port),
    ],
    stdin: "piped", // kept open: the server, not stdin, ends this session
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout = child.stdout.getReader();
  let printed = "";
  try {
    while (!printed.includes("\n")) {
      const { value } = await within(10_000, stdout.read(), "welcome");
      printed += new TextDecoder().decode(value);
    }
    await server.close();
    const status = await within(5000, child.status, "the client to exit");
    assert.equal(status.code, 0);
    while (true) {
      const { value, done } = await stdout.read();
      if (done) break;
      printed += new TextDecoder().decode(value);
    }
    assert.equal(
      printed,
      "* welcome guest1; /help lists commands\n* server shutting down\n",
    );
  } finally {
    await server.close();
    try {
      child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
    await child.status;
    await child.stdin.close().catch(() => {});
    await stdout.cancel().catch(() => {});
    await new Response(child.stderr).text();
  }

  const refused = await runScript("chat_client.ts", ["--port", String(port)]);
  assert.equal(refused.code, 1);
  assert.equal(
    refused.stderr,
    `chat_client.ts: cannot connect to 127.0.0.1:${port}: connection refused\n`,
  );
  assert.equal(refused.stdout, "");

  // An IPv6 address is shown in brackets, so the port stands apart.
  const refused6 = await runScript("chat_client.ts", [
    "--hostname",
    "::1",
    "--port",
    String(port),
  ]);
  assert.equal(refused6.code, 1);
  assert.equal(
    refused6.stderr,
    `chat_client.ts: cannot connect to [::1]:${port}: connection refused\n`,
  );
});

Deno.test("chat_client.ts: a connect that hangs is one line, exit 1, after --timeout", async () => {
  const unanswered = await startUnansweredPort();
  try {
    const started = performance.now();
    const result = await runScript("chat_client.ts", [
      "--port",
      String(unanswered.addr.port),
      "--timeout",
      "1",
    ]);
    const elapsed = performance.now() - started;
    assert.equal(result.code, 1);
    assert.equal(
      result.stderr,
      `chat_client.ts: cannot connect to 127.0.0.1:${unanswered.addr.port}: timed out after 1 s\n`,
    );
    assert.ok(elapsed < 6000, `took ${elapsed} ms`);
  } finally {
    unanswered.close();
  }
});

Deno.test("chat_client.ts: a server that never speaks is one line, exit 1, after --timeout", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  const accepted = listener.accept(); // and then nothing is said
  const started = performance.now();
  const result = await runScript("chat_client.ts", [
    "--port",
    String(port),
    "--timeout",
    "1",
  ], { stdin: "hello?\n" });
  const elapsed = performance.now() - started;
  (await accepted).close();
  assert.equal(result.code, 1);
  assert.equal(result.stdout, "");
  assert.equal(
    result.stderr,
    `chat_client.ts: no welcome from 127.0.0.1:${port} within 1 s\n`,
  );
  assert.ok(elapsed >= 900 && elapsed < 6000, `took ${elapsed} ms`);
});

Deno.test("chat_client.ts: a hostile server's escape sequences never reach the terminal raw", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serving = (async () => {
    using conn = await listener.accept();
    const hostile = [
      encoder.encode("* welcome\x1b]0;owned\x07\n"),
      encoder.encode("\x1b[2Jcleared\tok\r\nover\rwritten\n"),
      new Uint8Array([0xff, 0xfe, 0x0a, 0xc3]), // bad bytes; half an "é"
      new Uint8Array([0xa9, 0x0a]), // … whose other half comes later
      encoder.encode("\u202etxt.exe\n\x9b31m\n"),
    ];
    for (const bytes of hostile) {
      await writeAll(conn, bytes);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  })();
  const result = await runScript("chat_client.ts", [
    "--port",
    String(listener.addr.port),
  ]);
  await serving;
  assert.equal(result.code, 0, result.stderr);
  assert.equal(
    result.stdout,
    "* welcome\uFFFD]0;owned\uFFFD\n" +
      "\uFFFD[2Jcleared\tok\nover\uFFFDwritten\n" +
      "\uFFFD\uFFFD\né\n" +
      "\uFFFDtxt.exe\n\uFFFD31m\n",
  );
});

const haveNc = await hasCommand("nc");
Deno.test({
  name: "nc is a full client",
  ignore: !haveNc,
  async fn() {
    const { server, port } = startServer();
    await using _ = server;
    using bob = await Peer.connect(port);
    const nc = runTool(
      "nc",
      ["-N", "127.0.0.1", String(port)],
      "hello from nc\r\n/nick netcat\n/quit\n",
      10_000,
    );
    await bob.expect(
      "* guest2 joined\n",
      "guest2: hello from nc\n",
      "* guest2 is now netcat\n",
      "* netcat left\n",
    );
    const result = await nc;
    assert.equal(result.code, 0);
    assert.equal(
      new TextDecoder().decode(result.stdout),
      "* welcome guest2; /help lists commands\n* guest2 is now netcat\n* bye netcat\n",
    );
  },
});
if (!haveNc) skipBecause("nc not installed");

Deno.test("CLI: bad options exit 2 with one line and a hint", async () => {
  const cases: [string, string[], string][] = [
    [
      "chat_server.ts",
      ["--port", "70000"],
      "--port must be a whole number from 0 to 65535, got '70000'",
    ],
    [
      "chat_server.ts",
      ["--max-line", "0"],
      "--max-line must be a whole number from 1 to 1048576, got '0'",
    ],
    [
      "chat_server.ts",
      ["--max-queue", "lots"],
      "--max-queue must be a whole number from 1024 to 1073741824, got 'lots'",
    ],
    ["chat_server.ts", ["--bogus"], "Unknown option '--bogus'"],
    ["chat_server.ts", ["extra"], "unexpected argument 'extra'"],
    [
      "chat_client.ts",
      ["--port", "x"],
      "--port must be a whole number from 0 to 65535, got 'x'",
    ],
    [
      "chat_client.ts",
      ["--timeout", "0"],
      "--timeout must be a number of seconds above 0 (up to 86400), got '0'",
    ],
    [
      "chat_server.ts",
      ["--idle-timeout", "soon"],
      "--idle-timeout must be a number of seconds 0 or more (up to 86400), got 'soon'",
    ],
    [
      "chat_server.ts",
      ["--max-connections", "0"],
      "--max-connections must be a whole number from 1 to 9007199254740991, got '0'",
    ],
    [
      "chat_server.ts",
      ["--announce-limit", "-1"],
      "option '--announce-limit' needs a value; for one starting with '-', write --announce-limit=VALUE",
    ],
    [
      "chat_server.ts",
      ["--cert", "cert.pem"],
      "--cert and --key go together: give both or neither",
    ],
    [
      "chat_client.ts",
      ["--client-key", "key.pem"],
      "--client-cert and --client-key go together: give both or neither",
    ],
  ];
  await Promise.all(cases.map(async ([script, args, message]) => {
    const result = await runScript(script, args);
    assert.equal(result.code, 2, `${script} ${args.join(" ")}`);
    assert.equal(result.stdout, "");
    assert.equal(
      result.stderr,
      `${script}: ${message}\nTry '${script} --help' for more information.\n`,
    );
  }));
  const help = await runScript("chat_server.ts", ["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: chat_server\.ts /);
  // Where a user looks: why no option asks clients for certificates.
  assert.match(help.stdout, /deno#26825/);
  assert.match(help.stdout, /--idle-timeout SECONDS/);
  const clientHelp = await runScript("chat_client.ts", ["--help"]);
  assert.equal(clientHelp.code, 0);
  assert.match(clientHelp.stdout, /--timeout SECONDS/);
  assert.match(clientHelp.stdout, /--cacert FILE/);
});

Deno.test("chat_server.ts subprocess: Listening line, SIGTERM tells everyone and exits 0", async () => {
  const server = await startScript("chat_server.ts", ["--port", "0"]);
  try {
    assert.equal(
      server.listeningLine,
      `Listening on tcp://127.0.0.1:${server.port}`,
    );
    using alice = await Peer.connect(server.port);
    using bob = await Peer.connect(server.port);
    await alice.expect("* guest2 joined\n");
    await bob.send("before the end\n");
    await alice.expect("guest2: before the end\n");
    const started = performance.now();
    const [output, aliceRest, bobRest] = await Promise.all([
      server.stop("SIGTERM"),
      alice.rest(),
      bob.rest(),
    ]);
    const elapsed = performance.now() - started;
    assert.equal(output.code, 0);
    assert.ok(elapsed < 2000, `took ${elapsed} ms`);
    assert.equal(aliceRest, "* server shutting down\n");
    assert.equal(bobRest, "* server shutting down\n");
    assert.equal(output.stdout, `${server.listeningLine}\n`);
    assert.match(
      output.stderr,
      /^guest1 joined from 127\.0\.0\.1:\d+\nguest2 joined from 127\.0\.0\.1:\d+\n$/,
    );
  } finally {
    await server.stop("SIGKILL");
  }
});

Deno.test("chat_server.ts subprocess: a second SIGTERM 50 ms into a slow shutdown still exits 0 within 2 s", async () => {
  const server = await startScript("chat_server.ts", [
    "--port",
    "0",
    "--max-line",
    "65536",
    "--max-queue",
    String(64 * 1024 * 1024),
  ]);
  try {
    using stalled = await Peer.connect(server.port); // reads nothing more
    using alice = await Peer.connect(server.port);
    // 16 MB for a member that does not read: more than the kernel buffers,
    // so its writer is stuck and the shutdown waits its full second for it.
    const line = `${"z".repeat(64 * 1024 - 1)}\n`;
    for (let i = 0; i < 256; i++) await alice.send(line);
    await alice.send("/who\n");
    await alice.expect("* 2 here: guest1, guest2\n");
    const started = performance.now();
    server.child.kill("SIGTERM");
    await new Promise((resolve) => setTimeout(resolve, 50));
    try {
      server.child.kill("SIGTERM"); // mid-close
    } catch {
      // Already gone: that would be a failure below.
    }
    const [output, aliceRest] = await Promise.all([
      server.stop("SIGTERM"),
      alice.rest(),
    ]);
    const elapsed = performance.now() - started;
    assert.equal(output.signal, null);
    assert.equal(output.code, 0);
    assert.ok(elapsed >= 50 && elapsed < 2000, `took ${elapsed} ms`);
    assert.equal(aliceRest, "* server shutting down\n");
    stalled.close();
  } finally {
    await server.stop("SIGKILL");
  }
});

// ---- Idle members and caps (the hardening issue) ----

/** Opens `count` connections, 100 at a time, and reads none of them. */
async function connectMany(port: number, count: number) {
  const conns: Deno.TcpConn[] = [];
  try {
    while (conns.length < count) {
      const batch = Math.min(100, count - conns.length);
      conns.push(
        ...await Promise.all(
          Array.from(
            { length: batch },
            () => Deno.connect({ hostname: "127.0.0.1", port }),
          ),
        ),
      );
    }
  } catch (error) {
    for (const conn of conns) conn.close();
    throw error;
  }
  return conns;
}

Deno.test("--idle-timeout: a silent member is told and closed; one that only reads stays while the room talks", async () => {
  const { server, port, log } = startServer({ idleTimeout: 0.4 });
  await using _ = server;
  // Alone and silent: told why, then closed.
  const started = performance.now();
  using silent = await Peer.connect(port);
  assert.equal(await silent.rest(), "* idle for 0.4 s; closing\n");
  const idleMs = performance.now() - started;
  assert.ok(idleMs >= 300 && idleMs < 3000, `closed after ${idleMs} ms`);
  assert.ok(log.includes("guest1 left (idle)"), log.join("\n"));

  // A member who only reads is kept alive by what it is sent.
  using talker = await Peer.connect(port);
  using reader = await Peer.connect(port);
  await talker.expect("* guest3 joined\n");
  for (let i = 0; i < 12; i++) { // 1.2 s: three times the timeout
    await talker.send(`tick ${i}\n`);
    await reader.expect(`guest2: tick ${i}\n`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await talker.send("/who\n");
  await talker.expect("* 2 here: guest2, guest3\n");
  // When the room goes quiet, both go.
  assert.equal(await reader.rest(), "* idle for 0.4 s; closing\n");
});

Deno.test("--max-per-address and --max-connections: beyond them a client is closed at once, the room goes on", async () => {
  const { server, port, log } = startServer({ maxPerAddress: 2 });
  await using _ = server;
  using alice = await Peer.connect(port);
  const bob = await Peer.connect(port);
  await alice.expect("* guest2 joined\n");
  using refused = await Peer.connect(port, false);
  assert.equal(await refused.rest(), ""); // closed without a word
  assert.ok(
    log.includes(
      "refused 127.0.0.1: 2 connections from it (--max-per-address)",
    ),
    log.join("\n"),
  );
  // Our client says what happened, in one line.
  const full = await runScript("chat_client.ts", ["--port", String(port)]);
  assert.equal(full.code, 1);
  assert.equal(
    full.stderr,
    `chat_client.ts: no welcome from 127.0.0.1:${port}: it closed the connection\n`,
  );
  bob.close();
  await alice.expect("* guest2 left\n");
  using carol = await Peer.connect(port); // a free place again
  await alice.expect("* guest3 joined\n");
  await carol.send("hi\n");
  await alice.expect("guest3: hi\n");

  const small = startServer({ maxConnections: 1 });
  await using _small = small.server;
  using first = await Peer.connect(small.port);
  using second = await Peer.connect(small.port, false);
  assert.equal(await second.rest(), "");
  assert.ok(
    small.log.includes(
      "refused 127.0.0.1: 1 connections open (--max-connections)",
    ),
    small.log.join("\n"),
  );
  await first.send("/who\n");
  await first.expect("* 1 here: guest1\n");
});

/** chat_server.ts in a shell whose open-file limit is `files`. */
async function startWithFileLimit(files: number, args: string[]) {
  const child = new Deno.Command("sh", {
    args: [
      "-c",
      `ulimit -n ${files} && exec "$@"`,
      "sh",
      Deno.execPath(),
      "run",
      "--allow-net",
      scriptPath("chat_server.ts"),
      "--port",
      "0",
      ...args,
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const stdout = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const { value } = await within(10_000, stdout.read(), "the Listening line");
  const port = Number(/:(\d+)\n/.exec(value ?? "")?.[1]);
  return {
    port,
    async stop() {
      child.kill("SIGTERM");
      await child.status;
      await stdout.cancel();
      return await stderr;
    },
  };
}

Deno.test("ulimit -n 256: 400 silent connections do not lock the room for good", async () => {
  // Under the descriptor limit, --max-connections refuses the excess at
  // once (no EMFILE), and --idle-timeout frees the silent ones.
  const server = await startWithFileLimit(256, [
    "--max-connections",
    "200",
    "--idle-timeout",
    "1",
  ]);
  let stderr = "";
  try {
    const silent = await connectMany(server.port, 400);
    try {
      // Within a few seconds the silent ones are gone and a newcomer is in.
      const peer = await within(
        10_000,
        (async () => {
          while (true) {
            const peer = await Peer.connect(server.port, false);
            try {
              if ((await peer.line()).startsWith("* welcome ")) return peer;
            } catch {
              // Closed at once: still full.
            }
            peer.close();
            await new Promise((resolve) => setTimeout(resolve, 200));
          }
        })(),
        "a place in the room",
      );
      using _peer = peer;
      await peer.send("/who\n");
      assert.match(await peer.line(), /^\* \d+ here: /);
    } finally {
      for (const conn of silent) conn.close();
    }
  } finally {
    stderr = await server.stop();
  }
  assert.match(stderr, /refused 127\.0\.0\.1: 200 connections open/);
  assert.match(stderr, /left \(idle\)/);
  assert.doesNotMatch(stderr, /accept failed/);
});

// ---- Big rooms (the hardening issue) ----

/** The resident memory of a process, in bytes (ps reads /proc for us). */
async function residentBytes(pid: number): Promise<number> {
  const ps = await runTool("ps", ["-o", "rss=", "-p", String(pid)]);
  const kilobytes = Number(new TextDecoder().decode(ps.stdout).trim());
  assert.ok(kilobytes > 0, `ps: ${ps.stderr}`);
  return kilobytes * 1024;
}

/** Asks /who until the room holds `count` members; other lines are skipped. */
async function waitForRoom(peer: Peer, count: number, ms = 20_000) {
  await within(
    ms,
    (async () => {
      while (true) {
        await peer.send("/who\n");
        let line = await peer.line(ms);
        while (!/^\* \d+ here: /.test(line)) line = await peer.line(ms);
        if (Number(/\d+/.exec(line)![0]) === count) return;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    })(),
    `a room of ${count}`,
  );
}

Deno.test("2,000 members: a newcomer's welcome within 0.5 s; all leaving at once stays cheap", async () => {
  const server = await startScript("chat_server.ts", [
    "--port",
    "0",
    "--max-per-address",
    "5000",
  ]);
  try {
    using watcher = await Peer.connect(server.port);
    const crowd = await connectMany(server.port, 2000);
    try {
      await waitForRoom(watcher, 2001);
      const started = performance.now();
      using newcomer = await Peer.connect(server.port); // checks the welcome
      const welcomeMs = performance.now() - started;
      assert.ok(welcomeMs < 500, `welcome took ${welcomeMs.toFixed(0)} ms`);
      // Over --announce-limit (100), joins are not announced: the room
      // answers the watcher at once, with no "joined" line for the newcomer.
      await watcher.send("/who\n");
      const who = await watcher.line();
      assert.match(who, /^\* 2002 here: guest1, guest2, .* and 1902 more\n$/);

      const before = await residentBytes(server.child.pid);
      const leaving = performance.now();
      for (const conn of crowd.splice(0)) conn.close();
      await waitForRoom(newcomer, 2);
      const leftMs = performance.now() - leaving;
      const grown = await residentBytes(server.child.pid) - before;
      // Only the last 100 leaves are announced, to at most 100 members.
      assert.ok(grown < 32 * 1024 * 1024, `memory grew by ${grown} bytes`);
      console.log(
        `  welcome ${welcomeMs.toFixed(1)} ms with 2,001 in the room; ` +
          `2,000 left in ${leftMs.toFixed(0)} ms, memory ${
            (grown / 1e6).toFixed(1)
          } MB more`,
      );
    } finally {
      for (const conn of crowd) conn.close();
    }
  } finally {
    await server.stop("SIGKILL");
  }
});

Deno.test("an idle member costs at most 20 KB of server memory (2,000 of them)", async () => {
  const server = await startScript("chat_server.ts", [
    "--port",
    "0",
    "--max-per-address",
    "5000",
  ]);
  try {
    using watcher = await Peer.connect(server.port);
    await waitForRoom(watcher, 1);
    const before = await residentBytes(server.child.pid);
    const crowd = await connectMany(server.port, 2000);
    try {
      await waitForRoom(watcher, 2001);
      const perMember = (await residentBytes(server.child.pid) - before) /
        2000;
      assert.ok(perMember <= 20 * 1024, `${perMember} bytes per member`);
      console.log(`  ${(perMember / 1024).toFixed(1)} KB per idle member`);
    } finally {
      for (const conn of crowd) conn.close();
    }
  } finally {
    await server.stop("SIGKILL");
  }
});

Deno.test("--announce-limit: joins and leaves are announced only in a small room", async () => {
  const { server, port, log } = startServer({ announceLimit: 2 });
  await using _ = server;
  using alice = await Peer.connect(port);
  using bob = await Peer.connect(port);
  await alice.expect("* guest2 joined\n"); // a room of 1 hears of the 2nd
  using carol = await Peer.connect(port);
  await alice.expect("* guest3 joined\n"); // of 2 hears of the 3rd
  const dave = await Peer.connect(port); // a room of 3 hears nothing
  await alice.send("/who\n");
  await alice.expect("* 4 here: guest1, guest2, guest3, guest4\n");
  dave.close(); // back to 3: not announced either
  await within(
    5000,
    (async () => {
      while (!log.includes("guest4 left (disconnected)")) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })(),
  );
  carol.close(); // 2 left: announced again
  await alice.expect("* guest3 left\n");
  await bob.expect("* guest3 joined\n", "* guest3 left\n");
  // Everything else still reaches everyone.
  await bob.send("still here\n");
  await alice.expect("guest2: still here\n");
});

// ---- TLS ----

const haveOpenssl = await hasCommand("openssl");
if (!haveOpenssl) skipBecause("openssl not installed: chat TLS tests ignored");

/** A TLS chat connection that reads whole lines, like Peer. */
async function tlsPeer(port: number, ca: string, hostname = "127.0.0.1") {
  const conn = await Deno.connectTls({ hostname, port, caCerts: [ca] });
  const peer = new Peer(conn as unknown as Deno.TcpConn);
  assert.match(await peer.line(), /^\* welcome guest\d+; /);
  return peer;
}

Deno.test({
  name:
    "TLS: --cert/--key; our client (right CA), openssl s_client and Python ssl chat together",
  ignore: !haveOpenssl,
  async fn() {
    await using certs = await makeTestCerts();
    const server = await startScript("chat_server.ts", [
      "--port",
      "0",
      "--cert",
      certs.certFile,
      "--key",
      certs.keyFile,
    ], { allow: ["--allow-net", `--allow-read=${certs.dir}`] });
    try {
      assert.equal(
        server.listeningLine,
        `Listening on tls://127.0.0.1:${server.port}`,
      );
      using alice = await tlsPeer(server.port, certs.ca); // guest1

      const client = await runScript("chat_client.ts", [
        "--port",
        String(server.port),
        "--cacert",
        certs.caFile,
      ], {
        allow: ["--allow-net", `--allow-read=${certs.dir}`],
        stdin: "hello over TLS\n/quit\n",
      });
      assert.equal(client.code, 0, client.stderr);
      assert.equal(
        client.stdout,
        "* welcome guest2; /help lists commands\n* bye guest2\n",
      );
      await alice.expect(
        "* guest2 joined\n",
        "guest2: hello over TLS\n",
        "* guest2 left\n",
      );

      const openssl = await runTool(
        "openssl",
        [
          "s_client",
          "-connect",
          `127.0.0.1:${server.port}`,
          "-CAfile",
          certs.caFile,
          "-verify_return_error",
          "-quiet",
        ],
        "from openssl\n/quit\n",
        10_000,
      );
      assert.equal(openssl.code, 0, openssl.stderr);
      assert.equal(
        new TextDecoder().decode(openssl.stdout),
        "* welcome guest3; /help lists commands\n* bye guest3\n",
      );
      await alice.expect(
        "* guest3 joined\n",
        "guest3: from openssl\n",
        "* guest3 left\n",
      );

      if (!havePython) {
        skipBecause("python3 not installed (its TLS client part)");
      } else {
        const python = await runTool(
          "python3",
          [
            "-c",
            PYTHON_TLS_CLIENT,
            String(server.port),
            certs.caFile,
          ],
          undefined,
          10_000,
        );
        assert.equal(python.code, 0, python.stderr);
        assert.equal(
          new TextDecoder().decode(python.stdout),
          "* welcome guest4; /help lists commands\n* 2 here: guest1, guest4\n",
        );
        await alice.expect(
          "* guest4 joined\n",
          "guest4: from python\n",
          "* guest4 left\n",
        );
      }
    } finally {
      await server.stop();
    }
  },
});

// A Python TLS chat client: welcome, a line, /who, /quit.
const PYTHON_TLS_CLIENT = `
import socket, ssl, sys
context = ssl.create_default_context(cafile=sys.argv[2])
raw = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
with context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
    lines = s.makefile("rb")
    sys.stdout.write(lines.readline().decode())
    s.sendall(b"from python\\n/who\\n")
    sys.stdout.write(lines.readline().decode())
    s.sendall(b"/quit\\n")
    lines.readline()
`;

Deno.test({
  name:
    "TLS: wrong CA is one line, exit 1; plain text and a stalled handshake cost only their own connection",
  ignore: !haveOpenssl,
  async fn() {
    await using certs = await makeTestCerts();
    const log: string[] = [];
    await using server = startChatServer({
      port: 0,
      tls: { cert: certs.cert, key: certs.key },
      log: (line) => log.push(line),
    });
    const port = server.addr.port;
    const wrongCa = await runScript("chat_client.ts", [
      "--port",
      String(port),
      "--cacert",
      certs.otherCaFile,
    ], { allow: ["--allow-net", `--allow-read=${certs.dir}`] });
    assert.equal(wrongCa.code, 1);
    assert.equal(
      wrongCa.stderr,
      `chat_client.ts: cannot connect to 127.0.0.1:${port}: certificate not trusted (unknown issuer)\n`,
    );
    // The right CA, the wrong name: refused by the client, named as such.
    await assert.rejects(
      dial({
        hostname: "127.0.0.1",
        port,
        timeoutMs: 5000,
        tls: { caCerts: [certs.ca], serverName: "example.com" },
      }),
      {
        message:
          `cannot connect to 127.0.0.1:${port}: certificate is not valid for example.com`,
      },
    );

    // A client that never finishes its handshake holds no one up.
    using stalled = await Deno.connect({ hostname: "127.0.0.1", port });
    using alice = await tlsPeer(port, certs.ca);
    // Plain text to the TLS port: that connection fails, alone.
    using plain = await Peer.connect(port, false);
    await plain.send("hello in plain text\n");
    await plain.rest();
    using bob = await tlsPeer(port, certs.ca);
    await alice.expect("* guest2 joined\n");
    await bob.send("all well\n");
    await alice.expect("guest2: all well\n");
    assert.ok(
      log.some((line) =>
        /^TLS handshake with 127\.0\.0\.1:\d+ failed/.test(line)
      ),
      log.join("\n"),
    );
    stalled.close();
  },
});

Deno.test({
  name: "TLS: 50 concurrent TLS members each receive a broadcast",
  ignore: !haveOpenssl,
  async fn() {
    await using certs = await makeTestCerts();
    await using server = startChatServer({
      port: 0,
      tls: { cert: certs.cert, key: certs.key },
      log: () => {},
    });
    const peers = await Promise.all(
      Array.from({ length: 50 }, () => tlsPeer(server.addr.port, certs.ca)),
    );
    try {
      await peers[0].send("to all of you\n");
      await Promise.all(
        peers.slice(1).map(async (peer) => {
          let line = await peer.line();
          while (line.startsWith("* ")) line = await peer.line();
          assert.match(line, /^guest\d+: to all of you\n$/);
        }),
      );
    } finally {
      for (const peer of peers) peer.close();
    }
  },
});

Deno.test({
  name:
    "TLS over IPv6: Listening on tls://[::1]:PORT, our client joins by --hostname ::1",
  ignore: !haveOpenssl,
  async fn() {
    await using certs = await makeTestCerts();
    const allow = ["--allow-net", `--allow-read=${certs.dir}`];
    const server = await startScript("chat_server.ts", [
      "--hostname",
      "::1",
      "--port",
      "0",
      "--cert",
      certs.certFile,
      "--key",
      certs.keyFile,
    ], { allow });
    try {
      assert.equal(
        server.listeningLine,
        `Listening on tls://[::1]:${server.port}`,
      );
      const client = await runScript("chat_client.ts", [
        "--hostname",
        "::1",
        "--port",
        String(server.port),
        "--cacert",
        certs.caFile,
      ], { allow, stdin: "/who\n" });
      assert.equal(client.code, 0, client.stderr);
      assert.equal(
        client.stdout,
        "* welcome guest1; /help lists commands\n* 1 here: guest1\n",
      );
    } finally {
      await server.stop();
    }
  },
});

// ---- Batches (the performance issue) ----

Deno.test("lines that arrive in one read keep their order around commands, and /nick applies at once", async () => {
  const { server, port } = startServer();
  await using _ = server;
  using alice = await Peer.connect(port);
  using bob = await Peer.connect(port);
  await alice.expect("* guest2 joined\n");
  await alice.send(
    "one\r\n  indented\n/nick alice\ntwo\n\t\nété\nthree\n/quit\nnever\n",
  );
  await bob.expect(
    "guest1: one\n",
    "guest1:   indented\n",
    "* guest1 is now alice\n",
    "alice: two\n",
    "alice: été\n",
    "alice: three\n",
    "* alice left\n",
  );
  assert.equal(
    await alice.rest(),
    "* guest1 is now alice\n* bye alice\n",
  );
});
