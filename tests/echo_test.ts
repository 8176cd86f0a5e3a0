import assert from "node:assert/strict";
import { startEchoServer } from "../scripts/echo_server.ts";
import { echoOnce, ping } from "../scripts/echo_client.ts";
import {
  closedPort,
  hasCommand,
  randomBytes,
  readAll,
  runScript,
  runTool,
  skipBecause,
  startScript,
  startUnansweredPort,
} from "./helpers.ts";

const encoder = new TextEncoder();

/** Sends `bytes` and reads the echo at the same time, as a real client must. */
async function roundTrip(port: number, bytes: Uint8Array): Promise<Uint8Array> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const [, echoed] = await Promise.all([
      (async () => {
        const writer = conn.writable.getWriter();
        await writer.write(bytes);
        writer.releaseLock();
        await conn.closeWrite();
      })(),
      readAll(conn),
    ]);
    return echoed;
  } finally {
    try {
      conn.close();
    } catch { /* closed by the readable reaching its end */ }
  }
}

Deno.test("echo returns exact bytes and closes after the client half-closes", async () => {
  await using server = startEchoServer({ port: 0 });
  const echoed = await roundTrip(
    server.addr.port,
    encoder.encode("hello\r\nworld\x00\xff"),
  );
  assert.deepEqual(echoed, encoder.encode("hello\r\nworld\x00\xff"));
});

Deno.test("echo streams 8 MiB of binary while the client is still sending", async () => {
  await using server = startEchoServer({ port: 0 });
  const payload = randomBytes(8 * 1024 * 1024);
  const echoed = await roundTrip(server.addr.port, payload);
  assert.equal(echoed.length, payload.length);
  assert.deepEqual(echoed, payload);
});

Deno.test("echo client's echoOnce and ping", async () => {
  await using server = startEchoServer({ port: 0 });
  const once = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  assert.deepEqual(
    await echoOnce(once, encoder.encode("one\n")),
    encoder.encode("one\n"),
  );
  once.close();
  const pinger = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  const result = await ping(pinger, encoder.encode("x".repeat(64)), 20);
  pinger.close();
  assert.equal(result.times.length, 20);
  assert.ok(result.min <= result.avg && result.avg <= result.max);
});

Deno.test("echo serves 500 concurrent clients, each getting its own bytes", async () => {
  await using server = startEchoServer({ port: 0 });
  const clients = Array.from(
    { length: 500 },
    (_, index) =>
      roundTrip(
        server.addr.port,
        encoder.encode(`client ${index} `.repeat(100)),
      ),
  );
  const replies = await Promise.all(clients);
  replies.forEach((reply, index) =>
    assert.equal(
      new TextDecoder().decode(reply),
      `client ${index} `.repeat(100),
    )
  );
});

Deno.test("a client that never reads does not slow down the others", async () => {
  await using server = startEchoServer({ port: 0 });
  const stalled = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  // Write until the kernel buffers on both sides are full and our write
  // blocks: the server is now blocked writing to this client.
  const chunk = new Uint8Array(256 * 1024);
  const stallSetIn = Promise.withResolvers<void>();
  const writing = (async () => {
    try {
      for (let sent = 0; sent < 256 * 1024 * 1024; sent += chunk.length) {
        // A write still pending after 200 ms means both buffers are full.
        const timer = setTimeout(() => stallSetIn.resolve(), 200);
        await stalled.write(chunk);
        clearTimeout(timer);
      }
    } catch {
      // The connection was closed under the pending write.
    } finally {
      stallSetIn.resolve(); // never leave the test waiting
    }
  })();
  await stallSetIn.promise;
  const started = performance.now();
  const echoed = await roundTrip(
    server.addr.port,
    encoder.encode("still here\n"),
  );
  assert.equal(new TextDecoder().decode(echoed), "still here\n");
  assert.ok(performance.now() - started < 1000, "other clients were delayed");
  stalled.close();
  await writing;
});

