// Tests for scripts/timeout_client.ts: success against the echo server, a
// server that never answers, a connect that never completes (a Python
// listener whose backlog is full), refusal, what "the reply" is, and CLI
// errors.
import assert from "node:assert/strict";
import { request } from "../scripts/timeout_client.ts";
import { startEchoServer } from "../scripts/echo_server.ts";
import { Failure } from "../lib/cli.ts";
import {
  closedPort,
  hasCommand,
  runScript,
  runTool,
  skipBecause,
  startPeer,
  startUnansweredPort,
} from "./helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function ipv6Loopback(): boolean {
  try {
    Deno.listen({ hostname: "::1", port: 0 }).close();
    return true;
  } catch {
    return false;
  }
}

/**
 * A TCP server that handles exactly one client with `behave`, then stops.
 * Returns the port and a promise for the end of that one conversation.
 */
function oneShotServer(behave: (conn: Deno.TcpConn) => Promise<void>) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const done = (async () => {
    const conn = await listener.accept();
    listener.close();
    try {
      await behave(conn);
    } finally {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    }
  })();
  return { port: listener.addr.port, done };
}

/** Reads until the peer closes; returns what arrived. */
async function drain(conn: Deno.TcpConn): Promise<string> {
  const buffer = new Uint8Array(4096);
  let text = "";
  while (true) {
    const count = await conn.read(buffer).catch(() => null);
    if (count === null) return text;
    text += decoder.decode(buffer.subarray(0, count));
  }
}

Deno.test("in-process: echo server's reply is the first line", async () => {
  await using server = startEchoServer({ port: 0 });
  const reply = await request(encoder.encode("hi there\n"), {
    port: server.addr.port,
    timeout: 2,
  });
  assert.equal(decoder.decode(reply), "hi there\n");
});

Deno.test("subprocess: arguments and the default message via the echo server", async () => {
  await using server = startEchoServer({ port: 0 });
  const port = ["--port", String(server.addr.port)];
  const words = await runScript("timeout_client.ts", [
    ...port,
    "hello",
    "world",
  ]);
  assert.equal(words.code, 0, words.stderr);
  assert.equal(words.stdout, "hello world\n");
  assert.equal(words.stderr, "");
  const plain = await runScript("timeout_client.ts", port);
  assert.equal(plain.code, 0, plain.stderr);
  assert.equal(plain.stdout, "hello\n");
});

Deno.test("subprocess: a server that accepts but never answers → 'no reply', exit 1", async () => {
  let received = "";
  const server = oneShotServer(async (conn) => {
    received = await drain(conn); // read, never write, until the client quits
  });
  const started = performance.now();
  const result = await runScript("timeout_client.ts", [
    "--port",
    String(server.port),
    "--timeout",
    "0.3",
    "are you there?",
  ], { timeoutMs: 10_000 });
  const elapsed = performance.now() - started;
  await server.done;
  assert.equal(result.code, 1);
  assert.equal(result.stdout, "");
  assert.equal(
    result.stderr,
    "timeout_client.ts: no reply: timed out after 0.3 s\n",
  );
  assert.equal(received, "are you there?\n");
  assert.ok(elapsed >= 300, `gave up too early: ${elapsed} ms`);
  assert.ok(elapsed < 5000, `took ${elapsed} ms`);
});

Deno.test("in-process: a connect that never completes → 'connect timed out'", async () => {
  // Stands in for a connect to a black-holed address: settles only when
  // the client's own time limit aborts it.
  const neverConnects = (options: { signal: AbortSignal }) =>
    new Promise<Deno.TcpConn>((_, reject) => {
      options.signal.addEventListener(
        "abort",
        () => reject(options.signal.reason),
      );
    });
  const started = performance.now();
  await assert.rejects(
    request(encoder.encode("x\n"), { timeout: 0.2, connect: neverConnects }),
    (error) => {
      assert.ok(error instanceof Failure);
      assert.equal(error.message, "connect timed out after 0.2 s");
      return true;
    },
  );
  const elapsed = performance.now() - started;
  assert.ok(elapsed >= 190 && elapsed < 2000, `took ${elapsed} ms`);
});

Deno.test("in-process: a real connect that hangs (full accept queue) → 'connect timed out', kind timeout", async () => {
  const unanswered = await startUnansweredPort();
  try {
    const started = performance.now();
    await assert.rejects(
      request(encoder.encode("x\n"), {
        port: unanswered.addr.port,
        timeout: 0.3,
      }),
      (error) => {
        assert.ok(error instanceof Failure);
        assert.equal(error.message, "connect timed out after 0.3 s");
        assert.equal(error.kind, "timeout");
        return true;
      },
    );
    const elapsed = performance.now() - started;
    assert.ok(elapsed >= 290 && elapsed < 3000, `took ${elapsed} ms`);
  } finally {
    unanswered.close();
  }
});

