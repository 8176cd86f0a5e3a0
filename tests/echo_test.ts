import assert from "node:assert/strict";
import { startEchoServer } from "../scripts/echo_server.ts";
import { echoOnce, ping } from "../scripts/echo_client.ts";
import {
  closedPort,
  hasCommand,
  makeTestCerts,
  randomBytes,
  readAll,
  runScript,
  runTool,
  scriptPath,
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
        scriptPath("echo_client.ts"),
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

// ------------------------------------------------------------ limits

/** Resident memory of a process in KiB, as `ps` reports it. */
async function rssKiB(pid: number): Promise<number> {
  const { stdout } = await runTool("ps", ["-o", "rss=", "-p", String(pid)]);
  return Number(new TextDecoder().decode(stdout).trim());
}

/** Opens `count` connections (in batches, so the backlog never overflows). */
async function openIdle(port: number, count: number): Promise<Deno.TcpConn[]> {
  const conns: Deno.TcpConn[] = [];
  while (conns.length < count) {
    const batch = Math.min(200, count - conns.length);
    conns.push(
      ...await Promise.all(
        Array.from(
          { length: batch },
          () => Deno.connect({ hostname: "127.0.0.1", port }),
        ),
      ),
    );
  }
  return conns;
}

Deno.test("idle timeout: a silent client is closed, a talking one is not", async () => {
  await using server = startEchoServer({ port: 0, idleTimeout: 0.3 });
  const port = server.addr.port;
  const silent = await Deno.connect({ hostname: "127.0.0.1", port });
  const talking = await Deno.connect({ hostname: "127.0.0.1", port });
  const started = performance.now();
  const buffer = new Uint8Array(16);
  // The talking client sends a byte every 100 ms for 1 s and gets it back.
  for (let i = 0; i < 10; i++) {
    await talking.write(encoder.encode("x"));
    assert.equal(await talking.read(buffer), 1);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  // The silent one was closed meanwhile: its read ends at once.
  assert.equal(await silent.read(buffer), null);
  const waited = performance.now() - started;
  assert.ok(waited >= 300 && waited < 2000, `closed after ${waited} ms`);
  silent.close();
  talking.close();
});

Deno.test("caps: beyond --max-per-address a client is closed at once, logged at most once a second", async () => {
  await using server = await startScript("echo_server.ts", [
    "--port",
    "0",
    "--max-per-address",
    "3",
  ]);
  const held = await openIdle(server.port, 3);
  // 20 more from the same address: each is closed without an echo.
  const refused = await openIdle(server.port, 20);
  const buffer = new Uint8Array(16);
  for (const conn of refused) {
    await conn.write(encoder.encode("x")).catch(() => {});
    assert.equal(await conn.read(buffer).catch(() => null), null);
    conn.close();
  }
  // One of the three leaves: a new client is served again.
  held.pop()!.close();
  await new Promise((resolve) => setTimeout(resolve, 100));
  const echoed = await roundTrip(server.port, encoder.encode("back\n"));
  assert.equal(new TextDecoder().decode(echoed), "back\n");
  for (const conn of held) conn.close();
  const { code, stderr } = await server.stop();
  assert.equal(code, 0);
  const lines = stderr.trim().split("\n");
  assert.ok(lines.length <= 2, stderr); // 20 refusals in well under 2 s
  assert.match(
    lines[0],
    /^refused 127\.0\.0\.1: 3 connections from it \(--max-per-address\)/,
  );
});

Deno.test("memory: 2,000 idle connections cost at most 20 KB each", async () => {
  await using server = await startScript("echo_server.ts", ["--port", "0"]);
  const pid = server.child.pid;
  // Warm up once (a round trip) so the baseline includes the loaded code.
  await roundTrip(server.port, encoder.encode("warm up\n"));
  const before = await rssKiB(pid);
  const conns = await openIdle(server.port, 2000);
  // Every connection echoes one small message, then waits idle.
  await Promise.all(conns.map(async (conn) => {
    await conn.write(encoder.encode("hi\n"));
    assert.equal(await conn.read(new Uint8Array(16)), 3);
  }));
  const perConnection = (await rssKiB(pid) - before) * 1024 / 2000;
  console.log(
    `idle echo connection: ${Math.round(perConnection)} bytes of RSS`,
  );
  for (const conn of conns) conn.close();
  assert.ok(perConnection <= 20_000, `${perConnection} bytes per connection`);
});

Deno.test("two SIGTERMs 50 ms apart with clients connected: exit 0 within 2 s", async () => {
  const server = await startScript("echo_server.ts", ["--port", "0"]);
  const conns = await openIdle(server.port, 5);
  const started = performance.now();
  server.child.kill("SIGTERM");
  await new Promise((resolve) => setTimeout(resolve, 50));
  const { code, signal } = await server.stop("SIGTERM");
  assert.equal(signal, null);
  assert.equal(code, 0);
  assert.ok(performance.now() - started < 2500);
  for (const conn of conns) conn.close();
});

Deno.test("echo_client.ts: a server that closes without echoing is an error, exit 1", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  // Reads what it is sent, echoes the first two bytes only, then closes.
  const serving = (async () => {
    for (let i = 0; i < 2; i++) {
      const conn = await listener.accept();
      const buffer = new Uint8Array(64);
      const count = await conn.read(buffer);
      await conn.write(buffer.subarray(0, Math.min(2, count ?? 0)));
      conn.close();
    }
  })();
  for (const args of [["hello"], []]) {
    const result = await runScript("echo_client.ts", [
      "--port",
      String(listener.addr.port),
      ...args,
    ], { stdin: args.length ? undefined : "hello\n" });
    assert.equal(result.code, 1, result.stderr);
    assert.equal(
      result.stderr,
      "echo_client.ts: server closed after echoing 2 of 6 bytes\n",
    );
    assert.equal(result.stdout, args.length ? "" : "he");
  }
  await serving;
  listener.close();
});

// ---------------------------------------------------------------- TLS

const haveOpenssl = await hasCommand("openssl");
if (!haveOpenssl) skipBecause("openssl not installed: echo TLS tests ignored");

Deno.test({
  name:
    "TLS: echo_client --cacert, openssl s_client and Python ssl all get their bytes back",
  ignore: !haveOpenssl,
  async fn() {
    await using certs = await makeTestCerts();
    const allow = ["--allow-net", `--allow-read=${certs.dir}`];
    await using server = await startScript("echo_server.ts", [
      "--port",
      "0",
      "--cert",
      certs.certFile,
      "--key",
      certs.keyFile,
    ], { allow });
    assert.match(
      server.listeningLine,
      /^Listening on tls:\/\/127\.0\.0\.1:\d+$/,
    );
    const port = String(server.port);
    const ours = await runScript(
      "echo_client.ts",
      ["--port", port, "--cacert", certs.caFile, "hello", "tls"],
      { allow },
    );
    assert.equal(ours.code, 0, ours.stderr);
    assert.equal(ours.stdout, "hello tls\n");
    // s_client hangs up as soon as its input ends, so the input lingers a
    // moment for the echo to come back.
    const openssl = await runTool("sh", [
      "-c",
      `(printf 'from openssl\\n'; sleep 0.5) | openssl s_client -quiet -no_ign_eof -verify_return_error -CAfile "$1" -servername localhost -connect "127.0.0.1:$2"`,
      "sh",
      certs.caFile,
      port,
    ]);
    assert.equal(new TextDecoder().decode(openssl.stdout), "from openssl\n");
    if (await hasCommand("python3")) {
      const python = await runTool("python3", [
        "-c",
        `
import socket, ssl, sys
context = ssl.create_default_context(cafile=sys.argv[1])
with socket.create_connection(("127.0.0.1", int(sys.argv[2]))) as raw:
    with context.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(b"from python\\n")
        data = b""
        while len(data) < 12 and (chunk := s.recv(1024)):
            data += chunk
        sys.stdout.write(data.decode())
`,
        certs.caFile,
        port,
      ]);
      assert.equal(python.code, 0, python.stderr);
      assert.equal(new TextDecoder().decode(python.stdout), "from python\n");
    }
  },
});

Deno.test({
  name:
    "TLS: wrong CA, wrong name, no TLS: one line naming the problem, exit 1",
  ignore: !haveOpenssl,
  async fn() {
    await using certs = await makeTestCerts();
    const allow = ["--allow-net", `--allow-read=${certs.dir}`];
    // 127.0.0.2 is loopback too, but the certificate does not name it.
    await using server = await startScript("echo_server.ts", [
      "--hostname",
      "127.0.0.2",
      "--port",
      "0",
      "--cert",
      certs.certFile,
      "--key",
      certs.keyFile,
    ], { allow });
    const port = String(server.port);
    const plain = await runScript("echo_client.ts", [
      "--hostname",
      "127.0.0.2",
      "--port",
      port,
      "hi",
    ]);
    assert.equal(plain.code, 1, plain.stderr);
    assert.equal(
      plain.stderr,
      "echo_client.ts: the reply differs from what was sent: is it an echo server (TLS needs --tls)?\n",
    );
    const cases: [string[], string][] = [
      [
        ["--hostname", "127.0.0.2", "--cacert", certs.otherCaFile],
        `cannot connect to 127.0.0.2:${port}: certificate not trusted (unknown issuer)`,
      ],
      [
        ["--hostname", "127.0.0.2", "--cacert", certs.caFile],
        `cannot connect to 127.0.0.2:${port}: certificate is not valid for 127.0.0.2`,
      ],
      [
        ["--hostname", "127.0.0.2", "--tls"],
        `cannot connect to 127.0.0.2:${port}: certificate not trusted (unknown issuer)`,
      ],
    ];
    for (const [args, message] of cases) {
      const result = await runScript("echo_client.ts", [
        "--port",
        port,
        ...args,
        "hi",
      ], { allow });
      assert.equal(result.code, 1, result.stderr);
      assert.equal(result.stderr, `echo_client.ts: ${message}\n`);
    }
  },
});

Deno.test({
  name:
    "TLS: plain text and a stalled handshake cost only their own connection",
  ignore: !haveOpenssl,
  async fn() {
    await using certs = await makeTestCerts();
    const logs: string[] = [];
    await using server = startEchoServer({
      port: 0,
      tls: { cert: certs.cert, key: certs.key },
      handshakeTimeoutMs: 300,
      log: (line) => logs.push(line),
    });
    const port = server.addr.port;
    // A client that connects and says nothing: the server stops waiting for
    // its handshake after the bound and says so. (Deno 2.9 cannot close a
    // socket mid-handshake: its TLS layer keeps it until the client leaves.)
    const stalled = await Deno.connect({ hostname: "127.0.0.1", port });
    const started = performance.now();
    while (!logs.some((line) => line.includes("handshake timed out"))) {
      assert.ok(performance.now() - started < 3000, `no timeout: ${logs}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.ok(performance.now() - started >= 250);
    // A plain-text client: closed, nothing echoed.
    const plain = await Deno.connect({ hostname: "127.0.0.1", port });
    await plain.write(encoder.encode("GET / HTTP/1.1\r\n\r\n"));
    const answer = await readAll(plain).catch(() => new Uint8Array());
    assert.ok(!new TextDecoder().decode(answer).includes("GET"));
    plain.close();
    stalled.close();
    assert.match(
      logs[0],
      /^TLS handshake with 127\.0\.0\.1:\d+ failed: handshake timed out$/,
    );
  },
});

Deno.test({
  name: "TLS: 500 clients at once are served while one stalls mid-handshake",
  ignore: !haveOpenssl,
  async fn() {
    await using certs = await makeTestCerts();
    await using server = startEchoServer({
      port: 0,
      tls: { cert: certs.cert, key: certs.key },
    });
    const port = server.addr.port;
    const stalled = await Deno.connect({ hostname: "127.0.0.1", port });
    const replies = await Promise.all(
      Array.from({ length: 500 }, async (_, index) => {
        const conn = await Deno.connectTls({
          hostname: "localhost",
          port,
          caCerts: [certs.ca],
        });
        try {
          return new TextDecoder().decode(
            await echoOnce(conn, encoder.encode(`client ${index}\n`)),
          );
        } finally {
          conn.close();
        }
      }),
    );
    replies.forEach((reply, index) => assert.equal(reply, `client ${index}\n`));
    stalled.close();
  },
});

Deno.test({
  name: "TLS over ::1",
  ignore: !haveOpenssl,
  async fn() {
    await using certs = await makeTestCerts();
    await using server = startEchoServer({
      hostname: "::1",
      port: 0,
      tls: { cert: certs.cert, key: certs.key },
    });
    const conn = await Deno.connectTls({
      hostname: "::1",
      port: server.addr.port,
      caCerts: [certs.ca],
    });
    assert.equal(
      new TextDecoder().decode(await echoOnce(conn, encoder.encode("six\n"))),
      "six\n",
    );
    conn.close();
  },
});