// Clients that reset the connection while the server is echoing to them.
// A reset needs SO_LINGER 0, which Deno cannot set (its close() sends FIN),
// so Python does it. Each client waits for the first echoed byte, so the
// server has accepted it and is mid-stream when the RST arrives.
const RESETTING_CLIENTS = `
import socket, struct, sys
for _ in range(20):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    s.sendall(b"x" * 65536)
    s.recv(1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
`;

Deno.test({
  name: "clients that reset mid-stream (RST) leave the server serving, quietly",
  ignore: !(await hasCommand("python3")),
  async fn() {
    const server = await startScript("echo_server.ts", ["--port", "0"]);
    try {
      const resets = await runTool("python3", [
        "-c",
        RESETTING_CLIENTS,
        String(server.port),
      ]);
      assert.equal(resets.code, 0, resets.stderr);
      const echoed = await roundTrip(
        server.port,
        encoder.encode("after resets\n"),
      );
      assert.equal(new TextDecoder().decode(echoed), "after resets\n");
    } finally {
      const stopped = await server.stop("SIGTERM");
      assert.equal(stopped.code, 0);
      // A reset is the peer's business: no log line, no stack trace.
      assert.equal(stopped.stderr, "");
    }
  },
});
if (!(await hasCommand("python3"))) {
  skipBecause("python3 not installed: echo reset test ignored");
}

Deno.test("echo_server.ts as a subprocess: echo_client.ts, binary stdin, ping, SIGTERM", async () => {
  const server = await startScript("echo_server.ts", ["--port", "0"]);
  try {
    assert.match(
      server.listeningLine,
      /^Listening on tcp:\/\/127\.0\.0\.1:\d+$/,
    );
    const port = String(server.port);

    const words = await runScript("echo_client.ts", [
      "--port",
      port,
      "hello",
      "world",
    ]);
    assert.equal(words.code, 0, words.stderr);
    assert.equal(words.stdout, "hello world\n");

    const binary = randomBytes(3 * 1024 * 1024);
    const piped = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-net",
        new URL("../scripts/echo_client.ts", import.meta.url).pathname,
        "--port",
        port,
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const writer = piped.stdin.getWriter();
    const [, output] = await Promise.all([
      writer.write(binary).then(() => writer.close()),
      piped.output(),
    ]);
    assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
    assert.deepEqual(output.stdout, binary);

    const pinged = await runScript("echo_client.ts", [
      "--port",
      port,
      "--count",
      "3",
    ]);
    assert.equal(pinged.code, 0, pinged.stderr);
    assert.match(
      pinged.stdout,
      /seq=3 time=[\d.]+ ms\n3 round trips, min\/avg\/max = [\d.]+\/[\d.]+\/[\d.]+ ms\n$/,
    );
  } finally {
    const started = performance.now();
    const stopped = await server.stop("SIGTERM");
    assert.equal(stopped.code, 0, stopped.stderr);
    assert.ok(performance.now() - started < 2000);
  }
});

Deno.test("SIGTERM with a client still connected exits 0 within 2 s", async () => {
  const server = await startScript("echo_server.ts", ["--port", "0"]);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  await conn.write(encoder.encode("hi\n"));
  const reply = new Uint8Array(3);
  assert.equal(await conn.read(reply), 3);
  const started = performance.now();
  const stopped = await server.stop("SIGTERM");
  assert.equal(stopped.code, 0);
  assert.ok(performance.now() - started < 2000);
  // The server closed our connection on its way out.
  assert.equal(await conn.read(reply), null);
  conn.close();
});