Deno.test("in-process: refused and unresolvable are not timeouts", async () => {
  const port = closedPort();
  await assert.rejects(request(encoder.encode("x\n"), { port }), (error) => {
    assert.ok(error instanceof Failure);
    assert.equal(
      error.message,
      `cannot connect to 127.0.0.1:${port}: connection refused`,
    );
    assert.equal(error.kind, "refused");
    return true;
  });
  // RFC 6761: .invalid never resolves (locally, or by an immediate NXDOMAIN).
  await assert.rejects(
    request(encoder.encode("x\n"), {
      hostname: "no-such-host.invalid",
      timeout: 5,
    }),
    (error) => {
      assert.ok(error instanceof Failure);
      assert.match(
        error.message,
        /^cannot connect to no-such-host\.invalid:9999: name not resolved: /,
      );
      assert.equal(error.kind, "dns");
      return true;
    },
  );
});

// A listener with listen(0) that never accepts: once its accept queue holds
// one connection, Linux drops further SYNs, so a connect just hangs (the
// kernel retries SYNs for about two minutes). The Python helper fills the
// queue, checks that a further connect really hangs, then prints the port.
const BACKLOG_FILLER = `
import socket, sys
listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.bind(("127.0.0.1", 0))
listener.listen(0)
port = listener.getsockname()[1]
fillers = []
for _ in range(8):
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.settimeout(0.3)
    try:
        probe.connect(("127.0.0.1", port))
        fillers.append(probe)
    except socket.timeout:
        probe.close()
        print("full", port, flush=True)
        break
else:
    print("never-full", port, flush=True)
sys.stdin.read()  # hold everything open until the test closes our stdin
`;

const python = await hasCommand("python3");
Deno.test({
  name:
    "subprocess: a connect that hangs (full backlog) → 'connect timed out', exit 1",
  ignore: !python,
  async fn() {
    // Waits for the whole line: one read of a pipe may hold only part of it.
    await using helper = await startPeer(
      "python3",
      ["-c", BACKLOG_FILLER],
      /^(full|never-full) (\d+)\n/,
      { input: true, timeoutMs: 15_000 },
    );
    const [, state, port] = helper.match;
    assert.equal(state, "full", "could not make a connect hang on loopback");
    const started = performance.now();
    const result = await runScript("timeout_client.ts", [
      "--port",
      port,
      "--timeout",
      "0.3",
    ], { timeoutMs: 10_000 });
    const elapsed = performance.now() - started;
    assert.equal(result.code, 1);
    assert.equal(result.stdout, "");
    assert.equal(
      result.stderr,
      "timeout_client.ts: connect timed out after 0.3 s\n",
    );
    assert.ok(elapsed < 5000, `took ${elapsed} ms`);
  },
});
if (!python) skipBecause("python3 not installed");

Deno.test("subprocess: connection refused → one line, exit 1", async () => {
  const port = closedPort();
  const result = await runScript("timeout_client.ts", ["--port", String(port)]);
  assert.equal(result.code, 1);
  assert.equal(result.stdout, "");
  assert.equal(
    result.stderr,
    `timeout_client.ts: cannot connect to 127.0.0.1:${port}: connection refused\n`,
  );
});

Deno.test({
  name: "subprocess: refused on ::1 → the address in brackets",
  ignore: !ipv6Loopback(),
  async fn() {
    const listener = Deno.listen({ hostname: "::1", port: 0 });
    const { port } = listener.addr;
    listener.close();
    const result = await runScript("timeout_client.ts", [
      "--hostname",
      "::1",
      "--port",
      String(port),
    ]);
    assert.equal(result.code, 1);
    assert.equal(
      result.stderr,
      `timeout_client.ts: cannot connect to [::1]:${port}: connection refused\n`,
    );
  },
});
if (!ipv6Loopback()) skipBecause("IPv6 loopback ::1 not available");

/** Runs the client against a server that sends `bytes` and then acts. */
async function replyCase(bytes: Uint8Array, then: "wait" | "close") {
  const server = oneShotServer(async (conn) => {
    await conn.write(bytes).catch(() => 0);
    // "wait": keep the connection open until the client is done with it.
    if (then === "wait") await drain(conn);
  });
  const result = await runScript("timeout_client.ts", [
    "--port",
    String(server.port),
    "--timeout",
    "2",
  ], { timeoutMs: 10_000 });
  await server.done;
  return result;
}