Deno.test("bad options exit 2 with one line and no stack trace", async () => {
  for (
    const args of [["--port", "70000"], ["--port", "abc"], ["--bogus"], [
      "stray",
    ]]
  ) {
    const result = await runScript("echo_server.ts", args);
    assert.equal(result.code, 2, `${args}: ${result.stderr}`);
    assert.doesNotMatch(result.stderr, /\n\s+at /);
    assert.match(
      result.stderr,
      /^echo_server\.ts: .+\nTry 'echo_server\.ts --help'/,
    );
  }
  const help = await runScript("echo_server.ts", ["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: echo_server\.ts/);
  const count = await runScript("echo_client.ts", ["--count", "0"]);
  assert.equal(count.code, 2);
});

Deno.test("echo_client.ts reports a refused connection in one line, exit 1", async () => {
  const port = closedPort(); // nothing listens there
  const result = await runScript("echo_client.ts", [
    "--port",
    String(port),
    "hi",
  ]);
  assert.equal(result.code, 1);
  assert.equal(
    result.stderr,
    `echo_client.ts: cannot connect to 127.0.0.1:${port}: connection refused\n`,
  );
  // An IPv6 address is shown in brackets, so the port stands apart.
  const refused6 = await runScript("echo_client.ts", [
    "--hostname",
    "::1",
    "--port",
    String(port),
    "hi",
  ]);
  assert.equal(refused6.code, 1);
  assert.equal(
    refused6.stderr,
    `echo_client.ts: cannot connect to [::1]:${port}: connection refused\n`,
  );
});

Deno.test({
  name: "interop: nc as the client",
  ignore: !(await hasCommand("nc")),
  async fn() {
    await using server = startEchoServer({ port: 0 });
    const result = await runTool("nc", [
      "-N",
      "127.0.0.1",
      String(server.addr.port),
    ], "hello from nc\n");
    assert.equal(new TextDecoder().decode(result.stdout), "hello from nc\n");
  },
});
if (!(await hasCommand("nc"))) {
  skipBecause("nc not installed: echo nc interop test ignored");
}

const PYTHON_CLIENT = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.connect(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"Hello, world")
s.shutdown(socket.SHUT_WR)
data = b""
while True:
    chunk = s.recv(1024)
    if not chunk:
        break
    data += chunk
s.close()
sys.stdout.write("Received " + repr(data))
`;

Deno.test({
  name: "interop: the Python tutorial's echo client",
  ignore: !(await hasCommand("python3")),
  async fn() {
    await using server = startEchoServer({ port: 0 });
    const result = await runTool("python3", [
      "-c",
      PYTHON_CLIENT,
      String(server.addr.port),
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(
      new TextDecoder().decode(result.stdout),
      "Received b'Hello, world'",
    );
  },
});
if (!(await hasCommand("python3"))) {
  skipBecause("python3 not installed: echo Python interop test ignored");
}

/** A server that accepts and reads but never answers nor closes. */
function startSilentServer() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const serving = (async () => {
    for await (const conn of listener) {
      held.push(conn);
      // Drain what arrives, so only the missing reply can stall the client.
      (async () => {
        const buffer = new Uint8Array(4096);
        while (await conn.read(buffer).catch(() => null) !== null) {
          // discard
        }
      })();
    }
  })();
  return {
    port: listener.addr.port,
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const conn of held) conn.close();
      await serving;
    },
  };
}

Deno.test("echo_client.ts: a silent server is a timeout (WORDs and --count), one line, exit 1", async () => {
  await using silent = startSilentServer();
  for (const args of [["hello"], ["--count", "3"]]) {
    const started = performance.now();
    const result = await runScript("echo_client.ts", [
      "--port",
      String(silent.port),
      "--timeout",
      "0.3",
      ...args,
    ], { timeoutMs: 10_000 });
    assert.equal(result.code, 1, `${args}: ${result.stderr}`);
    assert.equal(
      result.stderr,
      "echo_client.ts: no reply: timed out after 0.3 s\n",
    );
    assert.equal(result.stdout, "");
    assert.ok(performance.now() - started < 5000, "the limit was not kept");
  }
});

Deno.test("echo_client.ts: a connect that never completes times out", async () => {
  const unanswered = await startUnansweredPort();
  try {
    const result = await runScript("echo_client.ts", [
      "--port",
      String(unanswered.addr.port),
      "--timeout",
      "0.3",
      "hello",
    ], { timeoutMs: 10_000 });
    assert.equal(result.code, 1, result.stderr);
    assert.equal(
      result.stderr,
      `echo_client.ts: cannot connect to 127.0.0.1:${unanswered.addr.port}: timed out after 0.3 s\n`,
    );
  } finally {
    unanswered.close();
  }
});