Deno.test("the reply is the first line, even if more follows", async () => {
  const result = await replyCase(encoder.encode("first\nsecond\n"), "wait");
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout, "first\n");
});

Deno.test("the reply is what came before the close, bytes kept, newline added", async () => {
  const server = oneShotServer(async (conn) => {
    await conn.write(new Uint8Array([0x6f, 0x6b, 0xff, 0xfe]));
  });
  // Raw bytes, not text: the invalid UTF-8 must reach stdout unchanged.
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      new URL("../scripts/timeout_client.ts", import.meta.url).pathname,
      "--port",
      String(server.port),
      "--timeout",
      "2",
    ],
    stdin: "null",
  }).output();
  await server.done;
  assert.equal(output.code, 0, decoder.decode(output.stderr));
  assert.deepEqual(
    output.stdout,
    new Uint8Array([0x6f, 0x6b, 0xff, 0xfe, 0x0a]),
  );
});

// Runs a command on a pseudo-terminal (Python's pty module) and returns
// what the terminal showed: stdout and stderr, "\n" shown as "\r\n".
const ON_A_TERMINAL = `
import os, pty, sys
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
shown = b""
while True:
    try:
        data = os.read(fd, 65536)
    except OSError:
        break
    if not data:
        break
    shown += data
_, status = os.waitpid(pid, 0)
sys.stdout.buffer.write(shown)
sys.exit(os.waitstatus_to_exitcode(status))
`;

Deno.test({
  name:
    "on a terminal the reply's escapes are shown, not obeyed; into a pipe, the bytes",
  ignore: !python,
  async fn() {
    const hostile = encoder.encode("hi \x1b[2J\x1b]0;owned\x07 \u202e!\r\n");
    const server = oneShotServer(async (conn) => {
      await conn.write(hostile);
    });
    const result = await runTool(
      "python3",
      [
        "-c",
        ON_A_TERMINAL,
        Deno.execPath(),
        "run",
        "--allow-net",
        new URL("../scripts/timeout_client.ts", import.meta.url).pathname,
        "--port",
        String(server.port),
      ],
      undefined,
      10_000,
    );
    await server.done;
    assert.equal(result.code, 0, result.stderr);
    assert.equal(
      decoder.decode(result.stdout),
      "hi \\x1b[2J\\x1b]0;owned\\x07 \\u{202e}!\r\n",
    );
    // The same reply into a pipe: every byte as sent.
    const piped = oneShotServer(async (conn) => {
      await conn.write(hostile);
    });
    const output = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-net",
        new URL("../scripts/timeout_client.ts", import.meta.url).pathname,
        "--port",
        String(piped.port),
      ],
      stdin: "null",
      stderr: "null",
    }).output();
    await piped.done;
    assert.deepEqual(output.stdout, hostile);
  },
});

Deno.test("a server that closes without a byte → 'no reply', exit 1", async () => {
  const result = await replyCase(new Uint8Array(), "close");
  assert.equal(result.code, 1);
  assert.equal(
    result.stderr,
    "timeout_client.ts: no reply: the server closed the connection\n",
  );
});

Deno.test("a reply over 64 KiB without a newline is refused, not buffered", async () => {
  const result = await replyCase(new Uint8Array(70_000).fill(0x61), "wait");
  assert.equal(result.code, 1);
  assert.equal(result.stdout, "");
  assert.equal(
    result.stderr,
    "timeout_client.ts: reply longer than 65536 bytes without a newline\n",
  );
});

Deno.test("CLI errors: one message, a hint, exit 2, no stack trace", async () => {
  const cases: [string[], RegExp][] = [
    [["--timeout", "0"], /--timeout must be a number of seconds/],
    [["--timeout", "soon"], /--timeout must be a number of seconds/],
    [["--port", "99999"], /--port must be a whole number/],
    [["--bogus"], /Unknown option '--bogus'/],
  ];
  for (const [args, message] of cases) {
    const result = await runScript("timeout_client.ts", args);
    assert.equal(result.code, 2, `${args}: ${result.stderr}`);
    const lines = result.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 2, result.stderr);
    assert.match(lines[0], message);
    assert.ok(lines[0].startsWith("timeout_client.ts: "));
    assert.match(lines[1], /--help/);
    assert.equal(result.stdout, "");
  }
  const help = await runScript("timeout_client.ts", ["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: timeout_client\.ts/);
});
